//! `RedisBus` against a real Redis: `MC_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`).
//! Without it every case is skipped with a line on stderr, except under CI (`CI=true`), where
//! a missing server is a failure. Each case uses a key prefix of its own. The restart case
//! starts a private `redis-server` on a free port (it never restarts the shared one).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a test fails by panicking

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mc_bus_redis::{RedisBus, RedisBusConfig};
use mc_core::bus::{Bus, BusMessage, BusTopic, GatewayCommand};
use mc_core::{GatewayId, UserId};
use testkit::servers::PrivateRedis;

fn redis_url() -> Option<String> {
    match std::env::var("MC_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("MC_TEST_REDIS_URL is not set: under CI the Redis suite must run")
        }
        _ => {
            let _ =
                writeln!(std::io::stderr(), "skipped: MC_TEST_REDIS_URL not set (Redis bus suite)");
            None
        }
    }
}

fn config(url: &str, prefix: &str, instance: &str) -> RedisBusConfig {
    RedisBusConfig::new(url)
        .with_instance_id(instance)
        .with_key_prefix(prefix)
        .with_presence_ttl(Duration::from_secs(3))
}

async fn pair(url: &str) -> (RedisBus, RedisBus) {
    let prefix = format!("mctest:{}:", uuid::Uuid::now_v7().simple());
    let a = RedisBus::connect(config(url, &prefix, "a")).await.expect("bus a");
    let b = RedisBus::connect(config(url, &prefix, "b")).await.expect("bus b");
    (a, b)
}

type Seen = Arc<Mutex<Vec<BusMessage>>>;

fn recorder() -> (Seen, Arc<dyn mc_core::bus::BusHandler>) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    (seen, Arc::new(move |m: BusMessage| sink.lock().unwrap().push(m)))
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting: {what}");
}

fn frame(text: &str) -> BusMessage {
    BusMessage::ToUser { frame: text.into(), only: None, except: None }
}

