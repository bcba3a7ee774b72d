//! The users' socket protocol (SPEC §6): JSON text frames `{type, id?, payload?}`.
//!
//! Pure data: [`decode_client_frame`] turns text into a typed [`ClientFrame`] or a
//! [`DecodeError`] saying what is wrong; [`ServerFrame`] renders what the relay sends.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::DecodeError;
use crate::ids::{AgentId, GatewayId, MessageId, OrgId, SessionId, UserId};
use crate::model::{GatewayStatus, Message, MessageRole, SessionStatus, Timestamp};

/// The protocol version announced in `auth_ok`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request id accepted.
pub const MAX_ID_LEN: usize = 128;
/// Most messages a `history` request returns.
pub const MAX_HISTORY_LIMIT: u32 = 200;
/// Default `history` page size.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// Most sessions one `resume` may name.
pub const MAX_RESUME_SESSIONS: usize = 100;

/// An admin event topic (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// Gateways going online, offline, error.
    #[serde(rename = "gateway.status")]
    GatewayStatus,
    /// Agents appearing, returning, going away.
    #[serde(rename = "agent.status")]
    AgentStatus,
    /// New chat sessions.
    #[serde(rename = "session.created")]
    SessionCreated,
    /// Closed chat sessions.
    #[serde(rename = "session.closed")]
    SessionClosed,
    /// Every activity-feed entry.
    #[serde(rename = "activity")]
    Activity,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 5] = [
        Topic::GatewayStatus,
        Topic::AgentStatus,
        Topic::SessionCreated,
        Topic::SessionClosed,
        Topic::Activity,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Topic::GatewayStatus => "gateway.status",
            Topic::AgentStatus => "agent.status",
            Topic::SessionCreated => "session.created",
            Topic::SessionClosed => "session.closed",
            Topic::Activity => "activity",
        }
    }

    /// A bit for sets of topics.
    pub fn bit(&self) -> u8 {
        1 << (*self as u8)
    }
}

/// A session to catch up on in `resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ResumePoint {
    /// The session.
    pub session_id: SessionId,
    /// The last seq the client has.
    pub after_seq: u64,
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequest {
    /// Authenticate the socket (first frame).
    Auth {
        /// An access token.
        token: String,
    },
    /// Send a message; the frame id is its client message id.
    Chat {
        /// The client's id for the message (retries reuse it).
        client_id: Uuid,
        /// To which agent.
        agent_id: AgentId,
        /// The text.
        content: String,
        /// In which session; `None` starts a new one.
        session_id: Option<SessionId>,
    },
    /// A page of a session's stored messages.
    History {
        /// Which session.
        session_id: SessionId,
        /// Messages before this seq (the newest if `None`).
        before_seq: Option<u64>,
        /// At most this many (1–200).
        limit: u32,
    },
    /// Every stored message after the given seqs.
    Resume {
        /// The sessions and the last seq the client has of each.
        sessions: Vec<ResumePoint>,
    },
    /// The user's sessions.
    Sessions,
    /// Stop the agent's run in a session.
    Abort {
        /// Which session.
        session_id: SessionId,
        /// Which run, if the client knows.
        run_id: Option<String>,
    },
    /// Keep-alive.
    Heartbeat,
    /// Admin: receive events of these topics.
    Subscribe {
        /// The topics.
        topics: Vec<Topic>,
    },
    /// Admin: stop receiving events of these topics.
    Unsubscribe {
        /// The topics.
        topics: Vec<Topic>,
    },
}

/// A decoded client frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    /// The request id, echoed in replies.
    pub id: Option<String>,
    /// The request.
    pub request: ClientRequest,
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    id: Option<Box<RawValue>>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AuthPayload {
    token: String,
}

#[derive(Deserialize)]
struct ChatPayload {
    agent_id: AgentId,
    content: String,
    #[serde(default)]
    session_id: Option<SessionId>,
}

#[derive(Deserialize)]
struct HistoryPayload {
    session_id: SessionId,
    #[serde(default)]
    before_seq: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct ResumePayload {
    sessions: Vec<ResumePoint>,
}

#[derive(Deserialize)]
struct AbortPayload {
    session_id: SessionId,
    #[serde(default)]
    run_id: Option<String>,
}

#[derive(Deserialize)]
struct TopicsPayload {
    topics: Vec<Topic>,
}

fn payload<T: DeserializeOwned>(
    id: &Option<String>,
    kind: &str,
    raw: Option<&RawValue>,
) -> Result<T, DecodeError> {
    let raw = raw.map_or("null", RawValue::get);
    let mut de = serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = if raw == "null" {
            format!("{kind}: missing payload")
        } else if path == "." {
            format!("{kind} payload: {inner}")
        } else {
            format!("{kind} payload.{path}: {inner}")
        };
        DecodeError { id: id.clone(), message }
    })
}

