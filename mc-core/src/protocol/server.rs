//! What the relay sends on users' sockets (docs/protocol.md): [`ServerFrame`] and the types it carries,
//! rendered as JSON text once and shared by every connection that receives it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Topic;
use super::client::PROTOCOL_VERSION;
use crate::ids::{AgentId, GatewayId, MessageId, OrgId, SessionId, UserId};
use crate::model::{AgentStatus, Message, MessageRole, SessionStatus, Timestamp};
use crate::store::AssignedAgent;

/// How the ids of the relay's own `heartbeat` frames begin (`srv-1`, `srv-2`, …). A client
/// answers one with a `heartbeat` of the same id, and the relay does not answer that answer.
pub const SERVER_HEARTBEAT_PREFIX: &str = "srv-";

/// Whether a client's `heartbeat` with `id` answers one of the relay's own (or carries no id
/// at all): it keeps the socket alive and gets no answer.
pub fn answers_server_heartbeat(id: Option<&str>) -> bool {
    id.is_none_or(|id| id.starts_with(SERVER_HEARTBEAT_PREFIX))
}

/// Why the socket's authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthFailure {
    /// Not a token this relay accepts.
    InvalidToken,
    /// The token expired: refresh it, then reconnect.
    ExpiredToken,
    /// The account is suspended.
    Suspended,
    /// No `auth` frame in time.
    Timeout,
}

/// Error codes of `error` frames (docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Unparseable or invalid frame; the message says what.
    BadRequest,
    /// The socket is not authenticated.
    Unauthenticated,
    /// The caller may not do this (e.g. `subscribe` without the admin role).
    Forbidden,
    /// The agent is not assigned to the user.
    NotAssigned,
    /// The agent's gateway is not connected (nothing was stored).
    AgentUnavailable,
    /// No such session of this user.
    SessionNotFound,
    /// Too many messages; `retry_after_ms` says when to retry.
    RateLimited,
    /// The content is too long.
    PayloadTooLarge,
    /// The gateway reported an error, or went away mid-run.
    GatewayError,
    /// The gateway did not answer in time.
    GatewayTimeout,
    /// A failure of the relay.
    Internal,
}

/// An assignment as `auth_ok` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentInfo {
    /// The agent.
    pub agent_id: AgentId,
    /// Its name.
    pub agent_name: String,
    /// Its gateway.
    pub gateway_id: GatewayId,
    /// `online`, `offline`, `pending`, `error` (the gateway's), or `gone` (the agent's).
    pub status: String,
    /// Optional board.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board_name: Option<String>,
}

/// A session as `sessions` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session.
    pub session_id: SessionId,
    /// Its agent.
    pub agent_id: AgentId,
    /// Its newest seq.
    pub last_seq: u64,
    /// When its newest message was stored.
    pub last_message_at: Option<Timestamp>,
    /// Open or closed.
    pub status: SessionStatus,
}

/// A stored message as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Its session.
    pub session_id: SessionId,
    /// The agent of the session.
    pub agent_id: AgentId,
    /// Who wrote it.
    pub role: MessageRole,
    /// The text.
    pub content: String,
    /// Its position.
    pub seq: u64,
    /// The agent run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The client's id for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<Uuid>,
    /// When it was stored.
    pub created_at: Timestamp,
    /// Its id (also the frame id of `chat` frames).
    pub id: MessageId,
}

impl ChatMessage {
    /// A stored message of a session with `agent_id`.
    pub fn new(message: &Message, agent_id: AgentId) -> Self {
        Self {
            session_id: message.session_id,
            agent_id,
            role: message.role,
            content: message.content.clone(),
            seq: message.seq,
            run_id: message.run_id.clone(),
            client_msg_id: message.client_msg_id,
            created_at: message.created_at,
            id: message.id,
        }
    }
}

