//! Fair, bounded work per user, driven without sockets (see `common/engine.rs`): every request
//! costs from one budget per user, floods are refused without growing memory and leave the
//! socket usable, a huge resume reaches a slow reader whole, concurrent first messages share
//! a session, an oversized reply is stopped, and access is revoked even under a flood.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::engine::*;
use mc_core::protocol::{ClientRequest, ResumePoint};
use mc_core::relay::{RelayLimits, UserSession};
use mc_core::testing::fixtures;
use mc_core::{AgentId, ChatSession, RelayEvent, SessionId};
use serde_json::{Value, json};

/// Handles `frames` the way a transport does: it reads a request only while the session
/// wants input, writing out replies otherwise. Returns every frame written, and the most
/// replies ever left unwritten.
async fn drive(
    session: &mut UserSession,
    frames: Vec<mc_core::protocol::ClientFrame>,
) -> (Vec<Value>, usize) {
    let mut written = vec![];
    let mut waited = 0;
    for frame in frames {
        let mut backlog = 0;
        while !session.wants_input() {
            let text = session.try_next_frame().expect("a reply is waiting");
            written.push(serde_json::from_str::<Value>(&text).unwrap());
            backlog += 1;
        }
        waited = waited.max(backlog);
        session.handle(frame).await;
    }
    written.extend(queued(session).await);
    (written, waited)
}

fn codes(frames: &[Value]) -> (usize, usize) {
    let limited = frames.iter().filter(|f| f["payload"]["code"] == "RATE_LIMITED").count();
    (limited, frames.len() - limited)
}

async fn still_usable(session: &mut UserSession) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    session.handle(request("hb", ClientRequest::Heartbeat)).await;
    session.handle(request("s", ClientRequest::Sessions)).await;
    let answers = queued(session).await;
    let kinds: Vec<&str> = answers.iter().map(|a| a["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["heartbeat", "sessions"], "{answers:?}");
    assert_eq!(closed_within(session, Duration::from_millis(10)).await, None, "never closed");
}

#[tokio::test]
async fn a_thousand_aborts_are_rate_limited_and_reach_the_gateway_at_most_a_burst() {
    let e = Engine::new(RelayLimits::default()).await;
    let (mut gw, _) = e.link().await;
    let mut user = e.connect().await;
    let session = fixtures::session(e.world.user.id, &e.world.agent);
    e.store.create_session(&session).await.unwrap();
    let aborts = (0..1000)
        .map(|i| {
            request(&format!("a{i}"), ClientRequest::Abort { session_id: session.id, run_id: None })
        })
        .collect();
    let (written, backlog) = drive(&mut user, aborts).await;
    let (limited, _) = codes(&written);
    assert!(limited >= 900, "{limited} of 1000 refused");
    assert!(backlog <= 33, "replies waited at most the backlog, not the flood: {backlog}");
    let mut sent = 0;
    while let Some(req) = gw.try_request().await {
        assert_eq!(req["method"], "chat.abort");
        sent += 1;
    }
    assert!(sent <= 100, "the gateway got {sent} aborts");
    still_usable(&mut user).await;
}

#[tokio::test]
async fn a_thousand_histories_and_a_thousand_big_resumes_are_rate_limited() {
    let e = Engine::new(RelayLimits::default()).await;
    let mut user = e.connect().await;
    let mut sessions = vec![];
    for _ in 0..100 {
        let s = fixtures::session(e.world.user.id, &e.world.agent);
        e.store.create_session(&s).await.unwrap();
        sessions.push(s.id);
    }
    let histories = (0..1000)
        .map(|i| {
            request(
                &format!("h{i}"),
                ClientRequest::History {
                    session_id: sessions[i % 100],
                    before_seq: None,
                    limit: 50,
                },
            )
        })
        .collect();
    let (written, backlog) = drive(&mut user, histories).await;
    let (limited, served) = codes(&written);
    assert!(limited >= 900 && served <= 100, "{limited} refused, {served} served");
    assert!(backlog <= 33, "{backlog}");

    let points: Vec<ResumePoint> =
        sessions.iter().map(|s| ResumePoint { session_id: *s, after_seq: 0 }).collect();
    let resumes = (0..1000)
        .map(|i| request(&format!("r{i}"), ClientRequest::Resume { sessions: points.clone() }))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (written, backlog) = drive(&mut user, resumes).await;
    let limited = written.iter().filter(|f| f["payload"]["code"] == "RATE_LIMITED").count();
    assert!(limited >= 990, "a resume of 100 sessions costs 11: {limited} refused");
    assert!(backlog <= 33, "{backlog}");
    // What was accepted is de-duplicated: each session is resumed once.
    let mut resumed = std::collections::HashMap::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(2), next_frame(&mut user)).await;
        let Ok(text) = frame else { break };
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["type"] == "resumed" {
            *resumed.entry(v["payload"]["session_id"].as_str().unwrap().to_owned()).or_insert(0) +=
                1;
        }
    }
    assert_eq!(resumed.len(), 100);
    assert!(resumed.values().all(|n| *n == 1), "{resumed:?}");
    still_usable(&mut user).await;
}