/// Decodes one text frame from a user's socket.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, DecodeError> {
    let raw: RawFrame<'_> = serde_json::from_str(text).map_err(|e| DecodeError {
        id: None,
        message: if e.is_data() {
            format!("a frame is a JSON object {{type, id?, payload?}}: {e}")
        } else {
            format!("not valid JSON: {e}")
        },
    })?;
    let id = match raw.id.as_deref().map(RawValue::get) {
        None | Some("null") => None,
        Some(text) => match serde_json::from_str::<String>(text) {
            Ok(id) if !id.is_empty() && id.len() <= MAX_ID_LEN => Some(id),
            _ => {
                return Err(DecodeError {
                    id: None,
                    message: format!("id: must be a string of 1–{MAX_ID_LEN} characters"),
                });
            }
        },
    };
    let Some(kind) = raw.kind else {
        return Err(DecodeError { id, message: "type: missing field".into() });
    };
    let p = raw.payload;
    let request = match kind.as_str() {
        "auth" => {
            let AuthPayload { token } = payload(&id, &kind, p)?;
            ClientRequest::Auth { token }
        }
        "chat" => {
            let client_id = match id.as_deref().map(Uuid::parse_str) {
                Some(Ok(uuid)) => uuid,
                Some(Err(_)) => {
                    return Err(DecodeError {
                        id,
                        message: "chat: id must be a UUID (the client message id)".into(),
                    });
                }
                None => {
                    return Err(DecodeError {
                        id,
                        message: "chat: id (the client message id, a UUID) is required".into(),
                    });
                }
            };
            let ChatPayload { agent_id, content, session_id } = payload(&id, &kind, p)?;
            ClientRequest::Chat { client_id, agent_id, content, session_id }
        }
        "history" => {
            let h: HistoryPayload = payload(&id, &kind, p)?;
            let limit = h.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
            if limit == 0 || limit > MAX_HISTORY_LIMIT {
                return Err(DecodeError {
                    id,
                    message: format!(
                        "history payload.limit: must be from 1 to {MAX_HISTORY_LIMIT}"
                    ),
                });
            }
            ClientRequest::History { session_id: h.session_id, before_seq: h.before_seq, limit }
        }
        "resume" => {
            let ResumePayload { sessions } = payload(&id, &kind, p)?;
            if sessions.len() > MAX_RESUME_SESSIONS {
                return Err(DecodeError {
                    id,
                    message: format!(
                        "resume payload.sessions: at most {MAX_RESUME_SESSIONS} sessions"
                    ),
                });
            }
            ClientRequest::Resume { sessions }
        }
        "sessions" => ClientRequest::Sessions,
        "abort" => {
            let AbortPayload { session_id, run_id } = payload(&id, &kind, p)?;
            if run_id.as_ref().is_some_and(|r| r.is_empty() || r.len() > MAX_ID_LEN) {
                return Err(DecodeError {
                    id,
                    message: format!("abort payload.run_id: must be 1–{MAX_ID_LEN} characters"),
                });
            }
            ClientRequest::Abort { session_id, run_id }
        }
        "heartbeat" => ClientRequest::Heartbeat,
        "subscribe" | "unsubscribe" => {
            let TopicsPayload { topics } = payload(&id, &kind, p)?;
            if topics.is_empty() || topics.len() > Topic::ALL.len() * 2 {
                return Err(DecodeError {
                    id,
                    message: format!("{kind} payload.topics: give 1–5 topics"),
                });
            }
            if kind == "subscribe" {
                ClientRequest::Subscribe { topics }
            } else {
                ClientRequest::Unsubscribe { topics }
            }
        }
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(DecodeError { id, message: format!("type: unknown frame type '{shown}'") });
        }
    };
    Ok(ClientFrame { id, request })
}

/// Why the socket's authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// Error codes of `error` frames (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub board_name: Option<String>,
}

/// A session as `sessions` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The client's id for it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
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
        event: &'static str,
        /// The agent concerned.
        agent_id: Option<AgentId>,
        /// The session concerned.
        session_id: Option<SessionId>,
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

