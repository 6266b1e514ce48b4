//! Runtime-agnostic stream operators with stated backpressure.
//!
//! # Choosing an operator
//!
//! | you want to… | use | on overload |
//! |---|---|---|
//! | read ahead, or absorb bursts | [`buffer`](WeirStreamExt::buffer) | the [`OverflowPolicy`] you choose: wait, drop oldest, drop newest, or fail |
//! | run async work on each item, N at a time | [`map_concurrent`](WeirStreamExt::map_concurrent) (completion order), [`map_concurrent_ordered`](WeirStreamExt::map_concurrent_ordered) (input order) | intake waits for a free slot |
//! | keep a stage running while the consumer is busy | [`detach`](WeirStreamExt::detach) | the stage waits when its queue is full |
//! | write in batches (a database, a file) | [`batch`](WeirStreamExt::batch) by size or time | a full batch waits for the consumer |
//! | hold a rate | [`throttle`](WeirStreamExt::throttle) | items wait; none dropped |
//! | react to the last of a burst | [`debounce`](WeirStreamExt::debounce) | replaced items are dropped |
//! | see the latest value now and then | [`sample`](WeirStreamExt::sample) | items between samples are dropped |
//! | bound the wait for each item / for silence | [`timeout_each`](WeirStreamExt::timeout_each), [`idle_timeout`](WeirStreamExt::idle_timeout) | an error item |
//! | stop on shutdown | [`take_until`](WeirStreamExt::take_until) a cancellation future | ends the stream |
//! | combine N sources fairly | [`merge_fair`] | each source waits its turn |
//! | send every item to N consumers | [`fan_out`](WeirStreamExt::fan_out) | all wait for the slowest, or the slow one drops or is disconnected |
//! | aggregate by event time | [`windows`](WeirStreamExt::windows) (tumbling, sliding, session) | late items go to a side output |
//!
//! Every operator's type documents its backpressure, cancel safety and, where it has several
//! inputs or outputs, fairness. None allocates per item except where the output is itself a
//! new collection (a batch, a window): concurrent maps and merges allocate their slots and
//! wakers once, when built.
//!
//! # Runtimes
//!
//! The operators depend on `futures-core` only. Operators that wait take a [`Timer`]
//! ([`TokioTimer`] with the `tokio` feature, on by default; [`SmolTimer`] with `smol`), and
//! [`detach`](WeirStreamExt::detach) takes a [`Spawner`] ([`TokioSpawner`], [`SmolSpawner`]).

mod alarm;
mod batch;
mod buffer;
mod detach;
mod ext;
mod fanout;
mod map_concurrent;
mod merge;
mod overflow;
mod rate;
mod ready_set;
mod slab;
mod timeout;
mod timer;
mod window;

pub use batch::Batch;
pub use buffer::Buffer;
#[cfg(feature = "smol")]
pub use detach::SmolSpawner;
#[cfg(feature = "tokio")]
pub use detach::TokioSpawner;
pub use detach::{Detached, Drive, Spawner};
pub use ext::WeirStreamExt;
pub use fanout::FanOutReceiver;
pub use map_concurrent::{MapConcurrent, MapConcurrentOrdered};
pub use merge::{merge_fair, MergeFair};
pub use overflow::{DropCounter, OverflowPolicy, Overflowed};
pub use rate::{Debounce, Sample, Throttle};
pub use timeout::{Elapsed, IdleTimeout, IdleTimeoutStream, TakeUntil, TimeoutEach};
pub use timer::Timer;
#[cfg(feature = "tokio")]
pub use timer::TokioTimer;
#[cfg(feature = "smol")]
pub use timer::{SmolSleep, SmolTimer};
pub use window::{Firing, Window, WindowEvent, WindowKind, WindowSpec, Windows};
