//! Waiting for a person: exec and plugin approvals (`exec.approval.*`, `plugin.approval.*`,
//! the kind-agnostic `approval.*`) and questions (`question.*`).
//!
//! An approval reaches only a connection with scope `operator.approvals`, the `approvals` cap
//! and the device that sent the run's `chat.send`; if none is connected when the tool asks,
//! the gateway denies at once. Pending approvals are not sent again after a reconnect: list
//! them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::wire_enum;

/// The client capability that receives exec and plugin approvals.
pub const CAP_APPROVALS: &str = "approvals";

wire_enum! {
    /// A decision on an approval.
    Decision {
        /// Run it this once.
        AllowOnce = "allow-once",
        /// Run it, and similar ones from now on.
        AllowAlways = "allow-always",
        /// Do not run it.
        Deny = "deny",
    }
}

/// `exec.approval.requested` / `plugin.approval.requested` (and the rows of
/// `exec.approval.list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequested {
    /// `exec` or `plugin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_kind: Option<String>,
    /// The approval (plugin ids start with `plugin:`).
    pub id: String,
    /// What is asked.
    pub request: ApprovalRequest,
    /// When it was asked (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<i64>,
    /// When it expires (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What an approval asks (the fields of an exec or a plugin request).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    /// Exec: the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Exec: where it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Exec: on which host (`gateway`, `node`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Plugin: which plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_id: Option<String>,
    /// Plugin: what it wants to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Plugin: more about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The decisions the gateway accepts.
    #[serde(default)]
    pub allowed_decisions: Vec<Decision>,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// The run waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Fields this crate does not know (`security`, `commandAnalysis`, `severity`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `exec.approval.resolved` / `plugin.approval.resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalResolved {
    /// The approval.
    pub id: String,
    /// What was decided (a timeout or an abort is `deny`).
    pub decision: Decision,
    /// Who decided (`null` for a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// When (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    /// What was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<ApprovalRequest>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `exec.approval.list` / `plugin.approval.list` parameters (none).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ApprovalListParams {
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `exec.approval.resolve` / `plugin.approval.resolve` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionParams {
    /// The approval.
    pub id: String,
    /// The decision.
    pub decision: Decision,
    /// Who decided, as the gateway should record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
}

/// `approval.get`'s parameters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ApprovalGetParams {
    /// The approval.
    pub id: String,
}

/// `approval.get`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalGetResult {
    /// The approval.
    pub approval: ApprovalRecord,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `approval.resolve`'s parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalResolveParams {
    /// The approval.
    pub id: String,
    /// `exec`, `plugin` or `system-agent`.
    pub kind: String,
    /// The decision.
    pub decision: Decision,
    /// Who decided, as the gateway should record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
}

/// `approval.resolve`'s answer: whether this call decided it, and the recorded outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalResolveResult {
    /// `true` if this call's decision was applied; `false` if another came first.
    pub applied: bool,
    /// The approval as recorded.
    pub approval: ApprovalRecord,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `approval.history`'s parameters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ApprovalHistoryParams {
    /// Where to continue (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// How many (1..100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `approval.history`'s answer (read loosely: its rows are [`ApprovalRecord`]s).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalHistoryResult {
    /// Where to continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Fields this crate does not know (the rows).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An approval as the gateway records it (`approval.get`, `approval.resolve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    /// The approval.
    pub id: String,
    /// `pending`, `allowed`, `denied`, `expired`, `cancelled`.
    pub status: String,
    /// The decision, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Why it ended (`user`, `timeout`, `run-aborted`, `gateway-restart`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was asked (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<i64>,
    /// When it expires (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// When it was decided (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at_ms: Option<i64>,
    /// Fields this crate does not know (`presentation`, `resolver`, `source`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `question.requested` (and the rows of `question.list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionRequested {
    /// The question set.
    pub id: String,
    /// The questions (1–3).
    #[serde(default)]
    pub questions: Vec<Question>,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// The run waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When it was asked (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<i64>,
    /// When it expires (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// `pending`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    /// Its id (the answers are keyed by it).
    pub question_id: String,
    /// A short header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The question.
    pub question: String,
    /// The options offered.
    #[serde(default)]
    pub options: Vec<QuestionOption>,
    /// Whether several options may be chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_select: Option<bool>,
    /// Whether free text is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_other: Option<bool>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One option of a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionOption {
    /// What the answer says.
    pub label: String,
    /// More about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Answers: question id → the chosen labels (or free text).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Answers {
    /// The answers.
    pub answers: BTreeMap<String, Vec<String>>,
}

/// `question.resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionResolved {
    /// The question set.
    pub id: String,
    /// `answered`, `cancelled`, `expired`.
    pub status: String,
    /// The answers, when answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Answers>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `question.list`'s parameters (none).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QuestionListParams {
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `question.list`'s answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QuestionListResult {
    /// The pending question sets.
    #[serde(default)]
    pub questions: Vec<QuestionRequested>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `question.resolve`'s parameters: answers, or a cancel.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionResolveParams {
    /// The question set.
    pub id: String,
    /// The answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Answers>,
    /// Cancel instead of answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<bool>,
    /// Who answered, as the gateway should record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
}

/// `question.resolve`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionResolveResult {
    /// `answered` or `cancelled`.
    pub status: String,
    /// The answers recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Answers>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
