//! The chat page in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver (`fantoccini`), against `mc-server` and
//! `mc-gateway --echo` as processes on loopback. Sign in by the labelled fields, pick the agent,
//! send with Enter and watch the reply stream in, reload mid-reply and see the text so far then
//! the reply, lose the connection (the relay restarts) and come back by itself, stop a slow reply, see a reply carrying HTML shown as text (and run nothing), be
//! signed out when an admin suspends the account. The admin console: sign in, create a
//! registration token (shown once), watch the gateway a bridge registers with it come online
//! live, suspend a user from the Users list and see her chat page close. Then older messages
//! loaded by scrolling up, a second session with the same agent and back, and the admin reading
//! a user's sessions; access tokens of 4 s rotated by the page without the socket ever
//! dropping. Screenshots at phone and desktop widths go to `docs/screenshots/`.
//!
//! Skipped (with a line on stderr) without `chromium` and `chromedriver`, except under CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use testkit::processes::*;
use testkit::ws::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn browser_ready() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "under CI the browser suite must run: apt-get install chromium chromium-driver"
    );
    let _ =
        writeln!(std::io::stderr(), "skipped: chromium or chromedriver missing (browser suite)");
    false
}

/// chromedriver on a free port and a headless Chromium session of `width` x `height`.
struct Browser {
    _driver: Proc,
    _profile: tempfile::TempDir,
    client: Client,
}

impl Browser {
    /// A phone (375 x 812 CSS pixels, emulated: a headless window cannot be that narrow) or a
    /// desktop (1280 x 800).
    async fn start(phone: bool) -> Self {
        let port = testkit::free_port().unwrap();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Proc { child };
        testkit::wait_for_port(port, Duration::from_secs(20)).unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-extensions", "--window-size=1280,800",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        if phone {
            options["mobileEmulation"] =
                json!({ "deviceMetrics": { "width": 375, "height": 812, "pixelRatio": 1.0 } });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Self { _driver: driver, _profile: profile, client }
    }

    /// The form control labelled `label`.
    async fn labelled(&self, label: &str) -> fantoccini::elements::Element {
        let xpath = format!("//label[normalize-space()='{label}']");
        let label_el = self.client.wait().at_most(WAIT).for_element(Locator::XPath(&xpath)).await;
        let id = label_el.unwrap().attr("for").await.unwrap().expect("the label names its control");
        self.client.find(Locator::Id(&id)).await.unwrap()
    }

    /// The button whose text is `text`.
    async fn button(&self, text: &str) -> fantoccini::elements::Element {
        let xpath = format!("//button[normalize-space()='{text}']");
        self.client.wait().at_most(WAIT).for_element(Locator::XPath(&xpath)).await.unwrap()
    }

    /// The texts (`textContent`, shown or not) of the elements matching `css`.
    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = vec![];
        for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
            out.push(element.prop("textContent").await.ok().flatten().unwrap_or_default());
        }
        out
    }

    /// Waits until some element matching `css` has a text for which `check` holds; returns it.
    async fn until_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = self.texts(css).await.into_iter().find(|t| check(t)) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no `{css}` matched; saw {:?}",
                self.texts(css).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = screenshots();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

const WAIT: Duration = Duration::from_secs(20);