#[tokio::test]
async fn a_resume_of_five_thousand_messages_reaches_a_slow_reader_whole() {
    let limits = RelayLimits::default().with_live_queue(32);
    let e = Engine::new(limits).await;
    let (mut gw, _) = e.link().await;
    let session = e.world.session.id;
    for chunk in 0..20 {
        let batch: Vec<_> = (0..250)
            .map(|i| fixtures::user_message(session, &format!("m{}", chunk * 250 + i)))
            .collect();
        for r in e.store.write_batch(&batch, &[]).await {
            r.unwrap();
        }
    }
    let mut reader = e.connect().await;
    let mut other = e.connect().await;
    reader
        .handle(request(
            "r",
            ClientRequest::Resume {
                sessions: vec![ResumePoint { session_id: session, after_seq: 0 }],
            },
        ))
        .await;
    // Meanwhile a run streams live chunks to both sockets.
    other.handle(chat(e.agent(), "stream while resuming", Some(session)).0).await;
    let req = gw.request_of("chat.send").await;
    let (run, key) = run_of(&req);
    gw.answer(&req, json!({ "runId": run, "status": "started" }));
    let mut seqs = vec![];
    let mut chunks = 0;
    let mut streamed = String::new();
    let mut resumed = None;
    while resumed.is_none() {
        if seqs.len() % 500 == 0 && chunks < 20 {
            streamed.push_str(" word");
            e.event(&run, &key, "delta", text(&streamed)).await;
        }
        let v: Value = serde_json::from_str(
            &tokio::time::timeout(SOON, next_frame(&mut reader)).await.unwrap(),
        )
        .unwrap();
        match v["type"].as_str().unwrap() {
            "chat" => seqs.push(v["payload"]["seq"].as_u64().unwrap()),
            "chunk" => chunks += 1,
            "resumed" => resumed = Some(v),
            _ => {}
        }
        // A slow reader.
        if seqs.len() % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // 5 000 stored, and the message sent meanwhile (live, and again in the resume if it was
    // stored before the resume reached the end).
    let expected: Vec<u64> = (1..=5001).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, expected);
    assert!(seqs.len() <= 5002, "{}", seqs.len());
    assert!(chunks > 0, "live chunks went through");
    assert_eq!(
        closed_within(&reader, Duration::from_millis(10)).await,
        None,
        "never closed with 1013"
    );
    assert_eq!(resumed.unwrap()["payload"]["last_seq"], 5001);
}

#[tokio::test]
async fn two_sockets_sending_the_same_first_message_share_one_session() {
    let e = Engine::new(RelayLimits::default()).await;
    let (mut gw, _) = e.link().await;
    let mut phone = e.connect().await;
    let mut laptop = e.connect().await;
    let client_id = uuid::Uuid::now_v7();
    let first = chat_with_id(client_id, e.agent(), "hello", None);
    let second = chat_with_id(client_id, e.agent(), "hello", None);
    tokio::join!(phone.handle(first), laptop.handle(second));
    let a = until(&mut phone, "ack").await.0;
    let b = until(&mut laptop, "ack").await.0;
    assert_eq!(a["payload"], b["payload"], "one session, one message");
    let sessions =
        e.store.list_user_sessions(e.world.user.id, mc_core::Page::first(10)).await.unwrap();
    let started: Vec<&ChatSession> =
        sessions.items.iter().filter(|s| s.origin_client_msg_id == Some(client_id)).collect();
    assert_eq!(started.len(), 1);
    gw.request_of("chat.send").await;
    assert!(gw.try_request().await.is_none(), "sent once");
}

