//! Two relay instances on one store and one bus (an in-process bus under two instance ids,
//! standing in for Redis, which `mc-bus-redis`'s own suite and the multi-instance end-to-end
//! tests cover): a gateway that moves from one instance to the other takes its pending
//! messages with it, and nothing is lost, run twice or reported failed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::engine::*;
use mc_core::bus::{Bus, InProcessBus};
use mc_core::bus::{BusHandler, BusMessage, BusTopic, Subscription};
use mc_core::relay::RelayLimits;
use mc_core::{DeliveryState, SessionId, UserId};
use serde_json::{Value, json};

/// One instance's face of a shared bus: its own instance id, everything else shared. While
/// `losing` is set its publishes are accepted and never delivered (the instance died right
/// after its ack, before its hand-over left).
#[derive(Debug)]
struct Instance {
    shared: InProcessBus,
    id: String,
    losing: Arc<AtomicBool>,
}

#[async_trait]
impl Bus for Instance {
    async fn publish(&self, topic: BusTopic, message: BusMessage) -> mc_core::Result<usize> {
        if self.losing.load(Ordering::SeqCst) {
            return Ok(1);
        }
        self.shared.publish(topic, message).await
    }
    async fn subscribe(
        &self,
        topic: BusTopic,
        handler: Arc<dyn BusHandler>,
    ) -> mc_core::Result<Subscription> {
        self.shared.subscribe(topic, handler).await
    }
    async fn has_subscribers(&self, topic: BusTopic) -> mc_core::Result<bool> {
        self.shared.has_subscribers(topic).await
    }
    fn instance_id(&self) -> &str {
        &self.id
    }
    async fn join_user(&self, _user: UserId, _limit: usize) -> mc_core::Result<bool> {
        Ok(true)
    }
}

async fn two_instances(limits: RelayLimits) -> (Engine, Engine) {
    two_instances_losing(limits, Arc::default()).await
}

/// Two instances; `a` loses its publishes while `a_losing` is set.
async fn two_instances_losing(limits: RelayLimits, a_losing: Arc<AtomicBool>) -> (Engine, Engine) {
    let shared = InProcessBus::new();
    let a = Engine::with_bus(
        limits.clone(),
        Arc::new(Instance { shared: shared.clone(), id: "a".into(), losing: a_losing }),
    )
    .await;
    let b = Engine::on(
        a.store.clone(),
        a.world.clone(),
        limits,
        Arc::new(Instance { shared, id: "b".into(), losing: Arc::default() }),
    );
    (a, b)
}

