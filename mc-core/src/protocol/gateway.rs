//! The gateway link's frames (SPEC §7.1): the relay's own `auth` / `auth_ok` / `auth_error` /
//! `heartbeat`, then OpenClaw protocol v4 `req` / `res` / `event` (OPENCLAW.md §1, §3).
//!
//! Decoding is deliberately loose: OpenClaw adds fields over time, so unknown fields are
//! ignored everywhere and payloads stay `serde_json::Value` until a field is needed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DecodeError;
use crate::model::{AgentReport, GatewayMetrics};

/// The OpenClaw gateway protocol version the relay speaks.
pub const OPENCLAW_PROTOCOL_VERSION: u32 = 4;

/// OpenClaw's error shape.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GatewayErrorShape {
    /// Top-level code, e.g. `INVALID_REQUEST`, `UNAVAILABLE`.
    #[serde(default)]
    pub code: String,
    /// What went wrong.
    #[serde(default)]
    pub message: String,
    /// Details (`details.code` is what clients branch on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Whether retrying may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// When to retry.
    #[serde(default, rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// A heartbeat sent on the socket instead of over HTTP.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct SocketHeartbeat {
    /// Current figures.
    #[serde(default)]
    pub metrics: Option<GatewayMetrics>,
    /// Its agents, if reported.
    #[serde(default)]
    pub agents: Option<Vec<AgentReport>>,
    /// `online` (default) or `error`.
    #[serde(default)]
    pub status: Option<String>,
}

/// A frame from a gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayInbound {
    /// First frame: the relay token.
    Auth {
        /// The secret from registration (redacted in `Debug`).
        relay_token: crate::Secret,
    },
    /// A response to a relay request.
    Res {
        /// The request id.
        id: String,
        /// Success.
        ok: bool,
        /// The result.
        payload: Value,
        /// The error, when not ok.
        error: Option<GatewayErrorShape>,
    },
    /// A pushed event.
    Event {
        /// Its name, e.g. `chat`, `agent`, `tick`.
        event: String,
        /// Its payload.
        payload: Value,
    },
    /// Liveness and metrics.
    Heartbeat(SocketHeartbeat),
    /// A request from the gateway; the relay serves none and answers an error.
    Req {
        /// Its id.
        id: String,
        /// The method.
        method: String,
    },
}

/// A link frame's fields, either direction (read loosely; see [`super::gateway_relay`]).
#[derive(Deserialize)]
pub(super) struct Raw {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) id: Option<Value>,
    #[serde(default)]
    pub(super) ok: Option<bool>,
    #[serde(default)]
    pub(super) payload: Option<Value>,
    #[serde(default)]
    pub(super) error: Option<GatewayErrorShape>,
    #[serde(default)]
    pub(super) event: Option<String>,
    #[serde(default)]
    pub(super) method: Option<String>,
    #[serde(default)]
    pub(super) params: Option<Value>,
}

pub(super) fn bad(message: impl Into<String>) -> DecodeError {
    DecodeError { id: None, message: message.into() }
}

pub(super) fn id_text(id: Option<Value>) -> Result<String, DecodeError> {
    match id {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Ok(s),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(bad("id: must be a non-empty string")),
    }
}