#[tokio::test]
async fn an_oversized_reply_is_stopped_and_the_user_told() {
    let limits = RelayLimits::default().with_max_reply_bytes(64);
    let e = Engine::new(limits).await;
    let (mut gw, _) = e.link().await;
    let mut user = e.connect().await;
    let (message, client_id) = chat(e.agent(), "talk a lot", None);
    user.handle(message).await;
    let req = gw.request_of("chat.send").await;
    let (run, key) = run_of(&req);
    gw.answer(&req, json!({ "runId": run, "status": "started" }));
    e.event(&run, &key, "delta", text(&"a".repeat(60))).await;
    e.event(&run, &key, "delta", text(&"a".repeat(70))).await;
    let abort = gw.request_of("chat.abort").await;
    assert_eq!(abort["params"]["runId"], run.as_str(), "the run is stopped at the gateway");
    let (error, _) = until(&mut user, "error").await;
    assert_eq!(
        (error["id"].as_str(), error["payload"]["code"].as_str()),
        (Some(client_id.to_string().as_str()), Some("GATEWAY_ERROR"))
    );
    assert!(error["payload"]["message"].as_str().unwrap().contains("longer than"), "{error}");
    e.event(&run, &key, "aborted", json!({})).await;
    e.event(&run, &key, "final", text(&"a".repeat(70))).await;
    let session: SessionId = until_ack_session(&e).await;
    let history = e.history(session).await;
    assert_eq!(
        history.iter().map(|h| h.1.as_str()).collect::<Vec<_>>(),
        vec!["user", "system"],
        "no reply stored"
    );
}

async fn until_ack_session(e: &Engine) -> SessionId {
    e.store
        .list_user_sessions(e.world.user.id, mc_core::Page::first(10))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|s| s.origin_client_msg_id.is_some())
        .unwrap()
        .id
}

#[tokio::test]
async fn a_suspension_during_a_flood_of_events_still_closes_the_sockets() {
    let e = Engine::new(RelayLimits::default()).await;
    let user = e.connect().await;
    let events = e.services.events();
    let flood = |n: usize| {
        for _ in 0..n {
            events.publish(RelayEvent::AgentsChanged {
                organization_id: e.world.org.id,
                gateway_id: e.gateway(),
                added: vec![AgentId::new()],
                returned: vec![],
                gone: vec![],
            });
        }
    };
    // The suspension sits in the middle of the flood: a bounded, lossy channel would have
    // dropped it with the oldest events.
    flood(5_000);
    events.publish(RelayEvent::UserBlocked { user_id: e.world.user.id });
    flood(5_000);
    assert_eq!(closed_within(&user, SOON).await, Some(4003), "closed in time");
}

#[tokio::test]
async fn a_flood_of_requests_does_not_starve_live_frames() {
    // A client that keeps sending requests, reading only as much as it must to be read from
    // again, while a run streams to it: the live frames still get out, in turn.
    let limits = RelayLimits::default().with_live_queue(16).with_rate_per_sec(0).with_rate_burst(0);
    let e = Engine::new(limits).await;
    let (mut gw, _) = e.link().await;
    let mut user = e.connect().await;
    user.handle(chat(e.agent(), "stream to me", None).0).await;
    let req = gw.request_of("chat.send").await;
    let (run, key) = run_of(&req);
    gw.answer(&req, json!({ "runId": run, "status": "started" }));
    let mut streamed = String::new();
    let mut written = vec![];
    for i in 0..2000 {
        if i % 10 == 0 {
            streamed.push('x');
            e.event(&run, &key, "delta", text(&streamed)).await;
        }
        while !user.wants_input() {
            let frame = user.try_next_frame().expect("a frame is waiting");
            written.push(serde_json::from_str::<Value>(&frame).unwrap());
        }
        user.handle(request(&format!("hb{i}"), ClientRequest::Heartbeat)).await;
    }
    written.extend(queued(&mut user).await);
    assert_eq!(
        closed_within(&user, Duration::from_millis(10)).await,
        None,
        "not closed as too slow"
    );
    let chunks = written.iter().filter(|f| f["type"] == "chunk").count();
    assert_eq!(chunks, 200, "every delta reached the socket");
}
