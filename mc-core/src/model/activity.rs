//! The audit trail and activity feed.

use serde::{Deserialize, Serialize};

use super::Timestamp;
use crate::ids::{ActivityId, OrgId};

/// Something that happened in an organization: a gateway went online, a user signed in…
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityEvent {
    /// Its id; newer events have larger ids.
    pub id: ActivityId,
    /// Where it happened.
    pub organization_id: OrgId,
    /// Dotted kind, e.g. `gateway.online`, `user.login`, `session.created`.
    pub kind: String,
    /// Who caused it, e.g. `user:<id>`, `gateway:<id>`, `system`.
    pub actor: String,
    /// What it happened to, e.g. `gateway`.
    pub target_type: String,
    /// The id of what it happened to.
    pub target_id: String,
    /// Free-form details.
    pub metadata: serde_json::Value,
    /// When.
    pub created_at: Timestamp,
}

impl ActivityEvent {
    /// An event with a fresh id and empty metadata.
    pub fn new(
        organization_id: OrgId,
        kind: impl Into<String>,
        actor: impl Into<String>,
        target_type: impl Into<String>,
        target_id: impl ToString,
        created_at: Timestamp,
    ) -> Self {
        Self {
            id: ActivityId::new(),
            organization_id,
            kind: kind.into(),
            actor: actor.into(),
            target_type: target_type.into(),
            target_id: target_id.to_string(),
            metadata: serde_json::json!({}),
            created_at,
        }
    }

    /// The same event with `metadata`.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}
