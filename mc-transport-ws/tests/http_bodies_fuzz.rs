//! Property test of the HTTP API's request bodies (proptest): every route that reads a body,
//! under the admin's, a user's, a wrong or no token, gets JSON shaped like its bodies (their
//! own keys and values, nested, at the edges) or any bytes, under any content type. The answer
//! is never a 5xx and never a panic; a refusal is a JSON `error` with a code and a message, and
//! changes nothing stored. `PROPTEST_CASES` sets how many requests (256 by default; see
//! BENCHMARKS.md "Fuzzing" for the long run).
//!
//! The requests go to the router in process (`tower::ServiceExt::oneshot`), the same router
//! `mc_transport_ws::server::serve` runs behind its sockets, so a long run is not bound by
//! loopback TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, header};
use common::TestServer;
use mc_core::{Page, Role};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value};
use tower::ServiceExt;

/// The keys of every body the API reads.
const KEYS: &[&str] = &[
    "organization",
    "organization_id",
    "username",
    "password",
    "current_password",
    "refresh_token",
    "email",
    "phone",
    "display_name",
    "avatar_url",
    "role",
    "status",
    "agent_id",
    "board_name",
    "label",
    "expires_in_seconds",
    "max_uses",
    "name",
    "url",
    "token",
    "registration_token",
    "relay_token",
    "gateway_id",
    "workspace_root",
    "version",
    "capabilities",
    "agents",
    "agent_key",
    "metrics",
    "active_sessions",
    "memory_mb",
    "cpu_pct",
    "agent_count",
];

/// Values those keys take, and values at their edges.
const WORDS: &[&str] = &[
    "acme",
    "admin",
    "alice",
    "member",
    "suspended",
    "active",
    "online",
    "offline",
    "owner",
    "viewer",
    "ws://127.0.0.1:9/",
    "wss://",
    "http://127.0.0.1:9/",
    "a@b.c",
    "+15551234567",
    "01a20000-0000-7000-8000-000000000000",
    "gw_reg_0000",
    "",
    " ",
    "\u{0}",
    "😀",
    "x\u{301}",
];

/// JSON shaped like the API's bodies.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(i64::MIN),
            Just(-1i64),
            Just(0),
            Just(1),
            Just(i64::from(u32::MAX) + 1),
            Just(i64::MAX),
            any::<i64>()
        ]
        .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        proptest::sample::select(WORDS).prop_map(|w| Value::String(w.to_owned())),
        ".{0,40}".prop_map(Value::String),
        (1usize..400).prop_map(|n| Value::String("x".repeat(n))),
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

/// A body: JSON of the bodies' keys, any text, or any bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => json().prop_map(|v| v.to_string().into_bytes()),
        1 => ".{0,200}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

/// Every route that reads a body; `{user}` and `{gateway}` are filled in per request.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("PATCH", "/api/v1/auth/me"),
    ("PATCH", "/api/v1/users/{user}"),
    ("POST", "/api/v1/users/{user}/assign"),
    ("POST", "/api/v1/h5/auth/register"),
    ("POST", "/api/v1/h5/auth/login"),
    ("PATCH", "/api/v1/h5/users/{user}"),
    ("POST", "/api/v1/registration-tokens"),
    ("POST", "/api/v1/gateways"),
    ("POST", "/api/v1/gateways/{gateway}/release"),
    ("POST", "/api/v1/gateway-registry/register"),
    ("POST", "/api/v1/gateway-registry/heartbeat"),
    ("DELETE", "/api/v1/gateway-registry/deregister"),
];

/// One request the property sends.
#[derive(Debug, Clone)]
struct Case {
    route: usize,
    /// 0: the admin, 1: a user, 2: a token that is not one, 3: none.
    who: u8,
    /// 0: the real id, 1: an id of nothing, 2: not an id.
    id: u8,
    /// 0: JSON, 1: none, 2: text.
    content_type: u8,
    body: Vec<u8>,
}

fn case() -> impl Strategy<Value = Case> {
    (0..ROUTES.len(), 0u8..4, 0u8..3, 0u8..3, body()).prop_map(
        |(route, who, id, content_type, body)| Case { route, who, id, content_type, body },
    )
}

/// What the refusals must leave as it was.
#[derive(Debug, PartialEq)]
struct Stored {
    users: Vec<(String, String, String)>,
    tokens: usize,
    gateways: Vec<(String, String)>,
    assignments: usize,
}

