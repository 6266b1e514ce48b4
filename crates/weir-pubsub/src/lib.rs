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
//!   (feature `sqlite`, on by default) implementing it.
//! * [`postgres_relay`]: the [`Relay`] over PostgreSQL's `LISTEN/NOTIFY` (feature
//!   `postgres`, on by default).
//!
//! The transports (SSE, WebSocket, the TCP line protocol) live in `weir-chat` and the
//! `weir` binary.

mod durable;
mod hub;
mod log;
mod name;
#[cfg(feature = "postgres")]
pub mod postgres_relay;
mod presence;
mod relay;
#[cfg(feature = "sqlite")]
pub mod sqlite_store;

pub use durable::{Append, StoreError, StoredMessage, StoredTopic, TopicStore};
pub use hub::{
    Event, Hub, HubConfig, PublishError, SlowSubscriber, SlowSubscriberPolicy, StartFrom,
    SubscribeError, Subscription, TopicInfo,
};
pub use log::{Message, Retention, ENCODING_SLOTS};
pub use name::{NameError, TopicName, TopicPattern, MAX_TOPIC_LEN};
pub use presence::{Presence, PresenceChange};
pub use relay::{Interest, Relay, RelayStats};
