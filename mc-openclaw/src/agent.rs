//! Agents: the `agent` event stream (what a run is doing) and `agents.list`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An `agent` event: one step of a run on one of its streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentEvent {
    /// The run.
    pub run_id: String,
    /// The stream: `lifecycle`, `run_status`, `assistant`, `usage`, `item`, `tool…`,
    /// `command_output`, `approval`, …
    #[serde(default)]
    pub stream: String,
    /// The step.
    #[serde(default)]
    pub data: AgentEventData,
    /// The session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// The run's own counter (shared with `chat` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// When (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    /// Fields this crate does not know (`agentId`, `sessionId`, `isHeartbeat`, `lane`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An `agent` event's `data`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentEventData {
    /// The step's phase (`start`, `model`, `end`, `waiting-approval`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Fields this crate does not know (they depend on the stream).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AgentEvent {
    /// The step's phase, if it has one.
    pub fn phase(&self) -> Option<&str> {
        self.data.phase.as_deref()
    }

    /// Whether the step is on a tool stream (`tool`, `tool_call`, …).
    pub fn is_tool(&self) -> bool {
        self.stream.starts_with("tool")
    }
}

/// `agents.list`'s parameters (none).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentsListParams {
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `agents.list`'s answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentsListResult {
    /// The default agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_id: Option<String>,
    /// The agents.
    #[serde(default)]
    pub agents: Vec<AgentSummary>,
    /// Fields this crate does not know (`mainKey`, `scope`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One agent of `agents.list`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSummary {
    /// Its id (absent in a malformed entry, which readers skip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its identity (`name`, `emoji`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<AgentIdentity>,
    /// Fields this crate does not know (`workspace`, `model`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An agent's identity.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentIdentity {
    /// The name it goes by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AgentSummary {
    /// An agent with this id and name.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self { id: Some(id.into()), name: Some(name.into()), ..Default::default() }
    }

    /// The name to show: `name`, else `identity.name`, else the id.
    pub fn display_name(&self) -> Option<&str> {
        self.name
            .as_deref()
            .or_else(|| self.identity.as_ref()?.name.as_deref())
            .or(self.id.as_deref())
    }
}

impl AgentsListResult {
    /// The agents that have an id, as (id, name to show).
    pub fn named(&self) -> impl Iterator<Item = (&str, &str)> {
        self.agents.iter().filter_map(|a| Some((a.id.as_deref()?, a.display_name()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fall_back_to_identity_then_id() {
        let list: AgentsListResult = serde_json::from_str(
            r#"{"defaultId":"main","agents":[{"id":"main","name":"Main"},{"id":"ops","identity":{"name":"Ops bot"}},{"id":"bare"},{"name":"no id"}]}"#,
        )
        .unwrap();
        let named: Vec<_> = list.named().collect();
        assert_eq!(named, [("main", "Main"), ("ops", "Ops bot"), ("bare", "bare")]);
        assert!(serde_json::from_str::<AgentsListResult>(r#"{"agents":3}"#).is_err());
    }
}
