//! How nodes tell each other that jobs became ready: `NOTIFY weir_jobs` at commit, with
//! the number of ready jobs per queue and kind, and one connection per node `LISTEN`ing
//! that wakes as many of its waiting leases, on those queues, running those kinds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::GenericClient;
use weir_db::postgres::{within, Connector};

use super::pool::{failed, prepared, StatementCache};
use crate::store::StoreError;
use crate::wakeups::{Ready, Wakeups};

/// The notification channel for "jobs may be ready".
const CHANNEL: &str = "weir_jobs";
/// Wait before listening again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// Longest notification payload sent. PostgreSQL refuses 8000 bytes or more; past this,
/// the list of queues is left out and every node wakes all its waiting leases instead.
const MAX_PAYLOAD: usize = 7_900;

/// Where a listening connection's notifications go: this node's waiting leases, woken one
/// per job that another node made ready, on that job's queue.
#[derive(Debug, Clone)]
pub(super) struct Listener {
    pub(super) wakeups: Arc<Wakeups>,
    pub(super) node: u64,
}

/// The payload of a notification: `"{node} {jobs} {queue}:{count}:{kind} …"`. The node
/// and the total come first because nodes of an older format (`"{node} {jobs}"`, which
/// wakes that many leases of any queue) read only those two, and a cluster is upgraded a
/// node at a time; nodes from before that ignore the payload and wake every lease. A node
/// of the format without kinds (`{queue}:{count}`) cannot read a field with a kind and
/// wakes every lease, which is slower but loses nothing. The fields follow unless they
/// would make the payload longer than [`MAX_PAYLOAD`]. Queue and kind names hold no space
/// or colon (see [`validate`](crate::validate)).
fn notification_payload(node: u64, ready: &Ready) -> String {
    let mut payload = format!("{node} {}", ready.total());
    let fixed = payload.len();
    for (queue, kind, jobs) in ready.lanes() {
        match kind {
            Some(kind) => payload.push_str(&format!(" {queue}:{jobs}:{kind}")),
            None => payload.push_str(&format!(" {queue}:{jobs}")),
        }
        if payload.len() > MAX_PAYLOAD {
            payload.truncate(fixed);
            break;
        }
    }
    payload
}

impl Listener {
    /// One wake-up per job, on the job's queue and kind, like the service's own wake-ups
    /// (waking every waiting lease for each enqueue made them all query at once). A node
    /// skips its own notifications: its service already woke those leases. A payload
    /// without queues (from an older Weir, or too long to list them) wakes every waiting
    /// lease; a field without a kind wakes leases of any kind on its queue.
    fn on_notification(&self, payload: &str) {
        let mut fields = payload.split(' ');
        let node = fields.next().and_then(|node| node.parse::<u64>().ok());
        if node == Some(self.node) {
            return;
        }
        // The total is for nodes of the previous format; the queues say the same, finer.
        let _total = fields.next();
        let mut ready = Ready::default();
        for field in fields {
            let mut parts = field.splitn(3, ':');
            let (queue, jobs, kind) = (parts.next(), parts.next(), parts.next());
            match (queue, jobs.map(str::parse::<usize>), kind) {
                (Some(queue), Some(Ok(jobs)), kind) if !queue.is_empty() && kind != Some("") => {
                    ready.add(queue, kind, jobs);
                }
                _ => return self.wakeups.wake_all(),
            }
        }
        if ready.is_empty() {
            self.wakeups.wake_all();
        } else {
            self.wakeups.wake(&ready);
        }
    }
}

