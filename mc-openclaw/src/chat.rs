//! Chat: `chat.send`, `chat.history`, `chat.abort`, the `chat` event stream, and the
//! transcript messages they carry.
//!
//! A run's reply streams as `chat` events: `delta`s, then one terminal state (`final`,
//! `error` or `aborted`; a failed run may send a second terminal event, which a reader
//! ignores). [`ChatEvent::text_update`] is the one rule for what a delta means.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::wire_enum;

/// What keeps a `/` or `!` from being read as a command: U+2060 WORD JOINER, invisible.
const COMMAND_BREAK: char = '\u{2060}';

/// `text` as OpenClaw reads plain text: no slash command (`/status`, `/restart`), directive
/// (`/model … -g`, `/think`, `/exec`), inline shortcut (`/help` within a sentence) or host
/// command (`! ls`) in it runs. OpenClaw runs those for whoever sends `chat.send`, with the
/// sender's scopes, whether they stand alone or inside the text; a relay's users are not the
/// gateway's operators. Every `/` that starts a word, and a `!` that starts the text, gets an
/// invisible word joiner after it, which the agent reads past; nothing else changes.
pub fn as_plain_text(text: &str) -> std::borrow::Cow<'_, str> {
    let starts_word = |i: usize| text[..i].chars().next_back().is_none_or(char::is_whitespace);
    let first_visible = text.find(|c: char| !c.is_whitespace());
    let breaks: Vec<usize> = text
        .char_indices()
        .filter(|&(i, c)| (c == '/' && starts_word(i)) || (c == '!' && Some(i) == first_visible))
        .map(|(i, _)| i + 1)
        .collect();
    if breaks.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + breaks.len() * COMMAND_BREAK.len_utf8());
    let mut from = 0;
    for at in breaks {
        out.push_str(&text[from..at]);
        out.push(COMMAND_BREAK);
        from = at;
    }
    out.push_str(&text[from..]);
    std::borrow::Cow::Owned(out)
}

/// `chat.send`'s parameters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSendParams {
    /// The session (`agent:<agent>:<name>` is the canonical form).
    pub session_key: String,
    /// The user's text.
    pub message: String,
    /// Makes the call idempotent; the run's id is this key.
    pub idempotency_key: String,
    /// Files sent with the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A file sent with `chat.send` (its content base64).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// `image`, `file`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Its MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The bytes, base64.
    pub content: String,
    /// Its size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Fields this crate does not know (`width`, `height`, `durationMs`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

wire_enum! {
    /// What `chat.send` says about the run.
    SendStatus {
        /// A new run.
        Started = "started",
        /// The same key is running now.
        InFlight = "in_flight",
        /// The same key ran and finished.
        Ok = "ok",
        /// Refused at admission.
        Error = "error",
    }
}

/// `chat.send`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSendResult {
    /// The run (its idempotency key).
    pub run_id: String,
    /// New, running or finished.
    pub status: SendStatus,
    /// Why an admission failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatSendResult {
    /// The answer for run `run_id`.
    pub fn new(run_id: impl Into<String>, status: SendStatus) -> Self {
        Self { run_id: run_id.into(), status, summary: None, extra: Map::new() }
    }
}

/// `chat.history`'s parameters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatHistoryParams {
    /// The session.
    pub session_key: String,
    /// How many rows (1..1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Fields this crate does not know (`cursor`, `offset`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `chat.history`'s answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatHistoryResult {
    /// The session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// The rows, oldest first.
    #[serde(default)]
    pub messages: Vec<TranscriptMessage>,
    /// The run still streaming, with its text so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight_run: Option<InFlightRun>,
    /// Fields this crate does not know (`sessionInfo`, `hasMore`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatHistoryResult {
    /// The assistant's reply to run `run_id`, if the transcript holds it.
    pub fn reply_of(&self, run_id: &str) -> Option<&TranscriptMessage> {
        self.messages.iter().find(|m| m.role == "assistant" && m.run_id() == Some(run_id))
    }

    /// The text of run `run_id` so far, if it is the one in flight.
    pub fn in_flight_text(&self, run_id: &str) -> Option<&str> {
        self.in_flight_run.as_ref().filter(|r| r.run_id == run_id).and_then(|r| r.text.as_deref())
    }
}

/// `chat.history.inFlightRun`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlightRun {
    /// The run.
    pub run_id: String,
    /// Its text so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A transcript message (in `chat.history`, or a `chat` event's `message`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptMessage {
    /// `user`, `assistant`, `custom`, …
    #[serde(default)]
    pub role: String,
    /// A string, or parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Token counts and cost (assistant rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// OpenClaw's own bookkeeping (`runId`, `seq`, …).
    #[serde(default, rename = "__openclaw", skip_serializing_if = "Option::is_none")]
    pub meta: Option<TranscriptMeta>,
    /// Fields this crate does not know (`timestamp`, `model`, `stopReason`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TranscriptMessage {
    /// An assistant message holding `text`.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: "assistant".into(),
            content: Some(Content::Parts(vec![ContentPart::text(text)])),
            ..Default::default()
        }
    }

    /// The run this row belongs to.
    pub fn run_id(&self) -> Option<&str> {
        self.meta.as_ref()?.run_id.as_deref()
    }

    /// Its text: the string content, or its text parts joined.
    pub fn text(&self) -> Option<String> {
        match self.content.as_ref()? {
            Content::Text(text) => Some(text.clone()),
            Content::Parts(parts) => Some(
                parts
                    .iter()
                    .filter(|p| p.kind.as_deref().is_none_or(|k| k == "text"))
                    .filter_map(|p| p.text.as_deref())
                    .collect(),
            ),
        }
    }
}

