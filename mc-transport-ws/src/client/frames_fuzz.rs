//! Property test of the client's frame handling (proptest): sequences of the relay's frames,
//! each drawn from every kind the relay sends with its numbers at the edges (`0`, `u64::MAX`,
//! negative, fractional, too large for any integer) and its strings replaced, fields
//! dropped or retyped, or any text at all, go through `Inner::on_frame` one after another
//! against one client's state. Nothing may panic: an app built with `panic = "abort"` would
//! die. `PROPTEST_CASES` sets how many sequences (256 by default).

use std::sync::Arc;

use mc_core::protocol::{
    ChatMessage, ErrorCode, SERVER_HEARTBEAT_PREFIX, ServerFrame, SessionInfo,
};
use mc_core::{AgentId, MessageId, MessageRole, SessionId, SessionStatus, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

use super::McClient;
use super::net::{Backend, Socket};
use super::types::{ClientError, Tokens};

/// A backend that is never dialled: the frames are handed to the client's state directly.
struct NoNetwork;

#[async_trait::async_trait]
impl Backend for NoNetwork {
    async fn open(&self) -> Result<Box<dyn Socket>, ClientError> {
        Err(ClientError::Network("no network in this test".into()))
    }
    async fn refresh(&self, _: &str) -> Result<Tokens, ClientError> {
        Err(ClientError::Network("no network in this test".into()))
    }
}

/// One frame of every kind the relay sends, on a few sessions and runs, so that a sequence
/// of them meets itself (acks of sends, chunks of one run, resumes of a session seen before).
fn frame_of_kind(kind: u8, session: SessionId, run: &str, n: u64) -> ServerFrame {
    let agent = AgentId::new();
    let message = ChatMessage {
        session_id: session,
        agent_id: agent,
        role: MessageRole::Agent,
        content: "reply".into(),
        seq: n,
        run_id: Some(run.into()),
        client_msg_id: None,
        created_at: Timestamp::UNIX_EPOCH,
        id: MessageId::new(),
    };
    match kind % 11 {
        0 => ServerFrame::Ack {
            client_id: Uuid::now_v7(),
            session_id: session,
            message_id: MessageId::new(),
            seq: n,
        },
        1 => ServerFrame::Chunk {
            session_id: session,
            run_id: run.into(),
            delta: "ab".into(),
            offset: n as usize,
        },
        2 => ServerFrame::Chat(message),
        3 => ServerFrame::System {
            event: "agent_online".into(),
            agent_id: Some(agent),
            session_id: Some(session),
        },
        4 => ServerFrame::AgentStatus {
            agent_id: agent,
            session_id: session,
            run_id: run.into(),
            phase: "typing".into(),
            detail: None,
        },
        5 => ServerFrame::History {
            id: Some("h1".into()),
            session_id: session,
            messages: vec![message],
            has_more: true,
        },
        6 => ServerFrame::Resumed { id: None, session_id: session, last_seq: n },
        7 => ServerFrame::Sessions {
            id: Some("s1".into()),
            sessions: vec![SessionInfo {
                session_id: session,
                agent_id: agent,
                last_seq: n,
                last_message_at: None,
                status: SessionStatus::Active,
            }],
        },
        8 => ServerFrame::Error {
            id: Some(Uuid::now_v7().to_string()),
            code: ErrorCode::AgentUnavailable,
            message: "x".into(),
            retry_after_ms: Some(n),
        },
        9 => ServerFrame::Heartbeat { id: Some(format!("{SERVER_HEARTBEAT_PREFIX}{n}")) },
        _ => ServerFrame::AuthExtended { id: None, expires_at: None },
    }
}

/// Values at the edges, put in place of a number or a string.
fn edge(pick: u64) -> Value {
    match pick % 12 {
        0 => json!(0),
        1 => json!(u64::MAX),
        2 => json!(i64::MIN),
        3 => json!(-1),
        4 => json!(1.5),
        5 => json!(1e300),
        6 => json!(""),
        7 => json!("\u{1F600}\u{301}"),
        8 => Value::Null,
        9 => json!([]),
        10 => json!({}),
        _ => json!(usize::MAX.to_string()),
    }
}

/// Replaces leaves of `value` (and sometimes drops an object's field) as `picks` say.
fn mutate(value: &mut Value, picks: &mut impl Iterator<Item = u64>) {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                match picks.next().unwrap_or(0) % 8 {
                    0 => {
                        map.remove(&key);
                    }
                    1 => {
                        map.insert(key, edge(picks.next().unwrap_or(0)));
                    }
                    _ => mutate(map.get_mut(&key).expect("a key just listed"), picks),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| mutate(item, picks)),
        Value::Number(_) | Value::String(_) if picks.next().unwrap_or(0).is_multiple_of(3) => {
            *value = edge(picks.next().unwrap_or(0));
        }
        _ => {}
    }
}

/// One frame of a sequence: its kind, its session and run (of three each), its number, and
/// the picks that mutate it; or raw text.
#[derive(Debug, Clone)]
enum Step {
    Frame { kind: u8, session: usize, run: usize, n: u64, picks: Vec<u64> },
    Text(String),
}

fn step() -> impl Strategy<Value = Step> {
    let numbers =
        prop_oneof![Just(0_u64), Just(u64::MAX), Just(u64::MAX - 1), 0_u64..10, any::<u64>()];
    let picks = prop::collection::vec(any::<u64>(), 0..24);
    let frame = (any::<u8>(), 0_usize..3, 0_usize..3, numbers, picks)
        .prop_map(|(kind, session, run, n, picks)| Step::Frame { kind, session, run, n, picks });
    prop_oneof![8 => frame, 1 => ".{0,64}".prop_map(Step::Text)]
}

/// Feeds `steps` to one client's state; panics if the client does.
fn feed(steps: Vec<Step>) {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let client = McClient::from_parts(Arc::new(NoNetwork), None, runtime.handle().clone());
    let sessions = [SessionId::new(), SessionId::new(), SessionId::new()];
    for step in steps {
        let text = match step {
            Step::Frame { kind, session, run, n, picks } => {
                let frame = frame_of_kind(kind, sessions[session], ["r0", "r1", "r2"][run], n);
                let mut value: Value =
                    serde_json::from_str(&frame.to_json()).expect("the relay's JSON");
                mutate(&mut value, &mut picks.into_iter());
                value.to_string()
            }
            Step::Text(text) => text,
        };
        let _ = client.inner.on_frame(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_frame_the_relay_could_send_panics_the_client(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        feed(steps);
    }
}
