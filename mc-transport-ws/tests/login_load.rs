//! Sign-in costs with the real (OWASP) Argon2 parameters. Figures are printed, not asserted:
//! run with `--nocapture` to see them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{PASSWORD, TestServer, median_ms};
use mc_core::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_look_the_same() {
    let s = TestServer::start_with(|c| c).await; // OWASP defaults
    s.create_user(s.org.id, "victim", Role::Member).await;
    // Warm up (the unknown-user path computes its dummy hash once).
    s.login("nobody", "some password").await;
    s.login("victim", "some password").await;
    s.advance(3600);

    let mut wrong = vec![];
    let mut unknown = vec![];
    for i in 0..12 {
        // Stay under the lockout threshold: at most 4 failures per window.
        if i % 4 == 0 {
            s.advance(3600);
        }
        let t = Instant::now();
        let a = s.login("victim", "not the password").await;
        wrong.push(t.elapsed());
        let t = Instant::now();
        let b = s.login(&format!("nobody{i}"), "not the password").await;
        unknown.push(t.elapsed());
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.status, b.status, "same status");
        assert_eq!(a.body, b.body, "same body");
        assert_eq!(
            a.body,
            json!({ "error": { "code": "INVALID_CREDENTIALS", "message": "invalid username or password" } })
        );
    }
    println!(
        "login timing (12 each): wrong password median {:.1} ms, unknown user median {:.1} ms",
        median_ms(&mut wrong),
        median_ms(&mut unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_storm_does_not_block_cheap_requests() {
    let s = TestServer::start_with(|c| c).await; // OWASP defaults, hashes limited to the cores
    s.create_user(s.org.id, "storm", Role::Member).await;
    let idle = probe(&s, 20).await;

    let logins: Vec<_> = (0..200)
        .map(|_| {
            let http = s.http.clone();
            let url = format!("{}/api/v1/auth/login", s.base);
            tokio::spawn(async move {
                let body =
                    json!({ "organization": "acme", "username": "storm", "password": PASSWORD });
                http.post(url).json(&body).send().await.unwrap().status()
            })
        })
        .collect();
    let started = Instant::now();
    let mut during = vec![];
    let mut ok = 0;
    let mut pending = logins;
    while !pending.is_empty() {
        during.extend(probe(&s, 1).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|h| h.is_finished());
        for handle in done {
            assert_eq!(handle.await.unwrap(), StatusCode::OK);
            ok += 1;
        }
        pending = rest;
    }
    let storm = started.elapsed();
    assert_eq!(ok, 200);
    let p = |v: &mut Vec<Duration>, q: f64| {
        v.sort();
        v[((v.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0
    };
    let mut idle = idle;
    println!(
        "login storm: 200 concurrent logins took {:.2} s ({:.0} logins/s); /healthz idle p50 {:.2} ms; \
         during the storm ({} probes) p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        storm.as_secs_f64(),
        200.0 / storm.as_secs_f64(),
        p(&mut idle, 0.5),
        during.len(),
        p(&mut during, 0.5),
        p(&mut during, 0.99),
        p(&mut during, 1.0),
    );
}

/// Latencies of `n` sequential `/healthz` requests.
async fn probe(s: &TestServer, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = s.send(Method::GET, "/healthz", None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        out.push(t.elapsed());
    }
    out
}
