//! The gateway side: commands for links held here, agent runs, and the events they stream.
//!
//! A run starts when `chat.send` is handed to the link and ends at its **first** terminal
//! event (`final`, `error`, `aborted`); later terminal events of the same run are ignored.
//! Deltas are forwarded as `chunk`s and never stored; the final reply is stored, then sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Router;
use super::hub::gateway_handler;
use super::user::store_system;
use crate::bus::{BusMessage, BusTopic, ChatSend, ConnectionId, GatewayCommand};
use crate::ids::{AgentId, GatewayId, MessageId, SessionId, UserId};
use crate::link::{GatewayLink, LinkError};
use crate::model::{MessageRole, NewMessage};
use crate::protocol::{ChatEvent, ChatMessage, ChatState, ErrorCode, ServerFrame};

/// A run in progress.
#[derive(Debug, Clone)]
struct Run {
    gateway_id: GatewayId,
    session_id: SessionId,
    user_id: UserId,
    agent_id: AgentId,
    client_id: uuid::Uuid,
    text: String,
    started: Instant,
    last_event: Instant,
    answered: bool,
}

#[derive(Default)]
pub(crate) struct Runs {
    by_id: Mutex<HashMap<String, Run>>,
}

impl Runs {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Run>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn run_id(message: MessageId) -> String {
    message.to_string()
}

/// Bytes of `a` and `b` that are equal from the start, on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let n = a.len().min(b.len());
    // Fast path: one is a prefix of the other (a stream that only grows).
    if a.as_bytes()[..n] == b.as_bytes()[..n] {
        return n;
    }
    let mut i = a.as_bytes().iter().zip(b.as_bytes()).position(|(x, y)| x != y).unwrap_or(n);
    while !a.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The chunk that turns `old` into `new`: the offset of the first changed byte and the text
/// from there; `None` when nothing changed.
fn chunk_between(old: &str, new: &str) -> Option<(usize, String)> {
    let offset = common_prefix(old, new);
    (offset != old.len() || offset != new.len()).then(|| (offset, new[offset..].to_owned()))
}

pub(crate) fn on_command(router: &Router, gateway: GatewayId, command: GatewayCommand) {
    match command {
        GatewayCommand::ChatSend(send) => {
            router.inner.runs.lock().insert(
                run_id(send.message_id),
                Run {
                    gateway_id: gateway,
                    session_id: send.session_id,
                    user_id: send.user_id,
                    agent_id: send.agent_id,
                    client_id: send.client_id,
                    text: String::new(),
                    started: Instant::now(),
                    last_event: Instant::now(),
                    answered: false,
                },
            );
            let router = router.clone();
            tokio::spawn(async move { chat_send(&router, gateway, send).await });
        }
        GatewayCommand::Abort { session_key, run_id, user_id, connection, request_id, .. } => {
            let router = router.clone();
            tokio::spawn(async move {
                let params = match &run_id {
                    Some(run) => json!({ "sessionKey": session_key, "runId": run }),
                    None => json!({ "sessionKey": session_key }),
                };
                if let Err(err) = call(&router, gateway, "chat.abort", params).await {
                    let frame = ServerFrame::Error {
                        id: request_id,
                        code: link_error_code(&err),
                        message: format!("abort failed: {err}"),
                        retry_after_ms: None,
                    };
                    let msg = BusMessage::ToUser {
                        frame: frame.to_json().into(),
                        only: Some(connection),
                        except: None,
                    };
                    router.publish_user(user_id, msg).await;
                }
            });
        }
        GatewayCommand::CatchUp { session_id, user_id, connection } => {
            let running = router
                .inner
                .runs
                .lock()
                .iter()
                .find(|(_, r)| {
                    r.session_id == session_id && r.gateway_id == gateway && !r.text.is_empty()
                })
                .map(|(id, r)| (id.clone(), r.text.clone()));
            if let Some((run, text)) = running {
                let router = router.clone();
                tokio::spawn(async move {
                    catch_up(&router, user_id, connection, session_id, run, text).await
                });
            }
        }
        GatewayCommand::Close => {
            if let Some(link) = router.inner.hub.gateway_link(gateway) {
                link.close(super::close_code::UNAUTHORIZED);
            }
        }
    }
}

async fn catch_up(
    router: &Router,
    user: UserId,
    connection: ConnectionId,
    session_id: SessionId,
    run_id: String,
    text: String,
) {
    let frame = ServerFrame::Chunk { session_id, run_id, delta: text, offset: 0 };
    router
        .publish_user(
            user,
            BusMessage::ToUser {
                frame: frame.to_json().into(),
                only: Some(connection),
                except: None,
            },
        )
        .await;
}

fn link_error_code(err: &LinkError) -> ErrorCode {
    match err {
        LinkError::Timeout => ErrorCode::GatewayTimeout,
        _ => ErrorCode::GatewayError,
    }
}

/// Calls the gateway, retrying while it says it is starting (`UNAVAILABLE` + `retryAfterMs`),
/// all within the gateway timeout.
async fn call(
    router: &Router,
    gateway: GatewayId,
    method: &str,
    params: Value,
) -> Result<Value, LinkError> {
    let deadline = Instant::now() + router.inner.limits.gateway_timeout;
    loop {
        let link = router.inner.hub.gateway_link(gateway).ok_or(LinkError::Closed)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LinkError::Timeout);
        }
        match link.call(method, params.clone(), left).await {
            Err(LinkError::Remote(e)) if e.code == "UNAVAILABLE" && e.retryable == Some(true) => {
                let wait = Duration::from_millis(e.retry_after_ms.unwrap_or(250).clamp(50, 5_000));
                if Instant::now() + wait >= deadline {
                    return Err(LinkError::Remote(e));
                }
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

async fn chat_send(router: &Router, gateway: GatewayId, send: ChatSend) {
    let run = run_id(send.message_id);
    let params = json!({
        "sessionKey": send.session_key,
        "message": send.content,
        "idempotencyKey": run,
    });
    match call(router, gateway, "chat.send", params).await {
        Ok(_) => {
            if let Some(r) = router.inner.runs.lock().get_mut(&run) {
                r.answered = true;
            }
        }
        Err(err) => {
            // Events already flowing mean the gateway is working: a late answer is no failure.
            let failed = {
                let mut runs = router.inner.runs.lock();
                let flowing = runs.get(&run).is_some_and(|r| !r.text.is_empty());
                if flowing && matches!(err, LinkError::Timeout) { None } else { runs.remove(&run) }
            };
            if let Some(r) = failed {
                let text = match &err {
                    LinkError::Timeout => "The agent did not answer in time.".to_owned(),
                    LinkError::Closed => "The agent's gateway disconnected.".to_owned(),
                    LinkError::Remote(e) => {
                        format!("The agent's gateway refused the message: {}", e.message)
                    }
                };
                finish_with_error(router, &r, &run, link_error_code(&err), &text).await;
            }
        }
    }
}

async fn store_reply(router: &Router, run: &Run, run_id: &str, reply: NewMessage) {
    match router.append(reply).await {
        Ok(stored) => {
            let frame = ServerFrame::Chat(ChatMessage::new(stored.message(), run.agent_id));
            router.publish_frame(run.user_id, &frame).await;
            metrics::histogram!("mc_round_trip_seconds")
                .record(run.started.elapsed().as_secs_f64());
        }
        Err(err) => {
            tracing::error!(error = %err, run = %run_id, "cannot store an agent reply");
            let frame = ServerFrame::Error {
                id: Some(run.client_id.to_string()),
                code: ErrorCode::Internal,
                message: "the agent's reply could not be stored; ask again".into(),
                retry_after_ms: None,
            };
            router.publish_frame(run.user_id, &frame).await;
        }
    }
}

/// Ends a run with an error: a stored system message and an `error` frame for the user.
async fn finish_with_error(router: &Router, run: &Run, run_id: &str, code: ErrorCode, text: &str) {
    store_system(router, run.user_id, run.agent_id, run.session_id, Some(run_id.to_owned()), text)
        .await;
    let frame = ServerFrame::Error {
        id: Some(run.client_id.to_string()),
        code,
        message: text.to_owned(),
        retry_after_ms: None,
    };
    router.publish_frame(run.user_id, &frame).await;
}

pub(crate) async fn gateway_event(
    router: &Router,
    gateway: GatewayId,
    event: &str,
    payload: &Value,
) {
    if event != "chat" {
        return;
    }
    let Some(ev) = ChatEvent::parse(payload) else { return };
    match ev.state {
        ChatState::Delta => {
            let chunk = {
                let mut runs = router.inner.runs.lock();
                let Some(run) = runs.get_mut(&ev.run_id).filter(|r| r.gateway_id == gateway) else {
                    return;
                };
                run.last_event = Instant::now();
                let (offset, delta) = match (ev.text, &ev.delta_text) {
                    // The cumulative text is the truth; when it only grows this is a memcmp.
                    (Some(full), _) => {
                        let Some((offset, delta)) = chunk_between(&run.text, &full) else { return };
                        run.text = full;
                        (offset, delta)
                    }
                    (None, Some(delta)) if ev.replace => {
                        let Some((offset, changed)) = chunk_between(&run.text, delta) else {
                            return;
                        };
                        run.text = delta.clone();
                        (offset, changed)
                    }
                    (None, Some(delta)) if !delta.is_empty() => {
                        let offset = run.text.len();
                        run.text.push_str(delta);
                        (offset, delta.clone())
                    }
                    _ => return,
                };
                (
                    run.user_id,
                    ServerFrame::Chunk {
                        session_id: run.session_id,
                        run_id: ev.run_id.clone(),
                        delta,
                        offset,
                    },
                )
            };
            router.publish_frame(chunk.0, &chunk.1).await;
        }
        ChatState::Final | ChatState::Error | ChatState::Aborted => {
            let Some(run) = ({
                let mut runs = router.inner.runs.lock();
                match runs.get(&ev.run_id) {
                    Some(r) if r.gateway_id == gateway => runs.remove(&ev.run_id),
                    _ => None,
                }
            }) else {
                return;
            };
            if ev.state == ChatState::Final {
                let text = ev.text.clone().unwrap_or_else(|| run.text.clone());
                let reply = NewMessage {
                    id: MessageId::new(),
                    session_id: run.session_id,
                    role: MessageRole::Agent,
                    content: text,
                    client_msg_id: None,
                    run_id: Some(ev.run_id.clone()),
                    created_at: router.relay().clock().now(),
                };
                // Stored off the gateway's reading task, so replies of many runs share a
                // commit; nothing of this run follows its first terminal event.
                let router = router.clone();
                let run_id = ev.run_id.clone();
                tokio::spawn(async move { store_reply(&router, &run, &run_id, reply).await });
            } else {
                let why = ev.error_message.clone().unwrap_or_default();
                let text = match (ev.state, why.is_empty()) {
                    (ChatState::Aborted, true) => "The agent's run was stopped.".to_owned(),
                    (ChatState::Aborted, false) => format!("The agent's run was stopped: {why}"),
                    (_, true) => "The agent's run failed.".to_owned(),
                    (_, false) => format!("The agent's run failed: {why}"),
                };
                finish_with_error(router, &run, &ev.run_id, ErrorCode::GatewayError, &text).await;
            }
        }
        ChatState::Status | ChatState::Other => {
            if let Some(run) = router.inner.runs.lock().get_mut(&ev.run_id) {
                run.last_event = Instant::now();
            }
        }
    }
}

pub(crate) async fn attach_gateway(
    router: &Router,
    gateway: GatewayId,
    link: Arc<dyn GatewayLink>,
) -> crate::Result<u64> {
    let (generation, replaced) = router.inner.hub.put_gateway(gateway, link);
    if let Some(old) = replaced {
        // A reconnect won the race with the old socket's close: the new link takes over its
        // runs (OpenClaw broadcasts run events to every connection).
        old.link.close(super::close_code::UNAUTHORIZED);
    }
    let sub = router
        .inner
        .bus
        .subscribe(BusTopic::Gateway(gateway), gateway_handler(router, gateway))
        .await?;
    router.inner.hub.set_gateway_subscription(gateway, generation, sub);
    router.relay().registry().set_link_status(gateway, true).await?;
    Ok(generation)
}

pub(crate) async fn detach_gateway(router: &Router, gateway: GatewayId, generation: u64) {
    let Some(local) = router.inner.hub.take_gateway(gateway, generation) else { return };
    local.link.close(1000);
    drop(local);
    // Its runs cannot finish: tell their users, store nothing half-done.
    let orphaned: Vec<(String, Run)> = {
        let mut runs = router.inner.runs.lock();
        let ids: Vec<String> = runs
            .iter()
            .filter(|(_, r)| r.gateway_id == gateway)
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter().filter_map(|id| runs.remove(&id).map(|r| (id, r))).collect()
    };
    for (id, run) in orphaned {
        finish_with_error(
            router,
            &run,
            &id,
            ErrorCode::GatewayError,
            "The agent's gateway disconnected during the reply.",
        )
        .await;
    }
    let router = router.clone();
    let grace = router.inner.limits.offline_grace;
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        let back = router.inner.hub.has_gateway(gateway)
            || router.inner.bus.has_subscribers(BusTopic::Gateway(gateway)).await.unwrap_or(false);
        if !back && let Err(err) = router.relay().registry().set_link_status(gateway, false).await {
            tracing::warn!(error = %err, %gateway, "cannot mark the gateway offline");
        }
    });
}

/// Gives up runs that have been silent too long.
pub(crate) fn start_reaper(router: &Router) {
    let weak = router.downgrade();
    let every = (router.inner.limits.run_idle_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    let handle = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            let router = Router::from_inner(inner);
            let idle = router.inner.limits.run_idle_timeout;
            let stale: Vec<(String, Run)> = {
                let mut runs = router.inner.runs.lock();
                let ids: Vec<String> = runs
                    .iter()
                    .filter(|(_, r)| r.last_event.elapsed() > idle)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.into_iter().filter_map(|id| runs.remove(&id).map(|r| (id, r))).collect()
            };
            for (id, run) in stale {
                finish_with_error(
                    &router,
                    &run,
                    &id,
                    ErrorCode::GatewayTimeout,
                    "The agent stopped answering.",
                )
                .await;
            }
        }
    });
    router.own_task(handle);
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn chunks_between_texts() {
        use super::chunk_between;
        assert_eq!(chunk_between("Echo:", "Echo: Hi"), Some((5, " Hi".into())));
        assert_eq!(chunk_between("Echo: Hi", "Echo: Hi"), None);
        assert_eq!(
            chunk_between("Echo: Hx", "Echo: Hi"),
            Some((7, "i".into())),
            "a replace rewrites from the change"
        );
        assert_eq!(chunk_between("abc", "ab"), Some((2, String::new())));
    }

    #[test]
    fn common_prefix_respects_characters() {
        assert_eq!(common_prefix("Echo: Hi", "Echo: Hi there"), 8);
        assert_eq!(common_prefix("abc", "abd"), 2);
        assert_eq!(common_prefix("", "x"), 0);
        assert_eq!(common_prefix("héllo", "hélp"), 4);
        assert_eq!(common_prefix("日本", "日本語"), 6);
    }
}
