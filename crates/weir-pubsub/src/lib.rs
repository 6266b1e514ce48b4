//! The real-time hub, independent of transports.
//!
//! * [`Hub`]: topics created on first use with validated names ([`TopicName`]), each an
//!   offset log with an epoch that changes when history is lost (a restart of an in-memory
//!   hub); subscriptions ([`Subscription`]) start now, at the earliest retained message, or
//!   at an offset, with an explicit [`Event::Gap`] when the offset is older than the
//!   retention; wildcard patterns ([`TopicPattern`]: `orders.*`, `orders.>`); a slow
//!   subscriber never slows the publisher or other subscribers and is handled by its
//!   [`SlowSubscriberPolicy`], and [`Hub::slow_subscribers`] names it.
//! * [`Presence`]: who is in which room, per user rather than per connection.
//! * [`Relay`]: the hook through which several nodes act as one hub; [`Interest`] is what
//!   a node's subscribers want.
//! * [`TopicStore`]: where durable topics are kept, with [`sqlite_store::SqliteTopicStore`]
//!   (feature `sqlite`, on by default: one node's own) and
//!   [`postgres_store::PostgresTopicStore`] (feature `postgres`: one log per topic shared
//!   by every node) implementing it.
//! * [`postgres_relay`]: the [`Relay`] over PostgreSQL's `LISTEN/NOTIFY` (feature
//!   `postgres`, on by default).
//!
//! The transports (SSE, WebSocket, the TCP line protocol) live in `weir-chat` and the
//! `weir` binary.

mod answer;
mod config;
mod durable;
mod hub;
mod log;
mod name;
#[cfg(feature = "postgres")]
pub mod postgres_relay;
#[cfg(feature = "postgres")]
pub mod postgres_store;
mod presence;
mod relay;
#[cfg(feature = "sqlite")]
pub mod sqlite_store;
mod state;
mod subscription;
mod topic;
mod types;
mod upkeep;

pub use answer::PublishAnswer;
pub use config::{HubConfig, SlowSubscriberPolicy};
pub use durable::{shared_epoch, Append, StoreError, StoredTopic, TopicStore};
pub use hub::Hub;
pub use log::{Message, Retention, StoredMessage, ENCODING_SLOTS};
pub use name::{NameError, TopicName, TopicPattern, MAX_TOPIC_LEN, SYSTEM_MARK};
pub use presence::{Presence, PresenceChange};
pub use relay::{Interest, Relay, RelayStats};
pub use subscription::Subscription;
pub use types::{
    Event, Position, PublishError, SlowSubscriber, StartFrom, StartFromError, SubscribeError,
    TopicInfo,
};
pub use upkeep::Upkeep;
