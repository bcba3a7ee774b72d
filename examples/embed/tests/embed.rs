//! The `embed` example runs: your app's route and the relay's routes on one server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn the_embed_example_serves_both_apps() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("embed.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_embed"))
        .args(["127.0.0.1:0", &db])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut password = None;
    let base = loop {
        let line = lines.next().expect("embed prints its address").unwrap();
        if let Some(at) = line.find("with password ") {
            password = Some(line[at + 14..].trim().to_owned());
        }
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.to_owned();
        }
    };
    let http = testkit::http_client();
    let mine = http.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    assert!(mine.starts_with("my app"), "{mine}");
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    let login = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "organization": "demo", "username": "admin", "password": password.expect("the admin password") }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}