/// A message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts: text, images, attachments.
    Parts(Vec<ContentPart>),
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentPart {
    /// `text`, `image`, `attachment`, …
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A text part's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An artifact's id (image parts; attachments carry it inside `attachment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Self { kind: Some("text".into()), text: Some(text.into()), ..Default::default() }
    }
}

/// `__openclaw` on a transcript row.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptMeta {
    /// The run that wrote the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Fields this crate does not know (`id`, `seq`, `transport`, `media`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Tokens and cost of a reply.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<u64>,
    /// Output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<u64>,
    /// Input tokens read from the provider's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<u64>,
    /// Input tokens written to the provider's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<u64>,
    /// All tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<u64>,
    /// The cost (`{input, output, …, total}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Value>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `chat.abort`'s parameters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatAbortParams {
    /// The session.
    pub session_key: String,
    /// The run (absent: the session's runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `chat.abort`'s answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatAbortResult {
    /// Whether a run was stopped.
    #[serde(default)]
    pub aborted: bool,
    /// The runs stopped.
    #[serde(default)]
    pub run_ids: Vec<String>,
    /// Fields this crate does not know (`ok`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

wire_enum! {
    /// Where a run is, in a `chat` event.
    ChatState {
        /// Progress (`phase`).
        Status = "status",
        /// New text.
        Delta = "delta",
        /// Done: the reply is complete.
        Final = "final",
        /// Stopped by `chat.abort`.
        Aborted = "aborted",
        /// Failed.
        Error = "error",
    }
}

impl ChatState {
    /// Whether the run ended.
    pub fn is_terminal(&self) -> bool {
        matches!(self, ChatState::Final | ChatState::Aborted | ChatState::Error)
    }
}

/// A `chat` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatEvent {
    /// The run (the `idempotencyKey` of its `chat.send`).
    pub run_id: String,
    /// The canonical session key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_key: String,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The run's own counter (shared with `agent` events; has gaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Where the run is.
    pub state: ChatState,
    /// For `status`: what the gateway is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// For `delta`: the new text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_text: Option<String>,
    /// For `delta`: `deltaText` replaces the text so far instead of extending it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<bool>,
    /// The assistant message so far (a delta's cumulative snapshot) or in full (`final`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<TranscriptMessage>,
    /// For `error` / `aborted`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Why the run stopped (`stop`, `rpc`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Tokens and cost, when the event carries them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Fields this crate does not know (`errorKind`, `errorDetail`, `yielded`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a `delta` does to a run's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextUpdate<'a> {
    /// Append this.
    Append(&'a str),
    /// Replace the text so far with this.
    Replace(&'a str),
    /// The whole text so far is this (a snapshot).
    Whole(&'a str),
}

impl ChatEvent {
    /// An event of run `run_id` in session `session_key`.
    pub fn new(
        run_id: impl Into<String>,
        session_key: impl Into<String>,
        state: ChatState,
    ) -> Self {
        Self {
            run_id: run_id.into(),
            session_key: session_key.into(),
            agent_id: None,
            seq: None,
            state,
            phase: None,
            delta_text: None,
            replace: None,
            message: None,
            error_message: None,
            stop_reason: None,
            usage: None,
            extra: Map::new(),
        }
    }

    /// The text of `message`, if the event carries one.
    pub fn text(&self) -> Option<String> {
        self.message.as_ref().and_then(TranscriptMessage::text)
    }

    /// What a delta does to the run's text. A delta may carry the cumulative snapshot on
    /// every frame, or only on its first (the form OpenClaw is moving to): a snapshot, when
    /// present, is the whole text so far; otherwise `deltaText` replaces the text
    /// (`replace: true`) or extends it. `None` for a delta with neither, and other states. (A
    /// snapshot of several parts is not one text: its delta is used instead.)
    pub fn text_update(&self) -> Option<TextUpdate<'_>> {
        if self.state != ChatState::Delta {
            return None;
        }
        if let Some(whole) = self.message.as_ref().and_then(snapshot_text) {
            return Some(TextUpdate::Whole(whole));
        }
        let delta = self.delta_text.as_deref()?;
        Some(if self.replace == Some(true) {
            TextUpdate::Replace(delta)
        } else {
            TextUpdate::Append(delta)
        })
    }
}

/// A snapshot's text without copying: a string content, or a single text part.
fn snapshot_text(message: &TranscriptMessage) -> Option<&str> {
    match message.content.as_ref()? {
        Content::Text(text) => Some(text),
        Content::Parts(parts) => match parts.as_slice() {
            [one] if one.kind.as_deref().is_none_or(|k| k == "text") => one.text.as_deref(),
            [] => Some(""),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_in_a_users_text_are_read_as_text() {
        let j = COMMAND_BREAK;
        for (text, plain) in [
            ("/status".to_owned(), format!("/{j}status")),
            ("  /restart".to_owned(), format!("  /{j}restart")),
            ("hello /model x -g".to_owned(), format!("hello /{j}model x -g")),
            ("a\n/think high".to_owned(), format!("a\n/{j}think high")),
            ("! rm -rf /".to_owned(), format!("!{j} rm -rf /{j}")),
            ("and/or 1/2 http://x".to_owned(), "and/or 1/2 http://x".to_owned()),
            ("wow! nice".to_owned(), "wow! nice".to_owned()),
            ("plain".to_owned(), "plain".to_owned()),
            ("/".to_owned(), format!("/{j}")),
            ("中文 /状态".to_owned(), format!("中文 /{j}状态")),
        ] {
            assert_eq!(as_plain_text(&text), plain, "{text:?}");
        }
        assert!(matches!(as_plain_text("nothing to do"), std::borrow::Cow::Borrowed(_)));
    }
}
