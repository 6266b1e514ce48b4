//! A resettable, disarmable deadline: the one timer each timed operator owns.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::Timer;

pin_project_lite::pin_project! {
    /// One sleep, created on first use and then only reset: an operator that waits for
    /// every item allocates its timer once, not once per item.
    #[derive(Debug)]
    pub(crate) struct Alarm<T: Timer> {
        timer: T,
        #[pin]
        sleep: Option<T::Sleep>,
        deadline: Option<Instant>,
    }
}

impl<T: Timer> Alarm<T> {
    pub(crate) fn new(timer: T) -> Self {
        Self {
            timer,
            sleep: None,
            deadline: None,
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.timer.now()
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Arms the alarm for `at` (re-arming it if it was armed).
    pub(crate) fn set(self: Pin<&mut Self>, at: Instant) {
        let mut this = self.project();
        *this.deadline = Some(at);
        match this.sleep.as_mut().as_pin_mut() {
            Some(sleep) => this.timer.reset(sleep, at),
            None => this.sleep.set(Some(this.timer.sleep_until(at))),
        }
    }

    /// Disarms the alarm; a disarmed alarm never fires.
    pub(crate) fn clear(self: Pin<&mut Self>) {
        *self.project().deadline = None;
    }

    /// Ready once when an armed alarm's deadline passes (it is then disarmed).
    pub(crate) fn poll_fired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.deadline.is_none() {
            return Poll::Pending;
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => match sleep.poll(cx) {
                Poll::Ready(()) => {
                    *this.deadline = None;
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            },
            None => Poll::Pending,
        }
    }
}