/// The status `auth_ok` shows for an agent: `gone` if its gateway no longer reports it, else
/// its gateway's status.
pub fn assignment_status(agent_gone: bool, gateway: GatewayStatus) -> String {
    if agent_gone { "gone".into() } else { gateway.as_str().into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> DecodeError {
        decode_client_frame(text).unwrap_err()
    }

    #[test]
    fn decodes_every_request() {
        let agent = AgentId::new();
        let session = SessionId::new();
        let cid = Uuid::now_v7();
        let f = decode_client_frame(&format!(
            r#"{{"type":"chat","id":"{cid}","payload":{{"agent_id":"{agent}","content":"hi","extra":1}}}}"#
        ))
        .unwrap();
        assert_eq!(
            f.request,
            ClientRequest::Chat {
                client_id: cid,
                agent_id: agent,
                content: "hi".into(),
                session_id: None
            }
        );
        let f = decode_client_frame(&format!(
            r#"{{"type":"history","id":"h1","payload":{{"session_id":"{session}"}}}}"#
        ))
        .unwrap();
        assert_eq!(f.id.as_deref(), Some("h1"));
        assert_eq!(
            f.request,
            ClientRequest::History { session_id: session, before_seq: None, limit: 50 }
        );
        let f = decode_client_frame(&format!(r#"{{"type":"resume","payload":{{"sessions":[{{"session_id":"{session}","after_seq":4}}]}}}}"#)).unwrap();
        assert_eq!(
            f.request,
            ClientRequest::Resume {
                sessions: vec![ResumePoint { session_id: session, after_seq: 4 }]
            }
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"sessions"}"#).unwrap().request,
            ClientRequest::Sessions
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"heartbeat","id":"x","payload":{}}"#).unwrap().request,
            ClientRequest::Heartbeat
        );
        let f = decode_client_frame(
            r#"{"type":"subscribe","payload":{"topics":["gateway.status","activity"]}}"#,
        )
        .unwrap();
        assert_eq!(
            f.request,
            ClientRequest::Subscribe { topics: vec![Topic::GatewayStatus, Topic::Activity] }
        );
        let f = decode_client_frame(r#"{"type":"auth","payload":{"token":"t"}}"#).unwrap();
        assert_eq!(f.request, ClientRequest::Auth { token: "t".into() });
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(err("not json").message.starts_with("not valid JSON"));
        assert!(err("[1]").message.contains("JSON object"));
        assert_eq!(err(r#"{"id":"a"}"#).message, "type: missing field");
        assert_eq!(err(r#"{"id":"a"}"#).id.as_deref(), Some("a"));
        assert!(err(r#"{"type":"dance"}"#).message.contains("unknown frame type 'dance'"));
        assert!(
            err(r#"{"type":"chat","payload":{}}"#).message.contains("id (the client message id")
        );
        let cid = Uuid::now_v7();
        let e = err(&format!(
            r#"{{"type":"chat","id":"{cid}","payload":{{"agent_id":"{}"}}}}"#,
            AgentId::new()
        ));
        assert!(e.message.contains("missing field `content`"), "{}", e.message);
        assert_eq!(e.id, Some(cid.to_string()), "the id is echoed");
        let e = err(&format!(
            r#"{{"type":"chat","id":"{cid}","payload":{{"agent_id":5,"content":"x"}}}}"#
        ));
        assert!(e.message.contains("payload.agent_id"), "{}", e.message);
        assert!(
            err(r#"{"type":"history","payload":{"session_id":"x"}}"#)
                .message
                .contains("payload.session_id")
        );
        let e = err(&format!(
            r#"{{"type":"history","payload":{{"session_id":"{}","limit":201}}}}"#,
            SessionId::new()
        ));
        assert!(e.message.contains("limit"));
        let e = err(&format!(
            r#"{{"type":"history","payload":{{"session_id":"{}","before_seq":-1}}}}"#,
            SessionId::new()
        ));
        assert!(e.message.contains("before_seq"));
        let e = err(&format!(
            r#"{{"type":"history","payload":{{"session_id":"{}","before_seq":1e400}}}}"#,
            SessionId::new()
        ));
        assert!(!e.message.is_empty());
        assert!(err(r#"{"type":"auth"}"#).message.contains("missing payload"));
        assert!(err(r#"{"type":"ping","id":7}"#).message.starts_with("id:"));
        assert!(
            err(&format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(200)))
                .message
                .starts_with("id:")
        );
        assert!(
            err(r#"{"type":"subscribe","payload":{"topics":["weather"]}}"#)
                .message
                .contains("payload.topics")
        );
        assert!(err(r#"{"type":"subscribe","payload":{"topics":[]}}"#).message.contains("1–5"));
    }

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
            &ServerFrame::System { event: "agent_offline", agent_id: None, session_id: None }
                .to_json(),
        )
        .unwrap();
        assert_eq!(sys, serde_json::json!({"type":"system","payload":{"event":"agent_offline"}}));
    }
}
