//! A minimal executor, with the standard library only: what `tokio::spawn` and
//! `Runtime::block_on` do underneath.
//!
//! A future is a state machine that moves only when it is polled. When it cannot finish,
//! `poll` returns `Pending` *after* arranging for the waker in its `Context` to be called
//! once progress is possible. An executor therefore never busy-polls: it keeps a queue of
//! tasks whose wakers fired, polls those, and sleeps when the queue is empty. Tokio's
//! scheduler is this loop plus work stealing, an I/O driver (epoll) and a timer wheel that
//! call the wakers.
//!
//! Run it with `cargo run -p weir-examples --example executor`.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

/// How long the executor waits for any waker before it reports a lost wake-up: a future
/// that returns `Pending` without arranging a wake-up would otherwise hang it for ever.
const WAKE_DEADLINE: Duration = Duration::from_secs(10);

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A spawned future and the run queue it puts itself back on when woken.
///
/// The task *is* its waker (`Waker::from(Arc<Task>)`), so waking costs one channel send and
/// no allocation. The future sits behind a mutex only because `Wake` needs `Sync`; one thread
/// polls it at a time.
struct Task {
    future: Mutex<Option<BoxFuture>>,
    run_queue: mpsc::Sender<Arc<Task>>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        // The send fails only once the executor is gone; then nobody would poll the task
        // again anyway.
        let _ = self.run_queue.send(Arc::clone(&self));
    }
}

/// A single-threaded executor: a run queue of woken tasks, polled in the order they woke.
struct Executor {
    run_queue: mpsc::Receiver<Arc<Task>>,
    sender: mpsc::Sender<Arc<Task>>,
    live_tasks: usize,
}

impl Executor {
    fn new() -> Self {
        let (sender, run_queue) = mpsc::channel();
        Self {
            run_queue,
            sender,
            live_tasks: 0,
        }
    }

    /// Queues `future` to be polled. Nothing runs until [`Executor::run`]: like every Rust
    /// future, a spawned one is inert until something polls it.
    fn spawn(&mut self, future: impl Future<Output = ()> + Send + 'static) {
        let task = Arc::new(Task {
            future: Mutex::new(Some(Box::pin(future))),
            run_queue: self.sender.clone(),
        });
        self.live_tasks += 1;
        Task::wake(task);
    }

    /// Polls woken tasks until every spawned task has finished.
    fn run(mut self) {
        while self.live_tasks > 0 {
            let task = match self.run_queue.recv_timeout(WAKE_DEADLINE) {
                Ok(task) => task,
                Err(_) => panic!(
                    "{} task(s) pending and none woke within {WAKE_DEADLINE:?}: a future \
                     returned Pending without arranging a wake-up",
                    self.live_tasks
                ),
            };
            let mut slot = task.future.lock().expect("a task's future panicked");
            // A task woken twice before it ran is queued twice; the second turn finds it
            // finished (None) and does nothing.
            let Some(future) = slot.as_mut() else {
                continue;
            };
            let waker = Waker::from(Arc::clone(&task));
            if future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                *slot = None;
                self.live_tasks -= 1;
            }
        }
    }
}

/// Wakes the thread parked in [`block_on`]. The flag tells a real wake-up from a spurious
/// return of `park`, which the standard library allows.
struct ThreadWaker {
    thread: thread::Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Runs one future to completion on the calling thread, parking the thread between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    // `pin!` pins the future on this stack frame: after the first poll an `async` block
    // may hold references into itself, so it must never move again.
    let mut future = pin!(future);
    let thread_waker = Arc::new(ThreadWaker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(Arc::clone(&thread_waker));
    let mut context = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        // Poll again only once woken, as an executor should (a future must cope with extra
        // polls, but a busy loop would hide a future that forgets to arrange its wake-up).
        let deadline = Instant::now() + WAKE_DEADLINE;
        while !thread_waker.woken.swap(false, Ordering::Acquire) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the future returned Pending and nothing woke it within {WAKE_DEADLINE:?}"
            );
            thread::park_timeout(left);
        }
    }
}

/// A future that is `Pending` once, waking itself at once: it hands the thread back to the
/// executor so that other tasks run (what `tokio::task::yield_now` does).
struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        context.waker().wake_by_ref();
        Poll::Pending
    }
}

fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// A timer future, woken from another thread when its deadline passes (the role Tokio's
/// timer wheel plays for `tokio::time::sleep`).
struct Delay {
    deadline: Instant,
    /// The waker of the latest poll: a future may move between tasks or executors, so the
    /// timer must wake the waker it was *last* given, not the first.
    waker: Arc<Mutex<Option<Waker>>>,
    timer_started: bool,
    /// How many times this future was polled; the example checks that it is not busy-polled.
    polls: Arc<AtomicUsize>,
}

impl Delay {
    fn new(duration: Duration, polls: Arc<AtomicUsize>) -> Self {
        Self {
            deadline: Instant::now() + duration,
            waker: Arc::new(Mutex::new(None)),
            timer_started: false,
            polls,
        }
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        // Store the waker before starting the timer, so a timer that fires at once still
        // finds it.
        let mut stored = self.waker.lock().expect("the timer thread panicked");
        match stored.as_ref() {
            Some(waker) if waker.will_wake(context.waker()) => {}
            _ => *stored = Some(context.waker().clone()),
        }
        drop(stored);
        if !self.timer_started {
            self.timer_started = true;
            let (deadline, waker) = (self.deadline, Arc::clone(&self.waker));
            thread::spawn(move || {
                thread::sleep(deadline.saturating_duration_since(Instant::now()));
                if let Some(waker) = waker.lock().expect("a poll panicked").take() {
                    waker.wake();
                }
            });
        }
        Poll::Pending
    }
}

fn main() {
    // Two tasks on one thread take turns at each `.await` that yields: concurrency without
    // parallelism. The log shows the interleaving.
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut executor = Executor::new();
    for name in ["a", "b"] {
        let log = Arc::clone(&log);
        executor.spawn(async move {
            for step in 1..=3 {
                log.lock().unwrap().push(format!("{name}{step}"));
                yield_now().await;
            }
        });
    }
    executor.run();
    let log = log.lock().unwrap().join(" ");
    println!("two tasks, one thread: {log}");
    assert_eq!(log, "a1 b1 a2 b2 a3 b3");

    // A timer is polled twice: once to arm it, once after its waker fires. Never more,
    // because nothing polls a task that was not woken.
    let polls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    block_on(Delay::new(Duration::from_millis(50), Arc::clone(&polls)));
    let (elapsed, polls) = (started.elapsed(), polls.load(Ordering::Relaxed));
    println!("a 50 ms delay finished after {elapsed:?} and {polls} polls");
    assert!(elapsed >= Duration::from_millis(50));
    assert_eq!(polls, 2);

    // An `async fn` compiles to the same kind of state machine as `Delay`; `block_on`
    // drives it the same way.
    let answer = block_on(async {
        yield_now().await;
        Delay::new(Duration::from_millis(1), Arc::default()).await;
        42
    });
    assert_eq!(answer, 42);
}

#[cfg(test)]
mod tests {
    #[test]
    fn example_runs() {
        super::main();
    }
}
