//! The relay's delivery promise, driven without sockets (see `common/engine.rs`): an acked
//! message reaches its gateway once per run, or its user is told it failed — through link
//! blips, a gateway lost at the worst moment, a gateway that never comes back, and a restart
//! of the relay. Timers are checked with paused time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::engine::*;
use mc_core::bus::{Bus, BusHandler, BusMessage, BusTopic, InProcessBus, Subscription};
use mc_core::relay::{MessageWriter, RelayLimits};
use mc_core::testing::fixtures;
use mc_core::{DeliveryState, DeliveryUpdate, SessionId};
use serde_json::{Value, json};

fn session_of(ack: &Value) -> SessionId {
    ack["payload"]["session_id"].as_str().unwrap().parse().unwrap()
}

fn states(
    history: &[(u64, String, String, Option<DeliveryState>)],
) -> Vec<(String, Option<DeliveryState>)> {
    history.iter().map(|(_, role, _, d)| (role.clone(), *d)).collect()
}

#[tokio::test]
async fn a_run_from_send_to_final() {
    let e = Engine::new(RelayLimits::default()).await;
    let (mut gw, _) = e.link().await;
    let mut user = e.connect().await;
    let (frame_, client_id) = chat(e.agent(), "direct", None);
    user.handle(frame_).await;
    let req = gw.request_of("chat.send").await;
    let ack = frame(&mut user).await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str()),
        (Some("ack"), Some(client_id.to_string().as_str()))
    );
    let (run, key) = run_of(&req);
    assert_eq!(
        run,
        ack["payload"]["message_id"].as_str().unwrap(),
        "the idempotency key is the message id"
    );
    gw.answer(&req, json!({ "runId": run, "status": "started" }));

    // Cumulative text, then a `replace` that rewrites the tail.
    e.event(&run, &key, "delta", text("Hel")).await;
    e.event(&run, &key, "delta", text("Hello")).await;
    e.event(&run, &key, "delta", json!({ "deltaText": "Help!", "replace": true })).await;
    // Not chat events, and events of runs the relay does not know: ignored.
    e.gateway_event("agent", json!({ "runId": run, "stream": "assistant" })).await;
    e.event("someone-else", &key, "final", json!({})).await;
    e.event(&mc_core::MessageId::new().to_string(), &key, "final", text("forged")).await;
    e.event(&run, &key, "final", text("Help!")).await;
    e.event(&run, &key, "error", json!({ "errorMessage": "late" })).await;

    let mut chunks = vec![];
    for _ in 0..3 {
        let c = frame(&mut user).await;
        chunks.push((
            c["payload"]["offset"].as_u64().unwrap(),
            c["payload"]["delta"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(chunks, vec![(0, "Hel".into()), (3, "lo".into()), (3, "p!".into())]);
    let reply = frame(&mut user).await;
    assert_eq!(
        (reply["type"].as_str(), reply["payload"]["content"].as_str()),
        (Some("chat"), Some("Help!"))
    );
    assert!(queued(&mut user).await.is_empty(), "nothing for the late error");
    let history = e.history(session_of(&ack)).await;
    assert_eq!(
        states(&history),
        vec![("user".into(), Some(DeliveryState::Answered)), ("agent".into(), None)],
        "the reply and its request's `answered` are stored together"
    );
}

/// A bus that says every gateway is held somewhere, so a chat passes the check and then finds
/// nobody to hand the message to: the gateway lost between the check and the hand-off.
#[derive(Debug, Default)]
struct GatewayVanishes(InProcessBus);

#[async_trait]
impl Bus for GatewayVanishes {
    async fn publish(&self, topic: BusTopic, message: BusMessage) -> mc_core::Result<usize> {
        self.0.publish(topic, message).await
    }
    async fn subscribe(
        &self,
        topic: BusTopic,
        handler: Arc<dyn BusHandler>,
    ) -> mc_core::Result<Subscription> {
        self.0.subscribe(topic, handler).await
    }
    async fn has_subscribers(&self, topic: BusTopic) -> mc_core::Result<bool> {
        Ok(matches!(topic, BusTopic::Gateway(_)) || self.0.has_subscribers(topic).await?)
    }
    fn instance_id(&self) -> &str {
        self.0.instance_id()
    }
}

#[tokio::test]
async fn a_gateway_lost_before_the_hand_off_fails_loudly_and_a_retry_is_sent_once() {
    let e = Engine::with_bus(RelayLimits::default(), Arc::new(GatewayVanishes::default())).await;
    let mut user = e.connect().await;
    let (first, client_id) = chat(e.agent(), "are you there?", None);
    user.handle(first).await;
    let ack = frame(&mut user).await;
    assert_eq!(ack["type"], "ack", "stored: the ack says so");
    let (error, before) = until(&mut user, "error").await;
    assert_eq!(error["payload"]["code"], "GATEWAY_ERROR");
    assert_eq!(error["id"], client_id.to_string(), "the error names the message");
    assert_eq!(before.len(), 1, "and a stored notice came first: {before:?}");
    assert_eq!(before[0]["payload"]["role"], "system");
    let session = session_of(&ack);
    assert_eq!(
        states(&e.history(session).await),
        vec![("user".into(), Some(DeliveryState::Failed)), ("system".into(), None)]
    );

    // The gateway links; the user retries the same message: it is sent, once.
    let (mut gw, _) = e.link().await;
    assert!(gw.try_request().await.is_none(), "a failed message is not sent by itself");
    user.handle(chat_with_id(client_id, e.agent(), "are you there?", None)).await;
    let again = frame(&mut user).await;
    assert_eq!(again["payload"], ack["payload"], "the same message, the same ack");
    let req = gw.request_of("chat.send").await;
    let (run, key) = run_of(&req);
    assert_eq!(run, ack["payload"]["message_id"].as_str().unwrap());
    user.handle(chat_with_id(client_id, e.agent(), "are you there?", None)).await;
    frame(&mut user).await;
    assert!(gw.try_request().await.is_none(), "a message on its way is not sent again");
    gw.answer(&req, json!({ "runId": run, "status": "started" }));
    e.event(&run, &key, "final", text("yes")).await;
    let (reply, _) = until(&mut user, "chat").await;
    assert_eq!(reply["payload"]["content"], "yes");
    let history = e.history(session).await;
    assert_eq!(
        states(&history),
        vec![
            ("user".into(), Some(DeliveryState::Answered)),
            ("system".into(), None),
            ("agent".into(), None)
        ]
    );
}

#[tokio::test]
async fn a_message_for_a_gateway_away_waits_for_its_next_link() {
    let e = Engine::new(RelayLimits::default()).await;
    let (_gone, generation) = e.link().await;
    e.relay.detach_gateway(e.gateway(), generation);
    let mut user = e.connect().await;
    let (message, client_id) = chat(e.agent(), "while you were out", None);
    user.handle(message).await;
    let ack = frame(&mut user).await;
    assert_eq!(ack["type"], "ack", "the gateway is away within its grace period: accepted");
    user.handle(chat_with_id(client_id, e.agent(), "while you were out", None)).await;
    assert_eq!(frame(&mut user).await["payload"], ack["payload"], "a retry while queued");
    assert_eq!(e.relay.pending_deliveries(), 1);

    let (mut gw, _) = e.link().await;
    let req = gw.request_of("chat.send").await;
    assert_eq!(run_of(&req).0, ack["payload"]["message_id"].as_str().unwrap());
    assert!(gw.try_request().await.is_none(), "sent once");
    let (run, key) = run_of(&req);
    gw.answer(&req, json!({ "runId": run, "status": "started" }));
    e.event(&run, &key, "final", text("welcome back")).await;
    let (reply, _) = until(&mut user, "chat").await;
    assert_eq!(reply["payload"]["content"], "welcome back");
}

#[tokio::test]
async fn a_link_blip_mid_run_keeps_the_run_and_the_stream() {
    let e = Engine::new(RelayLimits::default()).await;
    let (mut first, generation) = e.link().await;
    let mut user = e.connect().await;
    user.handle(chat(e.agent(), "Hi there", None).0).await;
    let req = first.request_of("chat.send").await;
    let (run, key) = run_of(&req);
    first.answer(&req, json!({ "runId": run, "status": "started" }));
    let ack = frame(&mut user).await;
    e.event(&run, &key, "delta", text("Echo: Hi")).await;
    assert_eq!(frame(&mut user).await["payload"]["delta"], "Echo: Hi");

    // The link drops and a new one comes within the grace period. The relay asks again with
    // the same key; OpenClaw says the run is in flight, and its history has the text so far.
    e.relay.detach_gateway(e.gateway(), generation);
    let (mut second, _) = e.link().await;
    let again = second.request_of("chat.send").await;
    assert_eq!(run_of(&again).0, run, "the same idempotency key: no second run");
    second.answer(&again, json!({ "runId": run, "status": "in_flight" }));
    let history = second.request_of("chat.history").await;
    assert_eq!(history["params"]["sessionKey"], key.as_str());
    second.answer(
        &history,
        json!({ "messages": [], "inFlightRun": { "runId": run, "text": "Echo: Hi there" } }),
    );
    let rest = frame(&mut user).await;
    assert_eq!(
        (rest["payload"]["offset"].as_u64(), rest["payload"]["delta"].as_str()),
        (Some(8), Some(" there")),
        "the text missed during the gap"
    );
    e.event(&run, &key, "final", text("Echo: Hi there")).await;
    let (reply, _) = until(&mut user, "chat").await;
    assert_eq!(reply["payload"]["content"], "Echo: Hi there");
    e.event(&run, &key, "final", text("Echo: Hi there")).await;
    assert!(queued(&mut user).await.is_empty());
    assert_eq!(
        states(&e.history(session_of(&ack)).await),
        vec![("user".into(), Some(DeliveryState::Answered)), ("agent".into(), None)],
        "the reply is stored once, no failure notice"
    );
}

#[tokio::test]
async fn a_run_that_finished_while_the_link_was_away_is_caught_up_from_history() {
    let e = Engine::new(RelayLimits::default()).await;
    let (mut first, generation) = e.link().await;
    let mut user = e.connect().await;
    user.handle(chat(e.agent(), "quick one", None).0).await;
    let req = first.request_of("chat.send").await;
    let (run, key) = run_of(&req);
    first.answer(&req, json!({ "runId": run, "status": "started" }));
    let ack = frame(&mut user).await;
    e.relay.detach_gateway(e.gateway(), generation);

    let (mut second, _) = e.link().await;
    let again = second.request_of("chat.send").await;
    second.answer(&again, json!({ "runId": run, "status": "ok" }));
    let history = second.request_of("chat.history").await;
    second.answer(
        &history,
        json!({ "messages": [
            { "role": "user", "content": "quick one", "idempotencyKey": format!("{run}:user") },
            { "role": "assistant", "content": [{ "type": "text", "text": "done" }], "__openclaw": { "runId": run } },
        ] }),
    );
    let (reply, _) = until(&mut user, "chat").await;
    assert_eq!(reply["payload"]["content"], "done");
    // The final event that the new link may still carry changes nothing.
    e.event(&run, &key, "final", text("done")).await;
    assert!(queued(&mut user).await.is_empty());
    assert_eq!(e.history(session_of(&ack)).await.len(), 2, "one reply");
}

/// A run silent past the idle timeout may have finished with its end lost on the way: the
/// relay asks the session's history first, and stores the reply it finds there; a run the
/// history does not show finished fails with `GATEWAY_TIMEOUT`.
#[tokio::test]
async fn a_silent_run_gets_a_last_look_at_its_history_before_it_fails() {
    let limits = RelayLimits::default().with_run_idle_timeout(Duration::from_secs(60));
    let e = Engine::new(limits).await;
    let (mut gw, _) = e.link().await;
    let mut user = e.connect().await;
    let silent_past_the_timeout = || async {
        // (The gateway's `started` answer is handled first.)
        tokio::time::sleep(Duration::from_millis(50)).await;
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(61)).await;
        tokio::time::resume();
    };

    // Finished, its final event lost: the reply comes from the history.
    user.handle(chat(e.agent(), "finished quietly", None).0).await;
    let req = gw.request_of("chat.send").await;
    let (run, _) = run_of(&req);
    gw.answer(&req, json!({ "runId": run, "status": "started" }));
    let ack = frame(&mut user).await;
    silent_past_the_timeout().await;
    let look = gw.request_of("chat.history").await;
    gw.answer(
        &look,
        json!({ "messages": [
            { "role": "assistant", "content": [{ "type": "text", "text": "all done" }], "__openclaw": { "runId": run } },
        ] }),
    );
    let (reply, before) = until(&mut user, "chat").await;
    assert_eq!(reply["payload"]["content"], "all done");
    assert!(!before.iter().any(|f| f["type"] == "error"), "{before:?}");
    assert_eq!(
        states(&e.history(session_of(&ack)).await),
        vec![("user".into(), Some(DeliveryState::Answered)), ("agent".into(), None)]
    );

    // Not in the history: it fails.
    user.handle(chat(e.agent(), "lost for good", Some(session_of(&ack))).0).await;
    let req = gw.request_of("chat.send").await;
    let (run, _) = run_of(&req);
    gw.answer(&req, json!({ "runId": run, "status": "started" }));
    frame(&mut user).await;
    silent_past_the_timeout().await;
    let look = gw.request_of("chat.history").await;
    gw.answer(&look, json!({ "messages": [] }));
    let (error, _) = until(&mut user, "error").await;
    assert_eq!(error["payload"]["code"], "GATEWAY_TIMEOUT", "{error}");
}

#[tokio::test]
async fn past_the_grace_period_queued_and_running_messages_fail_with_their_ids() {
    let limits = RelayLimits::default()
        .with_offline_grace(Duration::from_secs(10))
        .with_gateway_timeout(Duration::from_secs(120));
    let e = Engine::new(limits).await;
    let (mut gw, generation) = e.link().await;
    let mut user = e.connect().await;
    let (running, running_id) = chat(e.agent(), "one", None);
    user.handle(running).await;
    let req = gw.request_of("chat.send").await;
    let (run, key) = run_of(&req);
    gw.answer(&req, json!({ "runId": run, "status": "started" }));
    let ack = frame(&mut user).await;
    e.event(&run, &key, "delta", text("Echo")).await;
    frame(&mut user).await;
    e.relay.detach_gateway(e.gateway(), generation);
    let (waiting, waiting_id) = chat(e.agent(), "two", Some(session_of(&ack)));
    user.handle(waiting).await;
    assert_eq!(frame(&mut user).await["type"], "ack");

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(queued(&mut user).await.is_empty(), "within the grace period nothing fails");
    assert_eq!(e.relay.pending_deliveries(), 2);
    tokio::time::advance(Duration::from_secs(2)).await;
    // The clock runs again while the failures are stored (the store works in real time).
    tokio::time::resume();
    let mut errors = vec![];
    while errors.len() < 2 {
        let f = frame(&mut user).await;
        if f["type"] == "error" {
            assert_eq!(f["payload"]["code"], "GATEWAY_ERROR");
            errors.push(f["id"].as_str().unwrap().to_owned());
        }
    }
    errors.sort();
    let mut expected = vec![running_id.to_string(), waiting_id.to_string()];
    expected.sort();
    assert_eq!(errors, expected);
    let history = e.history(session_of(&ack)).await;
    assert_eq!(
        history.iter().filter(|h| h.1 == "user").map(|h| h.3).collect::<Vec<_>>(),
        vec![Some(DeliveryState::Failed), Some(DeliveryState::Failed)]
    );
    assert_eq!(history.iter().filter(|h| h.1 == "system").count(), 2);
}

#[tokio::test]
async fn after_a_restart_pending_messages_are_redelivered_once() {
    let before = Engine::new(RelayLimits::default()).await;
    let (mut gw, generation) = before.link().await;
    let mut user = before.connect().await;
    user.handle(chat(before.agent(), "sent before the crash", None).0).await;
    let sent = gw.request_of("chat.send").await;
    let ack = frame(&mut user).await;
    let session = session_of(&ack);
    before.relay.detach_gateway(before.gateway(), generation);
    user.handle(chat(before.agent(), "stored before the crash", Some(session)).0).await;
    let stored_ack = frame(&mut user).await;
    // `sent` is recorded lazily (it is worth nothing once the run is answered).
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        before.history(session).await.iter().map(|h| h.3).collect::<Vec<_>>(),
        vec![Some(DeliveryState::Sent), Some(DeliveryState::Stored)]
    );
    // The relay process dies: every part of it goes.
    drop((user, gw));
    let after = before.restart(RelayLimits::default());
    drop(before.relay);

    let mut user = after.connect().await;
    let (mut gw, _) = after.link().await;
    let first = gw.request_of("chat.send").await;
    let second = gw.request_of("chat.send").await;
    assert_eq!(run_of(&first).0, run_of(&sent).0, "the same idempotency key as before");
    assert_eq!(run_of(&second).0, stored_ack["payload"]["message_id"].as_str().unwrap());
    // OpenClaw ran the first one meanwhile; the second is new to it.
    let (run1, _) = run_of(&first);
    let (run2, key) = run_of(&second);
    gw.answer(&first, json!({ "runId": run1, "status": "ok" }));
    gw.answer(&second, json!({ "runId": run2, "status": "started" }));
    let history = gw.request_of("chat.history").await;
    gw.answer(
        &history,
        json!({ "messages": [{ "role": "assistant", "content": "first reply", "__openclaw": { "runId": run1 } }] }),
    );
    after.event(&run2, &key, "final", text("second reply")).await;
    let mut replies = vec![];
    while replies.len() < 2 {
        let f = frame(&mut user).await;
        if f["type"] == "chat" {
            replies.push(f["payload"]["content"].as_str().unwrap().to_owned());
        }
    }
    replies.sort();
    assert_eq!(replies, vec!["first reply", "second reply"]);
    let history = after.history(session).await;
    assert_eq!(history.iter().filter(|h| h.1 == "agent").count(), 2, "one reply each: {history:?}");
    assert!(history.iter().filter(|h| h.1 == "user").all(|h| h.3 == Some(DeliveryState::Answered)));

    // Another link later finds nothing to send.
    let (mut later, _) = after.link().await;
    assert!(later.try_request().await.is_none());
}

#[tokio::test]
async fn after_a_restart_messages_of_a_gateway_that_never_returns_fail() {
    let before = Engine::new(RelayLimits::default()).await;
    let (mut gw, _) = before.link().await;
    let mut user = before.connect().await;
    let (message, client_id) = chat(before.agent(), "into the void", None);
    user.handle(message).await;
    gw.request_of("chat.send").await;
    let ack = frame(&mut user).await;
    drop((user, gw));
    let limits = RelayLimits::default().with_offline_grace(Duration::from_secs(10));
    let after = before.restart(limits);
    drop(before.relay);
    let mut user = after.connect().await;

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(11)).await;
    tokio::time::resume();
    let (error, _) = until(&mut user, "error").await;
    assert_eq!(
        (error["id"].as_str(), error["payload"]["code"].as_str()),
        (Some(client_id.to_string().as_str()), Some("GATEWAY_ERROR"))
    );
    let history = after.history(session_of(&ack)).await;
    assert_eq!(
        states(&history),
        vec![("user".into(), Some(DeliveryState::Failed)), ("system".into(), None)]
    );
}

