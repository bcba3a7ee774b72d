//! Files an agent produced: `artifacts.list`, `artifacts.get`, `artifacts.download`. They are
//! not in a run's `final` event: after it, list the session's artifacts (or read
//! `chat.history`) and download them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The query of the three `artifacts.*` methods: one of `sessionKey`, `runId` or `taskId`,
/// plus `artifactId` for get and download.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactQuery {
    /// The session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// The run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The artifact (get, download).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    /// Only rows of this role (`assistant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_role: Option<String>,
    /// Fields this crate does not know (`taskId`, `type`, `limit`, `cursor`, `transport`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactSummary {
    /// Its id.
    pub id: String,
    /// `file`, `image`, …
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// The run that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// How it downloads (`download.mode`: `bytes`, `url`, `unsupported`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Value>,
    /// Fields this crate does not know (`sessionKey`, `messageSeq`, `source`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `artifacts.list`'s answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactsListResult {
    /// The artifacts.
    #[serde(default)]
    pub artifacts: Vec<ArtifactSummary>,
    /// Where to continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `artifacts.get`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactsGetResult {
    /// The artifact.
    pub artifact: ArtifactSummary,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `artifacts.download`'s answer: the bytes (base64), or a URL valid for a few minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactsDownloadResult {
    /// The artifact.
    pub artifact: ArtifactSummary,
    /// `base64`, with `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The bytes, encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// A gateway-relative URL to fetch them from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When the URL expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
