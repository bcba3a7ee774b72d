//! The relay's floor: a process that moves exactly the relay's frames and does nothing else.
//!
//! A user's `chat` is decoded with `mc_core`'s own decoder and answered at once with an `ack`;
//! the message goes to the gateway as the relay's `chat.send` request; the gateway's `delta`
//! becomes a `chunk` and its `final` a `chat` frame, all rendered by `mc_core`'s own protocol
//! code, on the same tokio-tungstenite, allocator and runtime as the relay. Nothing is stored
//! and nothing is checked: no sign-in, no assignments, no limits, no outbox, no delivery
//! states. So the same closed loop against it measures what the relay's protocol costs on this
//! machine (four frames each way on each side of a round trip, where NATS's request/reply has
//! two), apart from everything the relay adds to make the round trip durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use mc_core::protocol::{
    ChatMessage, ClientRequest, GatewayToRelay, RelayToGateway, ServerFrame, decode_client_frame,
    decode_gateway_frame,
};
use mc_core::{AgentId, GatewayId, MessageId, MessageRole, OrgId, SessionId, UserId};
use mc_openclaw::chat::ChatSendParams;
use mc_openclaw::method::ChatSend;
use mc_openclaw::{ChatState, Event, Frame, Request, TextUpdate};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::procs::until_stdin_closes;

/// Where a socket's frames go: its own task writes them.
type Outbound = mpsc::UnboundedSender<String>;

/// A run between its `chat.send` and its `final`.
struct Run {
    to: Outbound,
    session_id: SessionId,
    agent_id: AgentId,
    reply_seq: u64,
    offset: usize,
}

/// What the sockets share: the gateway's queue and the runs in flight.
#[derive(Default)]
struct Floor {
    gateway: Mutex<Option<Outbound>>,
    runs: Mutex<HashMap<String, Run>>,
}

/// Serves the floor; prints `READY http://…` (users at `/ws/chat`, the gateway at any other
/// path: the first frame tells them apart).
pub async fn serve() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("READY http://{}", listener.local_addr()?);
    let floor = Arc::new(Floor::default());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(floor.clone(), stream));
        }
    });
    until_stdin_closes().await
}

async fn connection(floor: Arc<Floor>, stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let Some(Ok(Message::Text(first))) = ws.next().await else { return };
    let (to, queue) = mpsc::unbounded_channel();
    if first.contains("relay_token") {
        *floor.gateway.lock().unwrap_or_else(|p| p.into_inner()) = Some(to.clone());
        let ok = RelayToGateway::AuthOk {
            gateway_id: GatewayId::new(),
            heartbeat_interval_seconds: 3600,
        };
        let _ = to.send(ok.to_json());
        serve_socket(ws, queue, |text| on_gateway_frame(&floor, text)).await;
    } else {
        let auth_ok = ServerFrame::AuthOk {
            user_id: UserId::new(),
            organization_id: OrgId::new(),
            heartbeat_interval_seconds: 3600,
            assignments: vec![],
        };
        let _ = to.send(auth_ok.to_json());
        let mut user = User { to, seq: 0, requests: 0 };
        serve_socket(ws, queue, |text| user.on_frame(&floor, text)).await;
    }
}

/// One task per socket, as the relay's: reads frames and writes what is queued (everything
/// queued at once, then one flush).
async fn serve_socket(
    mut ws: WebSocketStream<TcpStream>,
    mut queue: mpsc::UnboundedReceiver<String>,
    mut on_frame: impl FnMut(&str),
) {
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => on_frame(&text),
                Some(Ok(_)) => {}
                _ => return,
            },
            Some(frame) = queue.recv() => {
                if ws.feed(Message::Text(frame.into())).await.is_err() {
                    return;
                }
                while let Ok(more) = queue.try_recv() {
                    if ws.feed(Message::Text(more.into())).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A user's socket.
struct User {
    to: Outbound,
    seq: u64,
    requests: u64,
}

impl User {
    fn on_frame(&mut self, floor: &Floor, text: &str) {
        let Ok(frame) = decode_client_frame(text) else { return };
        let ClientRequest::Chat { client_id, agent_id, content, session_id } = frame.request else {
            return;
        };
        let session_id = session_id.unwrap_or_else(SessionId::new);
        let message_id = MessageId::new();
        self.seq += 1;
        let ack = ServerFrame::Ack { client_id, session_id, message_id, seq: self.seq };
        let _ = self.to.send(ack.to_json());
        self.seq += 1;
        let run = Run { to: self.to.clone(), session_id, agent_id, reply_seq: self.seq, offset: 0 };
        let run_id = message_id.to_string();
        self.requests += 1;
        let params = ChatSendParams {
            session_key: session_id.to_string(),
            message: content,
            idempotency_key: run_id.clone(),
            ..Default::default()
        };
        let Ok(request) = Request::of::<ChatSend>(self.requests.to_string(), &params) else {
            return;
        };
        floor.runs.lock().unwrap_or_else(|p| p.into_inner()).insert(run_id, run);
        if let Some(gateway) = &*floor.gateway.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = gateway.send(Frame::Request(request).to_json());
        }
    }
}

fn on_gateway_frame(floor: &Floor, text: &str) {
    let Ok(GatewayToRelay::OpenClaw(Frame::Event(event))) = decode_gateway_frame(text) else {
        return;
    };
    let Ok(Event::Chat(chat)) = event.decode() else { return };
    let mut runs = floor.runs.lock().unwrap_or_else(|p| p.into_inner());
    match chat.state {
        ChatState::Delta => {
            let Some(run) = runs.get_mut(&chat.run_id) else { return };
            let delta = match chat.text_update() {
                Some(TextUpdate::Append(delta)) => delta,
                Some(TextUpdate::Whole(all) | TextUpdate::Replace(all)) => {
                    all.get(run.offset.min(all.len())..).unwrap_or_default()
                }
                None => return,
            };
            let offset = run.offset;
            run.offset += delta.len();
            let chunk = ServerFrame::Chunk {
                session_id: run.session_id,
                run_id: chat.run_id.clone(),
                delta: delta.to_owned(),
                offset,
            };
            let _ = run.to.send(chunk.to_json());
        }
        ChatState::Final => {
            let Some(run) = runs.remove(&chat.run_id) else { return };
            let reply = ChatMessage {
                session_id: run.session_id,
                agent_id: run.agent_id,
                role: MessageRole::Agent,
                content: chat.text().unwrap_or_default(),
                seq: run.reply_seq,
                run_id: Some(chat.run_id),
                client_msg_id: None,
                created_at: chrono::Utc::now(),
                id: MessageId::new(),
            };
            let _ = run.to.send(ServerFrame::Chat(reply).to_json());
        }
        _ => {}
    }
}
