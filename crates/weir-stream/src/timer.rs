//! Time, behind a small trait, so that the operators run on any runtime.
//!
//! Operators that wait (batching by time, throttle, debounce, sample, timeouts) take a
//! [`Timer`]. [`TokioTimer`] (feature `tokio`, on by default) follows tokio's clock, so
//! tests with `tokio::time::pause()` run in virtual time; [`SmolTimer`] (feature `smol`)
//! uses `async-io`, the reactor under smol.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// A clock and resettable sleeps.
pub trait Timer: Clone + Send + Sync + Unpin + std::fmt::Debug + 'static {
    /// A sleep that completes at its deadline.
    type Sleep: Future<Output = ()> + Send + std::fmt::Debug;

    /// The current time on this timer's clock.
    fn now(&self) -> Instant;

    /// A sleep that completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;

    /// Moves a sleep to a new deadline, reusing its registration where the runtime can.
    fn reset(&self, sleep: Pin<&mut Self::Sleep>, deadline: Instant);
}

/// tokio's timer. Follows tokio's clock, including paused time in tests.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

#[cfg(feature = "tokio")]
impl Timer for TokioTimer {
    type Sleep = tokio::time::Sleep;

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline.into())
    }

    fn reset(&self, sleep: Pin<&mut Self::Sleep>, deadline: Instant) {
        sleep.reset(deadline.into());
    }
}

/// smol's timer (`async-io`).
#[cfg(feature = "smol")]
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolTimer;

#[cfg(feature = "smol")]
pin_project_lite::pin_project! {
    /// A sleep on `async-io`'s reactor.
    #[derive(Debug)]
    pub struct SmolSleep {
        #[pin]
        timer: async_io::Timer,
    }
}

#[cfg(feature = "smol")]
impl Future for SmolSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.project().timer.poll(cx).map(|_| ())
    }
}

#[cfg(feature = "smol")]
impl Timer for SmolTimer {
    type Sleep = SmolSleep;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        SmolSleep {
            timer: async_io::Timer::at(deadline),
        }
    }

    fn reset(&self, sleep: Pin<&mut Self::Sleep>, deadline: Instant) {
        sleep.project().timer.get_mut().set_at(deadline);
    }
}
