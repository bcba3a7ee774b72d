//! Storage of registration tokens, gateways, their agents, and assignments of agents to users.

use async_trait::async_trait;

use super::{Page, Paged, StoreResult};
use crate::ids::{AgentId, GatewayId, OrgId, RegistrationTokenId, UserId};
use crate::model::{
    Agent, AgentReport, Assignment, ConnectionInfo, Gateway, GatewayStatus, RegistrationToken,
    SecretHash, Timestamp,
};

/// Why a registration token could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// The token was valid; its use count now includes this use.
    Consumed(RegistrationToken),
    /// No token of the organization has that hash.
    Unknown,
    /// An admin revoked it.
    Revoked,
    /// Its expiry has passed.
    Expired,
    /// It has been used `max_uses` times.
    UsedUp,
}

impl ConsumeOutcome {
    /// Why `token`, which exists but was not consumed at `at`, was refused: revocation first,
    /// then expiry, else its uses ran out.
    pub fn refusal_for(token: &RegistrationToken, at: Timestamp) -> Self {
        if token.revoked {
            ConsumeOutcome::Revoked
        } else if token.expires_at.is_some_and(|e| e <= at) {
            ConsumeOutcome::Expired
        } else {
            ConsumeOutcome::UsedUp
        }
    }
}

/// Registration tokens.
#[async_trait]
pub trait RegistrationTokenStore: Send + Sync {
    /// Stores a new token. `Conflict(TokenHash)` if the hash exists; `NotFound` if the
    /// organization does not exist.
    async fn create_registration_token(&self, token: &RegistrationToken) -> StoreResult<()>;
    /// The token with this id.
    async fn get_registration_token(
        &self,
        id: RegistrationTokenId,
    ) -> StoreResult<Option<RegistrationToken>>;
    /// The organization's tokens, in id order.
    async fn list_registration_tokens(
        &self,
        org: OrgId,
        page: Page,
    ) -> StoreResult<Paged<RegistrationToken>>;
    /// Revokes the token. `NotFound` if it does not exist.
    async fn revoke_registration_token(&self, id: RegistrationTokenId) -> StoreResult<()>;
    /// Uses the token of `org` with this hash once, atomically checking revocation, expiry
    /// (against `at`) and `max_uses`: two racing for the last use, exactly one succeeds.
    async fn consume_registration_token(
        &self,
        org: OrgId,
        hash: &SecretHash,
        at: Timestamp,
    ) -> StoreResult<ConsumeOutcome>;
}

/// A gateway's status before and after a change.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// The status before.
    pub previous: GatewayStatus,
    /// The gateway after.
    pub gateway: Gateway,
}

/// Gateways.
#[async_trait]
pub trait GatewayStore: Send + Sync {
    /// Stores a new gateway. `Conflict(GatewayName)` if the name is taken in the organization;
    /// `NotFound` if the organization does not exist.
    async fn create_gateway(&self, gateway: &Gateway) -> StoreResult<()>;
    /// The gateway with this id.
    async fn get_gateway(&self, id: GatewayId) -> StoreResult<Option<Gateway>>;
    /// The gateway of `org` with exactly this name.
    async fn find_gateway_by_name(&self, org: OrgId, name: &str) -> StoreResult<Option<Gateway>>;
    /// Replaces every field of the stored gateway with `gateway`'s (id and organization stay).
    /// `NotFound` if it does not exist; `Conflict(GatewayName)` if renamed onto a taken name.
    async fn update_gateway(&self, gateway: &Gateway) -> StoreResult<()>;
    /// Gateways of `org`, optionally only those with `status`, in id order.
    async fn list_gateways(
        &self,
        org: OrgId,
        status: Option<GatewayStatus>,
        page: Page,
    ) -> StoreResult<Paged<Gateway>>;
    /// How many gateways (of every organization) have each status; statuses with none are
    /// left out.
    async fn count_gateways_by_status(&self) -> StoreResult<Vec<(GatewayStatus, u64)>>;
    /// Deletes the gateway with its agents, their assignments and sessions. `NotFound` if it
    /// does not exist.
    async fn delete_gateway(&self, id: GatewayId) -> StoreResult<()>;
    /// Records a heartbeat at `at`: sets `last_heartbeat_at` and, if given, the connection
    /// info. The status is not touched. `NotFound` if it does not exist.
    async fn touch_gateway(
        &self,
        id: GatewayId,
        at: Timestamp,
        info: Option<&ConnectionInfo>,
    ) -> StoreResult<Gateway>;
    /// Sets the status (and `updated_at`) atomically and reports the status it had before.
    /// `NotFound` if it does not exist.
    async fn set_gateway_status(
        &self,
        id: GatewayId,
        status: GatewayStatus,
        at: Timestamp,
    ) -> StoreResult<StatusChange>;
    /// Marks `offline` every `online` or `error` gateway whose last heartbeat (or, never
    /// having one, whose last update) is before `cutoff`, in one statement; returns the
    /// gateways it changed, with their status before.
    async fn mark_stale_gateways_offline(
        &self,
        cutoff: Timestamp,
        at: Timestamp,
    ) -> StoreResult<Vec<StatusChange>>;
}