fn session_of(ack: &Value) -> SessionId {
    ack["payload"]["session_id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_gateway_that_moves_to_another_instance_takes_its_messages_along() {
    let limits = RelayLimits::default().with_offline_grace(Duration::from_secs(10));
    let (a, b) = two_instances(limits).await;
    let (mut on_a, generation) = a.link().await;
    let mut user = a.connect().await;

    // A run in flight on a's link, and a message queued while the link is down.
    user.handle(chat(a.agent(), "first", None).0).await;
    let first = on_a.request_of("chat.send").await;
    let (run1, key) = run_of(&first);
    on_a.answer(&first, json!({ "runId": run1, "status": "started" }));
    let ack1 = frame(&mut user).await;
    a.relay.detach_gateway(a.gateway(), generation);
    user.handle(chat(a.agent(), "second", Some(session_of(&ack1))).0).await;
    let ack2 = frame(&mut user).await;
    assert_eq!(ack2["type"], "ack", "a holds the gateway within its grace period");
    assert_eq!(a.relay.pending_deliveries(), 2);

    // The gateway comes back on b: a lets go, b has both, each sent once.
    let (mut on_b, _) = b.link().await;
    let mut sent = Vec::new();
    for _ in 0..2 {
        let req = on_b.request_of("chat.send").await;
        sent.push(run_of(&req).0);
        let (run, _) = run_of(&req);
        on_b.answer(&req, json!({ "runId": run, "status": "started" }));
    }
    while let Some(extra) = on_b.try_request().await {
        assert_ne!(extra["method"], "chat.send", "a message sent twice: {extra}");
    }
    sent.sort();
    let mut expected = vec![
        ack1["payload"]["message_id"].as_str().unwrap().to_owned(),
        ack2["payload"]["message_id"].as_str().unwrap().to_owned(),
    ];
    expected.sort();
    assert_eq!(sent, expected);
    assert_eq!(a.relay.pending_deliveries(), 0, "a handed everything over");
    assert_eq!(b.relay.pending_deliveries(), 2);

    // b streams the replies to the user on a.
    b.event(&run1, &key, "final", text("one")).await;
    let (reply, _) = until(&mut user, "chat").await;
    assert_eq!(reply["payload"]["content"], "one");
    let run2 = ack2["payload"]["message_id"].as_str().unwrap();
    b.event(run2, &key, "final", text("two")).await;
    let (reply, _) = until(&mut user, "chat").await;
    assert_eq!(reply["payload"]["content"], "two");

    // Past a's grace period nothing fails: a no longer holds the gateway.
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(15)).await;
    tokio::time::resume();
    assert!(queued(&mut user).await.is_empty(), "no failure notice");
    let history = a.history(session_of(&ack1)).await;
    let states: Vec<(String, Option<DeliveryState>)> =
        history.iter().map(|(_, role, _, d)| (role.clone(), *d)).collect();
    assert_eq!(
        states,
        vec![
            ("user".into(), Some(DeliveryState::Answered)),
            ("user".into(), Some(DeliveryState::Answered)),
            ("agent".into(), None),
            ("agent".into(), None),
        ]
    );
}

#[tokio::test]
async fn a_link_still_open_on_the_old_instance_is_closed_when_another_takes_over() {
    let (a, b) = two_instances(RelayLimits::default()).await;
    let (on_a, _) = a.link().await;
    let (_on_b, _) = b.link().await;
    // a's socket never noticed the drop (a half-open connection): b's link wins.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(on_a.link.is_closed(), "a closed its stale link");
    assert_eq!(a.relay.gateway_count(), 0);
    assert_eq!(b.relay.gateway_count(), 1);
    let mut user = a.connect().await;
    user.handle(chat(a.agent(), "who has it?", None).0).await;
    assert_eq!(frame(&mut user).await["type"], "ack", "b holds the gateway: accepted on a");
}

#[tokio::test]
async fn a_message_whose_hand_over_was_lost_is_sent_once_by_the_holder() {
    let losing = Arc::new(AtomicBool::new(false));
    let (a, b) = two_instances_losing(RelayLimits::default(), losing.clone()).await;
    let (mut on_b, _) = b.link().await;
    let mut user = a.connect().await;
    // a stores and acks the message; its hand-over to b never arrives.
    losing.store(true, Ordering::SeqCst);
    user.handle(chat(a.agent(), "lost on the way", None).0).await;
    let ack = frame(&mut user).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert!(on_b.try_request().await.is_none(), "the hand-over was lost");
    losing.store(false, Ordering::SeqCst);

    // b finds it in the store within its recovery period and sends it, once.
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(11)).await;
    tokio::time::resume();
    let sent = on_b.request_of("chat.send").await;
    assert_eq!(run_of(&sent).0, ack["payload"]["message_id"].as_str().unwrap());
    let (run, key) = run_of(&sent);
    on_b.answer(&sent, json!({ "runId": run, "status": "started" }));
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(11)).await;
    tokio::time::resume();
    while let Some(extra) = on_b.try_request().await {
        assert_ne!(extra["method"], "chat.send", "sent twice: {extra}");
    }
    b.event(&run, &key, "final", text("found it")).await;
    let (reply, _) = until(&mut user, "chat").await;
    assert_eq!(reply["payload"]["content"], "found it");
}
