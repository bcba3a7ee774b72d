//! OpenClaw's three frames and its error shape: `req` ([`Request`]), `res` ([`Response`]) and
//! `event` ([`EventFrame`]), decoded by [`Frame::decode`] and rendered by [`Frame::to_json`].
//!
//! A frame's `params` or `payload` stays a [`Payload`] (the JSON text as it came) until someone
//! asks for a type: a frame passed on (the bridge, unknown events) is written out exactly as
//! it was read, and a typed view is decoded from the payload alone. Fields this crate does not
//! know are kept in `extra`, at every level, so a frame read and written again loses nothing.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::Error;

/// The protocol version this crate speaks (OpenClaw refuses operators that ask for another).
pub const PROTOCOL_VERSION: u32 = 4;

/// The longest request id accepted from a peer.
const MAX_ID_CHARS: usize = 128;

/// A frame's `params` or `payload`: JSON text, decoded on demand.
#[derive(Clone)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// The JSON `null`.
    pub fn null() -> Self {
        Self(RawValue::NULL.to_owned())
    }

    /// The payload of `value`.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        serde_json::value::to_raw_value(value).map(Self).map_err(|e| Error::Encode(e.to_string()))
    }

    /// The payload's JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        self.json() == "null"
    }

    /// Reads it as a `T`; `what` names it in the error (e.g. `chat event`).
    pub fn decode<'a, T: Deserialize<'a>>(&'a self, what: &str) -> Result<T, Error> {
        serde_json::from_str(self.json()).map_err(|e| Error::Malformed(format!("{what}: {e}")))
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 256;
        let text = self.json();
        match text.char_indices().nth(SHOWN) {
            Some((cut, _)) => write!(f, "Payload({}… {} bytes)", &text[..cut], text.len()),
            None => write!(f, "Payload({text})"),
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Self)
    }
}

/// OpenClaw's error shape (`res.error`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErrorShape {
    /// Top-level code: `INVALID_REQUEST`, `FORBIDDEN`, `NOT_PAIRED`, `UNAVAILABLE`, …
    #[serde(default)]
    pub code: String,
    /// What went wrong, in the gateway's words.
    #[serde(default)]
    pub message: String,
    /// Details; `details.code` (or `details.reason`) is what clients branch on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Whether retrying may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// When to retry.
    #[serde(default, rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Fields this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ErrorShape {
    /// An error with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), ..Default::default() }
    }

    /// A retryable error, to be retried after `after_ms`.
    pub fn retry_after(mut self, after_ms: u64) -> Self {
        self.retryable = Some(true);
        self.retry_after_ms = Some(after_ms);
        self
    }

    /// A text field of `details` (`code`, `reason`, `requestId`, …).
    pub fn detail(&self, key: &str) -> Option<&str> {
        self.details.as_ref()?.get(key)?.as_str()
    }

    /// A number field of `details`.
    pub fn detail_number(&self, key: &str) -> Option<u64> {
        self.details.as_ref()?.get(key)?.as_u64()
    }

    /// `details.code`, else `details.reason`, else the top-level code: what to branch on.
    pub fn reason(&self) -> &str {
        self.detail("code").or_else(|| self.detail("reason")).unwrap_or(&self.code)
    }

    /// Whether the gateway said it is starting and to try again (`UNAVAILABLE`, retryable).
    pub fn is_starting(&self) -> bool {
        self.code == "UNAVAILABLE" && self.retryable == Some(true)
    }
}

/// A request (`req`).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Its id, echoed by the response.
    pub id: String,
    /// The method, e.g. `chat.send`.
    pub method: String,
    /// Its parameters.
    pub params: Payload,
    /// Fields this crate does not know (`traceparent`, …).
    pub extra: Map<String, Value>,
}

/// A response (`res`).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request's id.
    pub id: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// The result (absent: `None`).
    pub payload: Option<Payload>,
    /// The error, when it failed.
    pub error: Option<ErrorShape>,
    /// Fields this crate does not know.
    pub extra: Map<String, Value>,
}

/// An event the gateway pushes (`event`); [`EventFrame::decode`](crate::EventFrame::decode)
/// gives its typed view.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFrame {
    /// Its name: `chat`, `agent`, `tick`, …
    pub event: String,
    /// Its payload (absent: `None`).
    pub payload: Option<Payload>,
    /// The per-connection event counter (not a run's `payload.seq`).
    pub seq: Option<u64>,
    /// Fields this crate does not know (`stateVersion`, `recipientProfileId`, …).
    pub extra: Map<String, Value>,
}

