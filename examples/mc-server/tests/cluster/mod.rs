//! Several `mc-server` instances as real processes on one PostgreSQL and one Redis, the
//! shipped nginx configuration in front of them, and the echo bridge: what the multi-instance
//! tests build on.
//!
//! Each cluster has a Redis of its own (a private `redis-server` on a free port, so a test may
//! restart it) and a database of its own: a fresh one on `MC_TEST_POSTGRES_URL`'s server, or
//! a private PostgreSQL cluster when the test restarts PostgreSQL.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::servers::{PrivatePostgres, PrivateRedis, create_database, drop_database};

use testkit::processes::*;
use testkit::ws::*;

/// Where the cluster's database lives.
pub enum Database {
    /// A fresh database on the shared server (`MC_TEST_POSTGRES_URL`).
    Shared,
    /// A PostgreSQL cluster of its own (restartable).
    Private,
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether this machine can run the suite: PostgreSQL (`MC_TEST_POSTGRES_URL`, or `initdb` for
/// a private one), `redis-server` and nginx. Under CI a missing part fails the test;
/// elsewhere the test is skipped with a line on stderr.
pub fn ready(database: &Database) -> bool {
    let mut missing = vec![];
    match database {
        Database::Shared if shared_postgres().is_none() => missing.push("MC_TEST_POSTGRES_URL"),
        Database::Private if !PrivatePostgres::available() => missing.push("initdb"),
        _ => {}
    }
    if !PrivateRedis::available() {
        missing.push("redis-server");
    }
    if testkit::nginx::nginx_binary().is_none() {
        missing.push("nginx");
    }
    if missing.is_empty() {
        return true;
    }
    assert!(!under_ci(), "under CI the multi-instance suite must run; missing: {missing:?}");
    let _ = writeln!(std::io::stderr(), "skipped: {missing:?} missing (multi-instance suite)");
    false
}

fn shared_postgres() -> Option<String> {
    std::env::var("MC_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
}

/// One `mc-server serve` instance.
pub struct Instance {
    pub proc: Proc,
    pub base: String,
    pub id: String,
    pub port: u16,
}

impl Instance {
    /// `kill -9`.
    pub fn kill(&mut self) {
        self.proc.child.kill().unwrap();
        self.proc.child.wait().unwrap();
    }
}

/// Two (or more) instances on one database and one Redis, bootstrapped with an organization
/// `acme`, an admin and a registration token.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub db: String,
    shared: Option<(String, String)>,
    pub postgres: Option<PrivatePostgres>,
    pub redis: PrivateRedis,
    secret: String,
    pub org: String,
    pub registration_token: String,
    pub http: reqwest::Client,
}

impl Cluster {
    /// The database, Redis and the bootstrap; no instance yet.
    pub fn new(database: Database) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (db, shared, postgres) = match database {
            Database::Shared => {
                let admin_url = shared_postgres().unwrap();
                let name = format!("mc_multi_{}", uuid::Uuid::now_v7().simple());
                let db = create_database(&admin_url, &name).unwrap();
                (db, Some((admin_url, name)), None)
            }
            Database::Private => {
                let pg = PrivatePostgres::start().unwrap();
                (pg.url(), None, Some(pg))
            }
        };
        let redis = PrivateRedis::start().unwrap();
        let secret: String =
            mc_gateway::random_bytes::<32>().unwrap().iter().map(|b| format!("{b:02x}")).collect();
        let org = admin_ok(&db, &["create-org", "acme"]);
        create_user(&db, &org, "admin", "admin");
        let registration_token = admin_ok(
            &db,
            &["create-registration-token", "--org", &org, "--label", "multi", "--expires-in", "1h"],
        );
        Self {
            dir,
            db,
            shared,
            postgres,
            redis,
            secret,
            org,
            registration_token,
            http: testkit::http_client(),
        }
    }

    /// Starts instance `id` (flags added to the defaults: offline grace 2 s).
    pub fn instance(&self, id: &str, extra: &[&str]) -> Instance {
        let redis = self.redis.url();
        let mut args = vec!["--redis", &redis, "--instance-id", id, "--offline-grace-secs", "2"];
        args.extend_from_slice(extra);
        let (proc, base) = start_server_env(&self.db, &args, &[("MC_JWT_SECRET", &self.secret)]);
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        Instance { proc, base, id: id.to_owned(), port }
    }

    /// Creates member `name` (password `{name}-password`); returns the user id.
    pub fn user(&self, name: &str) -> String {
        let password = format!("{name}-password");
        let created: Value = serde_json::from_str(&admin_ok(
            &self.db,
            &[
                "--json",
                "create-user",
                "--org",
                "acme",
                "--username",
                name,
                "--password",
                &password,
            ],
        ))
        .unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    /// Starts `mc-gateway --echo` (words `word_delay_ms` apart) named `name`, reaching the relay
    /// at `base` (an instance, or nginx).
    pub fn bridge(&self, name: &str, base: &str, word_delay_ms: u64) -> Proc {
        let (config, state) =
            bridge_config(self.dir.path(), name, base, &self.org, &self.registration_token);
        let delay = word_delay_ms.to_string();
        start_bridge(&["--echo", "--echo-word-delay-ms", &delay], &config, &state)
    }

    /// Waits until the organization's (only) agent's gateway is online, as `base` sees it;
    /// assigns the agent to `users`; returns (agent id, gateway id).
    pub async fn agent_online(&self, base: &str, users: &[&str]) -> (String, String) {
        let admin = login(&self.http, base, "admin", "admin-password").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let (agent, gateway) = loop {
            let agents = get_json(&self.http, base, "/api/v1/agents", &admin).await;
            if let Some(a) = agents["agents"].as_array().and_then(|a| a.first()) {
                let gateway = a["gateway_id"].as_str().unwrap().to_owned();
                let gw = get_json(&self.http, base, &format!("/api/v1/gateways/{gateway}"), &admin)
                    .await;
                if gw["status"] == "online" {
                    break (a["id"].as_str().unwrap().to_owned(), gateway);
                }
            }
            assert!(Instant::now() < deadline, "the gateway did not come online");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for user in users {
            admin_ok(&self.db, &["assign", "--user", user, "--agent", &agent]);
        }
        (agent, gateway)
    }

    /// nginx with `deploy/nginx/mc-relay.conf` in front of `instances`.
    pub fn nginx(&self, instances: &[&Instance]) -> testkit::nginx::Nginx {
        let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
        testkit::nginx::Nginx::deploy(&deploy_config(), &ports).unwrap()
    }

    /// `GET {base}/readyz`: (status, body).
    pub async fn readyz(&self, base: &str) -> (u16, Value) {
        let asked = self.http.get(format!("{base}/readyz")).timeout(Duration::from_secs(5));
        match asked.send().await {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = &self.shared {
            drop_database(admin_url, name);
        }
    }
}

/// The shipped nginx configuration.
pub fn deploy_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx/mc-relay.conf")
}

/// Signs in and opens a user socket through `base`, retrying until it works (an instance just
/// died, nginx is moving to the other one) or `within` passes.
pub async fn reconnect(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
    within: Duration,
) -> Ws {
    let deadline = Instant::now() + within;
    loop {
        let token = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({ "organization": "acme", "username": username, "password": password }))
            .send()
            .await;
        if let Ok(r) = token
            && r.status().is_success()
        {
            let token =
                r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
            if let Ok(Ok((mut ws, _))) = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_tungstenite::connect_async(format!(
                    "{}/ws/chat",
                    base.replacen("http", "ws", 1)
                )),
            )
            .await
            {
                use futures_util::SinkExt;
                let auth = serde_json::json!({ "type": "auth", "payload": { "token": token } });
                let sent = ws
                    .send(tokio_tungstenite::tungstenite::Message::Text(auth.to_string().into()))
                    .await;
                if sent.is_ok()
                    && let Ok(ok) = next(&mut ws).await
                    && ok["type"] == "auth_ok"
                {
                    return ws;
                }
            }
        }
        assert!(Instant::now() < deadline, "could not reconnect through {base}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
