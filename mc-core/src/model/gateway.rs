//! Gateways, the agents behind them, registration tokens and assignments of agents to users.

use serde::{Deserialize, Serialize};

use super::{SecretHash, Timestamp, string_enum};
use crate::ids::{AgentId, GatewayId, OrgId, RegistrationTokenId, UserId};

/// A token an admin hands to a gateway operator so the gateway can register itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationToken {
    /// Its id.
    pub id: RegistrationTokenId,
    /// Gateways registered with it join this organization.
    pub organization_id: OrgId,
    /// SHA-256 of the `gw_reg_…` secret, which is shown once and never stored.
    pub token_hash: SecretHash,
    /// What the admin called it.
    pub label: String,
    /// After this it is refused.
    pub expires_at: Option<Timestamp>,
    /// How many registrations it allows; `None` is unlimited.
    pub max_uses: Option<u32>,
    /// How many registrations it has allowed so far.
    pub uses: u32,
    /// Set when an admin revoked it.
    pub revoked: bool,
    /// When it was created.
    pub created_at: Timestamp,
}

string_enum!(
    /// A gateway's liveness (docs/gateway-link.md).
    GatewayStatus, "gateway status" {
        /// Registered, never connected.
        Pending => "pending",
        /// Its relay link is up or it heartbeats.
        Online => "online",
        /// No heartbeat for three intervals, or its link closed and did not come back.
        Offline => "offline",
        /// It reported an error (or needs an operator, e.g. pairing approval).
        Error => "error",
    }
);

/// The latest resource figures a gateway reported in a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GatewayMetrics {
    /// Chat sessions the gateway is serving.
    pub active_sessions: u32,
    /// Resident memory in MiB.
    pub memory_mb: f64,
    /// CPU use in percent of one core (may exceed 100 on several cores).
    pub cpu_pct: f64,
    /// Agents it runs.
    pub agent_count: u32,
}

/// What the relay knows about a gateway's connection (stored as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConnectionInfo {
    /// Client IP as seen by the relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Software version the gateway reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Capabilities the gateway reported.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The latest metrics, if any heartbeat carried them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<GatewayMetrics>,
    /// When `metrics` were reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_at: Option<Timestamp>,
}

/// A process that runs agents and links to the relay (docs/gateway-link.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    /// Its id; kept across re-registration under the same name.
    pub id: GatewayId,
    /// The organization it serves.
    pub organization_id: OrgId,
    /// Unique per organization.
    pub name: String,
    /// Where the relay can reach it, for outbound links.
    pub url: Option<String>,
    /// The gateway's workspace directory, informational.
    pub workspace_root: Option<String>,
    /// Software version it reported.
    pub version: Option<String>,
    /// Capabilities it reported.
    pub capabilities: Vec<String>,
    /// Liveness.
    pub status: GatewayStatus,
    /// SHA-256 of the current relay token; re-registration replaces it.
    pub relay_token_hash: SecretHash,
    /// The last heartbeat over HTTP or its socket.
    pub last_heartbeat_at: Option<Timestamp>,
    /// IP, version, capabilities and latest metrics.
    pub connection_info: ConnectionInfo,
    /// Registered itself with a registration token (as opposed to added by an admin).
    pub auto_registered: bool,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

string_enum!(
    /// Whether the gateway still reports an agent.
    AgentStatus, "agent status" {
        /// Reported by its gateway at the last registration or heartbeat that listed agents.
        Active => "active",
        /// No longer reported. Kept, with its assignments, in case it comes back.
        Gone => "gone",
    }
);

/// An agent as a gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReport {
    /// The gateway's own id for the agent (OpenClaw's `agentId`).
    pub agent_key: String,
    /// Its display name.
    pub name: String,
}

impl AgentReport {
    /// The agents of an OpenClaw `agents.list` answer: the OpenClaw id is the agent key, the
    /// name the one it goes by; entries without an id are skipped.
    pub fn from_agents_list(list: &mc_openclaw::agent::AgentsListResult) -> Vec<Self> {
        list.named()
            .map(|(key, name)| Self { agent_key: key.to_owned(), name: name.to_owned() })
            .collect()
    }
}

/// An agent behind a gateway. Unique per (gateway, agent key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The relay's id for it.
    pub id: AgentId,
    /// The gateway that runs it.
    pub gateway_id: GatewayId,
    /// The gateway's own id for it.
    pub agent_key: String,
    /// Display name.
    pub name: String,
    /// Whether the gateway still reports it.
    pub status: AgentStatus,
    /// When the relay first saw it.
    pub created_at: Timestamp,
}

string_enum!(
    /// A user's relation to an assigned agent.
    AssignmentRole, "assignment role" {
        /// May chat with it.
        User => "user",
        /// May chat with it and is its owner.
        Owner => "owner",
    }
);

/// Grants a user access to an agent. Unique per (user, agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Who may chat.
    pub user_id: UserId,
    /// With which agent.
    pub agent_id: AgentId,
    /// As what.
    pub role: AssignmentRole,
    /// Optional board the agent appears on in the user's app.
    pub board_name: Option<String>,
    /// The admin who assigned it.
    pub assigned_by: Option<UserId>,
    /// When.
    pub assigned_at: Timestamp,
}
