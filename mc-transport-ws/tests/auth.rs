//! Sign-in, tokens and sessions through real HTTP on a port-0 server with a real SQLite store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{PASSWORD, TestServer};
use mc_core::auth::Principal;
use mc_core::auth::{AccessTokens, AuthConfig, JwtKey};
use mc_core::{Clock, Role, UserStatus};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let s = TestServer::start().await;
    // An admin creates a member.
    let created = s
        .post(
            "/api/v1/auth/register",
            Some(&s.admin_token),
            json!({ "username": "bob", "password": PASSWORD, "email": "bob@example.com" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["username"], "bob");
    assert_eq!(created.body["role"], "member");
    assert!(created.body.get("password_hash").is_none(), "hash never leaves the server");

    let session = s.login_ok("BOB", PASSWORD).await; // usernames ignore case
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
    assert_eq!(session["user"]["username"], "bob");
    assert!(session["user"]["last_login_at"].is_string());
    let access = session["access_token"].as_str().unwrap();
    let refresh = session["refresh_token"].as_str().unwrap();
    assert!(refresh.starts_with("mcr_"));

    let me = s.get("/api/v1/auth/me", access).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], "bob@example.com");

    let patched = s
        .patch("/api/v1/auth/me", access, json!({ "display_name": "Bob B.", "email": null }))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["display_name"], "Bob B.");
    assert!(patched.body["email"].is_null(), "null clears a field");

    let renewed = s.refresh(refresh).await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.body);
    let next_refresh = renewed.body["refresh_token"].as_str().unwrap();
    assert_ne!(next_refresh, refresh, "refresh tokens rotate");
    let next_access = renewed.body["access_token"].as_str().unwrap();
    assert_eq!(s.get("/api/v1/auth/me", next_access).await.status, StatusCode::OK);

    let mut events = s.services.events().subscribe();
    let out = s.post("/api/v1/auth/logout", None, json!({ "refresh_token": next_refresh })).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let event = common::next_event(&mut events);
    assert!(matches!(event, mc_core::RelayEvent::LoggedOut { .. }), "{event:?}");
    let after = s.refresh(next_refresh).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    // Logging out again, or with a token that never existed, is not an error.
    let again = s.post("/api/v1/auth/logout", None, json!({ "refresh_token": next_refresh })).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    let unknown = s.post("/api/v1/auth/logout", None, json!({ "refresh_token": "mcr_nope" })).await;
    assert_eq!(unknown.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn registration_is_closed_unless_opened() {
    let closed = TestServer::start().await;
    let r = closed
        .post(
            "/api/v1/auth/register",
            None,
            json!({ "organization": "acme", "username": "eve", "password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.error_message().contains("registration is closed"), "{}", r.body);

    let open = TestServer::start_with(|c| {
        c.password_params(common::cheap_passwords()).open_registration(true)
    })
    .await;
    let r = open
        .post(
            "/api/v1/auth/register",
            None,
            json!({ "organization": "acme", "username": "eve", "password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body["access_token"].is_string(), "self-registration signs in");
    let r = open
        .post(
            "/api/v1/auth/register",
            None,
            json!({ "organization": "acme", "username": "mallory", "password": PASSWORD, "role": "admin" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "only admins choose roles");
    let r = open
        .post(
            "/api/v1/auth/register",
            None,
            json!({ "organization": "nope", "username": "x_y", "password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["field"], "organization");
    let dup = open
        .post(
            "/api/v1/auth/register",
            None,
            json!({ "organization": "acme", "username": "EVE", "password": PASSWORD }),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
}

#[tokio::test]
async fn expired_tokens_are_refused_and_refresh_still_works() {
    let s = TestServer::start().await;
    s.create_user(s.org.id, "carol", Role::Member).await;
    let session = s.login_ok("carol", PASSWORD).await;
    let access = session["access_token"].as_str().unwrap();
    // 15 min lifetime + 30 s leeway.
    s.advance(15 * 60 + 29);
    assert_eq!(s.get("/api/v1/auth/me", access).await.status, StatusCode::OK);
    s.advance(1);
    let r = s.get("/api/v1/auth/me", access).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "TOKEN_EXPIRED");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let renewed = s.refresh(session["refresh_token"].as_str().unwrap()).await;
    assert_eq!(renewed.status, StatusCode::OK);
    let fresh = renewed.body["access_token"].as_str().unwrap();
    assert_eq!(s.get("/api/v1/auth/me", fresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn foreign_forged_and_malformed_tokens_are_refused() {
    let s = TestServer::start().await;
    let principal = Principal { user_id: s.admin.id, organization_id: s.org.id, role: Role::Admin };
    let other_key = AccessTokens::new(&AuthConfig::new(JwtKey::new(vec![9u8; 32]).unwrap()));
    let foreign = other_key.issue(&principal, None, s.clock.now()).unwrap().token;

    let payload = s.admin_token.split('.').nth(1).unwrap().to_owned();
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{payload}.");
    let hs512_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
    let wrong_alg =
        format!("{hs512_header}.{payload}.{}", s.admin_token.split('.').nth(2).unwrap());
    let mut tampered_claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&payload).unwrap()).unwrap();
    tampered_claims["role"] = json!("admin");
    tampered_claims["sub"] = json!(uuid::Uuid::now_v7().to_string());
    let parts: Vec<&str> = s.admin_token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered_claims).unwrap()),
        parts[2]
    );

    for (what, token) in [
        ("signed with another key", foreign.as_str()),
        ("alg none", alg_none.as_str()),
        ("wrong algorithm", wrong_alg.as_str()),
        ("tampered claims", tampered.as_str()),
        ("garbage", "not.a.jwt"),
        ("a refresh token", "mcr_abcdef"),
    ] {
        let r = s.get("/api/v1/auth/me", token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
        assert_eq!(r.error_code(), "UNAUTHENTICATED", "{what}");
    }
    let missing = s.send(Method::GET, "/api/v1/auth/me", None, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert!(missing.error_message().contains("Bearer"), "{}", missing.body);
    let basic = s
        .http
        .get(format!("{}/api/v1/auth/me", s.base))
        .header("authorization", "Basic YWRtaW46cGFzcw==")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refresh_reuse_revokes_the_family() {
    let s = TestServer::start().await;
    s.create_user(s.org.id, "dave", Role::Member).await;
    let first = s.login_ok("dave", PASSWORD).await["refresh_token"].as_str().unwrap().to_owned();
    let second = s.refresh(&first).await.body["refresh_token"].as_str().unwrap().to_owned();
    // Another, independent sign-in (another device) is a different family.
    let other_device =
        s.login_ok("dave", PASSWORD).await["refresh_token"].as_str().unwrap().to_owned();

    s.advance(11); // past the 10 s overlap
    let reuse = s.refresh(&first).await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED, "{}", reuse.body);
    let revoked = s.refresh(&second).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED, "the successor died with its family");
    let unaffected = s.refresh(&other_device).await;
    assert_eq!(unaffected.status, StatusCode::OK, "other families survive");

    let activity =
        s.services.store().list_activity(s.org.id, mc_core::Page::first(50)).await.unwrap();
    assert!(activity.items.iter().any(|e| e.kind == "user.refresh_reuse"));
}

#[tokio::test]
async fn refresh_overlap_returns_the_same_successor() {
    let s = TestServer::start().await;
    s.create_user(s.org.id, "erin", Role::Member).await;
    let first = s.login_ok("erin", PASSWORD).await["refresh_token"].as_str().unwrap().to_owned();

    // Two tabs refresh the same token at once: both succeed with the same successor.
    let (a, b) = tokio::join!(s.refresh(&first), s.refresh(&first));
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK), "{} / {}", a.body, b.body);
    assert_eq!(a.body["refresh_token"], b.body["refresh_token"]);
    let successor = a.body["refresh_token"].as_str().unwrap().to_owned();

    s.advance(9);
    let late_tab = s.refresh(&first).await;
    assert_eq!(late_tab.status, StatusCode::OK, "within the overlap");
    assert_eq!(late_tab.body["refresh_token"], successor.as_str());

    // Once the successor itself is used, the old token is plain reuse.
    let third = s.refresh(&successor).await.body["refresh_token"].as_str().unwrap().to_owned();
    let stale = s.refresh(&first).await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.refresh(&third).await.status, StatusCode::UNAUTHORIZED, "family revoked");
}

/// 100 wrong guesses at once for one account: the attempt is reserved before the password is
/// checked, so at most 5 are ever checked; the rest are locked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_guesses_check_at_most_five_passwords() {
    let s = std::sync::Arc::new(TestServer::start().await);
    s.create_user(s.org.id, "target", Role::Member).await;
    let guesses: Vec<_> = (0..100)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(
                async move { s.login("target", &format!("guess number {i}")).await.status },
            )
        })
        .collect();
    let (mut checked, mut locked) = (0, 0);
    for guess in guesses {
        match guess.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => locked += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((checked, locked), (5, 95));
    assert_eq!(s.login("target", PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
}

/// An unknown username is locked out after the same failures as a known one, so the 429
/// does not tell which usernames exist.
#[tokio::test]
async fn unknown_usernames_are_locked_out_like_known_ones() {
    let s = TestServer::start().await;
    s.create_user(s.org.id, "known", Role::Member).await;
    for name in ["known", "nobody-by-this-name"] {
        for i in 0..5 {
            let r = s.login(name, "wrong password!").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name} attempt {i}");
        }
        let r = s.login(name, "wrong password!").await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{name}: {}", r.body);
        assert_eq!(r.error_code(), "RATE_LIMITED");
    }
    // Usernames are compared ignoring case, so are their lockouts.
    assert_eq!(s.login("KNOWN", PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn lockout_after_five_failures_and_its_expiry() {
    let s = TestServer::start().await;
    s.create_user(s.org.id, "frank", Role::Member).await;
    for i in 0..5 {
        let r = s.login("frank", "wrong password!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
        s.advance(60);
    }
    // Now even the right password is refused, with a Retry-After.
    let locked = s.login("frank", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.body);
    assert_eq!(locked.error_code(), "RATE_LIMITED");
    let retry: u64 = locked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    // The first failure was 5 min ago; it leaves the 15 min window in 10 min.
    assert_eq!(retry, 600, "{}", locked.body);

    s.advance(599);
    assert_eq!(s.login("frank", PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
    s.advance(1);
    let ok = s.login("frank", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // A success clears the count: one more failure does not lock again.
    assert_eq!(s.login("frank", "wrong password!").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.login("frank", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn suspended_users_lose_access_until_reactivated() {
    let s = TestServer::start().await;
    let grace = s.create_user(s.org.id, "grace", Role::Member).await;
    let session = s.login_ok("grace", PASSWORD).await;
    let access = session["access_token"].as_str().unwrap();
    let refresh = session["refresh_token"].as_str().unwrap();

    let mut events = s.services.events().subscribe();
    let r = s
        .patch(
            &format!("/api/v1/users/{}", grace.id),
            &s.admin_token,
            json!({ "status": "suspended" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "suspended");
    assert_eq!(
        common::next_event(&mut events),
        mc_core::RelayEvent::UserBlocked { user_id: grace.id }
    );

    let me = s.get("/api/v1/auth/me", access).await;
    assert_eq!(me.status, StatusCode::FORBIDDEN);
    assert_eq!(me.error_code(), "SUSPENDED");
    assert_eq!(s.refresh(refresh).await.status, StatusCode::UNAUTHORIZED, "refresh tokens revoked");
    let login = s.login("grace", PASSWORD).await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
    assert_eq!(login.error_code(), "SUSPENDED");
    // A wrong password does not reveal the suspension.
    assert_eq!(s.login("grace", "not her password").await.status, StatusCode::UNAUTHORIZED);

    s.patch(&format!("/api/v1/users/{}", grace.id), &s.admin_token, json!({ "status": "active" }))
        .await;
    assert_eq!(s.login("grace", PASSWORD).await.status, StatusCode::OK);

    // Deleted accounts look like unknown ones.
    s.patch(&format!("/api/v1/users/{}", grace.id), &s.admin_token, json!({ "status": "deleted" }))
        .await;
    let gone = s.login("grace", PASSWORD).await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gone.error_code(), "INVALID_CREDENTIALS");
    let stored = s.services.store().get_user(grace.id).await.unwrap().unwrap();
    assert_eq!(stored.status, UserStatus::Deleted);
}

#[tokio::test]
async fn password_change_needs_the_current_one_and_signs_out_other_sessions() {
    let s = TestServer::start().await;
    s.create_user(s.org.id, "heidi", Role::Member).await;
    let laptop = s.login_ok("heidi", PASSWORD).await;
    let phone = s.login_ok("heidi", PASSWORD).await;
    let access = laptop["access_token"].as_str().unwrap();

    let r = s.patch("/api/v1/auth/me", access, json!({ "password": "a new password" })).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["field"], "current_password");
    let r = s
        .patch(
            "/api/v1/auth/me",
            access,
            json!({ "password": "a new password", "current_password": "nope nope" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["field"], "current_password");
    let r = s
        .patch(
            "/api/v1/auth/me",
            access,
            json!({ "password": "short", "current_password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["field"], "password");

    let r = s
        .patch(
            "/api/v1/auth/me",
            access,
            json!({ "password": "a new password", "current_password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        s.refresh(phone["refresh_token"].as_str().unwrap()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.refresh(laptop["refresh_token"].as_str().unwrap()).await.status, StatusCode::OK);
    assert_eq!(s.login("heidi", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.login("heidi", "a new password").await.status, StatusCode::OK);
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let s = TestServer::start().await;
    let r = s.send(Method::GET, "/healthz", None, None).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let r = s.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s.send(Method::GET, "/api/v1/nope", None, None).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    let r = s.send(Method::DELETE, "/api/v1/auth/login", None, None).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"));
}

/// The H5 app's client: `/api/v1/h5/…` paths and `organization_id` bodies.
#[tokio::test]
async fn seed_000_paths_and_organization_id_are_served() {
    let s = TestServer::start().await;
    s.create_user(s.org.id, "sam", Role::Member).await;
    let org = s.org.id.to_string();
    let body = json!({ "organization_id": org, "username": "sam", "password": PASSWORD });
    let r = s.post("/api/v1/h5/auth/login", None, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    let me = s.get("/api/v1/h5/auth/me", &token).await;
    assert_eq!((me.status, me.body["username"].as_str()), (StatusCode::OK, Some("sam")));
    let r = s.post("/api/v1/h5/auth/refresh", None, json!({ "refresh_token": refresh })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let users = s.get("/api/v1/h5/users", &s.admin_token).await;
    assert_eq!(users.status, StatusCode::OK, "{}", users.body);
    assert_eq!(s.get("/api/v1/h5/users", &token).await.status, StatusCode::FORBIDDEN);
    // Both names for the organization: accepted when they agree.
    let both = json!({ "organization": org, "organization_id": org, "username": "sam", "password": PASSWORD });
    assert_eq!(s.post("/api/v1/auth/login", None, both).await.status, StatusCode::OK);

    let bad = [
        json!({ "organization_id": "acme", "username": "sam", "password": PASSWORD }),
        json!({ "organization_id": uuid::Uuid::now_v7(), "organization": org, "username": "sam", "password": PASSWORD }),
        json!({ "organization_id": org, "organization": "acme", "username": "sam", "password": PASSWORD }),
    ];
    for body in bad {
        let r = s.post("/api/v1/h5/auth/login", None, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.body["error"]["field"], "organization_id", "{}", r.body);
    }
    // An unknown organization id is just wrong credentials.
    let body =
        json!({ "organization_id": uuid::Uuid::now_v7(), "username": "sam", "password": PASSWORD });
    assert_eq!(s.post("/api/v1/h5/auth/login", None, body).await.status, StatusCode::UNAUTHORIZED);
    // Registration takes organization_id too.
    let body = json!({ "organization_id": org, "username": "newbie", "password": PASSWORD });
    let r = s.post("/api/v1/h5/auth/register", Some(&s.admin_token), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// A server with one organization signs in without naming it; with two it must be named.
#[tokio::test]
async fn one_organization_needs_no_name_at_sign_in() {
    let s = TestServer::start().await;
    s.create_user(s.org.id, "solo", Role::Member).await;
    let body = json!({ "username": "solo", "password": PASSWORD });
    let r = s.post("/api/v1/auth/login", None, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let second = mc_core::Organization {
        id: mc_core::OrgId::new(),
        name: "second".into(),
        created_at: s.clock.now(),
    };
    s.services.store().create_org(&second).await.unwrap();
    let r = s.post("/api/v1/auth/login", None, body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "organization", "{}", r.body);
}

/// Logging out kills the session's access tokens at once, for HTTP and new sockets; other
/// sessions of the same user keep theirs.
#[tokio::test]
async fn access_tokens_die_with_their_session_at_logout() {
    let s = TestServer::start().await;
    s.create_user(s.org.id, "lou", Role::Member).await;
    let first = s.login_ok("lou", PASSWORD).await;
    let second = s.login_ok("lou", PASSWORD).await;
    let access = first["access_token"].as_str().unwrap();
    let other = second["access_token"].as_str().unwrap();
    assert_eq!(s.get("/api/v1/auth/me", access).await.status, StatusCode::OK);
    let refresh = first["refresh_token"].as_str().unwrap();
    let r = s.post("/api/v1/auth/logout", None, json!({ "refresh_token": refresh })).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s.get("/api/v1/auth/me", access).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(s.get("/api/v1/auth/me", other).await.status, StatusCode::OK, "other session");
    // A new socket with the dead token is refused as invalid.
    use futures_util::{SinkExt, StreamExt};
    let url = format!("{}/ws/chat", s.base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let auth = json!({ "type": "auth", "payload": { "token": access } }).to_string();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(auth.into())).await.unwrap();
    let answer = ws.next().await.unwrap().unwrap();
    let answer: serde_json::Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
    assert_eq!(answer["type"], "auth_error", "{answer}");
    assert_eq!(answer["payload"]["reason"], "invalid_token", "{answer}");
}
