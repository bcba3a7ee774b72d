//! The handshake as data: the gateway's `connect.challenge`, the client's `connect`, the
//! gateway's `hello-ok` (with its policy), and what a refused `connect` means.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::frame::{ErrorShape, PROTOCOL_VERSION};

/// The method a client sends first.
pub const CONNECT: &str = "connect";

/// Scopes a relay asks for: reading and writing chats.
pub const SCOPE_READ: &str = "operator.read";
/// See [`SCOPE_READ`].
pub const SCOPE_WRITE: &str = "operator.write";
/// Receiving and resolving approvals.
pub const SCOPE_APPROVALS: &str = "operator.approvals";
/// Receiving and answering questions.
pub const SCOPE_QUESTIONS: &str = "operator.questions";

/// `connect.challenge`: what the client's device signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// To sign.
    pub nonce: String,
    /// Server time (ms), signed as `signedAt`.
    pub ts: i64,
    /// Fields this crate does not know (`capabilities`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Who the client says it is (`connect.client`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    /// One of the gateway's known ids; a server-side relay is `gateway-client`.
    pub id: String,
    /// This program's version.
    pub version: String,
    /// `linux`, …
    pub platform: String,
    /// `backend` for a server-side relay.
    pub mode: String,
    /// The name shown to the gateway's operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The device family, signed with the device's proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for ClientInfo {
    fn default() -> Self {
        Self {
            id: "gateway-client".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            platform: std::env::consts::OS.into(),
            mode: "backend".into(),
            display_name: Some("Mission Control relay".into()),
            device_family: None,
            extra: Map::new(),
        }
    }
}

/// `connect.auth`: the shared token or the device token issued earlier.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectAuth {
    /// The gateway's shared token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The device token a previous `hello-ok` issued to this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for ConnectAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("device_token", &self.device_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl ConnectAuth {
    /// The token the device's signature covers: the first of `token` and `deviceToken` sent.
    pub fn signed_token(&self) -> &str {
        self.token.as_deref().or(self.device_token.as_deref()).unwrap_or("")
    }
}

/// `connect.device`: the device's proof of its key, bound to the challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProof {
    /// Lowercase hex SHA-256 of the raw public key.
    pub id: String,
    /// The raw public key, base64url without padding.
    pub public_key: String,
    /// Ed25519 over [`ConnectParams::signed_payload`], base64url without padding.
    pub signature: String,
    /// The challenge's `ts`.
    pub signed_at: i64,
    /// The challenge's nonce.
    pub nonce: String,
}

/// `connect`'s parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectParams {
    /// The lowest protocol the client speaks.
    pub min_protocol: u32,
    /// The highest.
    pub max_protocol: u32,
    /// Who the client is.
    pub client: ClientInfo,
    /// `operator`.
    pub role: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// Client capabilities (`approvals`, `tool-events`, …).
    pub caps: Vec<String>,
    /// Credentials.
    pub auth: ConnectAuth,
    /// The client's user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The device's proof, for gateways that pair devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceProof>,
    /// Fields this crate does not know (`locale`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ConnectParams {
    /// An operator's `connect` as `client`, asking for `scopes` and `caps`.
    pub fn operator(client: ClientInfo, scopes: Vec<String>, caps: Vec<String>) -> Self {
        let user_agent = Some(format!("mission-control-relay/{}", client.version));
        Self {
            min_protocol: PROTOCOL_VERSION,
            max_protocol: PROTOCOL_VERSION,
            client,
            role: "operator".into(),
            scopes,
            caps,
            auth: ConnectAuth::default(),
            user_agent,
            device: None,
            extra: Map::new(),
        }
    }

    /// The text a device signs (payload version 3): `v3|device|client id|client
    /// mode|role|scopes,|signedAt|token|nonce|platform|deviceFamily`, platform and family
    /// trimmed and ASCII-lowercased.
    pub fn signed_payload(&self, device_id: &str, challenge: &Challenge) -> String {
        let lower = |s: &str| s.trim().to_ascii_lowercase();
        format!(
            "v3|{device_id}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.client.id,
            self.client.mode,
            self.role,
            self.scopes.join(","),
            challenge.ts,
            self.auth.signed_token(),
            challenge.nonce,
            lower(&self.client.platform),
            lower(self.client.device_family.as_deref().unwrap_or("")),
        )
    }
}

