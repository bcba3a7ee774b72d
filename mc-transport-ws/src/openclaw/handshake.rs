//! The OpenClaw handshake as data (OPENCLAW.md §2): the `connect` request a client sends after
//! `connect.challenge`, what it learns from `hello-ok` (read loosely: the gateway adds fields
//! over time), and what a refused `connect` means.

use std::time::Duration;

use mc_core::protocol::gateway::{GatewayErrorShape, OPENCLAW_PROTOCOL_VERSION};
use serde::Deserialize;
use serde_json::{Value, json};

use super::device::{DeviceIdentity, SignedFields};

/// Who the client says it is (`client` of `connect`).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// One of the gateway's known ids; a server-side relay is `gateway-client`.
    pub id: String,
    /// `backend` for a server-side relay.
    pub mode: String,
    /// This program's version.
    pub version: String,
    /// `linux`, …
    pub platform: String,
    /// The name shown to the gateway's operator.
    pub display_name: String,
}

impl Default for ClientInfo {
    fn default() -> Self {
        Self {
            id: "gateway-client".into(),
            mode: "backend".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            platform: std::env::consts::OS.into(),
            display_name: "Mission Control relay".into(),
        }
    }
}

/// The challenge the gateway opens with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// To sign.
    pub nonce: String,
    /// Server time (ms), signed as `signedAt`.
    pub ts: i64,
}

impl Challenge {
    /// Reads a `connect.challenge` event frame.
    pub fn parse(frame: &Value) -> Option<Self> {
        if frame.get("type")?.as_str()? != "event"
            || frame.get("event")?.as_str()? != "connect.challenge"
        {
            return None;
        }
        let payload = frame.get("payload")?;
        Some(Self {
            nonce: payload.get("nonce")?.as_str()?.to_owned(),
            ts: payload.get("ts")?.as_i64()?,
        })
    }
}

/// What to authenticate with.
#[derive(Clone, Default)]
pub struct Credentials<'a> {
    /// The gateway's shared token.
    pub token: Option<&'a str>,
    /// The device token a previous `hello-ok` issued to this device.
    pub device_token: Option<&'a str>,
    /// The device key, to sign the challenge with.
    pub device: Option<&'a DeviceIdentity>,
}

mc_core::debug_redacted!(Credentials<'a> { device } secret { token, device_token });

/// The `connect` request (frame id `id`) answering `challenge`.
pub fn connect_request(
    id: &str,
    client: &ClientInfo,
    scopes: &[String],
    credentials: &Credentials<'_>,
    challenge: &Challenge,
) -> String {
    let mut auth = serde_json::Map::new();
    if let Some(token) = credentials.token {
        auth.insert("token".into(), json!(token));
    }
    if let Some(device_token) = credentials.device_token {
        auth.insert("deviceToken".into(), json!(device_token));
    }
    let mut params = json!({
        "minProtocol": OPENCLAW_PROTOCOL_VERSION,
        "maxProtocol": OPENCLAW_PROTOCOL_VERSION,
        "client": {
            "id": client.id, "version": client.version, "platform": client.platform,
            "mode": client.mode, "displayName": client.display_name,
        },
        "role": "operator",
        "scopes": scopes,
        "caps": [],
        "auth": auth,
        "userAgent": format!("mission-control-relay/{}", client.version),
    });
    if let Some(device) = credentials.device {
        // The signed token is the first of token, deviceToken that is sent.
        let token = credentials.token.or(credentials.device_token).unwrap_or("");
        let fields = SignedFields {
            client_id: &client.id,
            client_mode: &client.mode,
            role: "operator",
            scopes,
            token,
            platform: &client.platform,
            device_family: "",
        };
        params["device"] = json!({
            "id": device.id(),
            "publicKey": device.public_key(),
            "signature": device.sign(&fields, challenge.ts, &challenge.nonce),
            "signedAt": challenge.ts,
            "nonce": challenge.nonce,
        });
    }
    json!({ "type": "req", "id": id, "method": "connect", "params": params }).to_string()
}

/// The parts of `hello-ok` the relay uses; everything else is ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloOk {
    /// The protocol the gateway speaks.
    #[serde(default)]
    pub protocol: u32,
    /// The gateway's own description.
    #[serde(default)]
    pub server: HelloServer,
    /// The socket's authority.
    #[serde(default)]
    pub auth: HelloAuth,
    /// Limits and timers.
    #[serde(default)]
    pub policy: HelloPolicy,
}

/// `hello-ok.server`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloServer {
    /// e.g. `2026.9.6`.
    #[serde(default)]
    pub version: String,
    /// This connection's id on the gateway.
    #[serde(default)]
    pub conn_id: String,
}

/// `hello-ok.auth`.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloAuth {
    /// `token`, `device-token`, …
    #[serde(default)]
    pub method: String,
    /// The scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Issued to a paired device: present it on the next connect.
    #[serde(default)]
    pub device_token: Option<String>,
}

