//! [`Driver`]: the one task per gateway link that sends the relay's requests on it and reports
//! each answer. It is owned by the link's entry in [`Gateways`](super::gateways): replacing
//! or detaching the link stops it (its unanswered requests are then answered by the
//! outbox's rules, not by this task).

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use mc_openclaw::chat::{
    ChatAbortParams, ChatAbortResult, ChatHistoryParams, ChatHistoryResult, ChatSendParams,
    ChatSendResult,
};
use mc_openclaw::method::{ChatAbort, ChatHistory, ChatSend};
use mc_openclaw::rpc::CallError;
use tokio::sync::mpsc;

use crate::bus::{ChatSend as Delivery, ConnectionId};
use crate::ids::{GatewayId, UserId};
use crate::link::{GatewayLink, call_method};

/// Rows of `chat.history` read to catch a run up.
const HISTORY_ROWS: u32 = 50;

/// Who asked for a request, to tell them if it fails.
#[derive(Debug, Clone)]
pub(crate) struct Asker {
    pub(crate) user: UserId,
    pub(crate) connection: ConnectionId,
    pub(crate) request_id: Option<String>,
}

/// A request to make on the link.
#[derive(Debug)]
pub(crate) enum Job {
    /// `chat.send` of a delivery.
    Send(Arc<Delivery>),
    /// `chat.abort` of a session's run.
    Abort { session_key: String, run_id: Option<String>, asked_by: Option<Asker> },
    /// `chat.history` of a delivery's session, to catch up on its run; `last_look`: the run
    /// fell silent, and fails unless the history shows it finished.
    History { send: Arc<Delivery>, last_look: bool },
}

/// A request's answer.
#[derive(Debug)]
pub(crate) enum Outcome {
    Sent { send: Arc<Delivery>, answer: Result<ChatSendResult, CallError> },
    Aborted { asked_by: Option<Asker>, answer: Result<ChatAbortResult, CallError> },
    History { send: Arc<Delivery>, answer: Result<ChatHistoryResult, CallError>, last_look: bool },
}

/// Who hears the answers (the relay's engine; held weakly, so a driver never keeps it alive).
pub(crate) trait Answers: Send + Sync {
    /// Handles one answer to a request on `gateway`'s link.
    fn answered(&self, gateway: GatewayId, outcome: Outcome);
}

/// Submits jobs to a link's driver. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Jobs(mpsc::UnboundedSender<Job>);

impl Jobs {
    /// Queues a job; `false` if the driver stopped (the link is gone).
    pub(crate) fn submit(&self, job: Job) -> bool {
        self.0.send(job).is_ok()
    }
}

/// A running driver; dropping it stops the task.
#[derive(Debug)]
pub(crate) struct Driver {
    jobs: Jobs,
    task: tokio::task::AbortHandle,
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Driver {
    /// Starts the driver of `link`, reporting answers to `answers`.
    pub(crate) fn start(
        answers: Weak<dyn Answers>,
        gateway: GatewayId,
        link: Arc<dyn GatewayLink>,
        timeout: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(answers, gateway, link, timeout, rx)).abort_handle();
        Self { jobs: Jobs(tx), task }
    }

    /// A handle to submit jobs with.
    pub(crate) fn jobs(&self) -> Jobs {
        self.jobs.clone()
    }
}

async fn run(
    answers: Weak<dyn Answers>,
    gateway: GatewayId,
    link: Arc<dyn GatewayLink>,
    timeout: Duration,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    let mut calls = FuturesUnordered::new();
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => calls.push(perform(link.clone(), job, timeout)),
                None => return,
            },
            Some(outcome) = calls.next(), if !calls.is_empty() => {
                let Some(answers) = answers.upgrade() else { return };
                answers.answered(gateway, outcome);
            }
        }
    }
}

async fn perform(link: Arc<dyn GatewayLink>, job: Job, timeout: Duration) -> Outcome {
    let link = link.as_ref();
    match job {
        Job::Send(send) => {
            let params = ChatSendParams {
                session_key: send.session_key.clone(),
                // The user's text as text: no OpenClaw command in it runs.
                message: mc_openclaw::chat::as_plain_text(&send.content).into_owned(),
                idempotency_key: send.message_id.to_string(),
                ..Default::default()
            };
            let answer = call_method::<ChatSend>(link, &params, timeout).await;
            Outcome::Sent { send, answer }
        }
        Job::Abort { session_key, run_id, asked_by } => {
            let params = ChatAbortParams { session_key, run_id, ..Default::default() };
            let answer = call_method::<ChatAbort>(link, &params, timeout).await;
            Outcome::Aborted { asked_by, answer }
        }
        Job::History { send, last_look } => {
            let params = ChatHistoryParams {
                session_key: send.session_key.clone(),
                limit: Some(HISTORY_ROWS),
                ..Default::default()
            };
            let answer = call_method::<ChatHistory>(link, &params, timeout).await;
            Outcome::History { send, answer, last_look }
        }
    }
}