/// What the relay sends to a user's socket.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame {
    /// Authentication succeeded.
    AuthOk {
        /// Who.
        user_id: UserId,
        /// Organization.
        organization_id: OrgId,
        /// Heartbeat interval.
        heartbeat_interval_seconds: u64,
        /// The user's agents.
        assignments: Vec<AssignmentInfo>,
    },
    /// Authentication failed; the socket closes with 4001 (4003 when suspended).
    AuthError {
        /// Why.
        reason: AuthFailure,
    },
    /// A message was stored and handed to the gateway.
    Ack {
        /// The client message id.
        client_id: Uuid,
        /// Its session.
        session_id: SessionId,
        /// Its stored id.
        message_id: MessageId,
        /// Its seq.
        seq: u64,
    },
    /// Streamed agent output (not stored).
    Chunk {
        /// The session.
        session_id: SessionId,
        /// The run.
        run_id: String,
        /// New text.
        delta: String,
        /// UTF-8 bytes of reply text before `delta`.
        offset: usize,
    },
    /// A stored message.
    Chat(ChatMessage),
    /// Something happened.
    System {
        /// What: `agent_offline`, `agent_online`, `session_closed`, …
        event: Cow<'static, str>,
        /// The agent concerned.
        agent_id: Option<AgentId>,
        /// The session concerned.
        session_id: Option<SessionId>,
    },
    /// What the agent is doing in a run (`system` with `event: "agent_status"`): `phase` is
    /// `preparing`, `thinking`, `typing` or `tool_use`; `detail` is OpenClaw's own phase or
    /// stream name.
    AgentStatus {
        /// The agent.
        agent_id: AgentId,
        /// The session.
        session_id: SessionId,
        /// The run.
        run_id: String,
        /// What it is doing.
        phase: Cow<'static, str>,
        /// OpenClaw's words for it.
        detail: Option<String>,
    },
    /// A page of history.
    History {
        /// Request id.
        id: Option<String>,
        /// The session.
        session_id: SessionId,
        /// The messages, ascending.
        messages: Vec<ChatMessage>,
        /// Whether older ones exist.
        has_more: bool,
    },
    /// A resumed session is caught up.
    Resumed {
        /// Request id.
        id: Option<String>,
        /// The session.
        session_id: SessionId,
        /// Its newest seq.
        last_seq: u64,
    },
    /// The user's sessions.
    Sessions {
        /// Request id.
        id: Option<String>,
        /// The sessions.
        sessions: Vec<SessionInfo>,
    },
    /// A fresh `auth` on an open socket was accepted: the socket now lasts until the new
    /// token's expiry.
    AuthExtended {
        /// Request id.
        id: Option<String>,
        /// When the socket closes (4001) unless it is extended again; `None`: never.
        expires_at: Option<Timestamp>,
    },
    /// Keep-alive (an answer carries the request's id).
    Heartbeat {
        /// Request id.
        id: Option<String>,
    },
    /// A request failed.
    Error {
        /// The request's id.
        id: Option<String>,
        /// What kind of failure.
        code: ErrorCode,
        /// What went wrong.
        message: String,
        /// For `RATE_LIMITED`: when to retry.
        retry_after_ms: Option<u64>,
    },
    /// An admin event.
    Event {
        /// The topic.
        topic: Topic,
        /// The event.
        payload: serde_json::Value,
        /// When.
        ts: Timestamp,
    },
}

#[derive(Serialize)]
struct Out<'a, P: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    payload: P,
}

