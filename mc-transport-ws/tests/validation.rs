//! Every kind of bad input gets a clear error naming the field, and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{PASSWORD, TestServer};
use mc_core::{Page, Role};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn user_count(s: &TestServer) -> usize {
    s.services.store().list_users(s.org.id, Page::first(500)).await.unwrap().items.len()
}

#[tokio::test]
async fn register_fields_are_validated() {
    let s = TestServer::start().await;
    let before = user_count(&s).await;
    let long = "x".repeat(129);
    let cases: Vec<(Value, StatusCode, &str, &str)> = vec![
        (
            json!({ "username": "ab", "password": PASSWORD }),
            StatusCode::BAD_REQUEST,
            "username",
            "3–64 characters",
        ),
        (
            json!({ "username": "a".repeat(65), "password": PASSWORD }),
            StatusCode::BAD_REQUEST,
            "username",
            "3–64",
        ),
        (
            json!({ "username": "bad name", "password": PASSWORD }),
            StatusCode::BAD_REQUEST,
            "username",
            "may only contain",
        ),
        (
            json!({ "username": "ünï", "password": PASSWORD }),
            StatusCode::BAD_REQUEST,
            "username",
            "may only contain",
        ),
        (
            json!({ "username": "okname", "password": "short" }),
            StatusCode::BAD_REQUEST,
            "password",
            "8–128",
        ),
        (
            json!({ "username": "okname", "password": long }),
            StatusCode::BAD_REQUEST,
            "password",
            "8–128",
        ),
        (
            json!({ "username": "okname", "password": PASSWORD, "email": "not-an-email" }),
            StatusCode::BAD_REQUEST,
            "email",
            "email address",
        ),
        (
            json!({ "username": "okname", "password": PASSWORD, "phone": "call me" }),
            StatusCode::BAD_REQUEST,
            "phone",
            "phone number",
        ),
        (
            json!({ "username": "okname", "password": PASSWORD, "display_name": "  " }),
            StatusCode::BAD_REQUEST,
            "display_name",
            "blank",
        ),
        (
            json!({ "username": "okname", "password": PASSWORD, "role": "root" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "role",
            "unknown variant",
        ),
        (
            json!({ "username": 5, "password": PASSWORD }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "username",
            "invalid type",
        ),
        (
            json!({ "username": "okname" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
            "missing field `password`",
        ),
        (
            json!({ "username": "okname", "password": PASSWORD, "is_admin": true }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
            "unknown field `is_admin`",
        ),
        (json!([1, 2]), StatusCode::UNPROCESSABLE_ENTITY, "", "invalid type"),
        (
            json!({ "username": "okname", "password": PASSWORD, "organization": "" }),
            StatusCode::BAD_REQUEST,
            "organization",
            "organization id or name",
        ),
    ];
    for (body, status, field, message) in cases {
        let r = s.post("/api/v1/auth/register", Some(&s.admin_token), body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        if !field.is_empty() {
            assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.body);
            assert!(r.error_message().starts_with(field), "message names the field: {}", r.body);
        }
        assert!(r.error_message().contains(message), "{body}: {}", r.body);
        assert!(!r.error_code().is_empty());
    }
    assert_eq!(user_count(&s).await, before, "no bad request created a user");
}

#[tokio::test]
async fn malformed_bodies_and_headers() {
    let s = TestServer::start().await;
    let path = "/api/v1/auth/register";
    let r = s.send_raw(Method::POST, path, "application/json", b"{\"username\": ".to_vec()).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));
    assert!(r.error_message().contains("not valid JSON"), "{}", r.body);
    let r = s
        .send_raw(
            Method::POST,
            path,
            "application/json",
            br#"{"username": "trailer", "password": "long enough"} {}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "trailing data: {}", r.body);
    let r = s.send_raw(Method::POST, path, "application/json", vec![0xff, 0xfe, 0x00]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "not UTF-8: {}", r.body);
    let r = s.send_raw(Method::POST, path, "text/plain", b"{}".to_vec()).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
    );
    let huge = format!("{{\"username\": \"{}\", \"password\": \"x\"}}", "a".repeat(70 * 1024));
    let r = s.send_raw(Method::POST, path, "application/json", huge.into_bytes()).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"));
    let r = s
        .send_raw(
            Method::POST,
            path,
            "application/json; charset=utf-8",
            b"{\"username\":\"ab\",\"password\":\"x\"}".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "charset parameter accepted: {}", r.body);
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = s.send_raw(Method::POST, path, "application/json", nested.into_bytes()).await;
    assert!(r.status.is_client_error(), "deep nesting is refused, not a crash: {}", r.body);
    let nested = format!("{{\"username\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let r = s.send_raw(Method::POST, path, "application/json", nested.into_bytes()).await;
    assert!(r.status.is_client_error(), "{}", r.body);
    assert_eq!(s.send(Method::GET, "/healthz", None, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn login_and_refresh_inputs() {
    let s = TestServer::start().await;
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "/api/v1/auth/login",
            json!({ "username": "", "password": "x", "organization": "acme" }),
            StatusCode::BAD_REQUEST,
            "username",
        ),
        (
            "/api/v1/auth/login",
            json!({ "username": "admin", "password": "", "organization": "acme" }),
            StatusCode::BAD_REQUEST,
            "password",
        ),
        (
            "/api/v1/auth/login",
            json!({ "username": "admin", "password": PASSWORD, "organization_id": "acme" }),
            StatusCode::BAD_REQUEST,
            "organization_id",
        ),
        (
            "/api/v1/auth/login",
            json!({ "username": "admin", "password": 12345678, "organization": "acme" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password",
        ),
        (
            "/api/v1/auth/refresh",
            json!({ "refresh_token": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "refresh_token",
        ),
        ("/api/v1/auth/refresh", json!({}), StatusCode::UNPROCESSABLE_ENTITY, ""),
    ];
    for (path, body, status, field) in cases {
        let r = s.post(path, None, body.clone()).await;
        assert_eq!(r.status, status, "{path} {body}: {}", r.body);
        if !field.is_empty() {
            assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.body);
        }
    }
    let r = s.refresh("mcr_not-a-real-token").await;
    assert_eq!((r.status, r.error_code()), (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"));
    let r = s.refresh(&"x".repeat(10_000)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // An unknown organization looks exactly like a wrong password.
    let unknown_org = s
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "organization": "nope", "username": "admin", "password": PASSWORD }),
        )
        .await;
    let wrong_password = s.login("admin", "wrong password").await;
    assert_eq!(unknown_org.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_org.body, wrong_password.body);
}

#[tokio::test]
async fn profile_and_admin_inputs() {
    let s = TestServer::start().await;
    let user = s.create_user(s.org.id, "leo", Role::Member).await;
    let token = s.login_ok("leo", PASSWORD).await["access_token"].as_str().unwrap().to_owned();
    let user = s.services.store().get_user(user.id).await.unwrap().unwrap();
    let me_cases: Vec<(Value, StatusCode, &str)> = vec![
        (json!({}), StatusCode::BAD_REQUEST, "body"),
        (json!({ "avatar_url": "javascript:alert(1)" }), StatusCode::BAD_REQUEST, "avatar_url"),
        (json!({ "email": "a@b" }), StatusCode::BAD_REQUEST, "email"),
        (json!({ "display_name": "x".repeat(65) }), StatusCode::BAD_REQUEST, "display_name"),
        (json!({ "display_name": "bad\u{7}bell" }), StatusCode::BAD_REQUEST, "display_name"),
        (json!({ "current_password": PASSWORD }), StatusCode::BAD_REQUEST, "password"),
        (json!({ "role": "admin" }), StatusCode::UNPROCESSABLE_ENTITY, ""),
        (json!({ "username": "renamed" }), StatusCode::UNPROCESSABLE_ENTITY, ""),
    ];
    for (body, status, field) in me_cases {
        let r = s.patch("/api/v1/auth/me", &token, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        if !field.is_empty() {
            assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.body);
        }
    }
    let stored = s.services.store().get_user(user.id).await.unwrap().unwrap();
    assert_eq!(stored, user, "no bad profile update changed anything");

    let admin_cases: Vec<(Method, String, Option<Value>, StatusCode, &str)> = vec![
        (Method::GET, "/api/v1/users?limit=0".into(), None, StatusCode::BAD_REQUEST, "limit"),
        (Method::GET, "/api/v1/users?limit=201".into(), None, StatusCode::BAD_REQUEST, "limit"),
        (Method::GET, "/api/v1/users?limit=ten".into(), None, StatusCode::BAD_REQUEST, "limit"),
        (Method::GET, "/api/v1/users?cursor=abc".into(), None, StatusCode::BAD_REQUEST, "cursor"),
        (Method::GET, "/api/v1/users?page=2".into(), None, StatusCode::BAD_REQUEST, ""),
        (Method::GET, "/api/v1/users/not-an-id".into(), None, StatusCode::BAD_REQUEST, "user id"),
        (
            Method::PATCH,
            format!("/api/v1/users/{}", user.id),
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{}", user.id),
            Some(json!({ "status": "banned" })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "status",
        ),
        (
            Method::POST,
            format!("/api/v1/users/{}/assign", user.id),
            Some(json!({ "agent_id": "x" })),
            StatusCode::BAD_REQUEST,
            "agent_id",
        ),
        (
            Method::POST,
            format!("/api/v1/users/{}/assign", user.id),
            Some(json!({ "agent_id": mc_core::AgentId::new(), "board_name": "b".repeat(65) })),
            StatusCode::BAD_REQUEST,
            "board_name",
        ),
        (
            Method::POST,
            format!("/api/v1/users/{}/assign", user.id),
            Some(json!({ "agent_id": mc_core::AgentId::new(), "role": "boss" })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "role",
        ),
        (
            Method::DELETE,
            format!("/api/v1/users/{}/assign/zzz", user.id),
            None,
            StatusCode::BAD_REQUEST,
            "agent id",
        ),
    ];
    for (method, path, body, status, field) in admin_cases {
        let r = s.send(method.clone(), &path, Some(&s.admin_token), body).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        if !field.is_empty() {
            assert_eq!(r.body["error"]["field"], field, "{method} {path}: {}", r.body);
        }
    }
    assert_eq!(s.services.store().get_user(user.id).await.unwrap().unwrap(), user);
}

/// A body far over the limit (3 MiB) gets a 413 the client can read, not a reset connection,
/// and the connection serves the next request.
#[tokio::test]
async fn an_oversized_body_gets_a_readable_413() {
    let s = TestServer::start().await;
    let huge = vec![b'x'; 3 * 1024 * 1024];
    for _ in 0..2 {
        let r =
            s.send_raw(Method::POST, "/api/v1/auth/login", "application/json", huge.clone()).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
        );
    }
    assert_eq!(s.login("nobody", "wrong").await.status, StatusCode::UNAUTHORIZED);
}

/// Slow clients are bounded: headers that do not arrive within 10 s close the connection
/// (slowloris), and a body that does not arrive within the request timeout gets 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start().await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed: {read:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(9) && waited < Duration::from_secs(15), "{waited:?}");

    // A body announced and never sent: 408 after the request timeout (1 s here).
    let store: std::sync::Arc<dyn mc_core::Store> =
        std::sync::Arc::new(mc_store_sqlite::SqliteStore::open_in_memory().await.unwrap());
    let auth = mc_core::auth::AuthConfig::new(mc_core::auth::JwtKey::new(common::SECRET).unwrap());
    let services = mc_core::Services::builder(store, auth).build().unwrap();
    let relay = mc_core::relay::Relay::new(
        services,
        std::sync::Arc::new(mc_core::bus::InProcessBus::new()),
        mc_core::relay::RelayLimits::default(),
    );
    let config =
        mc_transport_ws::server::HttpConfig::default().with_request_timeout(Duration::from_secs(1));
    let app = mc_transport_ws::server::app_with(relay, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mc_transport_ws::server::serve(listener, app, std::future::pending()));
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
}
