//! The client's state machine under paused time, against a relay played by the test through
//! [`Backend`]: the frames are the real protocol's (rendered by `ServerFrame::to_json`, read
//! by `decode_client_frame`); only the socket is a channel, so the clock can be paused and
//! every delay measured exactly. The SDK against a real `mc-server` is tested end to end
//! through its Python and Kotlin bindings (`mc-ffi`) and by `mc-chat`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use mc_core::protocol::{ClientRequest, ResumePoint, decode_client_frame};
use mc_core::{MessageId, OrgId, UserId};
use tokio::time::Instant;

use super::net::{Incoming, Socket};
use super::*;

/// The relay's side of one socket.
struct Conn {
    to_client: mpsc::UnboundedSender<Incoming>,
    from_client: mpsc::UnboundedReceiver<String>,
}

impl Conn {
    async fn next(&mut self) -> ClientFrame {
        let text = tokio::time::timeout(Duration::from_secs(600), self.from_client.recv())
            .await
            .expect("a frame in time")
            .expect("the socket is open");
        decode_client_frame(&text).expect("a valid client frame")
    }

    /// Reads the `auth` frame; returns its token.
    async fn auth(&mut self) -> String {
        match self.next().await.request {
            ClientRequest::Auth { token } => token.expose().to_owned(),
            other => panic!("expected auth, got {other:?}"),
        }
    }

    fn send(&self, frame: ServerFrame) {
        let _ = self.to_client.send(Incoming::Text(frame.to_json()));
    }

    fn auth_ok(&self, agent: AgentId) {
        self.send(ServerFrame::AuthOk {
            user_id: UserId::new(),
            organization_id: OrgId::new(),
            heartbeat_interval_seconds: 30,
            assignments: vec![AssignmentInfo {
                agent_id: agent,
                agent_name: "echo".into(),
                gateway_id: mc_core::GatewayId::new(),
                status: "online".into(),
                board_name: None,
            }],
        });
    }

    fn close(&self, code: u16) {
        let _ = self.to_client.send(Incoming::Closed(Some(code)));
    }
}

struct FakeSocket {
    to_relay: mpsc::UnboundedSender<String>,
    from_relay: mpsc::UnboundedReceiver<Incoming>,
}

#[async_trait]
impl Socket for FakeSocket {
    async fn send(&mut self, text: String) -> Result<(), ClientError> {
        self.to_relay.send(text).map_err(|_| ClientError::Network("gone".into()))
    }
    async fn recv(&mut self) -> Incoming {
        self.from_relay.recv().await.unwrap_or(Incoming::Closed(None))
    }
    async fn close(&mut self) {}
}

#[derive(Default)]
struct FakeRelay {
    /// Opens to refuse before accepting again.
    refuse: AtomicUsize,
    opens: Mutex<Vec<Instant>>,
    accepted: Mutex<Option<mpsc::UnboundedSender<Conn>>>,
    refreshes: AtomicUsize,
    refuse_refresh: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Backend for FakeRelay {
    async fn open(&self) -> Result<Box<dyn Socket>, ClientError> {
        self.opens.lock().unwrap().push(Instant::now());
        if self.refuse.load(Ordering::SeqCst) > 0 {
            self.refuse.fetch_sub(1, Ordering::SeqCst);
            return Err(ClientError::Network("connection refused".into()));
        }
        let (to_client, from_relay) = mpsc::unbounded_channel();
        let (to_relay, from_client) = mpsc::unbounded_channel();
        if let Some(accepted) = &*self.accepted.lock().unwrap() {
            let _ = accepted.send(Conn { to_client, from_client });
        }
        Ok(Box::new(FakeSocket { to_relay, from_relay }))
    }

    async fn refresh(&self, refresh: &str) -> Result<Tokens, ClientError> {
        if self.refuse_refresh.load(Ordering::SeqCst) {
            return Err(ClientError::Unauthenticated("refresh token revoked".into()));
        }
        let n = self.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Tokens { access: format!("access-{n}"), refresh: format!("{refresh}+") })
    }
}

#[derive(Default)]
struct Recorder {
    states: Mutex<Vec<ConnectionState>>,
    messages: Mutex<Vec<ChatMessage>>,
    texts: Mutex<Vec<String>>,
    tokens: Mutex<Vec<Tokens>>,
}

impl Listener for Recorder {
    fn on_state(&self, state: &ConnectionState) {
        self.states.lock().unwrap().push(state.clone());
    }
    fn on_message(&self, message: &ChatMessage) {
        self.messages.lock().unwrap().push(message.clone());
    }
    fn on_reply_text(&self, _: SessionId, _: &str, text: &str) {
        self.texts.lock().unwrap().push(text.to_owned());
    }
    fn on_tokens(&self, tokens: &Tokens) {
        self.tokens.lock().unwrap().push(tokens.clone());
    }
}