/// Where screenshots go: the README's `docs/screenshots/` only when `MC_SCREENSHOTS=1` asks
/// for them to be refreshed (so a test run leaves the checkout as it found it), else a folder
/// under the build's target directory.
fn screenshots() -> PathBuf {
    if std::env::var_os("MC_SCREENSHOTS").is_some_and(|v| v == "1") {
        return Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().join("screenshots")
}

/// A relay with organization `acme`, admin `admin`, user `alice` assigned to the echo agent of a
/// bridge whose words come `word_delay_ms` apart.
struct Relay {
    _dir: tempfile::TempDir,
    db: String,
    server: Proc,
    _bridge: Proc,
    base: String,
    alice: String,
}

/// The relay and its accounts, no gateway yet: (dir, db, org, server, base).
fn relay_alone() -> (tempfile::TempDir, String, String, Proc, String) {
    relay_alone_with(&[])
}

/// The same, `mc-server` started with `extra` flags.
fn relay_alone_with(extra: &[&str]) -> (tempfile::TempDir, String, String, Proc, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mc.db").display());
    let org = admin_ok(&db, &["create-org", "acme"]);
    create_user(&db, &org, "admin", "admin");
    create_user(&db, &org, "alice", "member");
    let mut flags = vec!["--offline-grace-secs", "1"];
    flags.extend_from_slice(extra);
    let (server, base) = start_server_with(&db, &flags);
    (dir, db, org, server, base)
}

/// `mc-gateway --echo` registering with `token`.
fn echo_bridge(dir: &Path, base: &str, org: &str, token: &str, word_delay_ms: u64) -> Proc {
    let (config, state) = bridge_config(dir, "browser-gw", base, org, token);
    let delay = word_delay_ms.to_string();
    start_bridge(&["--echo", "--echo-word-delay-ms", &delay], &config, &state)
}

/// Alice's user id.
async fn alice_id(http: &reqwest::Client, base: &str, admin: &str) -> String {
    let users = get_json(http, base, "/api/v1/users", admin).await;
    users["users"].as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn relay(word_delay_ms: u64) -> Relay {
    relay_with(word_delay_ms, &[]).await
}

async fn relay_with(word_delay_ms: u64, extra: &[&str]) -> Relay {
    let (dir, db, org, server, base) = relay_alone_with(extra);
    let token = admin_ok(&db, &["create-registration-token", "--org", &org, "--expires-in", "1h"]);
    let bridge = echo_bridge(dir.path(), &base, &org, &token, word_delay_ms);
    let http = testkit::http_client();
    let admin = login(&http, &base, "admin", "admin-password").await;
    let deadline = Instant::now() + WAIT;
    let agent = loop {
        let agents = get_json(&http, &base, "/api/v1/agents", &admin).await;
        if let Some(a) = agents["agents"].as_array().and_then(|a| a.first()) {
            break a["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the gateway did not register");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let alice = alice_id(&http, &base, &admin).await;
    admin_ok(&db, &["assign", "--user", &alice, "--agent", &agent]);
    Relay { _dir: dir, db, server, _bridge: bridge, base, alice }
}

async fn sign_in(b: &Browser, base: &str, username: &str) {
    b.client.goto(base).await.unwrap();
    b.labelled("Organization").await.send_keys("acme").await.unwrap();
    b.labelled("Username").await.send_keys(username).await.unwrap();
    b.labelled("Password").await.send_keys(&format!("{username}-password")).await.unwrap();
    b.button("Sign in").await.click().await.unwrap();
}

/// Types `text` in the composer and presses Enter.
async fn say(b: &Browser, text: &str) {
    let field = b.labelled("Message").await;
    field.send_keys(text).await.unwrap();
    field.send_keys(&fantoccini::key::Key::Enter.to_string()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_in_a_real_browser() {
    if !browser_ready() {
        return;
    }
    let relay = relay(120).await;
    let b = Browser::start(true).await;

    // The page comes with its security headers.
    let http = testkit::http_client();
    let page = http.get(format!("{}/", relay.base)).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");

    // Sign in by the labelled fields; with one agent the phone opens its conversation at once.
    b.client.goto(&relay.base).await.unwrap();
    let width = b.client.execute("return window.innerWidth;", vec![]).await.unwrap();
    assert_eq!(width, json!(375), "a phone's width");
    b.screenshot("chat-sign-in-phone.png").await;
    sign_in(&b, &relay.base, "alice").await;
    b.until_text("#title", "the one agent's conversation", |t| t == "Echo").await;
    let composer = b.client.find(Locator::Css("#message")).await.unwrap();
    assert!(composer.is_displayed().await.unwrap(), "the composer shows, not only a list");
    let listed = "return document.querySelector('#agents button').textContent;";
    let agent = b.client.execute(listed, vec![]).await.unwrap();
    assert!(agent.as_str().unwrap().contains("online"), "{agent}");

    // Enter sends; the reply streams (a dashed, growing item), then the stored reply.
    say(&b, "hello from a browser").await;
    b.until_text("#messages li.user", "my message", |t| t == "hello from a browser").await;
    b.until_text("#messages li.agent", "the reply", |t| t == "Echo: hello from a browser").await;

    // Reload mid-reply: the text so far comes back, then the whole reply, once.
    let long = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen";
    say(&b, long).await;
    b.until_text("#messages li.streaming", "a streaming reply", |t| t.starts_with("Echo:")).await;
    b.client.refresh().await.unwrap();
    let so_far = b
        .until_text("#messages li.streaming", "the text so far after the reload", |t| {
            t.starts_with("Echo:")
        })
        .await;
    assert!(so_far.len() < format!("Echo: {long}").len(), "{so_far}");
    let full = format!("Echo: {long}");
    b.until_text("#messages li.agent:not(.streaming)", "the reply after the reload", |t| t == full)
        .await;
    let copies = b.texts("#messages li.agent").await.into_iter().filter(|t| *t == full).count();
    assert_eq!(copies, 1, "the reply shows once");
    b.screenshot("chat-conversation-phone.png").await;

    // The network drops (the relay restarts): the page says so, reconnects by itself and
    // resumes; the next message works.
    relay.server.signal("TERM");
    b.until_text("#connection", "the reconnecting state", |t| t == "reconnecting…").await;
    let listen = relay.base.trim_start_matches("http://").to_owned();
    let mut relay = relay;
    relay.server.wait_exit(Duration::from_secs(10));
    relay.server =
        start_server_with(&relay.db, &["--listen", &listen, "--offline-grace-secs", "1"]).0;
    b.until_text("#connection", "connected again", |t| t == "connected").await;
    b.until_text("#agents button", "the agent back online", |t| t.contains("online")).await;
    say(&b, "after the drop").await;
    b.until_text("#messages li.agent", "the reply after the drop", |t| t == "Echo: after the drop")
        .await;

    // Stop a slow reply: the Stop button appears while it streams and ends it.
    say(&b, "a reply that is stopped before it ends with many more words to come").await;
    b.until_text("#messages li.streaming", "the slow reply", |t| t.starts_with("Echo:")).await;
    b.button("Stop").await.click().await.unwrap();
    b.until_text("#messages li.system", "the stop notice", |t| !t.is_empty()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replies = b.texts("#messages li.agent").await;
    assert!(
        !replies.iter().any(|t| t.ends_with("many more words to come")),
        "the stopped reply did not complete: {replies:?}"
    );

    // A reply carrying HTML is text: nothing runs, no element is made.
    let xss = "<img src=x onerror=window.__pwned=1>";
    say(&b, xss).await;
    b.until_text("#messages li.agent:not(.streaming)", "the HTML reply", |t| {
        t == format!("Echo: {xss}")
    })
    .await;
    let ran = b
        .client
        .execute(
            "return [window.__pwned === undefined, document.querySelectorAll('#messages img').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ran, json!([true, 0]), "the markup ran or was rendered");

    // On a desktop: both panes side by side, the same conversation.
    let desktop = Browser::start(false).await;
    sign_in(&desktop, &relay.base, "alice").await;
    desktop.until_text("#agents button", "the agent list", |t| t.contains("Echo")).await;
    desktop.client.find(Locator::Css("#agents button")).await.unwrap().click().await.unwrap();
    desktop
        .until_text("#messages li.agent", "the conversation", |t| t == format!("Echo: {xss}"))
        .await;
    let panes = desktop
        .client
        .execute(
            "return [getComputedStyle(document.getElementById('agents-pane')).display, getComputedStyle(document.getElementById('conversation')).display];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(panes, json!(["block", "flex"]), "side by side");
    desktop.screenshot("chat-conversation-desktop.png").await;
    desktop.client.clone().close().await.unwrap();

    // An admin suspends alice: her page closes and says why.
    let admin = login(&http, &relay.base, "admin", "admin-password").await;
    let r = http
        .patch(format!("{}/api/v1/users/{}", relay.base, relay.alice))
        .bearer_auth(&admin)
        .json(&json!({ "status": "suspended" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    b.until_text("#signin-error", "the suspension notice", |t| t.contains("suspended")).await;
    let signed_in =
        b.client.execute("return sessionStorage.getItem('mc.tokens');", vec![]).await.unwrap();
    assert_eq!(signed_in, Value::Null, "the tokens are gone");
    b.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_console_in_a_real_browser() {
    if !browser_ready() {
        return;
    }
    let (dir, _db, org, _server, base) = relay_alone();
    let admin = Browser::start(false).await;
    let page = format!("{base}/admin");
    admin.client.goto(&page).await.unwrap();
    admin.labelled("Organization").await.send_keys("acme").await.unwrap();
    admin.labelled("Username").await.send_keys("admin").await.unwrap();
    admin.labelled("Password").await.send_keys("admin-password").await.unwrap();
    admin.button("Sign in").await.click().await.unwrap();
    admin.until_text("#connection", "the live subscription", |t| t == "live").await;
    admin.until_text("#gateways li", "the empty gateway list", |t| t.contains("No gateways")).await;

    // A registration token, shown once.
    admin.button("Tokens").await.click().await.unwrap();
    admin.labelled("Token label").await.send_keys("browser").await.unwrap();
    admin.button("Create token").await.click().await.unwrap();
    let token =
        admin.until_text("#new-token-value", "the new token", |t| t.starts_with("gw_reg_")).await;
    admin.until_text("#tokens li", "the token's row", |t| t.contains("browser")).await;
    let shown = admin.texts("#tokens li").await.join(" ");
    assert!(!shown.contains(&token), "the list never shows the secret");

    // A bridge registers with it: the gateway shows up online without a reload.
    admin.button("Gateways").await.click().await.unwrap();
    let _bridge = echo_bridge(dir.path(), &base, &org, &token, 20);
    admin
        .until_text("#gateways li", "the gateway online, live", |t| {
            t.contains("browser-gw") && t.contains("online")
        })
        .await;
    // Its metrics follow each heartbeat (every 5 s here), pushed: the row changes by itself.
    let first = admin.texts("#gateways li").await.join(" ");
    admin
        .until_text("#gateways li", "fresh metrics, pushed", |t| t.contains("memory") && t != first)
        .await;
    admin.button("Agents").await.click().await.unwrap();
    admin.until_text("#agents li", "the echo agent", |t| t.contains("Echo")).await;
    admin.screenshot("admin-agents-desktop.png").await;

    // Alice is signed in on her phone; the admin suspends her: her page closes.
    let phone = Browser::start(true).await;
    sign_in(&phone, &base, "alice").await;
    phone.until_text("#connection", "alice connected", |t| t == "connected").await;
    admin.button("Users").await.click().await.unwrap();
    admin.until_text("#users li", "alice's row", |t| t.contains("alice")).await;
    admin.screenshot("admin-users-desktop.png").await;
    admin.button("Suspend alice").await.click().await.unwrap();
    phone.until_text("#signin-error", "alice's page closed", |t| t.contains("suspended")).await;
    admin
        .until_text("#users li", "alice suspended", |t| {
            t.contains("alice") && t.contains("suspended")
        })
        .await;
    // The activity feed shows what happened, live.
    admin.button("Activity").await.click().await.unwrap();
    admin.until_text("#activity li", "activity", |t| !t.is_empty()).await;
    phone.client.clone().close().await.unwrap();

    // The console at a phone's width.
    let narrow = Browser::start(true).await;
    narrow.client.goto(&page).await.unwrap();
    narrow.labelled("Username").await.send_keys("admin").await.unwrap();
    narrow.labelled("Password").await.send_keys("admin-password").await.unwrap();
    narrow.button("Sign in").await.click().await.unwrap();
    narrow.until_text("#gateways li", "the gateway", |t| t.contains("browser-gw")).await;
    narrow.screenshot("admin-gateways-phone.png").await;
    narrow.client.clone().close().await.unwrap();
    admin.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_messages_on_scroll_several_sessions_and_the_admin_view_of_them() {
    if !browser_ready() {
        return;
    }
    let relay = relay(0).await;
    // 30 exchanges (60 messages) in one session, sent over the socket API.
    let http = testkit::http_client();
    let token = login(&http, &relay.base, "alice", "alice-password").await;
    let (mut ws, hello) = socket(&relay.base, &token).await;
    let agent = hello["assignments"][0]["agent_id"].as_str().unwrap().to_owned();
    let (ack, _) = chat(&mut ws, &agent, "message 1", None).await;
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();
    for i in 2..=30 {
        chat(&mut ws, &agent, &format!("message {i}"), Some(&session)).await;
    }
    drop(ws);

    let b = Browser::start(true).await;
    sign_in(&b, &relay.base, "alice").await;
    // Her one agent's latest conversation opens by itself.
    b.until_text("#title", "the one agent's conversation", |t| t == "Echo").await;
    // The newest page (50) first; scrolling to the top brings the 10 older ones.
    b.until_text("#messages li:last-child", "the newest message", |t| t == "Echo: message 30")
        .await;
    let seqs =
        || async { b.client.find_all(Locator::Css("#messages li[data-seq]")).await.unwrap().len() };
    assert_eq!(seqs().await, 50, "one page of history");
    b.client
        .execute("document.getElementById('messages').scrollTop = 0; return null;", vec![])
        .await
        .unwrap();
    b.until_text("#messages li[data-seq='1']", "the oldest message", |t| t == "message 1").await;
    assert_eq!(seqs().await, 60);

    // A second session with the same agent; the first is still there to go back to.
    b.button("New session").await.click().await.unwrap();
    say(&b, "in a second session").await;
    b.until_text("#messages li.agent", "the new session's reply", |t| {
        t == "Echo: in a second session"
    })
    .await;
    assert_eq!(seqs().await, 2, "the new session holds only its own messages");
    let options = b.client.find_all(Locator::Css("#session option")).await.unwrap().len();
    assert_eq!(options, 2, "two sessions to pick from");
    b.client.find(Locator::Css("#session")).await.unwrap().select_by_value(&session).await.unwrap();
    b.until_text("#messages li:last-child", "the first session again", |t| t == "Echo: message 30")
        .await;

    // The admin sees alice's two sessions and reads one.
    let admin = Browser::start(false).await;
    admin.client.goto(&format!("{}/admin", relay.base)).await.unwrap();
    admin.labelled("Username").await.send_keys("admin").await.unwrap();
    admin.labelled("Password").await.send_keys("admin-password").await.unwrap();
    admin.button("Sign in").await.click().await.unwrap();
    admin.until_text("#connection", "the console", |t| t == "live").await;
    admin.button("Users").await.click().await.unwrap();
    admin.button("Sessions of alice").await.click().await.unwrap();
    admin.until_text("#sessions li", "alice's sessions", |t| t.starts_with("Session of")).await;
    let sessions = admin.client.find_all(Locator::Css("#sessions li button")).await.unwrap();
    assert_eq!(sessions.len(), 2, "alice has two sessions");
    sessions[0].click().await.unwrap();
    admin.until_text("#session-messages li", "a session's messages", |t| t.contains("Echo:")).await;
    admin.client.clone().close().await.unwrap();
    b.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_is_refreshed_before_it_expires() {
    if !browser_ready() {
        return;
    }
    // Access tokens last 4 s: the page must rotate them and hand each to its open socket, or
    // the relay closes the socket at expiry (4001) and the page shows "reconnecting…".
    let relay = relay_with(0, &["--access-token-ttl-secs", "4"]).await;
    let b = Browser::start(true).await;
    sign_in(&b, &relay.base, "alice").await;
    b.until_text("#connection", "connected", |t| t == "connected").await;
    let first =
        b.client.execute("return sessionStorage.getItem('mc.tokens');", vec![]).await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let shown = b.texts("#connection").await.join("");
        assert_eq!(shown, "connected", "the socket was dropped at the token's expiry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now =
        b.client.execute("return sessionStorage.getItem('mc.tokens');", vec![]).await.unwrap();
    assert_ne!(first, now, "the tokens were rotated");
    b.until_text("#title", "the one agent's conversation", |t| t == "Echo").await;
    say(&b, "still here").await;
    b.until_text("#messages li.agent", "a reply after 10 s of 4 s tokens", |t| {
        t == "Echo: still here"
    })
    .await;
    b.client.clone().close().await.unwrap();
}
