//! The gateway link seen from the gateway's side (the bridge): what the relay sends a
//! gateway ([`RelayToGateway`], rendered by the relay and read back by
//! [`decode_relay_frame`]) and a gateway's answer to a request ([`encode_response`], which
//! the relay reads with [`super::decode_gateway_frame`]).

use serde::Deserialize;
use serde_json::{Value, json};

use super::DecodeError;
use super::gateway::{GatewayErrorShape, Raw, bad, id_text};
use crate::ids::GatewayId;

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
    /// An OpenClaw request (`chat.send`, `chat.abort`, …).
    Req {
        /// Its id, echoed in the `res`.
        id: String,
        /// The method.
        method: String,
        /// Its parameters.
        params: Value,
    },
    /// The relay's answer to a request the gateway made (the relay serves none: an error).
    Res {
        /// The request's id.
        id: String,
        /// Whether it succeeded.
        ok: bool,
        /// The result.
        payload: Value,
        /// The error, when not ok.
        error: Option<GatewayErrorShape>,
    },
}

impl RelayToGateway {
    /// Renders the frame as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            RelayToGateway::AuthOk { gateway_id, heartbeat_interval_seconds } => json!({
                "type": "auth_ok",
                "payload": { "gateway_id": gateway_id, "config": { "heartbeat_interval_seconds": heartbeat_interval_seconds } },
            }),
            RelayToGateway::AuthError { reason } => {
                json!({ "type": "auth_error", "payload": { "reason": reason } })
            }
            RelayToGateway::Req { id, method, params } => {
                return super::gateway::encode_request(id, method, params);
            }
            RelayToGateway::Res { id, ok, payload, error } => {
                let mut frame = json!({ "type": "res", "id": id, "ok": ok, "payload": payload });
                if let Some(error) = error {
                    frame["error"] = json!(error);
                }
                frame
            }
        }
        .to_string()
    }
}

#[derive(Deserialize)]
struct AuthOkPayload {
    gateway_id: GatewayId,
    #[serde(default)]
    config: AuthOkConfig,
}

#[derive(Deserialize, Default)]
struct AuthOkConfig {
    #[serde(default)]
    heartbeat_interval_seconds: Option<u64>,
}

/// Decodes one text frame the relay sent a gateway (loosely: unknown fields are ignored).
pub fn decode_relay_frame(text: &str) -> Result<RelayToGateway, DecodeError> {
    let raw: Raw =
        serde_json::from_str(text).map_err(|e| bad(format!("not a relay frame: {e}")))?;
    let kind = raw.kind.ok_or_else(|| bad("type: missing field"))?;
    match kind.as_str() {
        "auth_ok" => {
            let p: AuthOkPayload = serde_json::from_value(raw.payload.unwrap_or(Value::Null))
                .map_err(|e| bad(format!("auth_ok payload: {e}")))?;
            Ok(RelayToGateway::AuthOk {
                gateway_id: p.gateway_id,
                heartbeat_interval_seconds: p.config.heartbeat_interval_seconds.unwrap_or(30),
            })
        }
        "auth_error" => {
            let reason = raw
                .payload
                .as_ref()
                .and_then(|p| p.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("invalid_token")
                .to_owned();
            Ok(RelayToGateway::AuthError { reason })
        }
        "req" => Ok(RelayToGateway::Req {
            id: id_text(raw.id)?,
            method: raw.method.ok_or_else(|| bad("req: method is required"))?,
            params: raw.params.unwrap_or(Value::Null),
        }),
        "res" => Ok(RelayToGateway::Res {
            id: id_text(raw.id)?,
            ok: raw.ok.ok_or_else(|| bad("res: ok is required"))?,
            payload: raw.payload.unwrap_or(Value::Null),
            error: raw.error,
        }),
        other => Err(bad(format!(
            "type: unknown frame type '{}'",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// A gateway's `res` to request `id`: the payload, or the error (OpenClaw's error shape).
pub fn encode_response(id: &str, answer: Result<Value, Value>) -> String {
    match answer {
        Ok(payload) => json!({ "type": "res", "id": id, "ok": true, "payload": payload }),
        Err(error) => json!({ "type": "res", "id": id, "ok": false, "error": error }),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{GatewayInbound, decode_gateway_frame};

    #[test]
    fn relay_frames_read_back_as_they_were_rendered() {
        for frame in [
            RelayToGateway::AuthOk { gateway_id: GatewayId::new(), heartbeat_interval_seconds: 15 },
            RelayToGateway::AuthError { reason: "timeout".into() },
            RelayToGateway::Req {
                id: "r1".into(),
                method: "chat.send".into(),
                params: json!({ "sessionKey": "k", "message": "hi" }),
            },
            RelayToGateway::Res {
                id: "g1".into(),
                ok: false,
                payload: Value::Null,
                error: Some(GatewayErrorShape {
                    code: "INVALID_REQUEST".into(),
                    message: "no".into(),
                    ..Default::default()
                }),
            },
        ] {
            assert_eq!(decode_relay_frame(&frame.to_json()), Ok(frame));
        }
        for bad in ["", "{}", r#"{"type":"req","id":"x"}"#, r#"{"type":"auth_ok","payload":{}}"#] {
            assert!(decode_relay_frame(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_gateways_response_reads_back_on_the_relay() {
        let ok = decode_gateway_frame(&encode_response("r1", Ok(json!({ "runId": "x" })))).unwrap();
        assert_eq!(
            ok,
            GatewayInbound::Res {
                id: "r1".into(),
                ok: true,
                payload: json!({ "runId": "x" }),
                error: None
            }
        );
        let err = decode_gateway_frame(&encode_response(
            "r2",
            Err(json!({ "code": "UNAVAILABLE", "message": "down" })),
        ))
        .unwrap();
        let GatewayInbound::Res { ok: false, error: Some(e), .. } = err else { panic!("{err:?}") };
        assert_eq!(e.code, "UNAVAILABLE");
    }
}
