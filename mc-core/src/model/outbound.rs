//! [`OutboundLink`]: how the relay dials a gateway an admin added (docs/openclaw.md).

use crate::ids::GatewayId;

use super::Timestamp;

/// How the relay reaches and authenticates to an OpenClaw gateway it dials itself, and where
/// that stands. The tokens never appear in `Debug` output, and no API returns them.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundLink {
    /// The gateway (its record holds the name, status and agents).
    pub gateway_id: GatewayId,
    /// `ws://` or `wss://` address of the gateway.
    pub url: String,
    /// The gateway's shared token, if it uses one.
    pub token: Option<String>,
    /// The device token the gateway issued to the relay's device, once it did.
    pub device_token: Option<String>,
    /// The pairing request an operator must approve (`openclaw devices approve <id>`).
    pub pairing_request_id: Option<String>,
    /// Why the last connection attempt failed, if it did.
    pub last_error: Option<String>,
    /// When this record last changed.
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for OutboundLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("OutboundLink")
            .field("gateway_id", &self.gateway_id)
            .field("url", &self.url)
            .field("token", &redacted(&self.token))
            .field("device_token", &redacted(&self.device_token))
            .field("pairing_request_id", &self.pairing_request_id)
            .field("last_error", &self.last_error)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}
