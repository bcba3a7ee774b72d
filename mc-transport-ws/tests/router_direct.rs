//! The router driven directly, with no socket: a `FrameLink` stands for the gateway's
//! connection and `UserSession`s for users' sockets. These pin down the router's decisions
//! (who gets what, what is stored) independently of any transport.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ChatFixture, cheap_passwords};
use mc_core::link::LinkOutbound;
use mc_core::protocol::{ClientFrame, ClientRequest};
use mc_core::{FrameLink, GatewayId, RelayLimits, UserSession};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A gateway link whose frames the test reads and answers by hand.
struct FakeLink {
    link: Arc<FrameLink>,
    out: mpsc::Receiver<LinkOutbound>,
}

impl FakeLink {
    fn new() -> Self {
        let (link, out) = FrameLink::new(16);
        Self { link: Arc::new(link), out }
    }

    /// The next request the router sent.
    async fn request(&mut self) -> Value {
        match tokio::time::timeout(Duration::from_secs(5), self.out.recv()).await.unwrap().unwrap()
        {
            LinkOutbound::Frame(text) => serde_json::from_str(&text).unwrap(),
            LinkOutbound::Close(code) => panic!("link closed with {code}"),
        }
    }

    fn answer(&self, request: &Value, payload: Value) {
        self.link.resolve(request["id"].as_str().unwrap(), true, payload, None);
    }
}

/// The next frame, skipping agent presence announcements (delivered asynchronously).
async fn frame(session: &mut UserSession) -> Value {
    loop {
        let text = tokio::time::timeout(Duration::from_secs(5), session.next_frame())
            .await
            .unwrap()
            .unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["type"] != "system" {
            return value;
        }
    }
}

async fn connect(f: &ChatFixture) -> UserSession {
    let principal = f.s.relay.authenticate(&f.token).await.unwrap().0;
    f.s.router.connect_user(principal).await.unwrap().0
}

fn chat(agent: &str, content: &str) -> ClientFrame {
    ClientFrame {
        id: Some(uuid::Uuid::now_v7().to_string()),
        request: ClientRequest::Chat {
            client_id: uuid::Uuid::now_v7(),
            agent_id: agent.parse().unwrap(),
            content: content.into(),
            session_id: None,
        },
    }
}

async fn fixture() -> ChatFixture {
    let _ = cheap_passwords();
    ChatFixture::with_limits(RelayLimits::default()).await
}

