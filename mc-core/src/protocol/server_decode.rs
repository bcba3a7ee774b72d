//! Reading what the relay sends: [`decode_server_frame`] turns a text frame back into the
//! [`ServerFrame`] that [`ServerFrame::to_json`] rendered. Clients (the SDK, `mc-chat`, the
//! tests) use it so no one reads `frame["type"]` by hand.

use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::DecodeError;
use super::client::{Topic, payload};
use super::server::{
    AssignmentInfo, AuthFailure, ChatMessage, ErrorCode, ServerFrame, SessionInfo,
};
use crate::ids::{AgentId, MessageId, OrgId, SessionId, UserId};
use crate::model::Timestamp;

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AuthOk {
    user_id: UserId,
    organization_id: OrgId,
    heartbeat_interval_seconds: u64,
    #[serde(default)]
    assignments: Vec<AssignmentInfo>,
}

#[derive(Deserialize)]
struct AuthError {
    reason: AuthFailure,
}

#[derive(Deserialize)]
struct Ack {
    session_id: SessionId,
    message_id: MessageId,
    seq: u64,
}

#[derive(Deserialize)]
struct Chunk {
    session_id: SessionId,
    run_id: String,
    delta: String,
    offset: usize,
}

#[derive(Deserialize)]
struct System {
    event: String,
    #[serde(default)]
    agent_id: Option<AgentId>,
    #[serde(default)]
    session_id: Option<SessionId>,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Deserialize)]
struct History {
    session_id: SessionId,
    messages: Vec<ChatMessage>,
    has_more: bool,
}

#[derive(Deserialize)]
struct Resumed {
    session_id: SessionId,
    last_seq: u64,
}

#[derive(Deserialize)]
struct Sessions {
    sessions: Vec<SessionInfo>,
}

#[derive(Deserialize)]
struct AuthExtended {
    #[serde(default)]
    expires_at: Option<Timestamp>,
}

