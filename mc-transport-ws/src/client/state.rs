//! The client's shared state: tokens, the outbox, requests waiting for answers, what was
//! seen of each session. Guarded by one `std::sync::Mutex` that is held only to read or
//! change these fields, never across an `.await` or a listener call.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use mc_core::protocol::{AssignmentInfo, ClientFrame, ClientRequest, ServerFrame};
use mc_core::{AgentId, SessionId};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::tracker::Tracker;
use super::types::{ClientError, ConnectionState, Listener, SendReceipt, Tokens};

/// A message sent and not yet acked.
pub(crate) struct Pending {
    pub(crate) client_id: Uuid,
    pub(crate) agent_id: AgentId,
    pub(crate) session_id: Option<SessionId>,
    pub(crate) content: String,
    /// The connection it was last written to.
    pub(crate) sent_on: Option<u64>,
    /// When it was queued (an unavailable agent is waited for up to [`AGENT_WAIT`] from here).
    pub(crate) queued_at: Instant,
    /// Refused with `AGENT_UNAVAILABLE`: not sent again before this (or `agent_online`).
    pub(crate) parked_until: Option<Instant>,
    pub(crate) waiter: Option<oneshot::Sender<Result<SendReceipt, ClientError>>>,
}

/// How long a queued message waits for its agent to come back (after a relay restart the
/// gateways relink within seconds) before `send_message` fails with `AGENT_UNAVAILABLE`.
pub(crate) const AGENT_WAIT: Duration = Duration::from_secs(30);
/// How often a message waiting for its agent is tried again (besides on `agent_online`).
pub(crate) const AGENT_RETRY: Duration = Duration::from_secs(2);

impl Pending {
    pub(crate) fn frame(&self) -> String {
        ClientFrame::new(ClientRequest::Chat {
            client_id: self.client_id,
            agent_id: self.agent_id,
            content: self.content.clone(),
            session_id: self.session_id,
        })
        .to_json()
    }
}

/// A request (`history`, `sessions`, `abort`) waiting to be written or answered.
pub(crate) struct Request {
    pub(crate) frame: String,
    /// Whether the relay answers it (an `abort` is done once written).
    pub(crate) answered: bool,
    pub(crate) sent_on: Option<u64>,
    /// Gets the answer, or `None` for a request done once written.
    pub(crate) waiter: Option<oneshot::Sender<Result<Option<ServerFrame>, ClientError>>>,
}

/// What the app asks of the running connection task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Stop (`disconnect`).
    Stop,
    /// The network changed: reset the backoff and check the link.
    NetworkChanged,
}

#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) state: ConnectionState,
    pub(crate) tokens: Option<Tokens>,
    pub(crate) outbox: VecDeque<Pending>,
    pub(crate) requests: HashMap<String, Request>,
    /// Request ids in the order they were made (answers are matched by id).
    pub(crate) request_order: VecDeque<String>,
    pub(crate) next_request: u64,
    pub(crate) assignments: Vec<AssignmentInfo>,
    pub(crate) tracker: Tracker,
    pub(crate) listener: Option<Arc<dyn Listener>>,
    /// Counts connection tasks started (the current one's number).
    pub(crate) run: u64,
    /// The running connection task's commands, if one runs.
    pub(crate) commands: Option<mpsc::UnboundedSender<Command>>,
}

impl Shared {
    /// Frames to write on connection `epoch`: the outbox in order, then requests, each once
    /// per connection. Marks them written.
    pub(crate) fn unsent(&mut self, epoch: u64) -> Vec<String> {
        let now = Instant::now();
        let mut frames = Vec::new();
        // A message waiting for its agent holds back the later ones to that agent (order).
        let mut waiting: Vec<AgentId> = Vec::new();
        for p in self.outbox.iter_mut() {
            match p.parked_until {
                Some(until) if until > now => {
                    waiting.push(p.agent_id);
                    continue;
                }
                Some(_) => {
                    p.parked_until = None;
                    p.sent_on = None;
                }
                None => {}
            }
            if waiting.contains(&p.agent_id) || p.sent_on == Some(epoch) {
                continue;
            }
            p.sent_on = Some(epoch);
            frames.push(p.frame());
        }
        for id in &self.request_order {
            if let Some(r) = self.requests.get_mut(id).filter(|r| r.sent_on != Some(epoch)) {
                r.sent_on = Some(epoch);
                frames.push(r.frame.clone());
            }
        }
        // Requests without answers are done once written.
        let done: Vec<String> = self
            .requests
            .iter()
            .filter(|(_, r)| !r.answered && r.sent_on.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            if let Some(mut r) = self.take_request(&id)
                && let Some(w) = r.waiter.take()
            {
                let _ = w.send(Ok(None));
            }
        }
        frames
    }

    /// When the next message waiting for its agent is due again.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.outbox.iter().filter_map(|p| p.parked_until).min()
    }

    /// `agent_online`: messages waiting for `agent` are due now.
    pub(crate) fn agent_back(&mut self, agent: AgentId) {
        let now = Instant::now();
        for p in self.outbox.iter_mut().filter(|p| p.agent_id == agent && p.parked_until.is_some())
        {
            p.parked_until = Some(now);
        }
    }

    /// `AGENT_UNAVAILABLE` for `client_id`: parks it for a retry and returns true, or returns
    /// false once it has waited [`AGENT_WAIT`] (the caller then fails it).
    pub(crate) fn park(&mut self, client_id: Uuid) -> bool {
        let now = Instant::now();
        match self.outbox.iter_mut().find(|p| p.client_id == client_id) {
            Some(p) if now.duration_since(p.queued_at) < AGENT_WAIT => {
                p.parked_until = Some(now + AGENT_RETRY);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn take_request(&mut self, id: &str) -> Option<Request> {
        let r = self.requests.remove(id)?;
        self.request_order.retain(|i| i != id);
        Some(r)
    }

    /// The acked or refused message `client_id`, removed from the outbox.
    pub(crate) fn take_pending(&mut self, client_id: Uuid) -> Option<Pending> {
        let at = self.outbox.iter().position(|p| p.client_id == client_id)?;
        self.outbox.remove(at)
    }

    /// Fails everything waiting (the client closed for good).
    pub(crate) fn fail_all(&mut self, err: &ClientError) {
        for mut p in self.outbox.drain(..) {
            if let Some(w) = p.waiter.take() {
                let _ = w.send(Err(err.clone()));
            }
        }
        self.request_order.clear();
        for (_, mut r) in self.requests.drain() {
            if let Some(w) = r.waiter.take() {
                let _ = w.send(Err(err.clone()));
            }
        }
    }
}
