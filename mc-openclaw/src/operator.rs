//! What an operator reads: health, sessions, scheduled jobs (cron) and usage. These answers are
//! large and change between gateway versions: the fields the relay uses are typed, the rest is
//! kept as it came.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Parameters of a method that takes none (`{}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NoParams {}

/// An object this crate does not type (it is kept whole).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Untyped {
    /// Its fields.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// `health`'s answer (also the `health` event's payload).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthResult {
    /// Whether the gateway is healthy.
    #[serde(default)]
    pub ok: bool,
    /// When (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    /// The default agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_agent_id: Option<String>,
    /// Fields this crate does not know (`plugins`, `agents`, `sessions`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `sessions.list`'s parameters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsListParams {
    /// How many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only sessions with a run now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_only: Option<bool>,
    /// Fields this crate does not know (`offset`, `sortBy`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `sessions.list`'s answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsListResult {
    /// The sessions.
    #[serde(default)]
    pub sessions: Vec<SessionRow>,
    /// How many there are in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_count: Option<u64>,
    /// Fields this crate does not know (`count`, `hasMore`, `defaults`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One session of `sessions.list` (and of `sessions.changed`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRow {
    /// The session key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Whether a run is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_active_run: Option<bool>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `sessions.changed`: the session index or a session's metadata changed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsChanged {
    /// The session, for a keyed change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `cron.list`'s answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CronListResult {
    /// The jobs.
    #[serde(default)]
    pub jobs: Vec<Untyped>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `cron.runs`'s answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CronRunsResult {
    /// The runs.
    #[serde(default)]
    pub entries: Vec<Untyped>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `shutdown` event: the gateway is stopping.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shutdown {
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it expects to be back (ms), if it restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_expected_ms: Option<u64>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