/// One OpenClaw frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `req`.
    Request(Request),
    /// `res`.
    Response(Response),
    /// `event`.
    Event(EventFrame),
}

impl Frame {
    /// Decodes one text frame. A frame whose `type` is not OpenClaw's is
    /// [`Error::UnknownType`], so a link that adds frames of its own can read those.
    pub fn decode(text: &str) -> Result<Self, Error> {
        let raw: RawFrame = serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                Error::Malformed(e.to_string())
            } else {
                Error::NotJson(e.to_string())
            }
        })?;
        raw.into_frame()
    }

    /// Renders the frame as JSON text.
    pub fn to_json(&self) -> String {
        // Strings, numbers, payloads (valid JSON) and maps of `Value` always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Request {
    /// A request of `method` with `params`.
    pub fn new(id: impl Into<String>, method: impl Into<String>, params: Payload) -> Self {
        Self { id: id.into(), method: method.into(), params, extra: Map::new() }
    }
}

impl Response {
    /// A successful response to request `id`.
    pub fn ok(id: impl Into<String>, payload: Payload) -> Self {
        Self { id: id.into(), ok: true, payload: Some(payload), error: None, extra: Map::new() }
    }

    /// A failed response to request `id`.
    pub fn error(id: impl Into<String>, error: ErrorShape) -> Self {
        Self { id: id.into(), ok: false, payload: None, error: Some(error), extra: Map::new() }
    }

    /// The result or the error, as a call's answer. A failure without an error shape gets one
    /// saying so.
    pub fn into_answer(self) -> Result<Payload, Box<ErrorShape>> {
        if self.ok {
            return Ok(self.payload.unwrap_or_else(Payload::null));
        }
        Err(Box::new(self.error.unwrap_or_else(|| {
            ErrorShape::new("UNKNOWN", "the gateway answered ok:false without an error")
        })))
    }
}

impl EventFrame {
    /// An event `name` with `payload`.
    pub fn new(name: impl Into<String>, payload: Payload) -> Self {
        Self { event: name.into(), payload: Some(payload), seq: None, extra: Map::new() }
    }
}

impl Serialize for Frame {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let extra = match self {
            Frame::Request(r) => {
                map.serialize_entry("type", "req")?;
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("method", &r.method)?;
                map.serialize_entry("params", &r.params)?;
                &r.extra
            }
            Frame::Response(r) => {
                map.serialize_entry("type", "res")?;
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("ok", &r.ok)?;
                if let Some(payload) = &r.payload {
                    map.serialize_entry("payload", payload)?;
                }
                if let Some(error) = &r.error {
                    map.serialize_entry("error", error)?;
                }
                &r.extra
            }
            Frame::Event(e) => {
                map.serialize_entry("type", "event")?;
                map.serialize_entry("event", &e.event)?;
                if let Some(payload) = &e.payload {
                    map.serialize_entry("payload", payload)?;
                }
                if let Some(seq) = e.seq {
                    map.serialize_entry("seq", &seq)?;
                }
                &e.extra
            }
        };
        for (key, value) in extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Every field a frame may carry, read in one pass (the payloads stay text).
#[derive(Default)]
struct RawFrame {
    kind: Option<String>,
    id: Option<Value>,
    method: Option<String>,
    params: Option<Payload>,
    ok: Option<bool>,
    payload: Option<Payload>,
    error: Option<ErrorShape>,
    event: Option<String>,
    seq: Option<u64>,
    extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for RawFrame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RawFrameVisitor)
    }
}

struct RawFrameVisitor;

impl<'de> Visitor<'de> for RawFrameVisitor {
    type Value = RawFrame;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object with a `type`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFrame, A::Error> {
        let mut raw = RawFrame::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "type" => raw.kind = Some(map.next_value()?),
                "id" => raw.id = Some(map.next_value()?),
                "method" => raw.method = Some(map.next_value()?),
                "params" => raw.params = Some(map.next_value()?),
                "ok" => raw.ok = Some(map.next_value()?),
                "payload" => raw.payload = Some(map.next_value()?),
                "error" => raw.error = map.next_value()?,
                "event" => raw.event = Some(map.next_value()?),
                "seq" => raw.seq = map.next_value()?,
                other => {
                    let value: Value = map.next_value()?;
                    raw.extra.insert(other.to_owned(), value);
                }
            }
        }
        Ok(raw)
    }
}