/// Delivery states held back to ride along with a batch are written by a flush at once (what
/// a server does before it closes its store at shutdown, so they are not lost).
#[tokio::test]
async fn a_flush_writes_the_delivery_states_held_back() {
    let e = Engine::new(RelayLimits::default()).await;
    let session = e.world.session.id;
    let stored = e.store.append_message(&fixtures::user_message(session, "hi")).await.unwrap();
    let seq = stored.message().seq;
    let (writer, _task) = MessageWriter::start(e.store.clone());
    writer.record(DeliveryUpdate { session_id: session, seq, state: DeliveryState::Started });
    writer.flush().await;
    let page = e.store.list_messages(session, None, 10).await.unwrap();
    assert_eq!(page.messages[0].delivery, Some(DeliveryState::Started), "written, not held");
    e.relay.flush().await;
}

#[tokio::test]
async fn after_a_restart_every_orphan_fails_however_many_pages_they_fill() {
    // More messages left pending than the store is asked for at a time: every one of them
    // fails, not only the first page.
    let before = Engine::new(RelayLimits::default()).await;
    let session = before.world.session.id;
    let messages: Vec<_> =
        (0..1_201).map(|i| fixtures::user_message(session, &format!("m{i}"))).collect();
    for chunk in messages.chunks(300) {
        for written in before.store.write_batch(chunk, &[]).await {
            written.unwrap();
        }
    }
    assert_eq!(before.store.pending_deliveries(None, None, 2_000).await.unwrap().len(), 1_201);
    let limits = RelayLimits::default().with_offline_grace(Duration::from_secs(10));
    let after = before.restart(limits);
    drop(before.relay);

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(11)).await;
    tokio::time::resume();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = after.store.pending_deliveries(None, None, 2_000).await.unwrap().len();
        if left == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{left} orphans still pending");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let oldest = after.store.list_messages(session, Some(101), 100).await.unwrap().messages;
    assert_eq!(oldest.len(), 100);
    assert!(oldest.iter().all(|m| m.delivery == Some(DeliveryState::Failed)), "failed, not lost");
}

