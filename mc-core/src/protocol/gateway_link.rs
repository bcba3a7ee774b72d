//! The gateway link's frames: the relay's own `auth`, `auth_ok`, `auth_error` and `heartbeat`
//! around OpenClaw's `req` / `res` / `event` (typed in `mc-openclaw`). [`GatewayToRelay`] is
//! what a gateway (or its bridge) sends, [`RelayToGateway`] what the relay sends; each side
//! decodes the other's with [`decode_gateway_frame`] / [`decode_relay_frame`].

use mc_openclaw::Frame;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::DecodeError;
use crate::ids::GatewayId;
use crate::model::{AgentReport, GatewayMetrics};

/// A heartbeat sent on the socket instead of over HTTP.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SocketHeartbeat {
    /// Current figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<GatewayMetrics>,
    /// Its agents, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<AgentReport>>,
    /// `online` (default) or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A frame from a gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayToRelay {
    /// First frame: the relay token.
    Auth {
        /// The secret from registration (redacted in `Debug`).
        relay_token: crate::Secret,
    },
    /// Liveness and metrics.
    Heartbeat(SocketHeartbeat),
    /// OpenClaw's own frames: answers to the relay's requests, events, and requests (the relay
    /// serves none).
    OpenClaw(Frame),
}

/// A frame from the relay to a gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayToGateway {
    /// The relay token was accepted.
    AuthOk {
        /// The gateway.
        gateway_id: GatewayId,
        /// How often to send a heartbeat.
        heartbeat_interval_seconds: u64,
    },
    /// The relay token was refused (`invalid_token`, `timeout`); the socket closes 4001.
    AuthError {
        /// Why.
        reason: String,
    },
    /// OpenClaw's own frames: the relay's requests, its answers to a gateway's requests.
    OpenClaw(Frame),
}

/// The relay's own frames as written: `{type, payload}`.
#[derive(Serialize)]
struct Written<'a, P: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    payload: P,
}

/// The relay's own frames as read: the payload stays text until its type is known.
#[derive(Deserialize)]
struct Read<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Serialize, Deserialize)]
struct AuthPayload {
    relay_token: String,
}

#[derive(Serialize, Deserialize)]
struct AuthOkPayload {
    gateway_id: GatewayId,
    #[serde(default)]
    config: AuthOkConfig,
}

