//! The gateway registry (docs/gateway-link.md): registration tokens, register / heartbeat / deregister, and
//! liveness.
//!
//! Gateways register with a token an admin handed out and get a relay token back; they prove
//! themselves with it on every heartbeat (HTTP or socket). A single sweeper per process marks
//! gateways `offline` after three missed heartbeat intervals with one store statement, however
//! many gateways there are. What a gateway reports about itself may change its status or its
//! agents only so often (`flapping`): past that, the changes wait for a later heartbeat.

mod admin;
mod config;
mod flapping;
mod liveness;
mod outbound;
mod validate_input;

use std::net::IpAddr;
use std::sync::Arc;

use chrono::TimeDelta;

pub use config::RegistryConfig;
pub use outbound::{MAX_GATEWAY_TOKEN, OutboundGatewayRequest};
pub use validate_input::{
    GatewayRegistration, Heartbeat, MAX_AGENTS, MAX_CAPABILITIES, ReportedStatus,
};

use crate::auth::refresh::random_secret;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::events::{Events, RelayEvent};
use crate::ids::{GatewayId, OrgId, RegistrationTokenId};
use crate::model::{
    ActivityEvent, AgentReport, ConnectionInfo, Gateway, GatewayStatus, RegistrationToken,
    SecretHash, Timestamp,
};
use crate::store::{ConsumeOutcome, StatusChange, Store, StoreError};

/// What a heartbeat (HTTP or socket) reports besides the gateway's status.
struct Report {
    /// Where it came from (HTTP heartbeats).
    ip: Option<IpAddr>,
    metrics: Option<crate::model::GatewayMetrics>,
    agents: Option<Vec<AgentReport>>,
}

/// Prefix of registration tokens (docs/gateway-link.md).
pub const REGISTRATION_TOKEN_PREFIX: &str = "gw_reg_";
/// Prefix of relay tokens.
pub const RELAY_TOKEN_PREFIX: &str = "gw_relay_";

/// The relay token hash of a gateway an admin released: no token has it, and the next
/// registration under the gateway's name may claim the gateway (same id, agents, history).
pub(crate) const RELEASED: SecretHash = SecretHash::from_bytes([0; 32]);

/// A newly created registration token and its secret, which is shown this once.
#[derive(Clone)]
pub struct IssuedRegistrationToken {
    /// The stored token (hash only).
    pub token: RegistrationToken,
    /// The `gw_reg_…` secret to hand to the gateway operator.
    pub secret: String,
}

/// What a gateway gets back from registering.
#[derive(Clone)]
pub struct Registration {
    /// Its id (kept across re-registration under the same name).
    pub gateway_id: GatewayId,
    /// The secret to authenticate heartbeats and its relay socket with.
    pub relay_token: String,
    /// How often it must heartbeat.
    pub heartbeat_interval_seconds: u64,
    /// Whether an existing gateway of that name was re-registered.
    pub reregistered: bool,
}

crate::debug_redacted!(IssuedRegistrationToken { token } secret { secret });
crate::debug_redacted!(Registration { gateway_id, heartbeat_interval_seconds, reregistered } secret { relay_token });

/// The gateway registry.
#[derive(Debug, Clone)]
pub struct RegistryService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    events: Events,
    config: RegistryConfig,
    /// How often each gateway's reports may change its status or agents.
    changes: flapping::ChangeBudget,
}