fn setup() -> (Arc<FakeRelay>, mpsc::UnboundedReceiver<Conn>, McClient, Arc<Recorder>) {
    let relay = Arc::new(FakeRelay::default());
    let (accepted, conns) = mpsc::unbounded_channel();
    *relay.accepted.lock().unwrap() = Some(accepted);
    let client = McClient::from_parts(relay.clone(), None, Handle::current());
    client.restore_tokens("access-0", "refresh-0");
    let recorder = Arc::new(Recorder::default());
    client.set_listener(recorder.clone());
    (relay, conns, client, recorder)
}

/// Connects `client` with an access token of these `iat` and `exp` claims; returns the
/// relay's side of the socket, past its `auth` (of that token).
async fn connect_with_token(
    client: &McClient,
    conns: &mut mpsc::UnboundedReceiver<Conn>,
    iat: i64,
    exp: i64,
) -> Conn {
    use base64::Engine as _;
    let claims = serde_json::json!({ "iat": iat, "exp": exp }).to_string();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.as_bytes());
    let jwt = format!("h.{encoded}.s");
    client.restore_tokens(&jwt, "refresh-0");
    client.connect().unwrap();
    let mut conn = conns.recv().await.unwrap();
    assert_eq!(conn.auth().await, jwt);
    conn
}

