//! The gateway registry through real HTTP: registration tokens, register / heartbeat /
//! deregister, admin reads, and every bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestServer};
use mc_core::{Clock, GatewayId, GatewayStatus, OrgId, Organization, Page, Role};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn agents(keys: &[&str]) -> Value {
    Value::Array(
        keys.iter().map(|k| json!({ "agent_key": k, "name": format!("Agent {k}") })).collect(),
    )
}

async fn heartbeat(s: &TestServer, id: &str, token: &str, body: Value) -> common::Response {
    let mut full = json!({ "gateway_id": id, "relay_token": token, "status": "online" });
    for (k, v) in body.as_object().unwrap() {
        full[k] = v.clone();
    }
    s.post("/api/v1/gateway-registry/heartbeat", None, full).await
}

fn metrics() -> Value {
    json!({ "active_sessions": 2, "memory_mb": 812.5, "cpu_pct": 12.5, "agent_count": 2 })
}

/// A gateway that flaps (its status, its agents) changes what the relay stores and tells its
/// users only a few times a minute: past that, its reports' changes wait, and the first
/// heartbeat the budget allows again brings the latest state.
#[tokio::test]
async fn a_flapping_gateway_changes_a_few_times_a_minute_and_ends_as_it_last_reported() {
    let s = TestServer::start().await;
    let created = s
        .post("/api/v1/registration-tokens", Some(&s.admin_token), json!({ "label": "flap" }))
        .await;
    let token = created.body["token"].as_str().unwrap().to_owned();
    let r = s.register_gateway(&token, "flappy", agents(&["main"])).await;
    let id = r.body["gateway_id"].as_str().unwrap().to_owned();
    let relay_token = r.body["relay_token"].as_str().unwrap().to_owned();
    for i in 0..40 {
        let status = if i % 2 == 0 { "online" } else { "error" };
        let keys: &[&str] = if i % 2 == 0 { &["main"] } else { &["main", "ops"] };
        let beat =
            heartbeat(&s, &id, &relay_token, json!({ "status": status, "agents": agents(keys) }))
                .await;
        assert_eq!(beat.status, StatusCode::OK, "{}", beat.body);
    }
    let activity = s.get("/api/v1/activity?limit=200", &s.admin_token).await;
    let rows = activity.body["activity"].as_array().unwrap().clone();
    let is_status = |a: &&Value| a["kind"] == "gateway.online" || a["kind"] == "gateway.error";
    let changes = rows.iter().filter(is_status).count();
    assert!((5..=6).contains(&changes), "40 flaps, {changes} status changes stored");

    // Quiet for a minute: the next report applies, the latest state wins.
    s.advance(60);
    let last = json!({ "status": "error", "agents": agents(&["main", "ops"]) });
    assert_eq!(heartbeat(&s, &id, &relay_token, last).await.body["status"], "error");
    let detail = s.get(&format!("/api/v1/gateways/{id}"), &s.admin_token).await;
    let active = detail.body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "active")
        .count();
    assert_eq!(active, 2, "{}", detail.body);
}

