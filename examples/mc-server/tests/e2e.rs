//! End to end with real processes on loopback: `mc-server serve`, bootstrapped with
//! `mc-server admin`, `mc-gateway --echo` as a separate process, and a user on a WebSocket;
//! the gateway killed and restarted; the server stopped with SIGTERM and restarted. (The
//! bridge's own checks are in `mc-gateway`'s tests, the terminal client's in `mc-chat`'s.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{Value, json};
use testkit::processes::*;
use testkit::ws::*;
use tokio_tungstenite::tungstenite::Message;

fn start_gateway(config: &Path, state: &Path) -> Proc {
    start_bridge(&["--echo", "--echo-word-delay-ms", "5"], config, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gateway_and_user_as_separate_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mc.db").display());

    // Bootstrap with the admin CLI.
    let org = admin_ok(&db, &["create-org", "acme"]);
    assert!(org.parse::<uuid::Uuid>().is_ok(), "{org}");
    admin_ok(
        &db,
        &[
            "create-user",
            "--org",
            &org,
            "--username",
            "admin",
            "--password",
            "admin-password",
            "--role",
            "admin",
        ],
    );
    let alice: Value = serde_json::from_str(&admin_ok(
        &db,
        &[
            "--json",
            "create-user",
            "--org",
            "acme",
            "--username",
            "alice",
            "--password",
            "alice-password",
        ],
    ))
    .unwrap();
    let alice_id = alice["id"].as_str().unwrap().to_owned();
    let token = admin_ok(
        &db,
        &["create-registration-token", "--org", &org, "--label", "e2e", "--expires-in", "1h"],
    );
    assert!(token.starts_with("gw_reg_"));

    // /metrics on an address of its own, and on the main one behind a token.
    let metrics_at = format!("127.0.0.1:{}", testkit::free_port().unwrap());
    let metrics_token = "metrics-token-0123456789";
    let (mut server, base) = start_server_with(
        &db,
        &["--metrics-listen", &metrics_at, "--metrics-token", metrics_token],
    );
    let secret = dir.path().join("mc.db.jwt-secret");
    assert_eq!(
        mc_gateway::files::mode(&secret),
        Some(0o600),
        "the generated JWT secret is owner-only"
    );

    let (config, state) = bridge_config(dir.path(), "e2e-gateway", &base, &org, &token);
    let mut gateway = start_gateway(&config, &state);

    // The gateway registers and links; the admin CLI assigns its agent to alice.
    let http = testkit::http_client();
    let admin_token = login(&http, &base, "admin", "admin-password").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (agent_id, gateway_id) = loop {
        let agents = get_json(&http, &base, "/api/v1/agents", &admin_token).await;
        if let Some(a) = agents["agents"].as_array().and_then(|a| a.first()) {
            let path = format!("/api/v1/gateways/{}", a["gateway_id"].as_str().unwrap());
            let gw = get_json(&http, &base, &path, &admin_token).await;
            if gw["status"] == "online" {
                break (
                    a["id"].as_str().unwrap().to_owned(),
                    gw["id"].as_str().unwrap().to_owned(),
                );
            }
        }
        assert!(Instant::now() < deadline, "the gateway did not come online");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(mc_gateway::files::mode(&state), Some(0o600), "the relay token is kept owner-only");
    admin_ok(&db, &["assign", "--user", &alice_id, "--agent", &agent_id]);

    // Alice chats: the reply streams and is stored.
    let alice_token = login(&http, &base, "alice", "alice-password").await;
    let (mut ws, hello) = socket(&base, &alice_token).await;
    assert_eq!(hello["assignments"][0]["status"], "online");
    let (ack, reply) = chat(&mut ws, &agent_id, "hello from e2e", None).await;
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(reply["payload"]["content"], "Echo: hello from e2e");
    assert_eq!(reply["payload"]["seq"], 2);

    // SIGKILL the gateway: alice hears agent_offline; restart it: agent_online, same id.
    gateway.child.kill().unwrap();
    gateway.child.wait().unwrap();
    system_event(&mut ws, "agent_offline").await;
    let mut gateway = start_gateway(&config, &state);
    system_event(&mut ws, "agent_online").await;
    let gateways = get_json(&http, &base, "/api/v1/gateways", &admin_token).await;
    assert_eq!(gateways["gateways"].as_array().unwrap().len(), 1);
    assert_eq!(gateways["gateways"][0]["id"], gateway_id.as_str(), "the same gateway id");
    let (_, reply) = chat(&mut ws, &agent_id, "back again", Some(&session)).await;
    assert_eq!(reply["payload"]["seq"], 4);

    // The bridge heartbeats with its real process metrics; /metrics shows the relay's figures.
    let metrics =
        get_json(&http, &base, &format!("/api/v1/gateways/{gateway_id}/metrics"), &admin_token)
            .await;
    assert!(metrics["metrics"]["memory_mb"].as_f64().unwrap() > 1.0, "{metrics}");
    assert_eq!(metrics["metrics"]["agent_count"], 1);
    // Nobody reads /metrics without the token, on either address.
    for url in [format!("{base}/metrics"), format!("http://{metrics_at}/metrics")] {
        let anonymous = http.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{url}");
        let wrong = http.get(&url).bearer_auth("metrics-token-wrong").send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{url}");
    }
    let on_its_own = http.get(format!("http://{metrics_at}/metrics")).bearer_auth(metrics_token);
    assert_eq!(on_its_own.send().await.unwrap().status(), 200);
    let prometheus = http
        .get(format!("{base}/metrics"))
        .bearer_auth(metrics_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Every series names the instance; the checks below leave that label out.
    assert!(prometheus.contains("mc_connections{instance=\""), "{prometheus}");
    let prometheus = without_instance_label(&prometheus);
    for needle in [
        "mc_connections{kind=\"user\"} 1",
        "mc_connections{kind=\"gateway\"} 1",
        "mc_gateways{status=\"online\"} 1",
        "mc_messages_stored_total{role=\"agent\"} 2",
        "mc_round_trip_seconds_count 2",
        "mc_frames_total{kind=\"user\",direction=\"in\"}",
        "mc_logins_total{outcome=\"ok\"} 2",
        "mc_http_requests_total{route=\"/api/v1/agents\",method=\"GET\",status=\"200\"}",
        "mc_http_requests_total{route=\"/api/v1/gateways/{id}\",method=\"GET\",status=\"200\"}",
    ] {
        assert!(prometheus.contains(needle), "{needle} in\n{prometheus}");
    }

    // SIGTERM the server with alice connected: she gets 1012, the process exits 0.
    server.signal("TERM");
    let code = loop {
        match next(&mut ws).await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(code, 1012);
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0), "exit 0 within the bound");
    gateway.signal("TERM");
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)), Some(0));

    // Restarted, nothing acked is lost. Without --metrics-listen or --metrics-token there is
    // no /metrics.
    let (_server, base) = start_server(&db);
    assert_eq!(http.get(format!("{base}/metrics")).send().await.unwrap().status(), 404);
    let alice_token = login(&http, &base, "alice", "alice-password").await;
    let (mut ws, _) = socket(&base, &alice_token).await;
    ws.send(Message::Text(
        json!({ "type": "history", "id": "h", "payload": { "session_id": session } })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let (history, _) = until(&mut ws, "history").await;
    let contents: Vec<&str> = history["payload"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["hello from e2e", "Echo: hello from e2e", "back again", "Echo: back again"]
    );
}

#[test]
fn bad_settings_exit_2_and_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mc.db").display());
    for (args, name) in [
        (vec!["serve", "--listen", "nowhere"], "MC_LISTEN"),
        (vec!["serve", "--database", "mysql://x"], "MC_DATABASE_URL"),
        (vec!["serve", "--jwt-secret", "short"], "MC_JWT_SECRET"),
        (vec!["serve", "--max-frame-bytes", "0"], "MC_MAX_FRAME_BYTES"),
        (vec!["serve", "--redis", "redis://127.0.0.1:6379"], "MC_REDIS_URL"),
        (vec!["serve", "--no-such-flag"], "--no-such-flag"),
        (vec!["serve", "--tls-cert", "cert.pem"], "MC_TLS_KEY"),
        (
            vec!["serve", "--tls-cert", "/no/such/cert.pem", "--tls-key", "/no/key.pem"],
            "MC_TLS_CERT",
        ),
        (vec!["serve", "--tls-cert", "/etc/hostname", "--tls-key", "/etc/hostname"], "MC_TLS_CERT"),
    ] {
        let out = Command::new(testkit::program("mc-server")).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(name), "{args:?}: {stderr}");
    }
    let out = Command::new(testkit::program("mc-server"))
        .args(["serve"])
        .env("MC_RATE_LIMIT_PER_SEC", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MC_RATE_LIMIT_PER_SEC")
            || String::from_utf8_lossy(&out.stderr).contains("rate-limit-per-sec")
    );

    let (code, _, err) = admin(
        &db,
        &["create-user", "--org", "nope", "--username", "x_y_z", "--password", "long enough"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--org"), "{err}");
    let org = admin_ok(&db, &["create-org", "acme"]);
    let (code, _, err) =
        admin(&db, &["create-user", "--org", &org, "--username", "a", "--password", "long enough"]);
    assert_eq!((code, err.contains("username")), (2, true), "{err}");
    let (code, _, err) = admin(
        &db,
        &[
            "create-user",
            "--org",
            &org,
            "--username",
            "abc",
            "--password",
            "long enough",
            "--role",
            "king",
        ],
    );
    assert_eq!((code, err.contains("--role")), (2, true), "{err}");
    let (code, _, err) =
        admin(&db, &["create-registration-token", "--org", &org, "--expires-in", "soon"]);
    assert_eq!((code, err.contains("--expires-in")), (2, true), "{err}");
    admin_ok(
        &db,
        &["create-user", "--org", &org, "--username", "abc", "--password", "long enough"],
    );
    let (code, _, err) = admin(
        &db,
        &["create-user", "--org", &org, "--username", "ABC", "--password", "long enough"],
    );
    assert_eq!(code, 1, "a conflict is not a usage error: {err}");
}

/// Starts `mc-server serve` logging at `debug` into `log`; returns it and its base URL.
fn start_server_logging(db: &str, log: &Path) -> (Proc, String) {
    let mut child = Command::new(testkit::program("mc-server"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", db])
        .args(["--heartbeat-interval-secs", "1", "--shutdown-timeout-secs", "5"])
        .env("MC_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the server prints its address").unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Proc { child }, base)
}

/// Every secret a full run uses (passwords, access and refresh tokens, registration and relay
/// tokens, the JWT secret) is absent from the server's and the bridge's debug-level logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_debug_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mc.db").display());
    let org = admin_ok(&db, &["create-org", "acme"]);
    let (admin_password, alice_password) = ("admin-pass-Zq81x", "alice-pass-Kd29w");
    let admin_args = ["create-user", "--org", &org, "--username", "admin", "--password"];
    admin_ok(&db, &[&admin_args[..], &[admin_password, "--role", "admin"]].concat());
    let alice: Value = serde_json::from_str(&admin_ok(
        &db,
        &[
            "--json",
            "create-user",
            "--org",
            &org,
            "--username",
            "alice",
            "--password",
            alice_password,
        ],
    ))
    .unwrap();
    let server_log = dir.path().join("server.log");
    let (_server, base) = start_server_logging(&db, &server_log);
    let http = testkit::http_client();
    let mut secrets: Vec<String> = vec![admin_password.into(), alice_password.into()];

    // Sign-ins, a refresh, an admin-made registration token.
    let admin_token = login(&http, &base, "admin", admin_password).await;
    secrets.push(admin_token.clone());
    let r: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "organization": "acme", "username": "alice", "password": alice_password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = r["refresh_token"].as_str().unwrap().to_owned();
    secrets.push(refresh.clone());
    let r: Value = http
        .post(format!("{base}/api/v1/auth/refresh"))
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alice_token = r["access_token"].as_str().unwrap().to_owned();
    secrets.push(alice_token.clone());
    secrets.push(r["refresh_token"].as_str().unwrap().to_owned());
    let r: Value = http
        .post(format!("{base}/api/v1/registration-tokens"))
        .bearer_auth(&admin_token)
        .json(&json!({ "label": "logs" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let registration = r["token"].as_str().unwrap().to_owned();
    secrets.push(registration.clone());

    // A bridge registers (logging at debug too), links, and alice chats through it.
    let (config, state) = bridge_config(dir.path(), "quiet", &base, &org, &registration);
    let bridge_log = dir.path().join("bridge.log");
    let _bridge = Proc {
        child: Command::new(testkit::program("mc-gateway"))
            .args(["--echo", "--echo-word-delay-ms", "5", "--config"])
            .arg(&config)
            .arg("--state")
            .arg(&state)
            .env("MC_LOG", "debug")
            .stderr(std::fs::File::create(&bridge_log).unwrap())
            .spawn()
            .unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let agent = loop {
        let agents = get_json(&http, &base, "/api/v1/agents", &admin_token).await;
        // Registered, and its state (the relay token) saved.
        if let Some(a) = agents["agents"].as_array().and_then(|a| a.first())
            && state.exists()
        {
            break a["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the gateway did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    secrets.push(saved["relay_token"].as_str().unwrap().to_owned());
    let jwt = std::fs::read_to_string(dir.path().join("mc.db.jwt-secret")).unwrap();
    secrets.push(jwt.trim().to_owned());
    admin_ok(&db, &["assign", "--user", alice["id"].as_str().unwrap(), "--agent", &agent]);
    let (mut ws, _) = socket(&base, &alice_token).await;
    let (_, reply) = chat(&mut ws, &agent, "keep my secrets", None).await;
    assert_eq!(reply["payload"]["content"], "Echo: keep my secrets");
    // Heartbeats both ways (interval 1 s) and a logout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let out = http
        .post(format!("{base}/api/v1/auth/logout"))
        .json(&json!({ "refresh_token": secrets[5] }))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), reqwest::StatusCode::NO_CONTENT);
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let logs = [
        std::fs::read_to_string(&server_log).unwrap(),
        std::fs::read_to_string(&bridge_log).unwrap(),
    ];
    assert!(logs[0].contains("DEBUG"), "the server logged at debug level");
    assert!(logs[1].lines().count() > 3, "the bridge logged: {}", logs[1]);
    for secret in &secrets {
        assert!(secret.len() >= 8, "a real secret: {secret}");
        for (name, log) in ["server", "bridge"].iter().zip(&logs) {
            assert!(!log.contains(secret.as_str()), "the {name} log holds a secret ({secret})");
        }
    }
}

/// Prometheus text with the `instance="…"` label taken out of every series.
fn without_instance_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("instance=\"") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "instance=\"".len()..];
        let end = after.find('"').map_or(after.len(), |i| i + 1);
        rest = after[end..].strip_prefix(',').unwrap_or(&after[end..]);
    }
    out.push_str(rest);
    out.replace("{}", "")
}
