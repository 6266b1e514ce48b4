//! Completions reported in batches: the worker's jobs hand their results to one reporter
//! task, which sends what has gathered as one `POST /v1/jobs/complete`.
//!
//! There is no batching delay. The reporter sends as soon as it has one completion; the
//! ones that finish while that request is in flight go together in the next. An idle
//! worker reports each job at once, a busy one sends one request for many jobs (one
//! transaction on the server instead of one each).

use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::client::{Client, ClientError};
use crate::model::JobId;
use crate::protocol::Completion;

/// Most completions in one request (the server takes up to 1,000; a hundred already makes
/// the request's own cost small per job).
pub const MAX_COMPLETIONS: usize = 100;
/// Most bytes of completions in one request, so a batch stays well under the server's
/// default body limit (`http.max_body_bytes`, 16 MiB). A larger result goes in a request of its
/// own; a server whose limit is lower refuses a batch, which is then sent a job at a time.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// What a completion adds to a request besides its result: its id, token and keys.
const ENTRY_BYTES: usize = 64;

/// A completion waiting for its batch, and where its outcome goes.
#[derive(Debug)]
struct Pending {
    completion: Completion,
    outcome: oneshot::Sender<Result<(), ClientError>>,
}

/// The jobs' side of the reporter. Dropping every clone ends the reporter once it has sent
/// what it holds.
#[derive(Debug, Clone)]
pub struct Completions {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Completions {
    /// Starts the reporter on `client`. Await the handle, after dropping every
    /// `Completions`, to know that every completion was sent.
    pub fn start(client: Arc<Client>) -> (Completions, JoinHandle<()>) {
        // Unbounded: it never holds more completions than the worker holds jobs (at most
        // its slots and what it leased ahead), since each job awaits its outcome.
        let (queue, pending) = mpsc::unbounded_channel();
        let reporter =
            tokio::spawn(report(client, pending).instrument(tracing::info_span!("completions")));
        (Completions { queue }, reporter)
    }

    /// Reports job `id` (leased with `token`) completed with `result`, in the next batch.
    pub async fn complete(
        &self,
        id: JobId,
        token: i64,
        result: Box<RawValue>,
    ) -> Result<(), ClientError> {
        let (outcome, answered) = oneshot::channel();
        let pending = Pending {
            completion: Completion { id, token, result },
            outcome,
        };
        if self.queue.send(pending).is_err() {
            return Err(ClientError::Protocol(
                "the completion reporter stopped".into(),
            ));
        }
        answered.await.unwrap_or_else(|_| {
            Err(ClientError::Protocol(
                "the completion reporter stopped before answering".into(),
            ))
        })
    }
}

/// The reporter: one request at a time, each carrying everything that gathered meanwhile.
async fn report(client: Arc<Client>, mut pending: mpsc::UnboundedReceiver<Pending>) {
    // A completion taken from the queue that did not fit the last batch starts the next.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match pending.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut bytes = first.completion.result.get().len() + ENTRY_BYTES;
        let mut batch = vec![first];
        while batch.len() < MAX_COMPLETIONS {
            let Ok(next) = pending.try_recv() else { break };
            let size = next.completion.result.get().len() + ENTRY_BYTES;
            if bytes + size > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            bytes += size;
            batch.push(next);
        }
        let (completions, outcomes): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|pending| (pending.completion, pending.outcome))
            .unzip();
        tracing::trace!(jobs = completions.len(), bytes, "reporting completions");
        let answers = match client.complete_many(&completions).await {
            Ok(answers) => answers,
            // The server refused the request as a whole (a body over its limit, say),
            // which says nothing of each completion: each goes on its own.
            Err(ClientError::Refused { .. }) if completions.len() > 1 => {
                tracing::debug!(
                    jobs = completions.len(),
                    "batch refused; completing one by one"
                );
                let mut answers = Vec::with_capacity(completions.len());
                for one in &completions {
                    answers.push(client.complete(one.id, one.token, &one.result).await);
                }
                answers
            }
            Err(error) => vec![Err(error); completions.len()],
        };
        for (outcome, answer) in outcomes.into_iter().zip(answers) {
            // A job that stopped waiting (its task aborted) needs no answer.
            let _ = outcome.send(answer);
        }
    }
}