/// A server that terminates TLS itself and has no public URL derives `wss://` socket URLs from
/// the request's `Host`, never `ws://` (a gateway would send its relay token in clear).
#[tokio::test]
async fn a_tls_server_hands_out_wss_urls() {
    use common::{HttpConfig, cheap_passwords};
    use mc_core::registry::RegistryConfig;
    use mc_core::relay::RelayLimits;
    let store = mc_store_sqlite::SqliteStore::open_in_memory().await.unwrap();
    let http = HttpConfig::default().with_serves_tls(true);
    let s = TestServer::start_on(
        std::sync::Arc::new(store),
        |c| c.password_params(cheap_passwords()),
        RegistryConfig::default(),
        RelayLimits::default(),
        http,
    )
    .await;
    let created = s
        .post("/api/v1/registration-tokens", Some(&s.admin_token), json!({ "label": "tls" }))
        .await;
    let token = created.body["token"].as_str().unwrap().to_owned();
    let r = s.register_gateway(&token, "tls-gw", agents(&["main"])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ws_url = r.body["relay_ws_url"].as_str().unwrap();
    assert!(ws_url.starts_with("wss://127.0.0.1:"), "{ws_url}");
}

#[tokio::test]
async fn register_heartbeat_deregister() {
    let s = TestServer::start().await;
    let created = s
        .post(
            "/api/v1/registration-tokens",
            Some(&s.admin_token),
            json!({ "label": "office", "max_uses": 3 }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let token = created.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("gw_reg_") && token.len() > 40, "{token}");
    let listed = s.get("/api/v1/registration-tokens", &s.admin_token).await;
    assert_eq!(listed.body["registration_tokens"][0]["label"], "office");
    assert!(
        listed.body["registration_tokens"][0].get("token").is_none(),
        "the secret is shown once"
    );
    assert!(!listed.body.to_string().contains(&token));

    let r = s.register_gateway(&token, "office-gw", agents(&["main", "ops"])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["gateway_id"].as_str().unwrap().to_owned();
    let relay_token = r.body["relay_token"].as_str().unwrap().to_owned();
    assert!(relay_token.starts_with("gw_relay_"));
    assert_eq!(r.body["heartbeat_interval_seconds"], 30);
    let ws_url = r.body["relay_ws_url"].as_str().unwrap();
    assert!(
        ws_url.starts_with("ws://127.0.0.1:")
            && ws_url.ends_with(&format!("/ws/gateway/{id}/relay")),
        "{ws_url}"
    );

    let detail = s.get(&format!("/api/v1/gateways/{id}"), &s.admin_token).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.body["status"], "pending");
    assert_eq!(detail.body["connection_info"]["ip"], "127.0.0.1", "client IP as the server saw it");
    assert_eq!(detail.body["connection_info"]["version"], "2026.9.6");
    assert_eq!(detail.body["agents"].as_array().unwrap().len(), 2);
    assert!(detail.body.get("relay_token_hash").is_none());

    s.advance(5);
    let beat = heartbeat(&s, &id, &relay_token, json!({ "metrics": metrics() })).await;
    assert_eq!(beat.status, StatusCode::OK, "{}", beat.body);
    assert_eq!(beat.body, json!({ "ok": true, "status": "online" }));
    let m = s.get(&format!("/api/v1/gateways/{id}/metrics"), &s.admin_token).await;
    assert_eq!(m.body["metrics"]["memory_mb"], 812.5);
    assert_eq!(m.body["status"], "online");
    assert!(m.body["last_heartbeat_at"].is_string());

    // A gateway reporting an error shows `error`, then recovers.
    let beat = heartbeat(&s, &id, &relay_token, json!({ "status": "error" })).await;
    assert_eq!(beat.body["status"], "error");
    heartbeat(&s, &id, &relay_token, json!({})).await;

    let mut events = s.services.events().subscribe();
    let r = s
        .send(
            Method::DELETE,
            "/api/v1/gateway-registry/deregister",
            None,
            Some(json!({ "gateway_id": id, "relay_token": relay_token })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(matches!(
        common::next_event(&mut events),
        mc_core::RelayEvent::GatewayCredentialsRevoked { .. }
    ));
    let after = s.get(&format!("/api/v1/gateways/{id}"), &s.admin_token).await;
    assert_eq!(after.body["status"], "offline");
    assert_eq!(
        after.body["agents"].as_array().unwrap().len(),
        2,
        "agents stay after deregistering"
    );
    let r = heartbeat(&s, &id, &relay_token, json!({})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the relay token died with deregistration");

    let activity = s.get("/api/v1/activity?limit=200", &s.admin_token).await;
    let kinds: Vec<&str> = activity.body["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "gateway.registered",
        "gateway.online",
        "gateway.error",
        "gateway.deregistered",
        "gateway.offline",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}

/// A name belongs to its gateway: another registration token holder cannot take it over;
/// the gateway itself can (its relay token), and after an admin's release the next
/// registration claims it (a reinstalled gateway), keeping id and agents.
#[tokio::test]
async fn a_gateway_name_cannot_be_taken_over() {
    let s = TestServer::start().await;
    let token = s.registration_token(json!({ "max_uses": 10 })).await;
    let first = s.register_gateway(&token, "gw-own", agents(&["main"])).await;
    let id = first.body["gateway_id"].as_str().unwrap().to_owned();
    let real = first.body["relay_token"].as_str().unwrap().to_owned();
    let store = s.services.store().clone();
    let uses = || async {
        store.list_registration_tokens(s.org.id, Page::first(10)).await.unwrap().items[0].uses
    };
    let used = uses().await;
    for proof in [None, Some("gw_relay_guess")] {
        let r = s.reregister_gateway(&token, "gw-own", agents(&["evil"]), proof).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
        assert!(r.error_message().contains("release"), "{}", r.body);
    }
    assert_eq!(uses().await, used, "a refused registration uses no token");
    assert_eq!(heartbeat(&s, &id, &real, json!({})).await.status, StatusCode::OK, "untouched");

    // Deregistered: it does not come back by itself either.
    let r = s
        .send(
            Method::DELETE,
            "/api/v1/gateway-registry/deregister",
            None,
            Some(json!({ "gateway_id": id, "relay_token": real })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s.register_gateway(&token, "gw-own", agents(&["main"])).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    // An admin releases it: the next registration claims it, once.
    s.create_user(s.org.id, "mo", Role::Member).await;
    let member_token =
        s.login_ok("mo", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    let release = format!("/api/v1/gateways/{id}/release");
    assert_eq!(
        s.post(&release, Some(&member_token), json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    let r = s.post(&release, Some(&s.admin_token), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let claimed = s.register_gateway(&token, "gw-own", agents(&["main"])).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.body);
    assert_eq!(claimed.body["gateway_id"], id.as_str());
    let r = s.register_gateway(&token, "gw-own", agents(&["main"])).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "claimed once: {}", r.body);
}

#[tokio::test]
async fn reregistration_keeps_the_id_and_revokes_the_old_token() {
    let s = TestServer::start().await;
    let token = s.registration_token(json!({})).await;
    let first = s.register_gateway(&token, "gw-a", agents(&["main", "ops"])).await;
    let id = first.body["gateway_id"].as_str().unwrap().to_owned();
    let old = first.body["relay_token"].as_str().unwrap().to_owned();
    // Assign an agent to a user: the assignment must survive the gateway's restart.
    let user = s.create_user(s.org.id, "mia", Role::Member).await;
    let gw_id: GatewayId = id.parse().unwrap();
    let ops = s
        .services
        .store()
        .list_gateway_agents(gw_id)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.agent_key == "ops")
        .unwrap();
    let r = s
        .post(
            &format!("/api/v1/users/{}/assign", user.id),
            Some(&s.admin_token),
            json!({ "agent_id": ops.id }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    let second = s.reregister_gateway(&token, "gw-a", agents(&["main"]), Some(&old)).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_eq!(second.body["gateway_id"], id.as_str());
    assert_eq!(second.body["reregistered"], true);
    let new = second.body["relay_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(heartbeat(&s, &id, &old, json!({})).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(heartbeat(&s, &id, new, json!({})).await.status, StatusCode::OK);

    let ops_now = s.services.store().get_agent(ops.id).await.unwrap().unwrap();
    assert_eq!(ops_now.status, mc_core::AgentStatus::Gone, "not reported: gone, not deleted");
    assert!(s.services.store().get_assignment(user.id, ops.id).await.unwrap().is_some());
    // It comes back in a heartbeat.
    let r = heartbeat(&s, &id, new, json!({ "agents": agents(&["main", "ops"]) })).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        s.services.store().get_agent(ops.id).await.unwrap().unwrap().status,
        mc_core::AgentStatus::Active
    );
    let listed = s.get("/api/v1/gateways", &s.admin_token).await;
    assert_eq!(listed.body["gateways"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn registration_tokens_are_checked() {
    let s = TestServer::start().await;
    let other = Organization { id: OrgId::new(), name: "globex".into(), created_at: s.clock.now() };
    s.services.store().create_org(&other).await.unwrap();

    let once = s.registration_token(json!({ "max_uses": 1 })).await;
    assert_eq!(s.register_gateway(&once, "gw-1", agents(&[])).await.status, StatusCode::CREATED);
    let expiring = s.registration_token(json!({ "expires_in_seconds": 3600 })).await;
    let revoked = s.registration_token(json!({ "label": "to revoke" })).await;
    let list = s.get("/api/v1/registration-tokens", &s.admin_token).await;
    let revoke_id = list.body["registration_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "to revoke")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .send(
            Method::DELETE,
            &format!("/api/v1/registration-tokens/{revoke_id}"),
            Some(&s.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    s.advance(3600);

    let cases = [
        (once.as_str(), s.org.id, "no uses left"),
        (expiring.as_str(), s.org.id, "expired"),
        (revoked.as_str(), s.org.id, "revoked"),
        ("gw_reg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", s.org.id, "unknown token"),
        ("not-a-token", s.org.id, "not a registration token"),
        (revoked.as_str(), other.id, "unknown token"),
    ];
    for (token, org, why) in cases {
        let body = json!({ "organization_id": org, "registration_token": token, "name": "gw-x" });
        let r = s.post("/api/v1/gateway-registry/register", None, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{why}: {}", r.body);
        assert_eq!(r.error_code(), "REGISTRATION_REFUSED");
        assert!(r.error_message().contains(why), "{why}: {}", r.body);
    }
    let gateways = s.services.store().list_gateways(s.org.id, None, Page::first(50)).await.unwrap();
    assert_eq!(gateways.items.len(), 1, "no refused registration created a gateway");
    assert!(
        s.services
            .store()
            .list_gateways(other.id, None, Page::first(50))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_for_the_last_use_exactly_one_wins() {
    let s = TestServer::start().await;
    let token = s.registration_token(json!({ "max_uses": 1 })).await;
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..10 {
        let http = s.http.clone();
        let url = format!("{}/api/v1/gateway-registry/register", s.base);
        let body = json!({ "organization_id": s.org.id, "registration_token": token, "name": format!("racer-{i}") });
        racers.spawn(async move { http.post(url).json(&body).send().await.unwrap().status() });
    }
    let mut statuses = vec![];
    while let Some(status) = racers.join_next().await {
        statuses.push(status.unwrap());
    }
    let won = statuses.iter().filter(|st| **st == StatusCode::CREATED).count();
    let lost = statuses.iter().filter(|st| **st == StatusCode::UNAUTHORIZED).count();
    assert_eq!((won, lost), (1, 9), "{statuses:?}");
    assert_eq!(
        s.services
            .store()
            .list_gateways(s.org.id, None, Page::first(50))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_registrations_change_nothing() {
    let s = TestServer::start().await;
    let token = s.registration_token(json!({ "max_uses": 5 })).await;
    let base = json!({ "organization_id": s.org.id, "registration_token": token, "name": "gw" });
    let with = |patch: Value| {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let many_caps: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (with(json!({ "name": "" })), StatusCode::BAD_REQUEST, "name"),
        (with(json!({ "name": "has space" })), StatusCode::BAD_REQUEST, "name"),
        (with(json!({ "name": "x".repeat(65) })), StatusCode::BAD_REQUEST, "name"),
        (with(json!({ "url": "ftp://example.com" })), StatusCode::BAD_REQUEST, "url"),
        (with(json!({ "workspace_root": "a\u{0}b" })), StatusCode::BAD_REQUEST, "workspace_root"),
        (with(json!({ "version": "v".repeat(65) })), StatusCode::BAD_REQUEST, "version"),
        (with(json!({ "capabilities": many_caps })), StatusCode::BAD_REQUEST, "capabilities"),
        (with(json!({ "capabilities": ["bad cap"] })), StatusCode::BAD_REQUEST, "capabilities[0]"),
        (
            with(json!({ "agents": [{ "agent_key": "", "name": "x" }] })),
            StatusCode::BAD_REQUEST,
            "agents[0].agent_key",
        ),
        (
            with(json!({ "agents": [{ "agent_key": "a", "name": "  " }] })),
            StatusCode::BAD_REQUEST,
            "agents[0].name",
        ),
        (
            with(json!({ "agents": agents(&["a", "b", "a"]) })),
            StatusCode::BAD_REQUEST,
            "agents[2].agent_key",
        ),
        (
            with(json!({ "agents": [{ "agent_key": "a" }] })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "agents[0]",
        ),
        (with(json!({ "organization_id": "acme" })), StatusCode::BAD_REQUEST, "organization_id"),
        (with(json!({ "capabilities": "chat" })), StatusCode::UNPROCESSABLE_ENTITY, "capabilities"),
        (with(json!({ "extra": 1 })), StatusCode::UNPROCESSABLE_ENTITY, ""),
    ];
    for (body, status, field) in cases {
        let r = s.post("/api/v1/gateway-registry/register", None, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        if !field.is_empty() {
            assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.body);
        }
    }
    let tokens =
        s.services.store().list_registration_tokens(s.org.id, Page::first(10)).await.unwrap();
    assert_eq!(tokens.items[0].uses, 0, "a bad request costs no use");
    assert!(
        s.services
            .store()
            .list_gateways(s.org.id, None, Page::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn bad_heartbeats_are_refused() {
    let s = TestServer::start().await;
    let token = s.registration_token(json!({})).await;
    let r = s.register_gateway(&token, "gw", agents(&["main"])).await;
    let id = r.body["gateway_id"].as_str().unwrap().to_owned();
    let relay = r.body["relay_token"].as_str().unwrap().to_owned();

    let unknown = heartbeat(&s, &GatewayId::new().to_string(), &relay, json!({})).await;
    let wrong = heartbeat(&s, &id, "gw_relay_wrong", json!({})).await;
    assert_eq!(
        (unknown.status, wrong.status),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(unknown.body, wrong.body, "unknown gateway and wrong token look the same");

    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({ "metrics": { "active_sessions": 1, "memory_mb": -5.0, "cpu_pct": 1.0, "agent_count": 1 } }),
            StatusCode::BAD_REQUEST,
            "metrics.memory_mb",
        ),
        (
            json!({ "metrics": { "active_sessions": 1, "memory_mb": 5.0, "cpu_pct": 1e12, "agent_count": 1 } }),
            StatusCode::BAD_REQUEST,
            "metrics.cpu_pct",
        ),
        (
            json!({ "metrics": { "active_sessions": -1, "memory_mb": 5.0, "cpu_pct": 1.0, "agent_count": 1 } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "metrics.active_sessions",
        ),
        (
            json!({ "metrics": { "active_sessions": 1e30, "memory_mb": 5.0, "cpu_pct": 1.0, "agent_count": 1 } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "metrics.active_sessions",
        ),
        (
            json!({ "metrics": { "active_sessions": 1, "memory_mb": "lots", "cpu_pct": 1.0, "agent_count": 1 } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "metrics.memory_mb",
        ),
        (
            json!({ "metrics": { "active_sessions": 1, "memory_mb": 5.0, "cpu_pct": 1.0 } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "metrics",
        ),
        (json!({ "metrics": "fine" }), StatusCode::UNPROCESSABLE_ENTITY, "metrics"),
        (json!({ "status": "sleeping" }), StatusCode::UNPROCESSABLE_ENTITY, "status"),
        (json!({ "agents": agents(&["a", "a"]) }), StatusCode::BAD_REQUEST, "agents[1].agent_key"),
        (json!({ "gateway_id": "nope" }), StatusCode::BAD_REQUEST, "gateway_id"),
        (json!({ "relay_token": "" }), StatusCode::BAD_REQUEST, "relay_token"),
    ];
    for (patch, status, field) in cases {
        let r = heartbeat(&s, &id, &relay, patch.clone()).await;
        assert_eq!(r.status, status, "{patch}: {}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{patch}: {}", r.body);
    }
    let gateway = s.services.store().get_gateway(id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(gateway.status, GatewayStatus::Pending, "no bad heartbeat changed anything");
    assert_eq!(gateway.last_heartbeat_at, None);
    assert_eq!(gateway.connection_info.metrics, None);
}

#[tokio::test]
async fn admin_reads_filters_and_organization_scope() {
    let s = TestServer::start().await;
    let token = s.registration_token(json!({})).await;
    let mut ids = vec![];
    for name in ["gw-1", "gw-2", "gw-3"] {
        let r = s.register_gateway(&token, name, agents(&["main"])).await;
        ids.push((
            r.body["gateway_id"].as_str().unwrap().to_owned(),
            r.body["relay_token"].as_str().unwrap().to_owned(),
        ));
    }
    heartbeat(&s, &ids[0].0, &ids[0].1, json!({})).await;

    let online = s.get("/api/v1/gateways?status=online", &s.admin_token).await;
    assert_eq!(online.body["gateways"].as_array().unwrap().len(), 1);
    let pending = s.get("/api/v1/gateways?status=pending&limit=1", &s.admin_token).await;
    assert_eq!(pending.body["gateways"].as_array().unwrap().len(), 1);
    assert!(pending.body["next_cursor"].is_string());
    let bad = s.get("/api/v1/gateways?status=asleep", &s.admin_token).await;
    assert_eq!(
        (bad.status, bad.body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("status"))
    );
    let bad = s.get("/api/v1/gateways?sort=name", &s.admin_token).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let agents_page = s.get("/api/v1/agents?limit=2", &s.admin_token).await;
    assert_eq!(agents_page.body["agents"].as_array().unwrap().len(), 2);
    assert!(agents_page.body["next_cursor"].is_string());

    // Another organization's admin sees none of it.
    let other = Organization { id: OrgId::new(), name: "globex".into(), created_at: s.clock.now() };
    s.services.store().create_org(&other).await.unwrap();
    s.create_user(other.id, "boss", Role::Admin).await;
    let boss = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "organization": "globex", "username": "boss", "password": common::PASSWORD }),
        )
        .await;
    let boss = boss.body["access_token"].as_str().unwrap().to_owned();
    let id = &ids[1].0;
    for path in [format!("/api/v1/gateways/{id}"), format!("/api/v1/gateways/{id}/metrics")] {
        let r = s.get(&path, &boss).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = s.send(Method::DELETE, &format!("/api/v1/gateways/{id}"), Some(&boss), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(s.get("/api/v1/gateways", &boss).await.body["gateways"].as_array().unwrap().is_empty());
    assert!(s.get("/api/v1/agents", &boss).await.body["agents"].as_array().unwrap().is_empty());
    let their_activity = s.get("/api/v1/activity", &boss).await;
    let theirs = their_activity.body["activity"].as_array().unwrap();
    assert!(theirs.iter().all(|e| e["kind"] == "user.login"), "only their own sign-in: {theirs:?}");
    let our_tokens = s.get("/api/v1/registration-tokens", &s.admin_token).await;
    let token_id = our_tokens.body["registration_tokens"][0]["id"].as_str().unwrap().to_owned();
    let r = s
        .send(Method::DELETE, &format!("/api/v1/registration-tokens/{token_id}"), Some(&boss), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let member = s.create_user(s.org.id, "nosy", Role::Member).await;
    let nosy = s.login_ok(&member.username, common::PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.get("/api/v1/gateways", &nosy).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        s.post("/api/v1/registration-tokens", Some(&nosy), json!({})).await.status,
        StatusCode::FORBIDDEN
    );

    // Deleting a gateway takes its agents with it.
    let r =
        s.send(Method::DELETE, &format!("/api/v1/gateways/{id}"), Some(&s.admin_token), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get(&format!("/api/v1/gateways/{id}"), &s.admin_token).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/api/v1/agents", &s.admin_token).await.body["agents"].as_array().unwrap().len(),
        2
    );

    // Activity pages newest first.
    let first = s.get("/api/v1/activity?limit=2", &s.admin_token).await;
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = s.get(&format!("/api/v1/activity?limit=2&cursor={cursor}"), &s.admin_token).await;
    assert_eq!(first.body["activity"][0]["kind"], "gateway.deleted");
    assert_ne!(first.body["activity"][1]["id"], second.body["activity"][0]["id"]);
}

#[tokio::test]
async fn registration_token_inputs() {
    let s = TestServer::start().await;
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (json!({ "max_uses": 0 }), StatusCode::BAD_REQUEST, "max_uses"),
        (json!({ "max_uses": -1 }), StatusCode::UNPROCESSABLE_ENTITY, "max_uses"),
        (json!({ "expires_in_seconds": 0 }), StatusCode::BAD_REQUEST, "expires_in_seconds"),
        (
            json!({ "expires_in_seconds": 100_000_000_000u64 }),
            StatusCode::BAD_REQUEST,
            "expires_in_seconds",
        ),
        (json!({ "label": "x".repeat(65) }), StatusCode::BAD_REQUEST, "label"),
        (json!({ "label": 7 }), StatusCode::UNPROCESSABLE_ENTITY, "label"),
    ];
    for (body, status, field) in cases {
        let r = s.post("/api/v1/registration-tokens", Some(&s.admin_token), body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}");
    }
    let r = s
        .send(Method::DELETE, "/api/v1/registration-tokens/nope", Some(&s.admin_token), None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s
        .send(
            Method::DELETE,
            &format!("/api/v1/registration-tokens/{}", uuid::Uuid::now_v7()),
            Some(&s.admin_token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        s.services
            .store()
            .list_registration_tokens(s.org.id, Page::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}
