//! What gateways send, and the checks it must pass before anything is stored.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::ids::{GatewayId, OrgId};
use crate::model::{AgentReport, GatewayMetrics};
use crate::validate;

/// Most capabilities a gateway may report.
pub const MAX_CAPABILITIES: usize = 64;
/// Most agents a gateway may report.
pub const MAX_AGENTS: usize = 1024;

/// A gateway's registration request (docs/gateway-link.md).
#[derive(Clone)]
pub struct GatewayRegistration {
    /// The organization to join.
    pub organization_id: OrgId,
    /// The `gw_reg_…` token an admin issued.
    pub registration_token: String,
    /// Unique name in the organization, 1–64 of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// Where the relay could reach it.
    pub url: Option<String>,
    /// Its workspace directory.
    pub workspace_root: Option<String>,
    /// Its software version.
    pub version: Option<String>,
    /// What it can do.
    pub capabilities: Vec<String>,
    /// Its agents, if it reports them now.
    pub agents: Option<Vec<AgentReport>>,
    /// Its current relay token, when re-registering a name that exists: the proof that it
    /// is that gateway.
    pub relay_token: Option<String>,
}

/// What a gateway says of its own health in a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportedStatus {
    /// Working.
    Online,
    /// Something is wrong (it stays registered; admins see `error`).
    Error,
}

/// A heartbeat (docs/gateway-link.md).
#[derive(Clone)]
pub struct Heartbeat {
    /// Which gateway.
    pub gateway_id: GatewayId,
    /// Its relay token.
    pub relay_token: String,
    /// Its own view of its health.
    pub status: ReportedStatus,
    /// Current figures, if sent.
    pub metrics: Option<GatewayMetrics>,
    /// Its agents, if it reports them now.
    pub agents: Option<Vec<AgentReport>>,
}

crate::debug_redacted!(GatewayRegistration { organization_id, name, url, workspace_root, version, capabilities, agents } secret { registration_token, relay_token });
crate::debug_redacted!(Heartbeat { gateway_id, status, metrics, agents } secret { relay_token });

pub(crate) fn validate_agents(field: &str, agents: &[AgentReport]) -> Result<()> {
    if agents.len() > MAX_AGENTS {
        return Err(Error::invalid(field, format!("at most {MAX_AGENTS} agents")));
    }
    let mut seen = HashSet::with_capacity(agents.len());
    for (i, agent) in agents.iter().enumerate() {
        validate::identifier(&format!("{field}[{i}].agent_key"), &agent.agent_key, 128, true)?;
        validate::display_text(&format!("{field}[{i}].name"), &agent.name, 128)?;
        if !seen.insert(agent.agent_key.as_str()) {
            return Err(Error::invalid(
                format!("{field}[{i}].agent_key"),
                format!("'{}' is listed twice", agent.agent_key),
            ));
        }
    }
    Ok(())
}

/// Checks reported metrics: finite, non-negative, within plausible bounds.
pub(crate) fn validate_metrics(m: &GatewayMetrics) -> Result<()> {
    let number = |field: &str, v: f64, max: f64| {
        if !v.is_finite() || v < 0.0 || v > max {
            Err(Error::invalid(
                format!("metrics.{field}"),
                format!("must be a number from 0 to {max}"),
            ))
        } else {
            Ok(())
        }
    };
    number("memory_mb", m.memory_mb, 16.0 * 1024.0 * 1024.0)?;
    number("cpu_pct", m.cpu_pct, 100.0 * 4096.0)?;
    if m.active_sessions > 10_000_000 {
        return Err(Error::invalid("metrics.active_sessions", "must be at most 10000000"));
    }
    if m.agent_count > MAX_AGENTS as u32 * 100 {
        return Err(Error::invalid("metrics.agent_count", "is implausibly large"));
    }
    Ok(())
}

impl GatewayRegistration {
    /// Checks every field; nothing is stored or consumed when this fails.
    pub fn validate(&self) -> Result<()> {
        validate::identifier("name", &self.name, 64, false)?;
        if self.registration_token.is_empty() || self.registration_token.len() > 256 {
            return Err(Error::invalid("registration_token", "must be 1–256 characters long"));
        }
        if let Some(url) = &self.url {
            validate::endpoint_url("url", url)?;
        }
        if let Some(root) = &self.workspace_root {
            validate::plain_text("workspace_root", root, 1024)?;
        }
        if let Some(version) = &self.version {
            validate::plain_text("version", version, 64)?;
        }
        if self.capabilities.len() > MAX_CAPABILITIES {
            return Err(Error::invalid(
                "capabilities",
                format!("at most {MAX_CAPABILITIES} entries"),
            ));
        }
        for (i, cap) in self.capabilities.iter().enumerate() {
            validate::identifier(&format!("capabilities[{i}]"), cap, 64, true)?;
        }
        if let Some(agents) = &self.agents {
            validate_agents("agents", agents)?;
        }
        if self.relay_token.as_ref().is_some_and(|t| t.is_empty() || t.len() > 256) {
            return Err(Error::invalid("relay_token", "must be 1–256 characters long"));
        }
        Ok(())
    }
}

impl Heartbeat {
    /// Checks every field; nothing is stored when this fails.
    pub fn validate(&self) -> Result<()> {
        if self.relay_token.is_empty() || self.relay_token.len() > 256 {
            return Err(Error::invalid("relay_token", "must be 1–256 characters long"));
        }
        if let Some(metrics) = &self.metrics {
            validate_metrics(metrics)?;
        }
        if let Some(agents) = &self.agents {
            validate_agents("agents", agents)?;
        }
        Ok(())
    }
}
