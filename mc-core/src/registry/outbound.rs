//! Gateways the relay dials (docs/openclaw.md): an admin adds one with its address and token; the
//! transport's pool reports how each connection goes, which becomes the gateway's status.

use super::{RELAY_TOKEN_PREFIX, RegistryService};
use crate::admin::require_admin;
use crate::auth::Principal;
use crate::auth::refresh::random_secret;
use crate::error::{Error, Result};
use crate::ids::GatewayId;
use crate::model::{AgentReport, ConnectionInfo, Gateway, GatewayStatus, OutboundLink, SecretHash};
use crate::store::StoreError;
use crate::validate;

/// The longest gateway token accepted.
pub const MAX_GATEWAY_TOKEN: usize = 512;

/// What an admin sends to add a gateway the relay dials. The token is never in `Debug`.
#[derive(Clone)]
pub struct OutboundGatewayRequest {
    /// Unique name in the organization, 1–64 of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// The gateway's `ws://` or `wss://` address.
    pub url: String,
    /// Its shared token (`gateway.auth.token`), if it uses one.
    pub token: Option<String>,
}

impl std::fmt::Debug for OutboundGatewayRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundGatewayRequest")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl OutboundGatewayRequest {
    /// Checks every field; nothing is stored when this fails.
    pub fn validate(&self) -> Result<()> {
        validate::identifier("name", &self.name, 64, false)?;
        validate::ws_url("url", &self.url)?;
        // A link-local host (a cloud's metadata service) is never dialled; a name that
        // resolves to one is refused when dialled.
        if let Some(ip) = mc_openclaw::address::literal_host(&self.url)
            && let Err(refused) = mc_openclaw::address::AddressPolicy::new().check(ip)
        {
            return Err(Error::AddressRefused(refused.to_string()));
        }
        if let Some(token) = &self.token
            && (token.is_empty()
                || token.len() > MAX_GATEWAY_TOKEN
                || token.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(Error::invalid(
                "token",
                format!("must be 1–{MAX_GATEWAY_TOKEN} characters without spaces"),
            ));
        }
        Ok(())
    }
}

impl RegistryService {
    /// Adds a gateway the relay dials. It starts `pending`; the transport's pool connects to
    /// it and reports back. `Conflict` if the organization has a gateway of that name.
    pub async fn add_outbound_gateway(
        &self,
        admin: &Principal,
        request: OutboundGatewayRequest,
    ) -> Result<(Gateway, OutboundLink)> {
        require_admin(admin)?;
        request.validate()?;
        let most = self.config.max_outbound_gateways;
        if self.store.count_outbound_gateways(admin.organization_id).await? >= u64::from(most) {
            return Err(Error::Conflict(format!(
                "the organization has {most} gateways the relay dials, the most it may; delete one first"
            )));
        }
        let now = self.clock.now();
        // Nobody holds this token: a dialled gateway never authenticates to the relay.
        let unusable = random_secret(RELAY_TOKEN_PREFIX)?;
        let gateway = Gateway {
            id: GatewayId::new(),
            organization_id: admin.organization_id,
            name: request.name,
            url: Some(request.url.clone()),
            workspace_root: None,
            version: None,
            capabilities: Vec::new(),
            status: GatewayStatus::Pending,
            relay_token_hash: SecretHash::of(&unusable),
            last_heartbeat_at: None,
            connection_info: ConnectionInfo::default(),
            auto_registered: false,
            created_at: now,
            updated_at: now,
        };
        let link = OutboundLink {
            gateway_id: gateway.id,
            url: request.url,
            token: request.token,
            device_token: None,
            pairing_request_id: None,
            last_error: None,
            updated_at: now,
        };
        self.store.create_outbound_gateway(&gateway, &link).await?;
        let metadata = serde_json::json!({ "name": gateway.name, "url": link.url });
        self.record(
            gateway.organization_id,
            "gateway.added",
            format!("user:{}", admin.user_id),
            gateway.id,
            metadata,
        )
        .await?;
        Ok((gateway, link))
    }

    /// How the relay dials this gateway of the admin's organization (`None` for a gateway
    /// that dials the relay).
    pub async fn outbound_link(
        &self,
        admin: &Principal,
        id: GatewayId,
    ) -> Result<Option<OutboundLink>> {
        self.gateway(admin, id).await?;
        Ok(self.store.get_outbound_link(id).await?)
    }

    /// Every gateway the relay dials, of every organization (for the transport's pool).
    pub async fn all_outbound_links(&self) -> Result<Vec<OutboundLink>> {
        Ok(self.store.list_outbound_links().await?)
    }

    /// How to dial one gateway, without an admin (for the transport's pool).
    pub async fn outbound_link_of(&self, id: GatewayId) -> Result<Option<OutboundLink>> {
        Ok(self.store.get_outbound_link(id).await?)
    }

    /// The pool connected: the agents it read from `agents.list` (if it could) replace the
    /// gateway's, and
    /// any earlier error or pairing request is cleared. (Going `online` is the relay's part,
    /// when the link is attached.)
    pub async fn outbound_connected(
        &self,
        id: GatewayId,
        version: Option<&str>,
        agents: Option<&[AgentReport]>,
    ) -> Result<()> {
        if let Some(agents) = agents {
            super::validate_input::validate_agents("agents", agents)?;
        }
        let now = self.clock.now();
        self.store.set_outbound_state(id, None, None, now).await?;
        let mut gateway = self.store.get_gateway(id).await?.ok_or(Error::NotFound("gateway"))?;
        if let Some(version) = version
            && gateway.version.as_deref() != Some(version)
            && validate::plain_text("version", version, 64).is_ok()
        {
            gateway.version = Some(version.to_owned());
            gateway.connection_info.version = Some(version.to_owned());
            gateway.updated_at = now;
            self.store.update_gateway(&gateway).await?;
        }
        match agents {
            Some(agents) => self.sync_agents(&gateway, agents, now).await,
            None => Ok(()),
        }
    }

    /// The pool's attempt was refused: the gateway is `error`, with the reason and the
    /// pairing request to approve (if that is why) kept for `GET /gateways/{id}`.
    pub async fn outbound_refused(
        &self,
        id: GatewayId,
        pairing_request_id: Option<&str>,
        reason: &str,
    ) -> Result<()> {
        let now = self.clock.now();
        // The gateway's words and request id are bounded before they are kept.
        let reason: String = reason.chars().take(512).collect();
        let request =
            pairing_request_id.filter(|r| validate::plain_text("request", r, 128).is_ok());
        self.store.set_outbound_state(id, request, Some(&reason), now).await?;
        // Attempts count as signs of life, so the liveness sweep leaves `error` visible.
        self.store.touch_gateway(id, now, None).await?;
        let change = self.store.set_gateway_status(id, GatewayStatus::Error, now).await?;
        self.announce(&change, format!("gateway:{id}")).await
    }

    /// The pool's attempt did not reach a `connect` answer: the reason is kept for
    /// `GET /gateways/{id}`; a gateway never connected stays `pending`, one that was online
    /// is `offline` already (its link was detached).
    pub async fn outbound_unreachable(&self, id: GatewayId, reason: &str) -> Result<()> {
        let reason: String = reason.chars().take(512).collect();
        self.store.set_outbound_state(id, None, Some(&reason), self.clock.now()).await?;
        Ok(())
    }

    /// Keeps the device token the gateway issued to the relay, for the next connects.
    pub async fn keep_device_token(&self, id: GatewayId, device_token: &str) -> Result<()> {
        match self.store.set_outbound_device_token(id, Some(device_token), self.clock.now()).await {
            Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}