#[tokio::test]
async fn a_refused_or_unanswered_message_fails_with_its_id() {
    let limits = RelayLimits::default().with_gateway_timeout(Duration::from_secs(30));
    let e = Engine::new(limits).await;
    let (mut gw, _) = e.link().await;
    let mut user = e.connect().await;
    let (refused, refused_id) = chat(e.agent(), "no", None);
    user.handle(refused).await;
    let req = gw.request_of("chat.send").await;
    gw.refuse(&req, "INVALID_REQUEST", "bad session");
    let (error, _) = until(&mut user, "error").await;
    assert_eq!(
        (error["id"].as_str(), error["payload"]["code"].as_str()),
        (Some(refused_id.to_string().as_str()), Some("GATEWAY_ERROR"))
    );
    assert!(error["payload"]["message"].as_str().unwrap().contains("bad session"));

    let (ignored, ignored_id) = chat(e.agent(), "hello?", None);
    user.handle(ignored).await;
    let req = gw.request_of("chat.send").await;
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(31)).await;
    tokio::time::resume();
    let (error, _) = until(&mut user, "error").await;
    assert_eq!(
        (error["id"].as_str(), error["payload"]["code"].as_str()),
        (Some(ignored_id.to_string().as_str()), Some("GATEWAY_TIMEOUT"))
    );
    let abort = gw.request_of("chat.abort").await;
    assert_eq!(
        abort["params"]["runId"], req["params"]["idempotencyKey"],
        "the relay stops what it gave up on"
    );
}

