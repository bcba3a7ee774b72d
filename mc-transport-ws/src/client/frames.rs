//! What the client does with each frame the relay sends: acks resolve sends, stored
//! messages reach the app once each, chunks become reply text, answers resolve requests.

use mc_core::SessionId;
use mc_core::protocol::{
    ChatMessage, ClientFrame, ClientRequest, ErrorCode, SERVER_HEARTBEAT_PREFIX, ServerFrame,
    decode_server_frame,
};
use uuid::Uuid;

use super::Inner;
use super::types::{ClientError, SendReceipt, SystemEvent};

/// A listener call, made after the lock is released.
enum Call {
    Message(ChatMessage),
    ReplyText(SessionId, String, String),
    System(SystemEvent),
    Outbox(usize),
}

impl Inner {
    // One arm per frame the relay sends, each a few lines: what a frame does to the client's
    // state reads best as this one table.
    /// Handles one frame; returns a frame to send back (a heartbeat's answer).
    pub(crate) fn on_frame(&self, text: &str) -> Option<String> {
        let frame = match decode_server_frame(text) {
            Ok(frame) => frame,
            Err(err) => {
                tracing::debug!(error = %err, "skipping a frame this client cannot read");
                return None;
            }
        };
        let mut calls = Vec::new();
        let mut answer = None;
        let listener = {
            let mut s = self.lock();
            match frame {
                ServerFrame::Heartbeat { id: Some(id) }
                    if id.starts_with(SERVER_HEARTBEAT_PREFIX) =>
                {
                    answer = Some(ClientFrame::with_id(id, ClientRequest::Heartbeat).to_json());
                }
                ServerFrame::Ack { client_id, session_id, message_id, seq } => {
                    s.tracker.saw(session_id, seq);
                    if let Some(mut pending) = s.take_pending(client_id) {
                        if let Some(w) = pending.waiter.take() {
                            let _ = w.send(Ok(SendReceipt { session_id, message_id, seq }));
                        }
                        calls.push(Call::Outbox(s.outbox.len()));
                    }
                }
                ServerFrame::Chat(message) if s.tracker.saw(message.session_id, message.seq) => {
                    if let Some(run) = &message.run_id {
                        s.tracker.finish(message.session_id, run);
                    }
                    calls.push(Call::Message(message));
                }
                ServerFrame::Chunk { session_id, run_id, delta, offset } => {
                    if let Some(text) = s.tracker.chunk(session_id, &run_id, offset, &delta) {
                        let text = text.to_owned();
                        calls.push(Call::ReplyText(session_id, run_id, text));
                    }
                }
                ServerFrame::System { event, agent_id, session_id } => {
                    let status = match event.as_ref() {
                        "agent_online" => Some("online"),
                        "agent_offline" => Some("offline"),
                        _ => None,
                    };
                    if let (Some(status), Some(agent)) = (status, agent_id) {
                        for a in s.assignments.iter_mut().filter(|a| a.agent_id == agent) {
                            a.status = status.into();
                        }
                        if status == "online" {
                            s.agent_back(agent);
                        }
                    }
                    calls.push(Call::System(SystemEvent {
                        event: event.into_owned(),
                        agent_id,
                        session_id,
                        run_id: None,
                        phase: None,
                        detail: None,
                    }));
                }
                ServerFrame::AgentStatus { agent_id, session_id, run_id, phase, detail } => {
                    calls.push(Call::System(SystemEvent {
                        event: "agent_status".into(),
                        agent_id: Some(agent_id),
                        session_id: Some(session_id),
                        run_id: Some(run_id),
                        phase: Some(phase.into_owned()),
                        detail,
                    }));
                }
                ServerFrame::Resumed { session_id, last_seq, .. } => {
                    s.tracker.resumed(session_id, last_seq);
                }
                ServerFrame::History { id: Some(ref id), .. }
                | ServerFrame::Sessions { id: Some(ref id), .. } => {
                    if let ServerFrame::Sessions { sessions, .. } = &frame {
                        for session in sessions {
                            s.tracker.know_if_new(session.session_id, session.last_seq);
                        }
                    }
                    let id = id.clone();
                    if let Some(mut request) = s.take_request(&id)
                        && let Some(w) = request.waiter.take()
                    {
                        let _ = w.send(Ok(Some(frame)));
                    }
                }
                ServerFrame::Error { id: Some(id), code, message, retry_after_ms } => {
                    let err = ClientError::Relay { code, message, retry_after_ms };
                    let client_id = Uuid::parse_str(&id).ok();
                    // Nothing was stored: wait a while for the agent's gateway to come back.
                    if code == ErrorCode::AgentUnavailable
                        && client_id.is_some_and(|cid| s.park(cid))
                    {
                        return None;
                    }
                    let pending = client_id.and_then(|cid| s.take_pending(cid));
                    if let Some(mut pending) = pending {
                        if let Some(w) = pending.waiter.take() {
                            let _ = w.send(Err(err));
                        }
                        calls.push(Call::Outbox(s.outbox.len()));
                    } else if let Some(mut request) = s.take_request(&id) {
                        if let Some(w) = request.waiter.take() {
                            let _ = w.send(Err(err));
                        }
                    } else {
                        tracing::debug!(error = %err, "the relay reported an error");
                    }
                }
                ServerFrame::Error { id: None, code, message, .. } => {
                    tracing::debug!(?code, %message, "the relay reported an error");
                }
                _ => {}
            }
            s.listener.clone()
        };
        if let Some(listener) = listener {
            for call in calls {
                match call {
                    Call::Message(m) => listener.on_message(&m),
                    Call::ReplyText(session, run, text) => {
                        listener.on_reply_text(session, &run, &text)
                    }
                    Call::System(event) => listener.on_system(&event),
                    Call::Outbox(n) => listener.on_outbox(n),
                }
            }
        }
        answer
    }
}
