//! Gateways the relay dials itself: added by an admin, linked, restarted; and pairing, which
//! waits for the gateway's operator.

use super::*;

impl TestRelay {
    /// Stops the relay process and starts it again on the same database (a new port).
    async fn restart_server(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self.server.signal("TERM");
        self.server.wait_exit(Duration::from_secs(20));
        let (server, base) = start_server_with(&self.db, &extra);
        self.server = server;
        self.base = base;
        self.admin_token = login(&self.http, &self.base, "admin", "admin-password").await;
    }

    /// `POST /api/v1/gateways`: the relay dials `gateway` as `name`; returns the gateway id.
    async fn add_outbound(&self, url: &str, name: &str, token: Option<&str>) -> String {
        let response = self
            .http
            .post(format!("{}/api/v1/gateways", self.base))
            .bearer_auth(&self.admin_token)
            .json(&json!({ "name": name, "url": url, "token": token }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["outbound"]["has_token"], token.is_some(), "{body}");
        if let Some(token) = token {
            assert!(!body.to_string().contains(token), "the token is never returned");
        }
        body["id"].as_str().unwrap().to_owned()
    }

    /// When the gateway's outbound link on the relay came up, if it is up.
    async fn outbound_since(&self, id: &str) -> Option<String> {
        let path = format!("/api/v1/gateways/{id}/connections");
        let links = get_json(&self.http, &self.base, &path, &self.admin_token).await;
        links["connections"][0]["since"].as_str().map(str::to_owned)
    }

    async fn gateway_json(&self, id: &str) -> Value {
        get_json(&self.http, &self.base, &format!("/api/v1/gateways/{id}"), &self.admin_token).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_the_relay_dials_a_gateway_an_admin_added() {
    if !testbed_ready() {
        return;
    }
    let started = Instant::now();
    let gateway = start_gateway_blocking(GatewayOptions::default()).await;
    let mut relay = relay(&[]).await;
    let id = relay.add_outbound(&gateway.url(), "hq", Some(gateway.token())).await;
    let (agent, linked) = relay.agent_of("hq").await;
    assert_eq!(linked, id);
    let view = relay.gateway_json(&id).await;
    assert_eq!(view["version"], "2026.9.6", "{view}");
    assert_eq!(view["outbound"]["last_error"], Value::Null, "{view}");
    let links = get_json(
        &relay.http,
        &relay.base,
        &format!("/api/v1/gateways/{id}/connections"),
        &relay.admin_token,
    )
    .await;
    let links = links["connections"].as_array().unwrap().clone();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["kind"], "outbound");
    assert_eq!(links[0]["remote"], gateway.url().as_str());

    // A streamed reply with what the agent is doing, then the stored reply.
    let mut ws = relay.alice().await;
    send_chat(&mut ws, &agent, "Hello through the outbound link [pace:40]", None).await;
    let (ack, _) = until(&mut ws, "ack").await;
    let session = ack["payload"]["session_id"].as_str().unwrap().to_owned();
    let (reply, before) = until(&mut ws, "chat").await;
    assert_eq!(reply["payload"]["content"], "Echo: Hello through the outbound link [pace:40]");
    assert!(before.iter().any(|f| f["type"] == "chunk"), "streamed: {before:?}");
    assert!(
        before.iter().any(|f| f["payload"]["event"] == "agent_status"),
        "agent_status: {before:?}"
    );

    // Reconnecting mid-reply: resume gives the text so far, then the rest.
    let slow = "one two three four five six seven [pace:600]";
    send_chat(&mut ws, &agent, slow, Some(&session)).await;
    until(&mut ws, "chunk").await;
    drop(ws);
    let mut back = relay.alice().await;
    send(&mut back, json!({ "type": "resume", "id": "r", "payload": { "sessions": [{ "session_id": session, "after_seq": 0 }] } })).await;
    until(&mut back, "resumed").await;
    let so_far = loop {
        let (chunk, _) = until(&mut back, "chunk").await;
        if chunk["payload"]["offset"] == 0 {
            break chunk["payload"]["delta"].as_str().unwrap().to_owned();
        }
    };
    assert!(so_far.starts_with("Echo:") && so_far.len() < slow.len() + 6, "{so_far}");
    let (reply, _) = until(&mut back, "chat").await;
    assert_eq!(reply["payload"]["content"], format!("Echo: {slow}"));
    drop(back);

    // The relay restarted: it dials the stored gateway again by itself.
    relay.restart_server().await;
    let (again, _) = relay.agent_of("hq").await;
    assert_eq!(again, agent);
    let mut ws = relay.alice().await;
    let (_, reply) = chat(&mut ws, &agent, "after the relay restarted", None).await;
    assert_eq!(reply["payload"]["content"], "Echo: after the relay restarted");
    drop(ws);

    // The gateway restarted: the relay's connection comes back by itself (a new link).
    let since = relay.outbound_since(&id).await;
    assert!(since.is_some());
    let gateway = std::sync::Arc::new(gateway);
    let restarting = gateway.clone();
    tokio::task::spawn_blocking(move || restarting.restart()).await.unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while relay.outbound_since(&id).await.is_none_or(|again| Some(again) == since) {
        assert!(Instant::now() < deadline, "the relay did not reconnect");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut ws = relay.alice().await;
    send_chat(&mut ws, &agent, "after the gateway restarted", None).await;
    let (reply, _) = until(&mut ws, "chat").await;
    assert_eq!(reply["payload"]["content"], "Echo: after the gateway restarted");

    // Deleted: the relay closes its connection for good.
    let response = relay
        .http
        .delete(format!("{}/api/v1/gateways/{id}", relay.base))
        .bearer_auth(&relay.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let path = format!("/api/v1/gateways/{id}/connections");
        let r = relay.http.get(format!("{}{path}", relay.base)).bearer_auth(&relay.admin_token);
        if r.send().await.unwrap().status() == reqwest::StatusCode::NOT_FOUND {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway is still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("outbound: done after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_pairing_waits_for_the_operator_then_connects() {
    if !testbed_ready() {
        return;
    }
    let started = Instant::now();
    let options =
        GatewayOptions { pairing_required: true, trust_loopback_proxy: true, ..Default::default() };
    let gateway = start_gateway_blocking(options).await;
    // Through a real reverse proxy that the gateway trusts to name the client, which it names
    // as a remote address (TEST-NET-2; nothing is sent there): OpenClaw then pairs the relay's
    // device as it does for a relay on another machine. (A direct loopback backend with the
    // shared token skips pairing.)
    let port: u16 = gateway.url().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = testkit::nginx::Nginx::start(port, Some("198.51.100.20"))
        .expect("nginx in front of the gateway");
    let relay = relay(&[]).await;
    let id = relay.add_outbound(&proxy.ws_url(), "remote-office", Some(gateway.token())).await;

    // The gateway waits for its operator: `error`, with the request to approve.
    let deadline = Instant::now() + Duration::from_secs(60);
    let request = loop {
        let view = relay.gateway_json(&id).await;
        if let Some(request) = view["outbound"]["pairing_request_id"].as_str() {
            assert_eq!(view["status"], "error", "{view}");
            assert!(
                view["outbound"]["last_error"].as_str().unwrap().contains("pairing required"),
                "{view}"
            );
            break request.to_owned();
        }
        assert!(Instant::now() < deadline, "no pairing request: {view}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let approved = {
        let gateway = &gateway;
        let request = request.clone();
        tokio::task::block_in_place(move || gateway.openclaw(&["devices", "approve", &request]))
    };
    approved.expect("openclaw devices approve");

    // Approved: the relay connects by itself, keeps the device token, and chat works.
    let (agent, _) = relay.agent_of("remote-office").await;
    let view = relay.gateway_json(&id).await;
    assert_eq!(view["outbound"]["has_device_token"], true, "{view}");
    assert_eq!(view["outbound"]["pairing_request_id"], Value::Null, "{view}");
    let mut ws = relay.alice().await;
    let (_, reply) = chat(&mut ws, &agent, "paired at last", None).await;
    assert_eq!(reply["payload"]["content"], "Echo: paired at last");
    println!("pairing: done after {:?}", started.elapsed());
}
