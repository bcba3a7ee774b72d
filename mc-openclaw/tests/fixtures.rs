//! Round trips against frames recorded from a real OpenClaw 2026.9.6 gateway
//! (`tests/fixtures/openclaw-2026.9.6.jsonl`, written by `testkit`'s `record-openclaw`; see
//! its header to refresh them) and, for approvals and questions, frames transcribed from a
//! recording of the same gateway (`approvals-2026.9.6.jsonl`).
//!
//! Every frame is read and written again, as a frame and through its typed view (the method
//! of its request, or its event's type): nothing may be lost. A field whose value was `null`
//! counts as absent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use mc_openclaw::chat::TranscriptMessage;
use mc_openclaw::handshake::{ConnectParams, HelloOk};
use mc_openclaw::method::{self, Method};
use mc_openclaw::{ChatState, Event, EventFrame, Frame, Payload, TextUpdate};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn frames(file: &str) -> Vec<(String, Value)> {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut line: Value = serde_json::from_str(line).unwrap();
            (line["dir"].as_str().unwrap().to_owned(), line["frame"].take())
        })
        .collect()
}

/// `value` without its `null` members, at every depth.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn assert_same(what: &str, original: &Value, again: &Value) {
    assert_eq!(without_nulls(again), without_nulls(original), "{what} lost or changed something");
}

/// Reads `json` as a `T` and writes it again.
fn typed<T: Serialize + DeserializeOwned>(what: &str, json: &Value) -> Value {
    let value: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("{what} does not read as its type: {e}\n{json}"));
    serde_json::to_value(value).unwrap()
}

fn method_params<M: Method>(json: &Value) -> Value {
    typed::<M::Params>(M::NAME, json)
}

fn method_result<M: Method>(json: &Value) -> Value {
    typed::<M::Result>(M::NAME, json)
}

/// A request's params and its answer's payload through the method's types (the params of a
/// refused request need not be valid).
fn typed_call(name: &str, params: &Value, result: Option<&Value>) {
    let Some(result) = result else { return };
    macro_rules! each {
        ($($m:ty),*) => {
            match name {
                $(<$m as Method>::NAME => {
                    assert_same(name, params, &method_params::<$m>(params));
                    assert_same(name, result, &method_result::<$m>(result));
                })*
                "connect" => {
                    assert_same(name, params, &typed::<ConnectParams>(name, params));
                    assert_same("hello-ok", result, &typed::<HelloOk>(name, result));
                }
                other => assert!(other == "no.such.method", "{other} is not typed"),
            }
        };
    }
    each!(
        method::Health,
        method::Status,
        method::AgentsList,
        method::SessionsList,
        method::CronList,
        method::CronStatus,
        method::CronRuns,
        method::UsageCost,
        method::SessionsUsage,
        method::ChatSend,
        method::ChatHistory,
        method::ChatAbort,
        method::ArtifactsList,
        method::ApprovalResolve,
        method::ApprovalGet,
        method::ExecApprovalList,
        method::ExecApprovalResolve,
        method::PluginApprovalResolve,
        method::QuestionResolve
    );
}

