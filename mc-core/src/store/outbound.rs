//! Storage of the gateways the relay dials (docs/openclaw.md) and of the relay's own settings (its
//! OpenClaw device key).

use async_trait::async_trait;

use super::StoreResult;
use crate::ids::{GatewayId, OrgId};
use crate::model::{Gateway, OutboundLink, Timestamp};

/// Gateways the relay dials, and instance-wide settings.
#[async_trait]
pub trait OutboundStore: Send + Sync {
    /// Stores a gateway and how to dial it, together or not at all.
    /// `Conflict(GatewayName)` if the organization has a gateway of that name; `NotFound` if
    /// the organization does not exist.
    async fn create_outbound_gateway(
        &self,
        gateway: &Gateway,
        link: &OutboundLink,
    ) -> StoreResult<()>;
    /// How to dial this gateway (`None` for gateways that dial the relay).
    async fn get_outbound_link(&self, gateway: GatewayId) -> StoreResult<Option<OutboundLink>>;
    /// Every gateway the relay dials, in gateway id order.
    async fn list_outbound_links(&self) -> StoreResult<Vec<OutboundLink>>;
    /// How many gateways the relay dials for the organization.
    async fn count_outbound_gateways(&self, org: OrgId) -> StoreResult<u64>;
    /// Keeps the device token the gateway issued. `NotFound` if there is no such link.
    async fn set_outbound_device_token(
        &self,
        gateway: GatewayId,
        device_token: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Records how the last attempt went: the pairing request to approve and the error, both
    /// cleared by `None`. `NotFound` if there is no such link.
    async fn set_outbound_state(
        &self,
        gateway: GatewayId,
        pairing_request_id: Option<&str>,
        last_error: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// The setting `key`, storing `value` first if it has none: every caller (and every
    /// instance) racing to set it gets the same, first stored, value.
    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String>;
}