/// `hello-ok`: the answer to a successful `connect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloOk {
    /// Always `hello-ok`.
    #[serde(rename = "type")]
    pub kind: String,
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
    /// Fields this crate does not know (`features`, `snapshot`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `hello-ok.server`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloServer {
    /// e.g. `2026.9.6`.
    #[serde(default)]
    pub version: String,
    /// This connection's id on the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_id: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `hello-ok.auth`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloAuth {
    /// `token`, `device-token`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Issued to a paired device: present it on the next connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// Fields this crate does not know (`role`, `recoveryScope`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for HelloAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelloAuth")
            .field("method", &self.method)
            .field("scopes", &self.scopes)
            .field("device_token", &self.device_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// `hello-ok.policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloPolicy {
    /// How often the gateway sends `tick` (ms).
    #[serde(default = "default_tick")]
    pub tick_interval_ms: u64,
    /// Largest frame after the handshake.
    #[serde(default)]
    pub max_payload: u64,
    /// Attachment limits of `chat.send`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<AttachmentPolicy>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `hello-ok.policy.attachments`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentPolicy {
    /// Largest attachment (bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Largest image (bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_image_bytes: Option<u64>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_tick() -> u64 {
    30_000
}

impl Default for HelloPolicy {
    fn default() -> Self {
        Self {
            tick_interval_ms: default_tick(),
            max_payload: 0,
            attachments: None,
            extra: Map::new(),
        }
    }
}