#[tokio::test]
async fn a_run_that_ends_without_a_reply_fails_instead_of_storing_an_empty_one() {
    // OpenClaw ends a run with a bare `final` when it folds the message into another turn
    // (seen on a real gateway right after a crash-restart).
    let e = Engine::new(RelayLimits::default()).await;
    let (mut gw, _) = e.link().await;
    let mut user = e.connect().await;
    let (frame_, client_id) = chat(e.agent(), "are you there?", None);
    user.handle(frame_).await;
    let req = gw.request_of("chat.send").await;
    let (ack, _) = until(&mut user, "ack").await;
    let (run, key) = run_of(&req);
    gw.answer(&req, json!({ "runId": run, "status": "started" }));
    e.event(&run, &key, "final", json!({})).await;
    let (error, _) = until(&mut user, "error").await;
    assert_eq!(
        (error["id"].as_str(), error["payload"]["code"].as_str()),
        (Some(client_id.to_string().as_str()), Some("GATEWAY_ERROR"))
    );
    assert!(error["payload"]["message"].as_str().unwrap().contains("without a reply"));
    let history = e.history(session_of(&ack)).await;
    assert_eq!(
        states(&history),
        vec![("user".into(), Some(DeliveryState::Failed)), ("system".into(), None)],
        "no empty agent message"
    );
}