async fn stored(s: &TestServer, alice: mc_core::UserId) -> Stored {
    let store = s.services.store();
    let users = store.list_users(s.org.id, Page::first(500)).await.unwrap().items;
    let tokens = store.list_registration_tokens(s.org.id, Page::first(500)).await.unwrap();
    let gateways = store.list_gateways(s.org.id, None, Page::first(500)).await.unwrap().items;
    Stored {
        users: users
            .into_iter()
            .map(|u| (u.username, format!("{:?}/{:?}", u.role, u.status), u.password_hash))
            .collect(),
        tokens: tokens.items.len(),
        gateways: gateways.into_iter().map(|g| (g.name, format!("{:?}", g.status))).collect(),
        assignments: store.list_user_assignments(alice).await.unwrap().len(),
    }
}

#[test]
fn request_bodies_never_panic_nor_answer_5xx_and_refusals_change_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (server, app, alice, alice_token, gateway) = runtime.block_on(async {
        let s = TestServer::start().await;
        let alice = s.create_user(s.org.id, "alice", Role::Member).await;
        let token = s.login_ok("alice", common::PASSWORD).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let agent = s.create_agent(s.org.id).await;
        s.assign(alice.id, agent.id).await;
        let app = mc_transport_ws::server::app(s.relay.clone());
        (s, app, alice.id, token, agent.gateway_id)
    });
    let send = |case: &Case| {
        let (method, template) = ROUTES[case.route];
        let path = template
            .replace(
                "{user}",
                &match case.id {
                    0 => alice.to_string(),
                    1 => mc_core::UserId::new().to_string(),
                    _ => "not-an-id".into(),
                },
            )
            .replace(
                "{gateway}",
                &match case.id {
                    0 => gateway.to_string(),
                    1 => mc_core::GatewayId::new().to_string(),
                    _ => "../x".into(),
                },
            );
        let mut request = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap());
        request = request.uri(path.as_str());
        match case.who {
            0 => {
                request =
                    request.header(header::AUTHORIZATION, format!("Bearer {}", server.admin_token))
            }
            1 => request = request.header(header::AUTHORIZATION, format!("Bearer {alice_token}")),
            2 => request = request.header(header::AUTHORIZATION, "Bearer e30.e30.e30"),
            _ => {}
        }
        match case.content_type {
            0 => request = request.header(header::CONTENT_TYPE, "application/json"),
            2 => request = request.header(header::CONTENT_TYPE, "text/plain"),
            _ => {}
        }
        let mut request = request.body(Body::from(case.body.clone())).unwrap();
        request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
        let (status, body, changed) = runtime.block_on(async {
            let before = stored(&server, alice).await;
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            let after = stored(&server, alice).await;
            (status, body, before != after)
        });
        (method, path, status, body, changed)
    };
    // The harness itself works: a well-formed request of each caller kind is accepted through
    // the same `send` the property uses (random cases alone may, by chance, never be).
    for (route, who, body) in [
        ("/api/v1/auth/me", 1, r#"{"display_name":"Alice"}"#),
        ("/api/v1/registration-tokens", 0, r#"{"label":"fuzz"}"#),
    ] {
        let route = ROUTES.iter().position(|(_, path)| *path == route).unwrap();
        let case = Case { route, who, id: 0, content_type: 0, body: body.as_bytes().to_vec() };
        let (method, path, status, body, _) = send(&case);
        let shown = String::from_utf8_lossy(&body);
        assert!(status.is_success(), "{method} {path} answered {status}: {shown}");
    }
    let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::default() });
    let answered: [std::cell::Cell<usize>; 6] = Default::default();
    let result = runner.run(&case(), |case| {
        let (method, path, status, body, changed) = send(&case);
        let class = &answered[usize::from(status.as_u16() / 100).min(5)];
        class.set(class.get() + 1);
        let shown = String::from_utf8_lossy(&body);
        prop_assert!(!status.is_server_error(), "{method} {path} answered {status}: {shown}");
        if status.is_client_error() {
            let error: Value = serde_json::from_slice(&body)
                .map_err(|e| TestCaseError::fail(format!("{status} is not JSON ({e}): {shown}")))?;
            prop_assert!(error["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{shown}");
            prop_assert!(
                error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{shown}"
            );
            prop_assert!(!changed, "{method} {path} refused with {status} but changed the store");
        }
        Ok(())
    });
    let answered: Vec<usize> = answered.iter().map(std::cell::Cell::get).collect();
    eprintln!("answers by class (1xx..5xx): {:?}", &answered[1..]);
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