/// Decodes one text frame from a gateway.
pub fn decode_gateway_frame(text: &str) -> Result<GatewayInbound, DecodeError> {
    let raw: Raw = serde_json::from_str(text).map_err(|e| bad(format!("not a JSON frame: {e}")))?;
    let kind = raw.kind.ok_or_else(|| bad("type: missing field"))?;
    match kind.as_str() {
        "auth" => {
            let token = raw
                .payload
                .as_ref()
                .and_then(|p| p.get("relay_token"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("auth: payload.relay_token is required"))?;
            Ok(GatewayInbound::Auth { relay_token: token.into() })
        }
        "res" => Ok(GatewayInbound::Res {
            id: id_text(raw.id)?,
            ok: raw.ok.ok_or_else(|| bad("res: ok is required"))?,
            payload: raw.payload.unwrap_or(Value::Null),
            error: raw.error,
        }),
        "event" => Ok(GatewayInbound::Event {
            event: raw.event.ok_or_else(|| bad("event: event name is required"))?,
            payload: raw.payload.unwrap_or(Value::Null),
        }),
        "heartbeat" => {
            let beat = match raw.payload {
                None | Some(Value::Null) => SocketHeartbeat::default(),
                Some(p) => {
                    serde_json::from_value(p).map_err(|e| bad(format!("heartbeat payload: {e}")))?
                }
            };
            Ok(GatewayInbound::Heartbeat(beat))
        }
        "req" => {
            Ok(GatewayInbound::Req { id: id_text(raw.id)?, method: raw.method.unwrap_or_default() })
        }
        other => Err(bad(format!(
            "type: unknown frame type '{}'",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// A request frame to a gateway, written straight from its parts (the hot path's `chat.send`:
/// no copy of `params` on the way).
pub fn encode_request(id: &str, method: &str, params: &Value) -> String {
    #[derive(Serialize)]
    struct ReqFrame<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        id: &'a str,
        method: &'a str,
        params: &'a Value,
    }
    let frame = ReqFrame { kind: "req", id, method, params };
    // Strings and a `Value` (whose keys are strings) always serialize.
    serde_json::to_string(&frame).unwrap_or_default()
}

/// The state of a run in a `chat` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatState {
    /// Progress (`phase`).
    Status,
    /// New text.
    Delta,
    /// Done: the reply is complete.
    Final,
    /// Stopped by `chat.abort`.
    Aborted,
    /// Failed.
    Error,
    /// A state this relay does not know.
    Other,
}

impl ChatState {
    /// Whether the run ended.
    pub fn is_terminal(&self) -> bool {
        matches!(self, ChatState::Final | ChatState::Aborted | ChatState::Error)
    }
}

/// The parts of an OpenClaw `chat` event the relay uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatEvent {
    /// The run (equals the `idempotencyKey` of `chat.send`).
    pub run_id: String,
    /// The canonical session key.
    pub session_key: String,
    /// The state.
    pub state: ChatState,
    /// For `delta`: the new text.
    pub delta_text: Option<String>,
    /// For `delta` with `replace: true`: `delta_text` replaces the text so far.
    pub replace: bool,
    /// The cumulative assistant text, when the event carries a `message`.
    pub text: Option<String>,
    /// For `error` / `aborted`: why.
    pub error_message: Option<String>,
}

/// The text of an OpenClaw message: a string `content`, or the `text` parts of an array.
pub fn message_text(message: &Value) -> Option<String> {
    match message.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str).is_none_or(|t| t == "text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<String>(),
        ),
        _ => None,
    }
}

impl ChatEvent {
    /// Reads a `chat` event payload; `None` if it lacks a run id or session key.
    pub fn parse(payload: &Value) -> Option<Self> {
        let run_id = payload.get("runId")?.as_str()?.to_owned();
        let session_key =
            payload.get("sessionKey").and_then(Value::as_str).unwrap_or_default().to_owned();
        let state = match payload.get("state").and_then(Value::as_str) {
            Some("status") => ChatState::Status,
            Some("delta") => ChatState::Delta,
            Some("final") => ChatState::Final,
            Some("aborted") => ChatState::Aborted,
            Some("error") => ChatState::Error,
            _ => ChatState::Other,
        };
        Some(Self {
            run_id,
            session_key,
            state,
            delta_text: payload.get("deltaText").and_then(Value::as_str).map(str::to_owned),
            replace: payload.get("replace").and_then(Value::as_bool).unwrap_or(false),
            text: payload.get("message").and_then(message_text),
            error_message: payload.get("errorMessage").and_then(Value::as_str).map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_openclaw_frames_loosely() {
        let f = decode_gateway_frame(r#"{"type":"res","id":"2","ok":true,"payload":{"runId":"r","status":"started"},"extra":1}"#).unwrap();
        assert!(matches!(f, GatewayInbound::Res { ref id, ok: true, .. } if id == "2"));
        let f = decode_gateway_frame(r#"{"type":"res","id":"3","ok":false,"error":{"code":"UNAVAILABLE","message":"starting","retryable":true,"retryAfterMs":500,"details":{"reason":"x"}}}"#).unwrap();
        let GatewayInbound::Res { error: Some(e), .. } = f else { panic!() };
        assert_eq!((e.code.as_str(), e.retry_after_ms), ("UNAVAILABLE", Some(500)));
        let f = decode_gateway_frame(r#"{"type":"event","event":"tick","payload":{"ts":1},"seq":22,"stateVersion":{"presence":1}}"#).unwrap();
        assert!(matches!(f, GatewayInbound::Event { ref event, .. } if event == "tick"));
        let f = decode_gateway_frame(r#"{"type":"auth","payload":{"relay_token":"gw_relay_x"}}"#)
            .unwrap();
        assert_eq!(f, GatewayInbound::Auth { relay_token: "gw_relay_x".into() });
        let f = decode_gateway_frame(r#"{"type":"heartbeat","payload":{"metrics":{"active_sessions":1,"memory_mb":2.0,"cpu_pct":3.0,"agent_count":1}}}"#).unwrap();
        assert!(matches!(f, GatewayInbound::Heartbeat(SocketHeartbeat { metrics: Some(_), .. })));
        assert!(decode_gateway_frame("{").is_err());
        assert!(decode_gateway_frame(r#"{"type":"res","ok":true}"#).is_err());
        assert!(decode_gateway_frame(r#"{"type":"nope"}"#).is_err());
    }

    #[test]
    fn chat_events_from_the_captured_stream() {
        let delta: Value = serde_json::from_str(r#"{"runId":"aadb","sessionKey":"agent:main:relay-demo","agentId":"main","seq":7,"state":"delta","deltaText":" Hi the","message":{"role":"assistant","content":[{"type":"text","text":"Echo: Hi the"}],"timestamp":1}}"#).unwrap();
        let e = ChatEvent::parse(&delta).unwrap();
        assert_eq!(e.state, ChatState::Delta);
        assert_eq!(e.delta_text.as_deref(), Some(" Hi the"));
        assert_eq!(e.text.as_deref(), Some("Echo: Hi the"));
        let err: Value = serde_json::from_str(
            r#"{"runId":"r","sessionKey":"k","seq":5,"state":"error","errorMessage":"No route"}"#,
        )
        .unwrap();
        let e = ChatEvent::parse(&err).unwrap();
        assert!(e.state.is_terminal());
        assert_eq!(e.error_message.as_deref(), Some("No route"));
        assert!(ChatEvent::parse(&serde_json::json!({"state":"final"})).is_none());
        assert_eq!(message_text(&serde_json::json!({"content":"plain"})).as_deref(), Some("plain"));
    }
}