impl HelloOk {
    /// Whether this is a `hello-ok` (the answer's `type`).
    pub fn is_hello(&self) -> bool {
        self.kind == "hello-ok"
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
    #[error("protocol mismatch: the gateway expects protocol {}, this relay speaks {}", expected.map_or("?".to_owned(), |v| v.to_string()), PROTOCOL_VERSION)]
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
    pub fn classify(error: &ErrorShape) -> Self {
        let detail_code = error.detail("code").unwrap_or_default();
        let code = if detail_code.is_empty() { error.code.as_str() } else { detail_code };
        let request_id = || error.detail("requestId").map(str::to_owned);
        if error.code == "UNAVAILABLE" {
            let ms = error.retry_after_ms.unwrap_or(500).clamp(100, 30_000);
            return Self::Starting { retry_after: Duration::from_millis(ms) };
        }
        match code {
            "PROTOCOL_MISMATCH" => Self::ProtocolMismatch {
                expected: error
                    .detail_number("expectedProtocol")
                    .and_then(|v| u32::try_from(v).ok()),
            },
            "PAIRING_REQUIRED" | "NOT_PAIRED" => Self::PairingRequired { request_id: request_id() },
            _ if error.code == "NOT_PAIRED" => Self::PairingRequired { request_id: request_id() },
            c if c.starts_with("AUTH_")
                || c.starts_with("DEVICE_AUTH")
                || c == "DEVICE_IDENTITY_REQUIRED" =>
            {
                Self::Unauthorized { code: code.to_owned(), message: error.message.clone() }
            }
            _ => Self::Refused { code: code.to_owned(), message: error.message.clone() },
        }
    }

    /// What failed, in the relay's words only: the gateway's own message is left out (it is
    /// remote content, shown to admins), and its code is kept only when it looks like one
    /// (`A-Z`, `0-9`, `_`, at most 64).
    pub fn summary(&self) -> String {
        let code = |code: &str| {
            let plain = !code.is_empty()
                && code.len() <= 64
                && code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if plain { code.to_owned() } else { "?".to_owned() }
        };
        match self {
            Self::Unauthorized { code: c, .. } => {
                format!("unauthorized ({}): check the gateway's token", code(c))
            }
            Self::Refused { code: c, .. } => format!("refused by the gateway ({})", code(c)),
            Self::PairingRequired { request_id: Some(id) }
                if id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) =>
            {
                Self::PairingRequired { request_id: None }.to_string()
            }
            other => other.to_string(),
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

    #[test]
    fn a_failures_summary_leaves_the_gateways_words_out() {
        let unauthorized = ConnectFailure::Unauthorized {
            code: "AUTH_TOKEN_MISMATCH".into(),
            message: "<script>alert(1)</script> see http://evil".into(),
        };
        assert_eq!(
            unauthorized.summary(),
            "unauthorized (AUTH_TOKEN_MISMATCH): check the gateway's token"
        );
        let refused =
            ConnectFailure::Refused { code: "weird code <b>".into(), message: "x".into() };
        assert_eq!(refused.summary(), "refused by the gateway (?)");
        let pairing = ConnectFailure::PairingRequired { request_id: Some("a b".into()) };
        assert!(!pairing.summary().contains("a b"));
        let pairing = ConnectFailure::PairingRequired { request_id: Some("req-1".into()) };
        assert!(pairing.summary().contains("req-1"));
    }

    fn error(json: &str) -> ErrorShape {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_connect_failure_is_classified() {
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
        let token = error(
            r#"{"code":"INVALID_REQUEST","message":"unauthorized: gateway token mismatch (provide gateway auth token)","details":{"code":"AUTH_TOKEN_MISMATCH","authReason":"token_mismatch","canRetryWithDeviceToken":false}}"#,
        );
        assert!(matches!(
            ConnectFailure::classify(&token),
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
        let forbidden = error(r#"{"code":"FORBIDDEN","message":"x"}"#);
        assert!(ConnectFailure::classify(&forbidden).retry_after().is_none());
    }

    #[test]
    fn the_signed_payload_is_version_3() {
        let mut params = ConnectParams::operator(
            ClientInfo { platform: " Linux ".into(), ..ClientInfo::default() },
            vec![SCOPE_READ.into(), SCOPE_WRITE.into()],
            vec![],
        );
        params.auth.device_token = Some("dt".into());
        let challenge = Challenge { nonce: "n-1".into(), ts: 1795307049617, extra: Map::new() };
        assert_eq!(
            params.signed_payload("dev", &challenge),
            "v3|dev|gateway-client|backend|operator|operator.read,operator.write|1795307049617|dt|n-1|linux|"
        );
        assert!(!format!("{:?}", params.auth).contains("dt\""), "no token in Debug");
    }

    #[test]
    fn hello_ok_is_read_loosely_and_hides_the_device_token() {
        let hello: HelloOk = serde_json::from_str(r#"{"type":"hello-ok","protocol":4,"server":{"version":"2026.9.6","buildId":"x","connId":"c1"},"features":{"methods":["health"]},"snapshot":{},"auth":{"method":"token","role":"operator","scopes":["operator.read"],"deviceToken":"dt-secret","issuedAtMs":1},"policy":{"maxPayload":26214400,"tickIntervalMs":30000,"attachments":{"maxBytes":19464192,"maxImageBytes":6291456}}}"#).unwrap();
        assert!(hello.is_hello());
        assert_eq!((hello.protocol, hello.server.version.as_str()), (4, "2026.9.6"));
        assert_eq!(hello.auth.device_token.as_deref(), Some("dt-secret"));
        assert_eq!(hello.silence_limit(), Duration::from_secs(60));
        let limits = hello.policy.attachments.as_ref().unwrap();
        assert_eq!((limits.max_bytes, limits.max_image_bytes), (Some(19464192), Some(6291456)));
        assert!(!format!("{hello:?}").contains("dt-secret"), "the device token is never shown");
    }
}