#[derive(Deserialize)]
struct Error {
    code: ErrorCode,
    message: String,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

#[derive(Deserialize)]
struct Event {
    topic: Topic,
    payload: serde_json::Value,
    ts: Timestamp,
}

// One arm per frame type, mirroring `ServerFrame::to_json`: the two read side by side.
/// Decodes one text frame the relay sent on a user's socket. An unknown `type` is an error
/// (a client built for an older protocol skips such frames).
pub fn decode_server_frame(text: &str) -> Result<ServerFrame, DecodeError> {
    let raw: RawFrame<'_> = serde_json::from_str(text).map_err(|e| DecodeError {
        id: None,
        message: format!("not a relay frame {{type, id?, payload}}: {e}"),
    })?;
    let RawFrame { kind, id, payload: p } = raw;
    Ok(match kind.as_str() {
        "auth_ok" => {
            let a: AuthOk = payload(&id, &kind, p)?;
            ServerFrame::AuthOk {
                user_id: a.user_id,
                organization_id: a.organization_id,
                heartbeat_interval_seconds: a.heartbeat_interval_seconds,
                assignments: a.assignments,
            }
        }
        "auth_error" => {
            let AuthError { reason } = payload(&id, &kind, p)?;
            ServerFrame::AuthError { reason }
        }
        "ack" => {
            let Some(client_id) = id.as_deref().and_then(|id| Uuid::parse_str(id).ok()) else {
                return Err(DecodeError {
                    id,
                    message: "ack: id must be the client's UUID".into(),
                });
            };
            let Ack { session_id, message_id, seq } = payload(&id, &kind, p)?;
            ServerFrame::Ack { client_id, session_id, message_id, seq }
        }
        "chunk" => {
            let Chunk { session_id, run_id, delta, offset } = payload(&id, &kind, p)?;
            ServerFrame::Chunk { session_id, run_id, delta, offset }
        }
        "chat" => ServerFrame::Chat(payload(&id, &kind, p)?),
        "system" => {
            let s: System = payload(&id, &kind, p)?;
            match (s.event.as_str(), s.agent_id, s.session_id, s.run_id, s.phase) {
                ("agent_status", Some(agent_id), Some(session_id), Some(run_id), Some(phase)) => {
                    ServerFrame::AgentStatus {
                        agent_id,
                        session_id,
                        run_id,
                        phase: phase.into(),
                        detail: s.detail,
                    }
                }
                (_, agent_id, session_id, _, _) => {
                    ServerFrame::System { event: s.event.into(), agent_id, session_id }
                }
            }
        }
        "history" => {
            let History { session_id, messages, has_more } = payload(&id, &kind, p)?;
            ServerFrame::History { id, session_id, messages, has_more }
        }
        "resumed" => {
            let Resumed { session_id, last_seq } = payload(&id, &kind, p)?;
            ServerFrame::Resumed { id, session_id, last_seq }
        }
        "sessions" => {
            let Sessions { sessions } = payload(&id, &kind, p)?;
            ServerFrame::Sessions { id, sessions }
        }
        "auth_extended" => {
            let AuthExtended { expires_at } = payload(&id, &kind, p)?;
            ServerFrame::AuthExtended { id, expires_at }
        }
        "heartbeat" => ServerFrame::Heartbeat { id },
        "error" => {
            let Error { code, message, retry_after_ms } = payload(&id, &kind, p)?;
            ServerFrame::Error { id, code, message, retry_after_ms }
        }
        "event" => {
            let Event { topic, payload, ts } = self::payload(&id, &kind, p)?;
            ServerFrame::Event { topic, payload, ts }
        }
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(DecodeError { id, message: format!("unknown frame type '{shown}'") });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MessageRole, SessionStatus};

    fn round_trip(frame: ServerFrame) {
        let text = frame.to_json();
        assert_eq!(decode_server_frame(&text).as_ref(), Ok(&frame), "{text}");
    }

    #[test]
    fn every_frame_reads_back_as_it_was_rendered() {
        let now = chrono::DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap();
        let session = SessionId::new();
        let agent = AgentId::new();
        let message = ChatMessage {
            session_id: session,
            agent_id: agent,
            role: MessageRole::Agent,
            content: "héllo".into(),
            seq: 4,
            run_id: Some("r1".into()),
            client_msg_id: None,
            created_at: now,
            id: MessageId::new(),
        };
        for frame in [
            ServerFrame::AuthOk {
                user_id: UserId::new(),
                organization_id: OrgId::new(),
                heartbeat_interval_seconds: 30,
                assignments: vec![AssignmentInfo {
                    agent_id: agent,
                    agent_name: "echo".into(),
                    gateway_id: crate::ids::GatewayId::new(),
                    status: "online".into(),
                    board_name: Some("b".into()),
                }],
            },
            ServerFrame::AuthError { reason: AuthFailure::ExpiredToken },
            ServerFrame::Ack {
                client_id: Uuid::now_v7(),
                session_id: session,
                message_id: MessageId::new(),
                seq: 3,
            },
            ServerFrame::Chunk {
                session_id: session,
                run_id: "r1".into(),
                delta: "lo".into(),
                offset: 3,
            },
            ServerFrame::Chat(message.clone()),
            ServerFrame::System {
                event: "agent_online".into(),
                agent_id: Some(agent),
                session_id: None,
            },
            ServerFrame::AgentStatus {
                agent_id: agent,
                session_id: session,
                run_id: "r1".into(),
                phase: "thinking".into(),
                detail: Some("lifecycle".into()),
            },
            ServerFrame::History {
                id: Some("h".into()),
                session_id: session,
                messages: vec![message],
                has_more: true,
            },
            ServerFrame::Resumed { id: None, session_id: session, last_seq: 9 },
            ServerFrame::Sessions {
                id: Some("s".into()),
                sessions: vec![SessionInfo {
                    session_id: session,
                    agent_id: agent,
                    last_seq: 2,
                    last_message_at: Some(now),
                    status: SessionStatus::Active,
                }],
            },
            ServerFrame::AuthExtended { id: Some("a".into()), expires_at: Some(now) },
            ServerFrame::Heartbeat { id: Some("srv-1".into()) },
            ServerFrame::Error {
                id: Some("x".into()),
                code: ErrorCode::RateLimited,
                message: "slow".into(),
                retry_after_ms: Some(20),
            },
            ServerFrame::Event {
                topic: Topic::Activity,
                payload: serde_json::json!({"a": 1}),
                ts: now,
            },
        ] {
            round_trip(frame);
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        for text in [
            "",
            "[]",
            r#"{"type":"nope"}"#,
            r#"{"type":"ack","id":"not-a-uuid","payload":{}}"#,
            r#"{"type":"chunk","payload":{"offset":-1}}"#,
            r#"{"type":"chat"}"#,
        ] {
            assert!(decode_server_frame(text).is_err(), "{text}");
        }
    }
}