fn round_trip(file: &str) -> usize {
    let mut methods: HashMap<String, (String, Value)> = HashMap::new();
    let mut typed_events = 0;
    for (dir, json) in frames(file) {
        let text = json.to_string();
        let frame = Frame::decode(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let again: Value = serde_json::from_str(&frame.to_json()).unwrap();
        assert_eq!(again, json, "the frame is written back as it was read ({dir})");
        match frame {
            Frame::Request(req) => {
                let params: Value = serde_json::from_str(req.params.json()).unwrap();
                methods.insert(req.id, (req.method, params));
            }
            Frame::Response(res) => {
                let (name, params) = methods.remove(&res.id).expect("a response to a request");
                let answer = res.into_answer();
                let result = answer.as_ref().ok().map(|p| serde_json::from_str(p.json()).unwrap());
                typed_call(&name, &params, result.as_ref());
            }
            Frame::Event(event) => {
                let decoded = event.decode().unwrap_or_else(|e| panic!("{e}: {text}"));
                if !matches!(decoded, Event::Other { .. }) {
                    typed_events += 1;
                }
                let written = decoded.to_frame().unwrap();
                assert_eq!(written.event, event.event);
                let original: Value =
                    serde_json::from_str(event.payload.as_ref().unwrap().json()).unwrap();
                let rewritten: Value =
                    serde_json::from_str(written.payload.as_ref().unwrap().json()).unwrap();
                assert_same(&event.event, &original, &rewritten);
            }
        }
    }
    typed_events
}

#[test]
fn recorded_frames_survive_a_round_trip() {
    let typed = round_trip("openclaw-2026.9.6.jsonl");
    assert!(typed > 30, "most recorded events are typed: {typed}");
}

#[test]
fn recorded_approval_and_question_frames_survive_a_round_trip() {
    assert!(round_trip("approvals-2026.9.6.jsonl") >= 5);
}

/// The recorded run's chat events, as frames.
fn recorded_run() -> Vec<mc_openclaw::ChatEvent> {
    frames("openclaw-2026.9.6.jsonl")
        .into_iter()
        .filter(|(_, f)| {
            f["event"] == "chat" && f["payload"]["runId"] == "0194f4a0-7b1c-7000-8000-00000000c0de"
        })
        .map(|(_, f)| {
            let Frame::Event(frame) = Frame::decode(&f.to_string()).unwrap() else { panic!() };
            let Event::Chat(chat) = frame.decode().unwrap() else { panic!() };
            chat
        })
        .collect()
}

/// Applies a run's deltas the way the relay does; returns the text.
fn apply(events: &[mc_openclaw::ChatEvent]) -> String {
    let mut text = String::new();
    for event in events {
        match event.text_update() {
            Some(TextUpdate::Append(delta)) => text.push_str(delta),
            Some(TextUpdate::Replace(all) | TextUpdate::Whole(all)) => text = all.to_owned(),
            None => {}
        }
    }
    text
}

#[test]
fn a_reply_reads_the_same_with_a_snapshot_on_every_delta_or_only_the_first() {
    let events = recorded_run();
    let last = events.last().unwrap();
    assert_eq!(last.state, ChatState::Final);
    let reply = last.text().unwrap();
    assert_eq!(reply, "Echo: Hi there, relay! [pace:30]");
    assert!(events.iter().filter(|e| e.state == ChatState::Delta).all(|e| e.message.is_some()));
    assert_eq!(apply(&events), reply, "2026.9.6: every delta carries the snapshot");

    // The form OpenClaw is moving to: the snapshot on the first delta only.
    let mut first = true;
    let thin: Vec<_> = events
        .iter()
        .cloned()
        .map(|mut e| {
            if e.state == ChatState::Delta && !std::mem::take(&mut first) {
                e.message = None;
            }
            e
        })
        .collect();
    assert!(
        thin.iter().filter(|e| e.state == ChatState::Delta).skip(1).all(|e| e.message.is_none())
    );
    assert_eq!(apply(&thin), reply);

    // No snapshot at all, and a `replace` correcting the text.
    let mut bare: Vec<_> = thin
        .into_iter()
        .map(|mut e| {
            e.message = None;
            e
        })
        .collect();
    assert_eq!(apply(&bare), reply);
    let mut fix = bare[bare.len() - 2].clone();
    fix.state = ChatState::Delta;
    fix.delta_text = Some("Echo: corrected".into());
    fix.replace = Some(true);
    bare.insert(bare.len() - 1, fix);
    assert_eq!(apply(&bare), "Echo: corrected");
}

#[test]
fn the_history_finds_a_runs_reply() {
    let (_, history) = frames("openclaw-2026.9.6.jsonl")
        .into_iter()
        .find(|(_, f)| f["payload"]["messages"].is_array())
        .unwrap();
    let payload = Payload::encode(&history["payload"]).unwrap();
    let history = method::result::<method::ChatHistory>(&payload).unwrap();
    let reply = history.reply_of("0194f4a0-7b1c-7000-8000-00000000c0de").unwrap();
    assert_eq!(reply.text().as_deref(), Some("Echo: Hi there, relay! [pace:30]"));
    assert!(reply.usage.as_ref().and_then(|u| u.total_tokens).is_some(), "usage is on the reply");
    assert!(history.reply_of("some other run").is_none());
    assert_eq!(TranscriptMessage::assistant("x").text().as_deref(), Some("x"));
}

#[test]
fn an_unknown_event_passes_through_untouched() {
    let text = r#"{"type":"event","event":"chat.metadata.changed","payload":{"sessionKey":"k","x":[1,{"y":null}]},"seq":9,"recipientProfileId":"p"}"#;
    let Frame::Event(frame) = Frame::decode(text).unwrap() else { panic!() };
    let Event::Other { name, payload } = frame.decode().unwrap() else { panic!() };
    assert_eq!(name, "chat.metadata.changed");
    let again = EventFrame { payload, ..frame };
    assert_eq!(Frame::Event(again).to_json(), text);
}