impl std::fmt::Debug for HelloAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelloAuth")
            .field("method", &self.method)
            .field("scopes", &self.scopes)
            .field("device_token", &self.device_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `hello-ok.policy`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloPolicy {
    /// How often the gateway sends `tick`.
    #[serde(default = "default_tick")]
    pub tick_interval_ms: u64,
    /// Largest frame after the handshake.
    #[serde(default)]
    pub max_payload: u64,
}

fn default_tick() -> u64 {
    30_000
}

impl Default for HelloPolicy {
    fn default() -> Self {
        Self { tick_interval_ms: default_tick(), max_payload: 0 }
    }
}

impl HelloOk {
    /// Reads the payload of a successful `connect` answer.
    pub fn parse(payload: &Value) -> Option<Self> {
        let hello: Self = serde_json::from_value(payload.clone()).ok()?;
        (payload.get("type").and_then(Value::as_str) == Some("hello-ok")).then_some(hello)
    }

    /// Silence longer than this means the connection is dead (twice the tick interval).
    pub fn silence_limit(&self) -> Duration {
        Duration::from_millis(self.policy.tick_interval_ms.clamp(1_000, 600_000) * 2)
    }
}

/// Why a `connect` was refused, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The gateway is still starting: try again after `retry_after`.
    #[error("the gateway is starting; retrying in {} ms", retry_after.as_millis())]
    Starting {
        /// When to retry.
        retry_after: Duration,
    },
    /// The gateway speaks another protocol version.
    #[error("protocol mismatch: the gateway expects protocol {}, this relay speaks {}", expected.map_or("?".to_owned(), |v| v.to_string()), OPENCLAW_PROTOCOL_VERSION)]
    ProtocolMismatch {
        /// The version the gateway expects.
        expected: Option<u32>,
    },
    /// This device waits for the gateway's operator: `openclaw devices approve <request id>`.
    #[error("pairing required: run `openclaw devices approve {}` on the gateway", request_id.as_deref().unwrap_or("<request id>"))]
    PairingRequired {
        /// The pairing request to approve.
        request_id: Option<String>,
    },
    /// The token or device token was refused.
    #[error("unauthorized ({code}): {message}")]
    Unauthorized {
        /// `details.code`, e.g. `AUTH_TOKEN_MISMATCH`.
        code: String,
        /// The gateway's words.
        message: String,
    },
    /// Any other refusal.
    #[error("refused ({code}): {message}")]
    Refused {
        /// `details.code`, else the top-level code.
        code: String,
        /// The gateway's words.
        message: String,
    },
}

impl ConnectFailure {
    /// What a refused `connect` means.
    pub fn classify(error: &GatewayErrorShape) -> Self {
        let details = error.details.as_ref();
        let detail = |key: &str| details.and_then(|d| d.get(key));
        let detail_code =
            detail("code").and_then(Value::as_str).map(str::to_owned).unwrap_or_default();
        let code = if detail_code.is_empty() { error.code.clone() } else { detail_code };
        if error.code == "UNAVAILABLE" {
            let ms = error.retry_after_ms.unwrap_or(500).clamp(100, 30_000);
            return Self::Starting { retry_after: Duration::from_millis(ms) };
        }
        match code.as_str() {
            "PROTOCOL_MISMATCH" => Self::ProtocolMismatch {
                expected: detail("expectedProtocol")
                    .and_then(Value::as_u64)
                    .and_then(|v| u32::try_from(v).ok()),
            },
            "PAIRING_REQUIRED" | "NOT_PAIRED" => Self::PairingRequired {
                request_id: detail("requestId").and_then(Value::as_str).map(str::to_owned),
            },
            _ if error.code == "NOT_PAIRED" => Self::PairingRequired {
                request_id: detail("requestId").and_then(Value::as_str).map(str::to_owned),
            },
            c if c.starts_with("AUTH_")
                || c.starts_with("DEVICE_AUTH")
                || c == "DEVICE_IDENTITY_REQUIRED" =>
            {
                Self::Unauthorized { code, message: error.message.clone() }
            }
            _ => Self::Refused { code, message: error.message.clone() },
        }
    }