impl RegistryService {
    /// The registry over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        events: Events,
        config: RegistryConfig,
    ) -> Self {
        let changes = flapping::ChangeBudget::new(config.max_changes_per_minute);
        Self { store, clock, events, config, changes }
    }

    /// Its settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    pub(crate) async fn record(
        &self,
        org: OrgId,
        kind: &str,
        actor: String,
        gateway: GatewayId,
        metadata: serde_json::Value,
    ) -> Result<()> {
        let event = ActivityEvent::new(org, kind, actor, "gateway", gateway, self.clock.now())
            .with_metadata(metadata);
        crate::events::record_activity(self.store.as_ref(), &self.events, event).await
    }

    /// Writes the activity event of a status change and publishes it.
    pub(crate) async fn announce(&self, change: &StatusChange, actor: String) -> Result<()> {
        let gateway = &change.gateway;
        if change.previous == gateway.status {
            return Ok(());
        }
        let kind = format!("gateway.{}", gateway.status);
        let metadata =
            serde_json::json!({ "previous": change.previous.as_str(), "name": gateway.name });
        self.record(gateway.organization_id, &kind, actor, gateway.id, metadata).await?;
        self.events.publish(RelayEvent::GatewayStatusChanged {
            organization_id: gateway.organization_id,
            gateway_id: gateway.id,
            previous: change.previous,
            current: gateway.status,
        });
        Ok(())
    }

    async fn sync_agents(
        &self,
        gateway: &Gateway,
        reports: &[AgentReport],
        at: Timestamp,
    ) -> Result<()> {
        let sync = self.store.sync_agents(gateway.id, reports, at).await?;
        if !(sync.added.is_empty() && sync.returned.is_empty() && sync.gone.is_empty()) {
            self.events.publish(RelayEvent::AgentsChanged {
                organization_id: gateway.organization_id,
                gateway_id: gateway.id,
                added: sync.added,
                returned: sync.returned,
                gone: sync.gone,
            });
        }
        Ok(())
    }

    // Registration's checks and writes in the order they must happen (token, name, re-register,
    // agents, activity); each step is short and they share the transaction's values.
    /// Registers a gateway with a registration token (docs/gateway-link.md). A gateway whose name exists in
    /// the organization is re-registered: same id, a new relay token, the old one revoked.
    /// Every field is checked before the token is used, so a bad request costs no use.
    pub async fn register(
        &self,
        request: GatewayRegistration,
        client_ip: Option<IpAddr>,
    ) -> Result<Registration> {
        request.validate()?;
        let now = self.clock.now();
        let org = request.organization_id;
        if !request.registration_token.starts_with(REGISTRATION_TOKEN_PREFIX) {
            return Err(Error::RegistrationRefused("not a registration token"));
        }
        // A name that exists belongs to its gateway: only that gateway (its relay token) or a
        // release by an admin lets a registration take it, checked before the token is used.
        if let Some(existing) = self.store.find_gateway_by_name(org, &request.name).await? {
            claimable(&existing, request.relay_token.as_deref())?;
        }
        let hash = SecretHash::of(&request.registration_token);
        let used = match self.store.consume_registration_token(org, &hash, now).await? {
            ConsumeOutcome::Consumed(token) => token,
            ConsumeOutcome::Unknown => {
                return Err(Error::RegistrationRefused("unknown token for this organization"));
            }
            ConsumeOutcome::Revoked => {
                return Err(Error::RegistrationRefused("the token was revoked"));
            }
            ConsumeOutcome::Expired => {
                return Err(Error::RegistrationRefused("the token has expired"));
            }
            ConsumeOutcome::UsedUp => {
                return Err(Error::RegistrationRefused("the token has no uses left"));
            }
        };
        let relay_token = random_secret(RELAY_TOKEN_PREFIX)?;
        let info = ConnectionInfo {
            ip: client_ip.map(|ip| ip.to_string()),
            version: request.version.clone(),
            capabilities: request.capabilities.clone(),
            metrics: None,
            metrics_at: None,
        };
        let mut fresh = Gateway {
            id: GatewayId::new(),
            organization_id: org,
            name: request.name.clone(),
            url: request.url.clone(),
            workspace_root: request.workspace_root.clone(),
            version: request.version.clone(),
            capabilities: request.capabilities.clone(),
            status: GatewayStatus::Pending,
            relay_token_hash: SecretHash::of(&relay_token),
            last_heartbeat_at: None,
            connection_info: info,
            auto_registered: true,
            created_at: now,
            updated_at: now,
        };
        // Create, or re-register the gateway of that name (also when one appears concurrently).
        let mut existing = self.store.find_gateway_by_name(org, &request.name).await?;
        if existing.is_none() {
            match self.store.create_gateway(&fresh).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => {
                    existing = self.store.find_gateway_by_name(org, &request.name).await?;
                }
                Err(err) => return Err(err.into()),
            }
        }
        let reregistered = existing.is_some();
        let mut previous_status = GatewayStatus::Pending;
        if let Some(old) = existing {
            claimable(&old, request.relay_token.as_deref())?;
            previous_status = old.status;
            fresh.id = old.id;
            fresh.created_at = old.created_at;
            fresh.last_heartbeat_at = old.last_heartbeat_at;
            fresh.connection_info.metrics = old.connection_info.metrics;
            fresh.connection_info.metrics_at = old.connection_info.metrics_at;
            self.store.update_gateway(&fresh).await?;
            self.events.publish(RelayEvent::GatewayCredentialsRevoked { gateway_id: fresh.id });
        }
        if let Some(agents) = &request.agents {
            self.sync_agents(&fresh, agents, now).await?;
        }
        let kind = if reregistered { "gateway.reregistered" } else { "gateway.registered" };
        let metadata = serde_json::json!({
            "name": fresh.name,
            "registration_token_id": used.id,
            "ip": fresh.connection_info.ip,
        });
        self.record(org, kind, format!("gateway:{}", fresh.id), fresh.id, metadata).await?;
        if previous_status != GatewayStatus::Pending {
            let change = StatusChange { previous: previous_status, gateway: fresh.clone() };
            self.announce(&change, format!("gateway:{}", fresh.id)).await?;
        }
        Ok(Registration {
            gateway_id: fresh.id,
            relay_token,
            heartbeat_interval_seconds: self.config.heartbeat_interval.as_secs(),
            reregistered,
        })
    }

    /// An admin lets the next registration under this gateway's name claim it (a
    /// reinstalled gateway that lost its relay token): the current token is revoked (its
    /// socket closes), the gateway goes `offline`, and its id, agents, assignments and history
    /// wait for the gateway that registers next.
    pub async fn release_gateway(
        &self,
        admin: &crate::auth::Principal,
        id: GatewayId,
    ) -> Result<Gateway> {
        let mut gateway = self.gateway(admin, id).await?;
        if !gateway.auto_registered {
            return Err(Error::Conflict(
                "this gateway is dialled by the relay; it does not register".into(),
            ));
        }
        let previous = gateway.status;
        gateway.relay_token_hash = RELEASED;
        gateway.status = GatewayStatus::Offline;
        gateway.updated_at = self.clock.now();
        self.store.update_gateway(&gateway).await?;
        self.events.publish(RelayEvent::GatewayCredentialsRevoked { gateway_id: id });
        let actor = format!("user:{}", admin.user_id);
        let metadata = serde_json::json!({ "name": gateway.name });
        self.record(gateway.organization_id, "gateway.released", actor.clone(), id, metadata)
            .await?;
        self.announce(&StatusChange { previous, gateway: gateway.clone() }, actor).await?;
        Ok(gateway)
    }

    /// The gateway with this id if `relay_token` is its current token; the same error
    /// otherwise, whether the gateway exists or not.
    pub async fn authenticate_gateway(&self, id: GatewayId, relay_token: &str) -> Result<Gateway> {
        if relay_token.len() > 256 {
            return Err(Error::GatewayUnauthorized);
        }
        let gateway = self.store.get_gateway(id).await?.ok_or(Error::GatewayUnauthorized)?;
        if gateway.relay_token_hash != SecretHash::of(relay_token) {
            return Err(Error::GatewayUnauthorized);
        }
        Ok(gateway)
    }

    /// Records a heartbeat (docs/gateway-link.md): last seen, IP, metrics, agents; `online` unless the
    /// gateway reports an error. Returns the gateway after the heartbeat.
    pub async fn heartbeat(&self, beat: Heartbeat, client_ip: Option<IpAddr>) -> Result<Gateway> {
        beat.validate()?;
        let gateway = self.authenticate_gateway(beat.gateway_id, &beat.relay_token).await?;
        let report = Report { ip: client_ip, metrics: beat.metrics, agents: beat.agents };
        self.apply_report(gateway, report, beat.status).await
    }

    /// Records what a gateway reported about itself: seen now, its IP and metrics; then, if
    /// they change anything and the gateway's change budget allows, its agents and status.
    /// Returns the gateway after it.
    async fn apply_report(
        &self,
        gateway: Gateway,
        report: Report,
        status: ReportedStatus,
    ) -> Result<Gateway> {
        let now = self.clock.now();
        let mut info = gateway.connection_info.clone();
        if let Some(ip) = report.ip {
            info.ip = Some(ip.to_string());
        }
        let reported = report.metrics.clone();
        if let Some(metrics) = report.metrics {
            info.metrics = Some(metrics);
            info.metrics_at = Some(now);
        }
        let mut gateway = self.store.touch_gateway(gateway.id, now, Some(&info)).await?;
        self.announce_metrics(&gateway, reported, now);
        let wanted = match status {
            ReportedStatus::Online => GatewayStatus::Online,
            ReportedStatus::Error => GatewayStatus::Error,
        };
        let agents_change = match &report.agents {
            Some(agents) => self.agents_would_change(&gateway, agents, now).await?,
            None => false,
        };
        if !agents_change && gateway.status == wanted {
            return Ok(gateway);
        }
        if !self.changes.take(gateway.id, now) {
            tracing::debug!(gateway = %gateway.id, "gateway changes too often: its report waits");
            metrics::counter!("mc_gateway_changes_deferred_total").increment(1);
            return Ok(gateway);
        }
        if let (true, Some(agents)) = (agents_change, &report.agents) {
            self.sync_agents(&gateway, agents, now).await?;
        }
        if gateway.status != wanted {
            let change = self.store.set_gateway_status(gateway.id, wanted, now).await?;
            self.announce(&change, format!("gateway:{}", gateway.id)).await?;
            gateway = change.gateway;
        }
        Ok(gateway)
    }

    /// Whether `reports` would change the gateway's stored agents.
    async fn agents_would_change(
        &self,
        gateway: &Gateway,
        reports: &[AgentReport],
        at: Timestamp,
    ) -> Result<bool> {
        let existing = self.store.list_gateway_agents(gateway.id).await?;
        let plan = crate::store::plan_agent_sync(gateway.id, &existing, reports, at);
        Ok(!(plan.insert.is_empty() && plan.update.is_empty()))
    }

    /// Tells the admins' live subscriptions (`gateway.metrics`) what a heartbeat reported.
    fn announce_metrics(
        &self,
        gateway: &Gateway,
        metrics: Option<crate::model::GatewayMetrics>,
        at: crate::Timestamp,
    ) {
        if let Some(metrics) = metrics {
            self.events.publish(RelayEvent::GatewayMetricsReported {
                organization_id: gateway.organization_id,
                gateway_id: gateway.id,
                metrics,
                at,
            });
        }
    }

    /// Its relay socket authenticated (`up`) or ended without coming back (`!up`): `online`
    /// with a heartbeat now, or `offline`. Announced like every status change.
    pub async fn set_link_status(&self, id: GatewayId, up: bool) -> Result<()> {
        let now = self.clock.now();
        if up {
            self.store.touch_gateway(id, now, None).await?;
        }
        let wanted = if up { GatewayStatus::Online } else { GatewayStatus::Offline };
        let change = self.store.set_gateway_status(id, wanted, now).await?;
        self.announce(&change, format!("gateway:{id}")).await
    }

    /// A heartbeat sent on the gateway's authenticated socket: like [`heartbeat`]
    /// (metrics, agents, status) without the relay token.
    ///
    /// [`heartbeat`]: Self::heartbeat
    pub async fn link_heartbeat(
        &self,
        id: GatewayId,
        beat: crate::protocol::SocketHeartbeat,
    ) -> Result<Gateway> {
        if let Some(metrics) = &beat.metrics {
            validate_input::validate_metrics(metrics)?;
        }
        if let Some(agents) = &beat.agents {
            validate_input::validate_agents("agents", agents)?;
        }
        let status = match beat.status.as_deref() {
            None | Some("online") => ReportedStatus::Online,
            Some("error") => ReportedStatus::Error,
            Some(other) => {
                return Err(Error::invalid(
                    "status",
                    format!("must be online or error, not {other:?}"),
                ));
            }
        };
        let gateway = self.store.get_gateway(id).await?.ok_or(Error::NotFound("gateway"))?;
        let report = Report { ip: None, metrics: beat.metrics, agents: beat.agents };
        self.apply_report(gateway, report, status).await
    }

    /// Records that the gateway's socket is alive (frames arrived) without other changes.
    pub async fn touch(&self, id: GatewayId) -> Result<()> {
        self.store.touch_gateway(id, self.clock.now(), None).await?;
        Ok(())
    }

    /// A gateway signs off: its relay token is revoked, its socket closed, its status set to
    /// `offline`. Its agents, their assignments and chat history stay; registering again under
    /// the same name brings it back with the same id.
    pub async fn deregister(&self, id: GatewayId, relay_token: &str) -> Result<()> {
        let mut gateway = self.authenticate_gateway(id, relay_token).await?;
        let now = self.clock.now();
        let previous = gateway.status;
        gateway.relay_token_hash = SecretHash::of(&random_secret(RELAY_TOKEN_PREFIX)?);
        gateway.status = GatewayStatus::Offline;
        gateway.updated_at = now;
        self.store.update_gateway(&gateway).await?;
        self.events.publish(RelayEvent::GatewayCredentialsRevoked { gateway_id: id });
        let actor = format!("gateway:{id}");
        self.record(
            gateway.organization_id,
            "gateway.deregistered",
            actor.clone(),
            id,
            serde_json::json!({}),
        )
        .await?;
        self.announce(&StatusChange { previous, gateway }, actor).await
    }

    /// Marks `online`/`error` gateways with no heartbeat for `missed_heartbeats` intervals as
    /// `offline`; writes an activity event and publishes a status change for each.
    pub async fn sweep(&self) -> Result<Vec<StatusChange>> {
        let now = self.clock.now();
        let silence = self.config.heartbeat_interval * self.config.missed_heartbeats;
        let cutoff = now - TimeDelta::from_std(silence).unwrap_or(TimeDelta::MAX);
        let changes = self.store.mark_stale_gateways_offline(cutoff, now).await?;
        for change in &changes {
            self.announce(change, "system".into()).await?;
        }
        if !changes.is_empty() {
            tracing::info!(
                count = changes.len(),
                "gateways marked offline after missed heartbeats"
            );
        }
        Ok(changes)
    }

    /// The registration token, if it belongs to `org`.
    pub(crate) async fn org_registration_token(
        &self,
        org: OrgId,
        id: RegistrationTokenId,
    ) -> Result<RegistrationToken> {
        self.store
            .get_registration_token(id)
            .await?
            .filter(|t| t.organization_id == org)
            .ok_or(Error::NotFound("registration token"))
    }
}

/// Whether a registration may take `existing`'s name: with its current relay token, or after
/// an admin released it.
fn claimable(existing: &Gateway, relay_token: Option<&str>) -> Result<()> {
    if existing.relay_token_hash == RELEASED
        || relay_token.is_some_and(|t| SecretHash::of(t) == existing.relay_token_hash)
    {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "a gateway named '{}' is registered: re-register with its current relay_token, or ask an \
         admin to release it (POST /api/v1/gateways/{}/release)",
        existing.name, existing.id
    )))
}
