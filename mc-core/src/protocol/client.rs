//! The users' socket protocol (docs/protocol.md): JSON text frames `{type, id?, payload?}`.
//!
//! Pure data: [`decode_client_frame`] turns text into a typed [`ClientFrame`] or a
//! [`DecodeError`] saying what is wrong, and [`ClientFrame::to_json`] renders one (what
//! clients send). What the relay sends is in [`super::server`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::DecodeError;
use crate::ids::{AgentId, SessionId};

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

/// An admin event topic (docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// Gateways going online, offline, error.
    #[serde(rename = "gateway.status")]
    GatewayStatus,
    /// A gateway's metrics, as each heartbeat brings them.
    #[serde(rename = "gateway.metrics")]
    GatewayMetrics,
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
    pub const ALL: [Topic; 6] = [
        Topic::GatewayStatus,
        Topic::GatewayMetrics,
        Topic::AgentStatus,
        Topic::SessionCreated,
        Topic::SessionClosed,
        Topic::Activity,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Topic::GatewayStatus => "gateway.status",
            Topic::GatewayMetrics => "gateway.metrics",
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
        /// An access token (redacted in `Debug`).
        token: crate::Secret,
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

/// Deserializes a frame's payload, naming the field at fault (both directions' decoders).
pub(super) fn payload<T: DeserializeOwned>(
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

// One arm per frame type, each checking its own fields: split, the frames' rules would be
// scattered over as many functions as there are types.
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
            ClientRequest::Auth { token: token.into() }
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
                    message: format!("{kind} payload.topics: give 1–{} topics", Topic::ALL.len()),
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

impl ClientFrame {
    /// A frame with no id.
    pub fn new(request: ClientRequest) -> Self {
        Self { id: None, request }
    }

    /// A frame carrying `id` (echoed in the relay's answer).
    pub fn with_id(id: impl Into<String>, request: ClientRequest) -> Self {
        Self { id: Some(id.into()), request }
    }

    /// Renders the frame as JSON text, as [`decode_client_frame`] reads it. A `chat` frame's
    /// id is always its client message id.
    pub fn to_json(&self) -> String {
        use serde_json::json;
        let (kind, payload) = match &self.request {
            ClientRequest::Auth { token } => ("auth", json!({ "token": token.expose() })),
            ClientRequest::Chat { agent_id, content, session_id, .. } => {
                let mut p = json!({ "agent_id": agent_id, "content": content });
                if let Some(session) = session_id {
                    p["session_id"] = json!(session);
                }
                ("chat", p)
            }
            ClientRequest::History { session_id, before_seq, limit } => {
                let mut p = json!({ "session_id": session_id, "limit": limit });
                if let Some(seq) = before_seq {
                    p["before_seq"] = json!(seq);
                }
                ("history", p)
            }
            ClientRequest::Resume { sessions } => ("resume", json!({ "sessions": sessions })),
            ClientRequest::Sessions => ("sessions", json!({})),
            ClientRequest::Abort { session_id, run_id } => {
                let mut p = json!({ "session_id": session_id });
                if let Some(run) = run_id {
                    p["run_id"] = json!(run);
                }
                ("abort", p)
            }
            ClientRequest::Heartbeat => ("heartbeat", json!({})),
            ClientRequest::Subscribe { topics } => ("subscribe", json!({ "topics": topics })),
            ClientRequest::Unsubscribe { topics } => ("unsubscribe", json!({ "topics": topics })),
        };
        let id = match &self.request {
            ClientRequest::Chat { client_id, .. } => Some(client_id.to_string()),
            _ => self.id.clone(),
        };
        let mut frame = json!({ "type": kind, "payload": payload });
        if let Some(id) = id {
            frame["id"] = json!(id);
        }
        frame.to_string()
    }
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
    fn every_request_reads_back_as_it_was_rendered() {
        let session = SessionId::new();
        for frame in [
            ClientFrame::new(ClientRequest::Auth { token: "tok".into() }),
            ClientFrame::new(ClientRequest::Chat {
                client_id: Uuid::now_v7(),
                agent_id: AgentId::new(),
                content: "hé \"quoted\"".into(),
                session_id: Some(session),
            }),
            ClientFrame::with_id(
                "h",
                ClientRequest::History { session_id: session, before_seq: Some(9), limit: 20 },
            ),
            ClientFrame::with_id(
                "r",
                ClientRequest::Resume {
                    sessions: vec![ResumePoint { session_id: session, after_seq: 3 }],
                },
            ),
            ClientFrame::with_id("s", ClientRequest::Sessions),
            ClientFrame::new(ClientRequest::Abort {
                session_id: session,
                run_id: Some("r1".into()),
            }),
            ClientFrame::with_id("srv-1", ClientRequest::Heartbeat),
            ClientFrame::new(ClientRequest::Subscribe { topics: vec![Topic::Activity] }),
            ClientFrame::new(ClientRequest::Unsubscribe { topics: Topic::ALL.to_vec() }),
        ] {
            let mut expected = frame.clone();
            if let ClientRequest::Chat { client_id, .. } = &frame.request {
                expected.id = Some(client_id.to_string());
            }
            assert_eq!(decode_client_frame(&frame.to_json()), Ok(expected));
        }
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
        assert!(err(r#"{"type":"subscribe","payload":{"topics":[]}}"#).message.contains("1–6"));
    }
}