fn render<P: Serialize>(kind: &'static str, id: Option<&str>, payload: P) -> String {
    serde_json::to_string(&Out { kind, id, payload }).unwrap_or_else(|e| {
        // Serializing these plain structs cannot fail; if it ever did, say so on the wire.
        format!(r#"{{"type":"error","payload":{{"code":"INTERNAL","message":"cannot encode frame: {e}"}}}}"#)
    })
}

impl ServerFrame {
    // One arm per frame type, each rendering its own fields: the wire format of every frame
    // the relay sends, in one place.
    /// Renders the frame as JSON text.
    pub fn to_json(&self) -> String {
        use serde_json::json;
        match self {
            ServerFrame::AuthOk {
                user_id,
                organization_id,
                heartbeat_interval_seconds,
                assignments,
            } => render(
                "auth_ok",
                None,
                json!({
                    "user_id": user_id,
                    "organization_id": organization_id,
                    "protocol": PROTOCOL_VERSION,
                    "heartbeat_interval_seconds": heartbeat_interval_seconds,
                    "assignments": assignments,
                }),
            ),
            ServerFrame::AuthError { reason } => {
                render("auth_error", None, json!({ "reason": reason }))
            }
            ServerFrame::Ack { client_id, session_id, message_id, seq } => {
                #[derive(Serialize)]
                struct Ack<'a> {
                    session_id: &'a SessionId,
                    message_id: &'a MessageId,
                    seq: u64,
                }
                render(
                    "ack",
                    Some(&client_id.to_string()),
                    Ack { session_id, message_id, seq: *seq },
                )
            }
            ServerFrame::Chunk { session_id, run_id, delta, offset } => {
                #[derive(Serialize)]
                struct Chunk<'a> {
                    session_id: &'a SessionId,
                    run_id: &'a str,
                    delta: &'a str,
                    offset: usize,
                }
                render("chunk", None, Chunk { session_id, run_id, delta, offset: *offset })
            }
            ServerFrame::Chat(message) => render("chat", Some(&message.id.to_string()), message),
            ServerFrame::System { event, agent_id, session_id } => {
                let mut payload = serde_json::Map::new();
                payload.insert("event".into(), json!(event));
                if let Some(agent) = agent_id {
                    payload.insert("agent_id".into(), json!(agent));
                }
                if let Some(session) = session_id {
                    payload.insert("session_id".into(), json!(session));
                }
                render("system", None, payload)
            }
            ServerFrame::AgentStatus { agent_id, session_id, run_id, phase, detail } => {
                let mut payload = json!({
                    "event": "agent_status", "agent_id": agent_id, "session_id": session_id,
                    "run_id": run_id, "phase": phase,
                });
                if let Some(detail) = detail {
                    payload["detail"] = json!(detail);
                }
                render("system", None, payload)
            }
            ServerFrame::History { id, session_id, messages, has_more } => render(
                "history",
                id.as_deref(),
                json!({ "session_id": session_id, "messages": messages, "has_more": has_more }),
            ),
            ServerFrame::Resumed { id, session_id, last_seq } => render(
                "resumed",
                id.as_deref(),
                json!({ "session_id": session_id, "last_seq": last_seq }),
            ),
            ServerFrame::Sessions { id, sessions } => {
                render("sessions", id.as_deref(), json!({ "sessions": sessions }))
            }
            ServerFrame::Heartbeat { id } => render("heartbeat", id.as_deref(), json!({})),
            ServerFrame::AuthExtended { id, expires_at } => {
                render("auth_extended", id.as_deref(), json!({ "expires_at": expires_at }))
            }
            ServerFrame::Error { id, code, message, retry_after_ms } => {
                let mut payload = json!({ "code": code, "message": message });
                if let Some(ms) = retry_after_ms {
                    payload["retry_after_ms"] = json!(ms);
                }
                render("error", id.as_deref(), payload)
            }
            ServerFrame::Event { topic, payload, ts } => {
                render("event", None, json!({ "topic": topic, "payload": payload, "ts": ts }))
            }
        }
    }
}

impl AssignmentInfo {
    /// How `auth_ok` (and `GET /api/v1/me/agents`) show an assignment: its status is `gone`
    /// if the agent's gateway no longer reports it, else the gateway's status.
    pub fn of(assigned: &AssignedAgent) -> Self {
        let status = if assigned.agent.status == AgentStatus::Gone {
            "gone".into()
        } else {
            assigned.gateway_status.as_str().into()
        };
        Self {
            agent_id: assigned.agent.id,
            agent_name: assigned.agent.name.clone(),
            gateway_id: assigned.agent.gateway_id,
            status,
            board_name: assigned.assignment.board_name.clone(),
        }
    }

    /// A user's assignments as `auth_ok` lists them: in agent id order.
    pub fn list<'a>(assigned: impl IntoIterator<Item = &'a AssignedAgent>) -> Vec<Self> {
        let mut infos: Vec<Self> = assigned.into_iter().map(Self::of).collect();
        infos.sort_by_key(|i| i.agent_id);
        infos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_render_as_the_spec_says() {
        let json: serde_json::Value = serde_json::from_str(
            &ServerFrame::Error {
                id: Some("r1".into()),
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
                retry_after_ms: Some(50),
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type":"error","id":"r1","payload":{"code":"RATE_LIMITED","message":"slow down","retry_after_ms":50}})
        );
        let sys: serde_json::Value = serde_json::from_str(
            &ServerFrame::System {
                event: "agent_offline".into(),
                agent_id: None,
                session_id: None,
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(sys, serde_json::json!({"type":"system","payload":{"event":"agent_offline"}}));
    }
}