#[tokio::test]
async fn messages_cross_instances_once_each() {
    let Some(url) = redis_url() else { return };
    let (a, b) = pair(&url).await;
    let user = UserId::new();
    let topic = BusTopic::User(user);
    let (on_a, handler_a) = recorder();
    let (on_b, handler_b) = recorder();
    let _sa = a.subscribe(topic, handler_a).await.unwrap();
    let _sb = b.subscribe(topic, handler_b).await.unwrap();

    for i in 0..100 {
        let n = a.publish(topic, frame(&i.to_string())).await.unwrap();
        assert_eq!(n, 2, "both instances hold the user");
    }
    eventually("b receives all 100", || on_b.lock().unwrap().len() == 100).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        on_a.lock().unwrap().len(),
        100,
        "a got its own messages once (inline), not again from Redis"
    );
    let order: Vec<String> = on_b
        .lock()
        .unwrap()
        .iter()
        .map(|m| match m {
            BusMessage::ToUser { frame, .. } => frame.to_string(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(order, (0..100).map(|i| i.to_string()).collect::<Vec<_>>(), "order is kept");

    assert!(b.has_subscribers(topic).await.unwrap());
    let nobody = BusTopic::User(UserId::new());
    assert!(!a.has_subscribers(nobody).await.unwrap());
    assert_eq!(a.publish(nobody, frame("x")).await.unwrap(), 0);
}

/// Two relays sharing one Redis under different key prefixes never see each other's
/// messages: the prefix applies to the channels as to the keys.
#[tokio::test]
async fn the_key_prefix_keeps_two_relays_apart_on_one_redis() {
    let Some(url) = redis_url() else { return };
    let (one, _) = pair(&url).await;
    let (two, _) = pair(&url).await;
    let topic = BusTopic::User(UserId::new());
    let (on_two, handler) = recorder();
    let _held = two.subscribe(topic, handler).await.unwrap();
    assert!(!one.has_subscribers(topic).await.unwrap(), "the other relay's user");
    assert_eq!(one.publish(topic, frame("not yours")).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(on_two.lock().unwrap().is_empty(), "nothing crossed between the prefixes");

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let channels: Vec<String> =
        redis::cmd("PUBSUB").arg("CHANNELS").arg("*").query_async(&mut redis).await.unwrap();
    let ours: Vec<&String> = channels.iter().filter(|c| c.ends_with(&topic.channel())).collect();
    assert_eq!(ours.len(), 1, "{channels:?}");
    assert!(ours[0].starts_with("mctest:"), "the channel carries the prefix: {}", ours[0]);
}

#[tokio::test]
async fn gateway_presence_follows_its_holder() {
    let Some(url) = redis_url() else { return };
    let (a, b) = pair(&url).await;
    let gateway = GatewayId::new();
    let topic = BusTopic::Gateway(gateway);
    assert!(!b.has_subscribers(topic).await.unwrap());
    let (on_a, handler) = recorder();
    let held = a.subscribe(topic, handler).await.unwrap();
    eventually_async(|| async { b.has_subscribers(topic).await.unwrap() }).await;

    let command = BusMessage::ToGateway(GatewayCommand::Close);
    assert_eq!(b.publish(topic, command.clone()).await.unwrap(), 1, "b reaches a");
    eventually("a gets the command", || on_a.lock().unwrap().len() == 1).await;
    assert_eq!(a.publish(topic, command).await.unwrap(), 1, "a holds it itself");

    drop(held);
    eventually_async(|| async { !b.has_subscribers(topic).await.unwrap() }).await;
}

async fn eventually_async<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting");
}

#[tokio::test]
async fn a_dropped_instance_is_forgotten() {
    let Some(url) = redis_url() else { return };
    let (a, b) = pair(&url).await;
    let gateway = GatewayId::new();
    let (_, handler) = recorder();
    let held = a.subscribe(BusTopic::Gateway(gateway), handler).await.unwrap();
    let user = UserId::new();
    assert!(a.join_user(user, 2).await.unwrap());
    assert!(a.join_user(user, 2).await.unwrap());
    assert!(!b.join_user(user, 2).await.unwrap(), "two on a: b may not add a third");
    eventually_async(|| async { b.has_subscribers(BusTopic::Gateway(gateway)).await.unwrap() })
        .await;
    std::mem::forget(held); // a crash leaves no unsubscribe behind
    drop(a);
    // Dropping the bus ends its presence task, which removes its keys at once.
    eventually_async(|| async { !b.has_subscribers(BusTopic::Gateway(gateway)).await.unwrap() })
        .await;
    eventually_async(|| async {
        let joined = b.join_user(user, 2).await.unwrap();
        if joined {
            b.leave_user(user);
        }
        joined
    })
    .await;
}

#[tokio::test]
async fn the_socket_limit_counts_every_instance() {
    let Some(url) = redis_url() else { return };
    let (a, b) = pair(&url).await;
    let user = UserId::new();
    assert!(a.join_user(user, 3).await.unwrap());
    assert!(b.join_user(user, 3).await.unwrap());
    assert!(a.join_user(user, 3).await.unwrap());
    assert!(!b.join_user(user, 3).await.unwrap());
    assert!(!a.join_user(user, 3).await.unwrap());
    b.leave_user(user);
    // The leave is written by b's presence task, in order with b's other changes.
    eventually_async(|| async { a.join_user(user, 3).await.unwrap() }).await;
    // An instance that never leaves and is not alive (no instance key) is not counted.
    let other = UserId::new();
    for _ in 0..3 {
        assert!(a.join_user(other, 3).await.unwrap());
    }
    drop(a);
    eventually_async(|| async {
        let joined = b.join_user(other, 3).await.unwrap();
        if joined {
            b.leave_user(other);
        }
        joined
    })
    .await;
}

#[tokio::test]
async fn a_redis_restart_is_survived_and_reported_as_a_gap() {
    let Some(_) = redis_url() else { return };
    let mut server = PrivateRedis::start().expect("a private redis-server");
    let url = server.url();
    let (a, b) = pair(&url).await;
    let user = UserId::new();
    let topic = BusTopic::User(user);
    let (on_b, handler) = recorder();
    let _sub = b.subscribe(topic, handler).await.unwrap();
    let gateway = GatewayId::new();
    let (_, gateway_handler) = recorder();
    let _held = b.subscribe(BusTopic::Gateway(gateway), gateway_handler).await.unwrap();
    assert!(b.join_user(user, 1).await.unwrap());
    a.publish(topic, frame("before")).await.unwrap();
    eventually("before arrives", || on_b.lock().unwrap().len() == 1).await;
    let mut gaps = b.gaps().unwrap();
    let seen_gaps = *gaps.borrow_and_update();

    server.kill();
    assert!(a.publish(topic, frame("lost")).await.is_err(), "nobody can be reached");
    server.start_again().expect("the private redis-server again");
    tokio::time::timeout(Duration::from_secs(20), gaps.changed()).await.expect("a gap").unwrap();
    assert!(*gaps.borrow() > seen_gaps);

    // Subscriptions and presence are back without anyone asking.
    eventually_async(|| async { a.publish(topic, frame("after")).await.unwrap_or(0) == 1 }).await;
    eventually("after arrives", || {
        on_b.lock()
            .unwrap()
            .iter()
            .any(|m| matches!(m, BusMessage::ToUser { frame, .. } if &**frame == "after"))
    })
    .await;
    eventually_async(|| async {
        a.has_subscribers(BusTopic::Gateway(gateway)).await.unwrap_or(false)
    })
    .await;
    // b's socket count is written again.
    eventually_async(|| async { !a.join_user(user, 1).await.unwrap() }).await;
    b.ping().await.expect("b is ready again");
    drop(server);
}

#[tokio::test]
async fn a_quiet_healthy_connection_is_not_reported_as_a_gap() {
    let Some(url) = redis_url() else { return };
    let (a, b) = pair(&url).await;
    let topic = BusTopic::User(UserId::new());
    let (on_b, handler) = recorder();
    let _sub = b.subscribe(topic, handler).await.unwrap();
    let mut gaps = b.gaps().unwrap();
    let before = *gaps.borrow_and_update();
    // Past the subscription connection's first probes (every 5 s): they must succeed.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(*gaps.borrow(), before, "a healthy connection was reopened");
    a.publish(topic, frame("still here")).await.unwrap();
    eventually("delivered", || on_b.lock().unwrap().len() == 1).await;
}
