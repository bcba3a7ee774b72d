//! Gateway liveness with a manual clock (and paused tokio time for the sweeper loop), and the
//! cost of one sweep over thousands of gateways.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::TestServer;
use mc_core::registry::RegistryConfig;
use mc_core::*;
use serde_json::json;

async fn registered(s: &TestServer) -> (String, String) {
    let token = s.registration_token(json!({})).await;
    let r = s
        .register_gateway(&token, "gw-live", json!([{ "agent_key": "main", "name": "Main" }]))
        .await;
    (
        r.body["gateway_id"].as_str().unwrap().to_owned(),
        r.body["relay_token"].as_str().unwrap().to_owned(),
    )
}

async fn beat(s: &TestServer, id: &str, token: &str) {
    let r = s
        .post(
            "/api/v1/gateway-registry/heartbeat",
            None,
            json!({ "gateway_id": id, "relay_token": token, "status": "online" }),
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
}

async fn status(s: &TestServer, id: &str) -> GatewayStatus {
    s.services.store().get_gateway(id.parse().unwrap()).await.unwrap().unwrap().status
}

async fn offline_events(s: &TestServer) -> usize {
    let feed = s.services.store().list_activity(s.org.id, Page::first(500)).await.unwrap();
    feed.items.iter().filter(|e| e.kind == "gateway.offline").count()
}

#[tokio::test]
async fn heartbeats_keep_a_gateway_online_and_silence_takes_it_offline() {
    let s = TestServer::start().await;
    let (id, token) = registered(&s).await;
    beat(&s, &id, &token).await;
    assert_eq!(status(&s, &id).await, GatewayStatus::Online);

    // Heartbeats every 30 s for ten minutes: never offline.
    for _ in 0..20 {
        s.advance(30);
        beat(&s, &id, &token).await;
        assert!(s.services.registry().sweep().await.unwrap().is_empty());
    }
    assert_eq!(status(&s, &id).await, GatewayStatus::Online);

    // Silence: at exactly 3 intervals it is still online, just after it is offline.
    let mut events = s.services.events().subscribe();
    s.advance(90);
    assert!(s.services.registry().sweep().await.unwrap().is_empty());
    s.clock.advance(TimeDelta::milliseconds(1));
    let changes = s.services.registry().sweep().await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].previous, changes[0].gateway.status),
        (GatewayStatus::Online, GatewayStatus::Offline)
    );
    assert_eq!(status(&s, &id).await, GatewayStatus::Offline);
    assert_eq!(offline_events(&s).await, 1, "exactly one activity event");
    match common::next_event(&mut events) {
        RelayEvent::GatewayStatusChanged { previous, current, .. } => {
            assert_eq!((previous, current), (GatewayStatus::Online, GatewayStatus::Offline));
        }
        other => panic!("unexpected {other:?}"),
    }
    // Further sweeps change nothing and write nothing.
    s.advance(300);
    assert!(s.services.registry().sweep().await.unwrap().is_empty());
    assert_eq!(offline_events(&s).await, 1);

    // A heartbeat brings it back.
    beat(&s, &id, &token).await;
    assert_eq!(status(&s, &id).await, GatewayStatus::Online);
    let feed = s.services.store().list_activity(s.org.id, Page::first(1)).await.unwrap();
    assert_eq!(feed.items[0].kind, "gateway.online");
}

/// The loop ticks on real time (a paused tokio clock would also time out sqlx's pool), every
/// 100 ms here; staleness is judged on the relay's manual clock.
#[tokio::test]
async fn the_sweeper_loop_runs_on_its_own_and_stops_on_shutdown() {
    let registry_config = RegistryConfig::default().with_sweep_every(Duration::from_millis(100));
    let s =
        TestServer::start_full(|c| c.password_params(common::cheap_passwords()), registry_config)
            .await;
    let (id, token) = registered(&s).await;
    beat(&s, &id, &token).await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let registry = s.services.registry().clone();
    let sweeper = tokio::spawn(async move {
        registry
            .run_liveness(async {
                let _ = stopped.await;
            })
            .await
    });
    // 91 s of silence on the relay's clock; the loop notices on its next tick.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&s, &id).await, GatewayStatus::Online, "still within 3 intervals");
    s.advance(91);
    let mut waited = 0;
    while status(&s, &id).await != GatewayStatus::Offline && waited < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    assert_eq!(status(&s, &id).await, GatewayStatus::Offline);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), sweeper).await.expect("sweeper stops").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sweep_over_five_thousand_gateways_stays_cheap() {
    let s = TestServer::start().await;
    let store = s.services.store().clone();
    let now = s.clock.now();
    let make = |i: usize, heartbeat_ago: i64| Gateway {
        id: GatewayId::new(),
        organization_id: s.org.id,
        name: format!("gw-{i}"),
        url: None,
        workspace_root: None,
        version: Some("2026.9.6".into()),
        capabilities: vec!["chat".into()],
        status: GatewayStatus::Online,
        relay_token_hash: SecretHash::of(&format!("relay-{i}")),
        last_heartbeat_at: Some(now - TimeDelta::seconds(heartbeat_ago)),
        connection_info: ConnectionInfo::default(),
        auto_registered: true,
        created_at: now,
        updated_at: now,
    };
    // 5 000 live gateways, 100 of which went silent.
    let started = Instant::now();
    for i in 0..5_000 {
        let ago = if i % 50 == 0 { 120 } else { 10 };
        store.create_gateway(&make(i, ago)).await.unwrap();
    }
    let seeding = started.elapsed();

    let t = Instant::now();
    let changes = s.services.registry().sweep().await.unwrap();
    let with_changes = t.elapsed();
    assert_eq!(changes.len(), 100);
    let t = Instant::now();
    let nothing = s.services.registry().sweep().await.unwrap();
    let idle = t.elapsed();
    assert!(nothing.is_empty());
    println!(
        "liveness sweep over 5000 online gateways (SQLite in memory, seeded in {:.2} s): \
         100 gone offline in {:.1} ms (incl. 100 activity events); nothing to do in {:.2} ms",
        seeding.as_secs_f64(),
        with_changes.as_secs_f64() * 1000.0,
        idle.as_secs_f64() * 1000.0
    );
}
