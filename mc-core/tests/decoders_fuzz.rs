//! Property tests of the frame decoders (proptest): any text, and JSON made of the
//! protocol's own keys and values, is decoded or refused with a message — never a panic.
//! `PROPTEST_CASES` sets how many cases (256 by default; see BENCHMARKS.md for the long run).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mc_core::protocol::decode_client_frame;
use mc_core::protocol::decode_gateway_frame;
use proptest::prelude::*;
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "type",
    "id",
    "payload",
    "token",
    "relay_token",
    "agent_id",
    "content",
    "session_id",
    "sessions",
    "after_seq",
    "before_seq",
    "limit",
    "run_id",
    "topics",
    "event",
    "ok",
    "error",
    "code",
    "message",
    "state",
    "runId",
    "sessionKey",
    "seq",
    "deltaText",
    "replace",
    "metrics",
    "agents",
    "status",
];
const WORDS: &[&str] = &[
    "auth",
    "chat",
    "history",
    "resume",
    "abort",
    "sessions",
    "heartbeat",
    "subscribe",
    "unsubscribe",
    "req",
    "res",
    "event",
    "delta",
    "final",
    "error",
    "aborted",
    "activity",
    "01a20000-0000-7000-8000-000000000000",
    "srv-1",
    "",
    "\u{0}",
    "😀",
];

/// JSON values shaped like frames: objects of the protocol's keys, its words, numbers at the
/// edges, nesting.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![Just(i64::MIN), Just(-1i64), Just(0), Just(1), Just(i64::MAX), any::<i64>()]
            .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        proptest::sample::select(WORDS).prop_map(|w| Value::String(w.to_owned())),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..8).prop_map(
                |pairs| Value::Object(
                    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>()
                )
            ),
        ]
    })
}

proptest! {
    #[test]
    fn client_frames_never_panic(text in ".{0,300}") {
        if let Err(err) = decode_client_frame(&text) {
            prop_assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn client_frames_of_protocol_keys_never_panic(value in json()) {
        if let Err(err) = decode_client_frame(&value.to_string()) {
            prop_assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn gateway_frames_never_panic(text in ".{0,300}") {
        let _ = decode_gateway_frame(&text);
    }

    #[test]
    fn gateway_frames_of_protocol_keys_never_panic(value in json()) {
        let _ = decode_gateway_frame(&value.to_string());
    }
}