async fn state_becomes(client: &McClient, want: impl Fn(&ConnectionState) -> bool) {
    for _ in 0..10_000 {
        if want(&client.state()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("state stayed {:?}", client.state());
}

#[tokio::test(start_paused = true)]
async fn reconnect_delays_follow_the_full_jitter_bounds_and_network_changed_resets_them() {
    let (relay, mut conns, client, _) = setup();
    relay.refuse.store(7, Ordering::SeqCst);
    client.connect().unwrap();
    let mut conn =
        tokio::time::timeout(Duration::from_secs(600), conns.recv()).await.unwrap().unwrap();
    let opens = relay.opens.lock().unwrap().clone();
    assert_eq!(opens.len(), 8, "seven refused, the eighth accepted");
    let ceilings = [500u64, 1000, 2000, 4000, 8000, 16000, 20000];
    for (i, pair) in opens.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        assert!(gap <= Duration::from_millis(ceilings[i]), "attempt {i} waited {gap:?}");
    }
    let total = *opens.last().unwrap() - opens[0];
    assert!(total > Duration::from_secs(2), "jitter does not collapse the waits: {total:?}");
    conn.auth().await;
    conn.auth_ok(AgentId::new());
    state_becomes(&client, |s| *s == ConnectionState::Connected).await;

    // Dropped again with a long backoff ahead: network_changed reconnects at once.
    relay.refuse.store(6, Ordering::SeqCst);
    conn.close(1012);
    state_becomes(&client, |_| relay.opens.lock().unwrap().len() >= 12).await;
    relay.refuse.store(0, Ordering::SeqCst);
    let before = Instant::now();
    client.network_changed();
    let conn = tokio::time::timeout(Duration::from_secs(600), conns.recv()).await.unwrap().unwrap();
    let waited = Instant::now() - before;
    assert!(waited < Duration::from_millis(5), "no wait for the backoff: {waited:?}");
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn a_4001_refreshes_once_then_a_second_4001_closes_with_an_auth_error() {
    let (relay, mut conns, client, recorder) = setup();
    let agent = AgentId::new();
    client.connect().unwrap();
    let mut conn = conns.recv().await.unwrap();
    assert_eq!(conn.auth().await, "access-0");
    conn.auth_ok(agent);
    state_becomes(&client, |s| *s == ConnectionState::Connected).await;
    // The token expires: 4001 → refresh → reconnect with the new token, no backoff.
    let closed_at = Instant::now();
    conn.close(4001);
    let mut conn = conns.recv().await.unwrap();
    assert_eq!(conn.auth().await, "access-1");
    assert!(Instant::now() - closed_at < Duration::from_millis(5));
    assert_eq!(relay.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(recorder.tokens.lock().unwrap().last().unwrap().access, "access-1");
    // Refused again before any success: closed, and what waits is failed.
    let send = {
        let client = &client;
        async move { client.send_message(agent, None, "hi").await }
    };
    conn.close(4001);
    let result = send.await;
    assert!(matches!(result, Err(ClientError::Unauthenticated(_))), "{result:?}");
    assert_eq!(client.state(), ConnectionState::Closed { reason: CloseReason::AuthFailed });
    assert_eq!(relay.refreshes.load(Ordering::SeqCst), 1, "one refresh, not a loop");
    assert!(conns.try_recv().is_err(), "no reconnect after the final close");
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_and_a_4003_close_for_good() {
    let (relay, mut conns, client, recorder) = setup();
    relay.refuse_refresh.store(true, Ordering::SeqCst);
    client.connect().unwrap();
    let mut conn = conns.recv().await.unwrap();
    conn.auth().await;
    conn.send(ServerFrame::AuthError { reason: mc_core::protocol::AuthFailure::ExpiredToken });
    conn.close(4001);
    state_becomes(&client, |s| matches!(s, ConnectionState::Closed { .. })).await;
    assert_eq!(client.state(), ConnectionState::Closed { reason: CloseReason::AuthFailed });

    let (_, mut conns, client, _) = setup();
    client.connect().unwrap();
    let mut conn = conns.recv().await.unwrap();
    conn.auth().await;
    conn.close(4003);
    state_becomes(&client, |s| matches!(s, ConnectionState::Closed { .. })).await;
    assert_eq!(client.state(), ConnectionState::Closed { reason: CloseReason::Forbidden });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(conns.try_recv().is_err(), "4003 is never retried");
    drop(recorder);
}

#[tokio::test(start_paused = true)]
async fn the_outbox_keeps_order_and_client_ids_across_reconnects() {
    let (relay, mut conns, client, _) = setup();
    let client = Arc::new(client);
    let agent = AgentId::new();
    let session = SessionId::new();
    // Offline: the relay refuses opens for a while; three messages are sent meanwhile.
    relay.refuse.store(3, Ordering::SeqCst);
    client.connect().unwrap();
    let mut sends = Vec::new();
    for text in ["one", "two", "three"] {
        let client = client.clone();
        sends.push(tokio::spawn(
            async move { client.send_message(agent, Some(session), text).await },
        ));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(client.outbox_len(), 3);
    let mut conn = conns.recv().await.unwrap();
    conn.auth().await;
    conn.auth_ok(agent);
    let mut first = Vec::new();
    for _ in 0..3 {
        match conn.next().await.request {
            ClientRequest::Chat { client_id, content, .. } => first.push((client_id, content)),
            other => panic!("expected chat, got {other:?}"),
        }
    }
    assert_eq!(first.iter().map(|(_, c)| c.as_str()).collect::<Vec<_>>(), ["one", "two", "three"]);
    // Only the first is acked before the link drops: the others go again, same ids, in order.
    conn.send(ServerFrame::Ack {
        client_id: first[0].0,
        session_id: session,
        message_id: MessageId::new(),
        seq: 1,
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    conn.close(1006);
    let mut conn = conns.recv().await.unwrap();
    conn.auth().await;
    conn.auth_ok(agent);
    let resume = conn.next().await.request;
    assert_eq!(
        resume,
        ClientRequest::Resume { sessions: vec![ResumePoint { session_id: session, after_seq: 1 }] }
    );
    let mut again = Vec::new();
    for _ in 0..2 {
        match conn.next().await.request {
            ClientRequest::Chat { client_id, content, .. } => again.push((client_id, content)),
            other => panic!("expected chat, got {other:?}"),
        }
    }
    assert_eq!(again, first[1..]);
    for (i, (client_id, _)) in again.iter().enumerate() {
        conn.send(ServerFrame::Ack {
            client_id: *client_id,
            session_id: session,
            message_id: MessageId::new(),
            seq: 2 + i as u64,
        });
    }
    let mut seqs = Vec::new();
    for send in sends {
        seqs.push(send.await.unwrap().unwrap().seq);
    }
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(client.outbox_len(), 0);
}

#[tokio::test(start_paused = true)]
async fn resume_points_advance_only_over_stored_messages_seen() {
    let (_, mut conns, client, recorder) = setup();
    let agent = AgentId::new();
    let session = SessionId::new();
    let stored = |seq: u64, run: Option<&str>| {
        ServerFrame::Chat(ChatMessage {
            session_id: session,
            agent_id: agent,
            role: mc_core::MessageRole::Agent,
            content: format!("m{seq}"),
            seq,
            run_id: run.map(str::to_owned),
            client_msg_id: None,
            created_at: chrono::Utc::now(),
            id: MessageId::new(),
        })
    };
    client.track_session(session, 0);
    client.connect().unwrap();
    let mut conn = conns.recv().await.unwrap();
    conn.auth().await;
    conn.auth_ok(agent);
    assert_eq!(
        conn.next().await.request,
        ClientRequest::Resume { sessions: vec![ResumePoint { session_id: session, after_seq: 0 }] }
    );
    conn.send(stored(1, None));
    conn.send(stored(2, None));
    conn.send(ServerFrame::Chunk {
        session_id: session,
        run_id: "r".into(),
        delta: "Hel".into(),
        offset: 0,
    });
    conn.send(ServerFrame::Chunk {
        session_id: session,
        run_id: "r".into(),
        delta: "lo".into(),
        offset: 3,
    });
    // seq 3 is lost on the way; 4 arrives.
    conn.send(stored(4, None));
    tokio::time::sleep(Duration::from_millis(5)).await;
    conn.close(1013);
    let mut conn = conns.recv().await.unwrap();
    conn.auth().await;
    conn.auth_ok(agent);
    assert_eq!(
        conn.next().await.request,
        ClientRequest::Resume { sessions: vec![ResumePoint { session_id: session, after_seq: 2 }] },
        "chunks and the message past the gap do not move the point"
    );
    // The resume brings 3 and 4 again, then the run's final reply; 4 is not delivered twice.
    conn.send(ServerFrame::Chunk {
        session_id: session,
        run_id: "r".into(),
        delta: "Hello wor".into(),
        offset: 0,
    });
    conn.send(stored(3, None));
    conn.send(stored(4, None));
    conn.send(ServerFrame::Resumed { id: None, session_id: session, last_seq: 4 });
    conn.send(stored(5, Some("r")));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let seqs: Vec<u64> = recorder.messages.lock().unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 4, 3, 5]);
    assert_eq!(*recorder.texts.lock().unwrap(), ["Hel", "Hello", "Hello wor"]);
    conn.close(1012);
    let mut conn = conns.recv().await.unwrap();
    conn.auth().await;
    conn.auth_ok(agent);
    assert_eq!(
        conn.next().await.request,
        ClientRequest::Resume { sessions: vec![ResumePoint { session_id: session, after_seq: 5 }] }
    );
    assert!(recorder.states.lock().unwrap().contains(&ConnectionState::Connected));
}

#[tokio::test(start_paused = true)]
async fn a_token_near_expiry_is_refreshed_and_extends_the_open_socket() {
    let (relay, mut conns, client, recorder) = setup();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let now = i64::try_from(now).unwrap();
    let mut conn = connect_with_token(&client, &mut conns, now, now + 100).await;
    conn.auth_ok(AgentId::new());
    let connected_at = Instant::now();
    // At 80 % of the lifetime the client refreshes and sends `auth` on the same socket.
    let extend = conn.next().await;
    let waited = Instant::now() - connected_at;
    assert!((Duration::from_secs(75)..=Duration::from_secs(81)).contains(&waited), "{waited:?}");
    assert_eq!(extend.request, ClientRequest::Auth { token: "access-1".into() });
    assert_eq!(relay.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(recorder.tokens.lock().unwrap().last().unwrap().access, "access-1");
    assert!(conns.try_recv().is_err(), "no reconnect: the socket was extended");
    assert_eq!(client.state(), ConnectionState::Connected);
}

#[tokio::test(start_paused = true)]
async fn connect_and_wait_returns_the_agents_or_why_it_cannot_connect() {
    let (relay, mut conns, client, _) = setup();
    let agent = AgentId::new();
    let connecting = {
        let client = Arc::new(client);
        let waiting = client.clone();
        (
            tokio::spawn(async move { waiting.connect_and_wait(Duration::from_secs(30)).await }),
            client,
        )
    };
    let mut conn = conns.recv().await.unwrap();
    conn.auth().await;
    assert!(!connecting.0.is_finished(), "not before auth_ok");
    conn.auth_ok(agent);
    let agents = connecting.0.await.unwrap().unwrap();
    assert_eq!(agents.iter().map(|a| a.agent_id).collect::<Vec<_>>(), [agent]);
    assert_eq!(connecting.1.agents(), agents, "agents() is filled when it returns");
    drop(conn);

    // Refused for good (the refresh is refused too): the reason, not a timeout.
    let (relay2, mut conns, client, _) = setup();
    relay2.refuse_refresh.store(true, Ordering::SeqCst);
    let client = Arc::new(client);
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.connect_and_wait(Duration::from_secs(30)).await })
    };
    let conn = conns.recv().await.unwrap();
    conn.close(4001);
    let refused = waiting.await.unwrap().unwrap_err();
    assert!(matches!(refused, ClientError::Unauthenticated(_)), "{refused:?}");

    // The relay cannot be reached: a timeout, and the connection keeps trying.
    drop(relay);
    let (unreachable, _conns, client, _) = setup();
    unreachable.refuse.store(usize::MAX, Ordering::SeqCst);
    let late = client.connect_and_wait(Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(late, ClientError::Timeout), "{late:?}");
    assert_ne!(client.state(), ConnectionState::Connected);
    let opens = unreachable.opens.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(unreachable.opens.lock().unwrap().len() > opens, "still trying");
    // Without connect there is nothing to wait for.
    client.disconnect();
    let idle = client.wait_for_agents(Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(idle, ClientError::NotConnected(_)), "{idle:?}");
}

#[tokio::test(start_paused = true)]
async fn figures_at_the_edge_of_their_type_never_stop_the_connection() {
    // A heartbeat interval of u64::MAX seconds and a token whose `exp` is i64::MAX: the
    // deadlines computed from them saturate instead of overflowing (which panicked the
    // connection task; an app built with `panic = "abort"` died).
    let (_, mut conns, client, _) = setup();
    let mut conn = connect_with_token(&client, &mut conns, i64::MIN, i64::MAX).await;
    conn.send(ServerFrame::AuthOk {
        user_id: UserId::new(),
        organization_id: OrgId::new(),
        heartbeat_interval_seconds: u64::MAX,
        assignments: vec![],
    });
    state_becomes(&client, |s| *s == ConnectionState::Connected).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let probe = format!("{}1", mc_core::protocol::SERVER_HEARTBEAT_PREFIX);
    conn.send(ServerFrame::Heartbeat { id: Some(probe.clone()) });
    let answer = conn.next().await;
    assert_eq!(
        (answer.id.as_deref(), answer.request),
        (Some(probe.as_str()), ClientRequest::Heartbeat)
    );
    assert_eq!(client.state(), ConnectionState::Connected);
}

#[tokio::test(start_paused = true)]
async fn a_message_refused_as_agent_unavailable_waits_for_the_agent_then_fails_in_time() {
    let (_, mut conns, client, _) = setup();
    let client = Arc::new(client);
    let agent = AgentId::new();
    let session = SessionId::new();
    client.connect().unwrap();
    let mut conn = conns.recv().await.unwrap();
    conn.auth().await;
    conn.auth_ok(agent);
    let send = {
        let client = client.clone();
        tokio::spawn(async move { client.send_message(agent, Some(session), "hello").await })
    };
    let chat_id = |frame: ClientFrame| match frame.request {
        ClientRequest::Chat { client_id, .. } => client_id,
        other => panic!("expected chat, got {other:?}"),
    };
    let unavailable = |id: uuid::Uuid| ServerFrame::Error {
        id: Some(id.to_string()),
        code: mc_core::protocol::ErrorCode::AgentUnavailable,
        message: "the agent's gateway is not connected".into(),
        retry_after_ms: None,
    };
    let first = chat_id(conn.next().await);
    conn.send(unavailable(first));
    // Its gateway comes back: sent again at once, same id; acked.
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.send(ServerFrame::System {
        event: "agent_online".into(),
        agent_id: Some(agent),
        session_id: None,
    });
    let before = Instant::now();
    assert_eq!(chat_id(conn.next().await), first);
    assert!(Instant::now() - before < Duration::from_millis(100), "on agent_online, not the timer");
    conn.send(ServerFrame::Ack {
        client_id: first,
        session_id: session,
        message_id: MessageId::new(),
        seq: 1,
    });
    assert_eq!(send.await.unwrap().unwrap().seq, 1);

    // An agent that stays away: retried every 2 s, then the send fails after 30 s.
    let started = Instant::now();
    let send = {
        let client = client.clone();
        tokio::spawn(async move { client.send_message(agent, Some(session), "anyone?").await })
    };
    let mut attempts = 0;
    let failed = loop {
        tokio::select! {
            frame = conn.next() => {
                let id = chat_id(frame);
                attempts += 1;
                conn.send(unavailable(id));
            }
            result = async { loop { if send.is_finished() { break; } tokio::time::sleep(Duration::from_millis(50)).await; } } => {
                let () = result;
                break send.await.unwrap();
            }
        }
    };
    let waited = Instant::now() - started;
    assert!(matches!(
        failed,
        Err(ClientError::Relay { code: mc_core::protocol::ErrorCode::AgentUnavailable, .. })
    ));
    assert!((Duration::from_secs(30)..Duration::from_secs(33)).contains(&waited), "{waited:?}");
    assert!((14..=17).contains(&attempts), "{attempts} attempts, one per 2 s");
    assert_eq!(client.outbox_len(), 0);
}