#[derive(Serialize, Deserialize, Default)]
struct AuthOkConfig {
    #[serde(default)]
    heartbeat_interval_seconds: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct AuthErrorPayload {
    #[serde(default)]
    reason: Option<String>,
}

fn bad(message: impl Into<String>) -> DecodeError {
    DecodeError { id: None, message: message.into() }
}

fn render<P: Serialize>(kind: &str, payload: P) -> String {
    // The payloads are strings, ids, numbers and model types that always serialize.
    serde_json::to_string(&Written { kind, payload }).unwrap_or_default()
}

/// Reads a relay frame's payload as a `T`.
fn payload<'a, T: Deserialize<'a>>(read: &Read<'a>, what: &str) -> Result<T, DecodeError> {
    let text = read.payload.map_or("null", RawValue::get);
    serde_json::from_str(text).map_err(|e| bad(format!("{what} payload: {e}")))
}

/// Decodes an OpenClaw frame, or, when its type is not OpenClaw's, one of the relay's own
/// (read by `own`).
fn decode<T>(
    text: &str,
    openclaw: impl FnOnce(Frame) -> T,
    own: impl FnOnce(&Read<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    match Frame::decode(text) {
        Ok(frame) => Ok(openclaw(frame)),
        Err(mc_openclaw::Error::UnknownType(_)) => {
            let read: Read<'_> =
                serde_json::from_str(text).map_err(|e| bad(format!("not a link frame: {e}")))?;
            own(&read)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Decodes one text frame from a gateway.
pub fn decode_gateway_frame(text: &str) -> Result<GatewayToRelay, DecodeError> {
    decode(text, GatewayToRelay::OpenClaw, |read| match read.kind.as_ref() {
        "auth" => {
            let auth: AuthPayload =
                payload(read, "auth").map_err(|_| bad("auth: payload.relay_token is required"))?;
            Ok(GatewayToRelay::Auth { relay_token: auth.relay_token.into() })
        }
        "heartbeat" => {
            let beat: Option<SocketHeartbeat> = payload(read, "heartbeat")?;
            Ok(GatewayToRelay::Heartbeat(beat.unwrap_or_default()))
        }
        other => Err(unknown(other)),
    })
}

/// Decodes one text frame the relay sent a gateway.
pub fn decode_relay_frame(text: &str) -> Result<RelayToGateway, DecodeError> {
    decode(text, RelayToGateway::OpenClaw, |read| match read.kind.as_ref() {
        "auth_ok" => {
            let ok: AuthOkPayload = payload(read, "auth_ok")?;
            Ok(RelayToGateway::AuthOk {
                gateway_id: ok.gateway_id,
                heartbeat_interval_seconds: ok.config.heartbeat_interval_seconds.unwrap_or(30),
            })
        }
        "auth_error" => {
            let error: Option<AuthErrorPayload> = payload(read, "auth_error")?;
            let reason = error.and_then(|e| e.reason).unwrap_or_else(|| "invalid_token".into());
            Ok(RelayToGateway::AuthError { reason })
        }
        other => Err(unknown(other)),
    })
}

fn unknown(kind: &str) -> DecodeError {
    bad(format!("type: unknown frame type '{}'", kind.chars().take(32).collect::<String>()))
}

impl GatewayToRelay {
    /// Renders the frame as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            GatewayToRelay::Auth { relay_token } => {
                render("auth", AuthPayload { relay_token: relay_token.expose().to_owned() })
            }
            GatewayToRelay::Heartbeat(beat) => render("heartbeat", beat),
            GatewayToRelay::OpenClaw(frame) => frame.to_json(),
        }
    }
}

impl RelayToGateway {
    /// Renders the frame as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            RelayToGateway::AuthOk { gateway_id, heartbeat_interval_seconds } => {
                let config =
                    AuthOkConfig { heartbeat_interval_seconds: Some(*heartbeat_interval_seconds) };
                render("auth_ok", AuthOkPayload { gateway_id: *gateway_id, config })
            }
            RelayToGateway::AuthError { reason } => {
                render("auth_error", AuthErrorPayload { reason: Some(reason.clone()) })
            }
            RelayToGateway::OpenClaw(frame) => frame.to_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mc_openclaw::{ErrorShape, Payload, Request, Response};

    #[test]
    fn every_frame_reads_back_as_it_was_written() {
        let metrics =
            GatewayMetrics { active_sessions: 1, memory_mb: 2.0, cpu_pct: 3.0, agent_count: 1 };
        let request = Request::new("r1", "chat.send", Payload::encode(&[1, 2]).unwrap());
        for frame in [
            GatewayToRelay::Auth { relay_token: "gw_relay_x".into() },
            GatewayToRelay::Heartbeat(SocketHeartbeat {
                metrics: Some(metrics),
                agents: Some(vec![AgentReport { agent_key: "main".into(), name: "Main".into() }]),
                status: Some("online".into()),
            }),
            GatewayToRelay::OpenClaw(Frame::Response(Response::error(
                "r1",
                ErrorShape::new("UNAVAILABLE", "starting").retry_after(500),
            ))),
        ] {
            assert_eq!(decode_gateway_frame(&frame.to_json()), Ok(frame));
        }
        for frame in [
            RelayToGateway::AuthOk { gateway_id: GatewayId::new(), heartbeat_interval_seconds: 15 },
            RelayToGateway::AuthError { reason: "timeout".into() },
            RelayToGateway::OpenClaw(Frame::Request(request)),
        ] {
            assert_eq!(decode_relay_frame(&frame.to_json()), Ok(frame));
        }
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        for (text, says) in [
            ("{", "not a JSON frame"),
            (r#"{"type":"nope"}"#, "unknown frame type 'nope'"),
            (r#"{"type":"auth","payload":{}}"#, "payload.relay_token is required"),
            (r#"{"type":"res","ok":true}"#, "id:"),
            (r#"{"type":"heartbeat","payload":{"metrics":3}}"#, "heartbeat payload"),
        ] {
            let err = decode_gateway_frame(text).unwrap_err();
            assert!(err.message.contains(says), "{text}: {err}");
        }
        assert_eq!(
            decode_gateway_frame(r#"{"type":"heartbeat"}"#),
            Ok(GatewayToRelay::Heartbeat(SocketHeartbeat::default()))
        );
        assert_eq!(
            decode_relay_frame(r#"{"type":"auth_error"}"#),
            Ok(RelayToGateway::AuthError { reason: "invalid_token".into() })
        );
        for text in ["", "{}", r#"{"type":"req","id":"x"}"#, r#"{"type":"auth_ok","payload":{}}"#] {
            assert!(decode_relay_frame(text).is_err(), "{text}");
        }
    }
}