#[tokio::test]
async fn a_replaced_link_keeps_the_runs() {
    let e = Engine::new(RelayLimits::default()).await;
    let (mut first, old_generation) = e.link().await;
    let mut user = e.connect().await;
    user.handle(chat(e.agent(), "survive a reconnect", None).0).await;
    let req = first.request_of("chat.send").await;
    let (run, key) = run_of(&req);
    first.answer(&req, json!({ "runId": run, "status": "started" }));
    frame(&mut user).await;
    // The gateway reconnects before its old socket's end is noticed.
    let (_second, _) = e.link().await;
    assert!(first.link.is_closed(), "the old link is closed");
    e.relay.detach_gateway(e.gateway(), old_generation);
    assert_eq!(e.relay.gateway_count(), 1, "a stale detach changes nothing");
    e.event(&run, &key, "final", text("done")).await;
    let (reply, _) = until(&mut user, "chat").await;
    assert_eq!(reply["payload"]["content"], "done");
}

#[tokio::test]
async fn what_the_agent_is_doing_reaches_the_user_as_agent_status() {
    let e = Engine::new(RelayLimits::default()).await;
    let (mut gw, _) = e.link().await;
    let mut user = e.connect().await;
    user.handle(chat(e.agent(), "think about it", None).0).await;
    let req = gw.request_of("chat.send").await;
    let (run, key) = run_of(&req);
    gw.answer(&req, json!({ "runId": run, "status": "started" }));
    let agent_event = |stream: &str, data: Value| json!({ "runId": run, "sessionKey": key, "stream": stream, "data": data, "seq": 1 });
    e.event(&run, &key, "status", json!({ "phase": "preparing_workspace" })).await;
    e.event(&run, &key, "status", json!({ "phase": "preparing_workspace" })).await;
    for (stream, data) in [
        ("run_status", json!({ "phase": "preparing_context" })),
        ("lifecycle", json!({ "phase": "start" })),
        ("lifecycle", json!({ "phase": "model", "provider": "fake" })),
        ("assistant", json!({ "text": "Hi", "delta": "Hi" })),
        ("assistant", json!({ "text": "Hi!", "delta": "!" })),
        ("usage", json!({ "outputTokens": 2 })),
        ("lifecycle", json!({ "phase": "end" })),
    ] {
        e.gateway_event("agent", agent_event(stream, data)).await;
    }
    e.gateway_event("agent", json!({ "runId": "not-ours", "stream": "assistant" })).await;
    let mut seen = vec![];
    loop {
        let text = tokio::time::timeout(SOON, next_frame(&mut user)).await.unwrap();
        let f: Value = serde_json::from_str(&text).unwrap();
        if f["type"] == "system" && f["payload"]["event"] == "agent_status" {
            assert_eq!(f["payload"]["run_id"], run.as_str());
            assert_eq!(f["payload"]["agent_id"], e.agent().to_string());
            seen.push((
                f["payload"]["phase"].as_str().unwrap().to_owned(),
                f["payload"]["detail"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        if seen.len() == 5 {
            break;
        }
    }
    let expected = [
        ("preparing", "preparing_workspace"),
        ("preparing", "preparing_context"),
        ("thinking", "start"),
        ("thinking", "model"),
        ("typing", "assistant"),
    ];
    assert_eq!(
        seen,
        expected.map(|(p, d)| (p.to_owned(), d.to_owned())).to_vec(),
        "each change once; usage and end say nothing"
    );
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let more: Vec<Value> = std::iter::from_fn(|| user.try_next_frame())
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .filter(|f| f["payload"]["event"] == "agent_status")
        .collect();
    assert!(more.is_empty(), "{more:?}");
}