#[tokio::test]
async fn a_run_from_send_to_final_without_sockets() {
    let f = fixture().await;
    let gateway: GatewayId = f.gateway_id.parse().unwrap();
    let mut gw = FakeLink::new();
    let generation = f.s.router.attach_gateway(gateway, gw.link.clone()).await.unwrap();
    let mut user = connect(&f).await;

    user.handle(chat(&f.agent_id, "direct")).await;
    let ack = frame(&mut user).await;
    assert_eq!(ack["type"], "ack");
    let req = gw.request().await;
    assert_eq!(req["method"], "chat.send");
    let run = req["params"]["idempotencyKey"].as_str().unwrap().to_owned();
    let key = req["params"]["sessionKey"].as_str().unwrap().to_owned();
    gw.answer(&req, json!({ "runId": run, "status": "started" }));

    let event = |state: &str, extra: Value| {
        let mut p = json!({ "runId": run, "sessionKey": key, "state": state });
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    };
    let router = &f.s.router;
    // Cumulative text, then a `replace` that rewrites the tail.
    router.gateway_event(gateway, "chat", &event("delta", json!({ "deltaText": "Hel", "message": { "content": [{ "type": "text", "text": "Hel" }] } }))).await;
    router.gateway_event(gateway, "chat", &event("delta", json!({ "deltaText": "Hello", "message": { "content": [{ "type": "text", "text": "Hello" }] } }))).await;
    router
        .gateway_event(
            gateway,
            "chat",
            &event("delta", json!({ "deltaText": "Help!", "replace": true })),
        )
        .await;
    // Not chat events, and events of a run the router does not know: ignored.
    router.gateway_event(gateway, "agent", &json!({ "runId": run, "stream": "assistant" })).await;
    router
        .gateway_event(
            gateway,
            "chat",
            &json!({ "runId": "someone-else", "sessionKey": key, "state": "final" }),
        )
        .await;
    // The same run id from another gateway is not this run.
    router
        .gateway_event(
            GatewayId::new(),
            "chat",
            &event("final", json!({ "message": { "content": "forged" } })),
        )
        .await;
    router
        .gateway_event(
            gateway,
            "chat",
            &event(
                "final",
                json!({ "message": { "content": [{ "type": "text", "text": "Help!" }] } }),
            ),
        )
        .await;
    router.gateway_event(gateway, "chat", &event("error", json!({ "errorMessage": "late" }))).await;

    let chunks: Vec<(u64, String)> =
        [frame(&mut user).await, frame(&mut user).await, frame(&mut user).await]
            .iter()
            .map(|c| {
                (
                    c["payload"]["offset"].as_u64().unwrap(),
                    c["payload"]["delta"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    assert_eq!(chunks, vec![(0, "Hel".into()), (3, "lo".into()), (3, "p!".into())]);
    let reply = frame(&mut user).await;
    assert_eq!(
        (reply["type"].as_str(), reply["payload"]["content"].as_str()),
        (Some("chat"), Some("Help!"))
    );
    let rest: Vec<Value> = std::iter::from_fn(|| user.try_next_frame())
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .filter(|v| v["type"] != "system")
        .collect();
    assert!(rest.is_empty(), "nothing for the late error: {rest:?}");

    router.detach_gateway(gateway, generation).await;
    assert_eq!(router.gateway_count(), 0);
}

#[tokio::test]
async fn detaching_a_gateway_fails_its_runs() {
    let f = fixture().await;
    let gateway: GatewayId = f.gateway_id.parse().unwrap();
    let mut gw = FakeLink::new();
    let generation = f.s.router.attach_gateway(gateway, gw.link.clone()).await.unwrap();
    let mut user = connect(&f).await;
    user.handle(chat(&f.agent_id, "will be cut")).await;
    frame(&mut user).await; // ack
    let req = gw.request().await;
    gw.answer(&req, json!({ "status": "started" }));
    // A stale detach (an older generation) changes nothing.
    f.s.router.detach_gateway(gateway, generation + 1000).await;
    assert_eq!(f.s.router.gateway_count(), 1);
    f.s.router.detach_gateway(gateway, generation).await;
    let system = frame(&mut user).await;
    assert_eq!(system["payload"]["role"], "system");
    let error = frame(&mut user).await;
    assert_eq!(error["payload"]["code"], "GATEWAY_ERROR");
}

#[tokio::test]
async fn a_replaced_link_keeps_the_runs() {
    let f = fixture().await;
    let gateway: GatewayId = f.gateway_id.parse().unwrap();
    let mut first = FakeLink::new();
    let old_generation = f.s.router.attach_gateway(gateway, first.link.clone()).await.unwrap();
    let mut user = connect(&f).await;
    user.handle(chat(&f.agent_id, "survive a reconnect")).await;
    frame(&mut user).await;
    let req = first.request().await;
    let run = req["params"]["idempotencyKey"].as_str().unwrap().to_owned();
    first.answer(&req, json!({ "status": "started" }));
    // The gateway reconnects before its old socket's end is noticed.
    let second = FakeLink::new();
    f.s.router.attach_gateway(gateway, second.link.clone()).await.unwrap();
    assert!(first.link.is_closed(), "the old link is closed");
    f.s.router.detach_gateway(gateway, old_generation).await;
    // The run finishes through the new link.
    let fin = json!({ "runId": run, "sessionKey": req["params"]["sessionKey"], "state": "final", "message": { "content": "done" } });
    f.s.router.gateway_event(gateway, "chat", &fin).await;
    let reply = frame(&mut user).await;
    assert_eq!(reply["payload"]["content"], "done");
}
