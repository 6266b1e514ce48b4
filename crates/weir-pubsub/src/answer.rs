//! The answer to a publish that may still be committing: [`crate::Hub::publish_submit`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::log::Message;
use crate::PublishError;

/// The answer to a submitted publish: ready at once for a topic that is not durable, or
/// once the store has committed the message for a durable one.
#[must_use = "a durable publish is answered only through its answer"]
pub struct PublishAnswer(Answer);

enum Answer {
    Ready(Option<Result<Message, PublishError>>),
    Committing(Pin<Box<dyn Future<Output = Result<Message, PublishError>> + Send>>),
}

impl PublishAnswer {
    pub(crate) fn ready(result: Result<Message, PublishError>) -> PublishAnswer {
        PublishAnswer(Answer::Ready(Some(result)))
    }

    pub(crate) fn committing(
        answer: impl Future<Output = Result<Message, PublishError>> + Send + 'static,
    ) -> PublishAnswer {
        PublishAnswer(Answer::Committing(Box::pin(answer)))
    }
}

impl PublishAnswer {
    /// The outcome if it is known already (always, for a topic that is not durable), else
    /// the answer back, to await.
    pub fn into_ready(self) -> Result<Result<Message, PublishError>, PublishAnswer> {
        match self.0 {
            Answer::Ready(Some(result)) => Ok(result),
            other => Err(PublishAnswer(other)),
        }
    }
}

impl std::fmt::Debug for PublishAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Answer::Ready(_) => f.write_str("PublishAnswer::Ready"),
            Answer::Committing(_) => f.write_str("PublishAnswer::Committing"),
        }
    }
}

impl Future for PublishAnswer {
    type Output = Result<Message, PublishError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Answer::Ready(result) => Poll::Ready(result.take().expect("polled after it answered")),
            Answer::Committing(answer) => answer.as_mut().poll(cx),
        }
    }
}