/// Keeps one connection `LISTEN`ing, reconnecting after failures.
pub(super) async fn listen(connector: Connector, listener: Listener) {
    loop {
        // Bounded: while it is full the connection is not read and PostgreSQL holds the
        // notifications; handling one only wakes leases, so it never stays full for long.
        let (sender, mut notifications) = mpsc::channel(1024);
        match connector.connect_listening(sender).await {
            Ok(client) => {
                if within(client.batch_execute(&format!("LISTEN {CHANNEL}")))
                    .await
                    .is_ok()
                {
                    // Anything may have been enqueued while not listening.
                    listener.wakeups.wake_all();
                    // Until the connection breaks (its task drops the sender); then listen again.
                    while let Some(notification) = notifications.recv().await {
                        listener.on_notification(notification.payload());
                    }
                }
                drop(client);
            }
            Err(error) => tracing::warn!(%error, "cannot listen for job notifications"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Tells every listening node (this one included, which skips it) which jobs became ready,
/// by queue. Delivered at commit; nothing is sent when nothing became ready.
pub(super) async fn notify(
    db: &impl GenericClient,
    cache: &StatementCache,
    node: u64,
    ready: &Ready,
) -> Result<(), StoreError> {
    if ready.is_empty() {
        return Ok(());
    }
    // pg_notify with parameters, not NOTIFY with a literal: nothing to quote.
    let statement = prepared(db, cache, "SELECT pg_notify($1, $2)").await?;
    db.execute(&statement, &[&CHANNEL, &notification_payload(node, ready)])
        .await
        .map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Waker};

    /// Which of the leases waiting on `queues` (one entry per lease: `queue` or
    /// `queue/kind`, kind `k` when not named) a notification with `payload` wakes.
    fn woken_by(payload: &str, queues: &[&str]) -> Vec<bool> {
        let listener = Listener {
            wakeups: Arc::new(Wakeups::new()),
            node: 7,
        };
        let leases: Vec<_> = queues
            .iter()
            .map(|lease| {
                let (queue, kind) = lease.split_once('/').unwrap_or((lease, "k"));
                listener
                    .wakeups
                    .register(&[queue.to_owned()], &[kind.to_owned()])
            })
            .collect();
        listener.on_notification(payload);
        let mut context = Context::from_waker(Waker::noop());
        leases
            .iter()
            .map(|lease| std::pin::pin!(lease.woken()).poll(&mut context).is_ready())
            .collect()
    }

    #[test]
    fn a_notification_wakes_one_lease_per_job_on_its_queue_from_other_nodes_only() {
        let waiting = ["a", "a", "a", "b", "b"];
        assert_eq!(
            woken_by("3 3 a:2:k b:1:k", &waiting),
            [true, true, false, true, false],
            "two jobs on a and one on b from node 3: three leases look"
        );
        assert_eq!(
            woken_by("3 1 a:1:upper", &["a/k", "a/upper", "a/k"]),
            [false, true, false],
            "a job of kind upper wakes the lease that runs it"
        );
        assert_eq!(
            woken_by("3 1 a:1:k", &["a/upper", "a/upper"]),
            [false, false],
            "no lease runs the kind: none looks"
        );
        assert_eq!(
            woken_by("3 3 a:2 b:1", &waiting),
            [true, true, false, true, false],
            "the format without kinds: leases of any kind on the queue look"
        );
        assert_eq!(
            woken_by("3 9 b:9:k", &waiting),
            [false, false, false, true, true],
            "more jobs than waiters on b: all of b look, none of a"
        );
        assert_eq!(
            woken_by("7 2 a:2:k", &waiting),
            [false; 5],
            "this node's own: already woken locally"
        );
        assert_eq!(
            woken_by("3 2", &waiting),
            [true; 5],
            "no queues (an older Weir, or too many to list): everyone looks"
        );
        assert_eq!(
            woken_by("", &waiting),
            [true; 5],
            "no payload: everyone looks"
        );
        assert_eq!(
            woken_by("3 1 a:x", &waiting),
            [true; 5],
            "unreadable: everyone looks"
        );
    }

    #[test]
    fn a_payload_lists_queues_while_it_fits() {
        let mut ready = Ready::default();
        ready.add("mail", Some("send"), 2);
        ready.add("crawl", Some("fetch"), 1);
        ready.add("old", None, 1);
        assert_eq!(
            notification_payload(5, &ready),
            "5 4 crawl:1:fetch mail:2:send old:1"
        );
        let mut many = Ready::default();
        for i in 0..100 {
            many.add(&format!("{i:0>100}"), Some("k"), 1);
        }
        let payload = notification_payload(5, &many);
        assert_eq!(payload, "5 100", "too long to list: the total only");

        // At the edge: "5 1 " + name + ":1:k" is the name's length plus 8 bytes.
        let at_limit = |name_len: usize| {
            let mut one = Ready::default();
            one.add(&"q".repeat(name_len), Some("k"), 1);
            notification_payload(5, &one)
        };
        assert_eq!(
            at_limit(MAX_PAYLOAD - 8).len(),
            MAX_PAYLOAD,
            "exactly at the cap: listed"
        );
        assert_eq!(
            at_limit(MAX_PAYLOAD - 7),
            "5 1",
            "one byte over: the total only"
        );
    }
}