/// What [`AgentStore::sync_agents`] changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentSync {
    /// Every agent of the gateway after the sync, in id order.
    pub agents: Vec<Agent>,
    /// Agents seen for the first time.
    pub added: Vec<AgentId>,
    /// Agents that were `gone` and are reported again.
    pub returned: Vec<AgentId>,
    /// Agents that were `active` and are no longer reported.
    pub gone: Vec<AgentId>,
}

/// Agents behind gateways.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Stores a new agent. `Conflict(AgentKey)` if the gateway has one with that key;
    /// `NotFound` if the gateway does not exist.
    async fn create_agent(&self, agent: &Agent) -> StoreResult<()>;
    /// The agent with this id.
    async fn get_agent(&self, id: AgentId) -> StoreResult<Option<Agent>>;
    /// Makes the gateway's agents match `reports` (duplicates by key: the last wins): new
    /// keys are added, reported ones are `active` with the reported name, unreported ones are
    /// marked `gone` (never deleted, so assignments survive a restart). `NotFound` if the
    /// gateway does not exist.
    async fn sync_agents(
        &self,
        gateway: GatewayId,
        reports: &[AgentReport],
        at: Timestamp,
    ) -> StoreResult<AgentSync>;
    /// The gateway's agents, in id order.
    async fn list_gateway_agents(&self, gateway: GatewayId) -> StoreResult<Vec<Agent>>;
    /// Agents of every gateway of `org`, in id order.
    async fn list_agents(&self, org: OrgId, page: Page) -> StoreResult<Paged<Agent>>;
}

/// An assignment with what a client needs to show it.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignedAgent {
    /// The assignment.
    pub assignment: Assignment,
    /// The agent.
    pub agent: Agent,
    /// The status of the agent's gateway.
    pub gateway_status: GatewayStatus,
}

/// Assignments of agents to users.
#[async_trait]
pub trait AssignmentStore: Send + Sync {
    /// Stores a new assignment. `Conflict(Assignment)` if the pair exists; `NotFound` if the
    /// user or the agent does not exist.
    async fn create_assignment(&self, assignment: &Assignment) -> StoreResult<()>;
    /// The assignment of this pair.
    async fn get_assignment(&self, user: UserId, agent: AgentId)
    -> StoreResult<Option<Assignment>>;
    /// Removes the assignment. `NotFound` if there is none.
    async fn delete_assignment(&self, user: UserId, agent: AgentId) -> StoreResult<()>;
    /// The user's assignments with their agents, in agent id order.
    async fn list_user_assignments(&self, user: UserId) -> StoreResult<Vec<AssignedAgent>>;
    /// The assignments of every agent of the gateway (who to tell when it goes offline).
    async fn list_gateway_assignments(&self, gateway: GatewayId) -> StoreResult<Vec<Assignment>>;
}