    /// How long to wait before the next attempt (pairing is retried often, so an approval is
    /// picked up within seconds; a version mismatch rarely changes by itself).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Starting { retry_after } => Some(*retry_after),
            Self::PairingRequired { .. } => Some(Duration::from_secs(3)),
            Self::ProtocolMismatch { .. } => Some(Duration::from_secs(60)),
            Self::Unauthorized { .. } | Self::Refused { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> GatewayErrorShape {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_connect_failure_is_classified() {
        // The frames of OPENCLAW.md §7.
        let starting = error(
            r#"{"code":"UNAVAILABLE","message":"gateway starting; retry shortly","retryable":true,"retryAfterMs":500,"details":{"reason":"startup-sidecars"}}"#,
        );
        assert_eq!(
            ConnectFailure::classify(&starting),
            ConnectFailure::Starting { retry_after: Duration::from_millis(500) }
        );
        let mismatch = error(
            r#"{"code":"INVALID_REQUEST","message":"protocol mismatch","details":{"code":"PROTOCOL_MISMATCH","clientMinProtocol":3,"clientMaxProtocol":3,"expectedProtocol":4,"minimumProbeProtocol":3}}"#,
        );
        let failure = ConnectFailure::classify(&mismatch);
        assert_eq!(failure, ConnectFailure::ProtocolMismatch { expected: Some(4) });
        assert!(failure.to_string().contains("expects protocol 4"));
        let pairing = error(
            r#"{"code":"NOT_PAIRED","message":"pairing required: device is not approved yet","details":{"code":"PAIRING_REQUIRED","reason":"not-paired","requestId":"f75b6e9a-17c3-4793-af44-359a69415d78","deviceId":"fbecc699","requestedRole":"operator"}}"#,
        );
        let failure = ConnectFailure::classify(&pairing);
        assert_eq!(
            failure,
            ConnectFailure::PairingRequired {
                request_id: Some("f75b6e9a-17c3-4793-af44-359a69415d78".into())
            }
        );
        assert!(failure.to_string().contains("openclaw devices approve f75b6e9a"));
        let mismatch_token = error(
            r#"{"code":"INVALID_REQUEST","message":"unauthorized: gateway token mismatch (provide gateway auth token)","details":{"code":"AUTH_TOKEN_MISMATCH","authReason":"token_mismatch","canRetryWithDeviceToken":false}}"#,
        );
        assert!(matches!(
            ConnectFailure::classify(&mismatch_token),
            ConnectFailure::Unauthorized { ref code, .. } if code == "AUTH_TOKEN_MISMATCH"
        ));
        let origin = error(
            r#"{"code":"INVALID_REQUEST","message":"origin not allowed","details":{"code":"CONTROL_UI_ORIGIN_NOT_ALLOWED"}}"#,
        );
        assert!(matches!(
            ConnectFailure::classify(&origin),
            ConnectFailure::Refused { ref code, .. } if code == "CONTROL_UI_ORIGIN_NOT_ALLOWED"
        ));
        let bare = error(r#"{"code":"NOT_PAIRED","message":"not paired"}"#);
        assert_eq!(
            ConnectFailure::classify(&bare),
            ConnectFailure::PairingRequired { request_id: None }
        );
        assert!(
            ConnectFailure::classify(&error(r#"{"code":"FORBIDDEN","message":"x"}"#))
                .retry_after()
                .is_none()
        );
    }

    #[test]
    fn hello_ok_is_read_loosely() {
        let payload: Value = serde_json::from_str(r#"{"type":"hello-ok","protocol":4,"server":{"version":"2026.9.6","buildId":"x","connId":"c1","new":true},"features":{"methods":["health"]},"snapshot":{},"auth":{"method":"token","role":"operator","scopes":["operator.read"],"deviceToken":"dt-secret","issuedAtMs":1},"policy":{"maxPayload":26214400,"tickIntervalMs":30000,"attachments":{}},"controlUiLinkReaders":[]}"#).unwrap();
        let hello = HelloOk::parse(&payload).unwrap();
        assert_eq!((hello.protocol, hello.server.version.as_str()), (4, "2026.9.6"));
        assert_eq!(hello.auth.device_token.as_deref(), Some("dt-secret"));
        assert_eq!(hello.silence_limit(), Duration::from_secs(60));
        assert!(!format!("{hello:?}").contains("dt-secret"), "the device token is never shown");
        assert!(HelloOk::parse(&serde_json::json!({"type":"other"})).is_none());
    }

    #[test]
    fn the_connect_request_signs_the_challenge() {
        let device = DeviceIdentity::generate().unwrap();
        let challenge = Challenge { nonce: "n-1".into(), ts: 1795307049617 };
        let scopes = vec!["operator.read".to_owned(), "operator.write".to_owned()];
        let text = connect_request(
            "c1",
            &ClientInfo::default(),
            &scopes,
            &Credentials { token: Some("tok"), device_token: None, device: Some(&device) },
            &challenge,
        );
        let frame: Value = serde_json::from_str(&text).unwrap();
        let params = &frame["params"];
        assert_eq!(
            (params["minProtocol"].as_u64(), params["maxProtocol"].as_u64()),
            (Some(4), Some(4))
        );
        assert_eq!(params["client"]["id"], "gateway-client");
        assert_eq!(params["auth"]["token"], "tok");
        assert_eq!(params["device"]["id"], device.id());
        assert_eq!(params["device"]["signedAt"], 1795307049617i64);
        assert_eq!(params["device"]["nonce"], "n-1");
        // Without a device nothing is signed; without a token, the device token is sent.
        let text = connect_request(
            "c2",
            &ClientInfo::default(),
            &scopes,
            &Credentials { token: None, device_token: Some("dt"), device: None },
            &challenge,
        );
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert!(frame["params"].get("device").is_none());
        assert_eq!(frame["params"]["auth"]["deviceToken"], "dt");
        let challenge_frame = serde_json::json!({"type":"event","event":"connect.challenge","payload":{"nonce":"b667","ts":5,"capabilities":[]}});
        assert_eq!(
            Challenge::parse(&challenge_frame),
            Some(Challenge { nonce: "b667".into(), ts: 5 })
        );
        assert_eq!(Challenge::parse(&serde_json::json!({"type":"event","event":"tick"})), None);
    }
}