impl RawFrame {
    fn into_frame(self) -> Result<Frame, Error> {
        let kind = self.kind.ok_or_else(|| missing("type"))?;
        match kind.as_str() {
            "req" => Ok(Frame::Request(Request {
                id: id_text(self.id)?,
                method: self.method.ok_or_else(|| missing("req: method"))?,
                params: self.params.unwrap_or_else(Payload::null),
                extra: self.extra,
            })),
            "res" => Ok(Frame::Response(Response {
                id: id_text(self.id)?,
                ok: self.ok.ok_or_else(|| missing("res: ok"))?,
                payload: self.payload,
                error: self.error,
                extra: self.extra,
            })),
            "event" => Ok(Frame::Event(EventFrame {
                event: self.event.ok_or_else(|| missing("event: event"))?,
                payload: self.payload,
                seq: self.seq,
                extra: self.extra,
            })),
            _ => Err(Error::UnknownType(kind.chars().take(32).collect())),
        }
    }
}

fn missing(field: &str) -> Error {
    Error::Malformed(format!("{field} is required"))
}

/// A frame id: a non-empty string of at most [`MAX_ID_CHARS`], or a number (as text).
fn id_text(id: Option<Value>) -> Result<String, Error> {
    match id {
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_ID_CHARS => Ok(s),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(Error::Malformed(format!(
            "id: must be a non-empty string of at most {MAX_ID_CHARS} characters"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_as_they_were_written() {
        for text in [
            r#"{"type":"req","id":"1","method":"chat.send","params":{"sessionKey":"k","message":"hi","idempotencyKey":"x"},"traceparent":"00-ab"}"#,
            r#"{"type":"res","id":"2","ok":true,"payload":{"runId":"r","status":"started"}}"#,
            r#"{"type":"res","id":"3","ok":false,"error":{"code":"UNAVAILABLE","message":"starting","details":{"reason":"startup-sidecars"},"retryable":true,"retryAfterMs":500}}"#,
            r#"{"type":"event","event":"tick","payload":{"ts":1},"seq":22,"stateVersion":{"presence":1}}"#,
        ] {
            let frame = Frame::decode(text).unwrap();
            let again: Value = serde_json::from_str(&frame.to_json()).unwrap();
            assert_eq!(again, serde_json::from_str::<Value>(text).unwrap(), "{text}");
        }
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        assert!(matches!(Frame::decode("{"), Err(Error::NotJson(_))));
        assert!(matches!(Frame::decode("[1]"), Err(Error::Malformed(_))));
        assert!(
            matches!(Frame::decode(r#"{"type":"auth"}"#), Err(Error::UnknownType(t)) if t == "auth")
        );
        let no_ok = Frame::decode(r#"{"type":"res","id":"1"}"#).unwrap_err();
        assert!(no_ok.to_string().contains("res: ok"), "{no_ok}");
        let long_id = format!(r#"{{"type":"req","id":"{}","method":"x"}}"#, "i".repeat(129));
        assert!(Frame::decode(&long_id).unwrap_err().to_string().contains("id:"));
        assert!(Frame::decode(r#"{"type":"event"}"#).is_err());
        let numeric = Frame::decode(r#"{"type":"res","id":7,"ok":true}"#).unwrap();
        assert!(matches!(numeric, Frame::Response(Response { ref id, .. }) if id == "7"));
    }

    #[test]
    fn an_answer_without_an_error_shape_still_says_it_failed() {
        let Frame::Response(res) = Frame::decode(r#"{"type":"res","id":"1","ok":false}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(res.into_answer().unwrap_err().code, "UNKNOWN");
    }

    #[test]
    fn error_details_are_read_by_name() {
        let e: ErrorShape = serde_json::from_str(r#"{"code":"INVALID_REQUEST","message":"x","details":{"reason":"APPROVAL_ALREADY_RESOLVED","expectedProtocol":4}}"#).unwrap();
        assert_eq!(e.reason(), "APPROVAL_ALREADY_RESOLVED");
        assert_eq!(e.detail_number("expectedProtocol"), Some(4));
        assert!(!e.is_starting());
        assert!(ErrorShape::new("UNAVAILABLE", "starting").retry_after(250).is_starting());
    }
}
