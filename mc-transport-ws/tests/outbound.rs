//! Gateways the relay dials (`POST /api/v1/gateways`) and the live links of a gateway
//! (`GET /api/v1/gateways/{id}/connections`) through real HTTP, with every bad input. The
//! real OpenClaw end of outbound links is in `examples/mc-server/tests/openclaw_real.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{ChatFixture, PASSWORD, TestServer, ws::Mode};
use mc_core::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The gateway's view once its first dial failed, and that failure.
async fn last_error(s: &TestServer, admin: &str, id: &str) -> (common::Response, String) {
    let mut view = s.get(&format!("/api/v1/gateways/{id}"), admin).await;
    for _ in 0..100 {
        if let Some(error) = view.body["outbound"]["last_error"].as_str() {
            let error = error.to_owned();
            return (view, error);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        view = s.get(&format!("/api/v1/gateways/{id}"), admin).await;
    }
    panic!("no dial failed within 5 s: {}", view.body);
}

#[tokio::test]
async fn adding_a_gateway_to_dial_checks_every_field() {
    let s = TestServer::start().await;
    let admin = s.admin_token.clone();
    let secret = "a-shared-gateway-token-0123456789";
    let bad = [
        (json!({ "name": "hq", "url": "http://127.0.0.1:1", "token": secret }), "url"),
        (json!({ "name": "hq", "url": "ws://", "token": secret }), "url"),
        (json!({ "name": "hq", "url": "ws://127.0.0.1:1/ x", "token": secret }), "url"),
        (json!({ "name": "h q", "url": "ws://127.0.0.1:1", "token": secret }), "name"),
        (json!({ "name": "", "url": "ws://127.0.0.1:1" }), "name"),
        (json!({ "name": "hq", "url": "ws://127.0.0.1:1", "token": "" }), "token"),
        (json!({ "name": "hq", "url": "ws://127.0.0.1:1", "token": "x".repeat(513) }), "token"),
        (json!({ "name": "hq", "url": "ws://127.0.0.1:1", "token": "a b" }), "token"),
    ];
    for (body, field) in bad {
        let r = s.post("/api/v1/gateways", Some(&admin), body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert!(r.error_message().starts_with(field), "{body}: {}", r.body);
    }
    // Bodies of the wrong shape: 422, like every other route.
    for body in [json!({ "name": "hq" }), json!({ "name": "hq", "url": "ws://a", "extra": 1 })] {
        let r = s.post("/api/v1/gateways", Some(&admin), body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.body);
    }
    s.create_user(s.org.id, "mia", Role::Member).await;
    let member_token =
        s.login_ok("mia", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    let good = json!({ "name": "hq", "url": "ws://127.0.0.1:1", "token": secret });
    let r = s.post("/api/v1/gateways", Some(&member_token), good.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = s.post("/api/v1/gateways", None, good.clone()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let listed = s.get("/api/v1/gateways", &admin).await;
    assert_eq!(listed.body["gateways"].as_array().unwrap().len(), 0, "nothing was stored");

    // Added: pending, never showing its token, and dialled at once.
    let r = s.post("/api/v1/gateways", Some(&admin), good.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["auto_registered"], false);
    assert_eq!(r.body["outbound"]["has_token"], true);
    assert!(!r.body.to_string().contains(secret));
    let id = r.body["id"].as_str().unwrap().to_owned();
    let again = s.post("/api/v1/gateways", Some(&admin), good).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);

    // Nothing listens on port 1: the attempt's failure is visible, never the token.
    let (view, error) = last_error(&s, &admin, &id).await;
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(!view.body.to_string().contains(secret));
    let links = s.get(&format!("/api/v1/gateways/{id}/connections"), &admin).await;
    assert_eq!(links.body["connections"], json!([]), "{}", links.body);

    // Deleted: gone, and its connection stops trying.
    let r = s.send(Method::DELETE, &format!("/api/v1/gateways/{id}"), Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = s.get(&format!("/api/v1/gateways/{id}"), &admin).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// The relay never dials a link-local address (a cloud's metadata service): such a URL is
/// refused with 422, and so is an address literal outside the configured ranges; a name is
/// checked on every address it resolves to when it is dialled, and the refusal is its error.
#[tokio::test]
async fn outbound_urls_never_reach_link_local_addresses_or_leave_the_allowed_ranges() {
    let s = TestServer::start().await;
    let admin = s.admin_token.clone();
    for url in [
        "ws://169.254.169.254/latest/meta-data",
        "ws://169.254.0.1:18789",
        "ws://[fe80::1]:18789",
        "ws://[fd00:ec2::254]/",
        "ws://[::ffff:169.254.169.254]/",
    ] {
        let r =
            s.post("/api/v1/gateways", Some(&admin), json!({ "name": "meta", "url": url })).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "ADDRESS_REFUSED", "{url}: {}", r.body);
    }
    assert_eq!(s.get("/api/v1/gateways", &admin).await.body["gateways"], json!([]));

    // Narrowed to 10.0.0.0/8: a loopback literal is refused at once, a name that resolves to
    // loopback when it is dialled.
    let store = mc_store_sqlite::SqliteStore::open_in_memory().await.unwrap();
    let http =
        common::HttpConfig::default().with_outbound_allow(vec!["10.0.0.0/8".parse().unwrap()]);
    let narrow = TestServer::start_on(
        std::sync::Arc::new(store),
        |c| c.password_params(common::cheap_passwords()),
        mc_core::registry::RegistryConfig::default(),
        mc_core::relay::RelayLimits::default(),
        http,
    )
    .await;
    let admin = narrow.admin_token.clone();
    let literal = json!({ "name": "lo", "url": "ws://127.0.0.1:18789" });
    let r = narrow.post("/api/v1/gateways", Some(&admin), literal).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let named = json!({ "name": "named", "url": "ws://localhost:18789" });
    let r = narrow.post("/api/v1/gateways", Some(&admin), named).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let (_, error) = last_error(&narrow, &admin, &id).await;
    assert!(error.contains("outside the ranges"), "{error}");
}

/// An organization dials at most so many gateways: past the cap adding one is refused and
/// nothing is stored; deleting one makes room.
#[tokio::test]
async fn outbound_gateways_are_capped_per_organization() {
    let store = mc_store_sqlite::SqliteStore::open_in_memory().await.unwrap();
    let s = TestServer::start_on(
        std::sync::Arc::new(store),
        |c| c.password_params(common::cheap_passwords()),
        mc_core::registry::RegistryConfig::default().with_max_outbound_gateways(2),
        mc_core::relay::RelayLimits::default(),
        common::HttpConfig::default(),
    )
    .await;
    let admin = s.admin_token.clone();
    let add = |name: &str| json!({ "name": name, "url": "ws://127.0.0.1:1" });
    let first = s.post("/api/v1/gateways", Some(&admin), add("one")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(
        s.post("/api/v1/gateways", Some(&admin), add("two")).await.status,
        StatusCode::CREATED
    );
    let third = s.post("/api/v1/gateways", Some(&admin), add("three")).await;
    assert_eq!(third.status, StatusCode::CONFLICT, "{}", third.body);
    assert!(third.error_message().contains("the most"), "{}", third.body);
    assert_eq!(
        s.get("/api/v1/gateways", &admin).await.body["gateways"].as_array().unwrap().len(),
        2
    );
    let id = first.body["id"].as_str().unwrap();
    s.send(Method::DELETE, &format!("/api/v1/gateways/{id}"), Some(&admin), None).await;
    assert_eq!(
        s.post("/api/v1/gateways", Some(&admin), add("three")).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_list_the_live_links_of_a_gateway() {
    let f = ChatFixture::new().await;
    let admin = f.s.admin_token.clone();
    let path = format!("/api/v1/gateways/{}/connections", f.gateway_id);
    let r = f.s.get(&path, &admin).await;
    assert_eq!(r.body["connections"], json!([]), "{}", r.body);

    let gw = f.gateway(Mode::Echo).await;
    let mut r = f.s.get(&path, &admin).await;
    for _ in 0..100 {
        if r.body["connections"] != json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        r = f.s.get(&path, &admin).await;
    }
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let links = r.body["connections"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{}", r.body);
    assert_eq!(links[0]["kind"], "inbound");
    assert_eq!(links[0]["instance"], "local");
    assert_eq!(links[0]["remote"], "127.0.0.1");
    assert_eq!(links[0]["pending_requests"], 0);
    assert!(links[0]["since"].is_string() && links[0]["last_frame_at"].is_string());

    let (mut c, _) = f.client().await;
    c.chat(&f.agent_id, "hello", None).await;
    c.until("chat").await;
    gw.stop();
    let mut r = f.s.get(&path, &admin).await;
    for _ in 0..100 {
        if r.body["connections"] == json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        r = f.s.get(&path, &admin).await;
    }
    assert_eq!(r.body["connections"], json!([]), "the link is gone: {}", r.body);

    // Bad and unknown ids, and members.
    let r = f.s.get("/api/v1/gateways/not-an-id/connections", &admin).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let unknown = format!("/api/v1/gateways/{}/connections", uuid::Uuid::now_v7());
    assert_eq!(f.s.get(&unknown, &admin).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.s.get(&path, &f.token).await.status, StatusCode::FORBIDDEN);
}
