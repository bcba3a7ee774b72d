//! Serving a user connection's requests.

use std::sync::Arc;

use uuid::Uuid;

use super::hub::{self, SessionMeta};
use super::{Router, UserConnection};
use crate::bus::{BusMessage, BusTopic, ChatSend, GatewayCommand};
use crate::events::RelayEvent;
use crate::ids::{AgentId, MessageId, SessionId};
use crate::model::{
    ActivityEvent, AgentStatus, ChatSession, Message, MessageRole, NewMessage, SessionStatus,
};
use crate::protocol::{
    ChatMessage, ClientFrame, ClientRequest, ErrorCode, ResumePoint, ServerFrame, SessionInfo,
};
use crate::store::{Appended, Page};

/// A request's failure: the `error` frame to send.
struct Failure {
    code: ErrorCode,
    message: String,
    retry_after_ms: Option<u64>,
}

fn fail(code: ErrorCode, message: impl Into<String>) -> Failure {
    Failure { code, message: message.into(), retry_after_ms: None }
}

impl From<crate::Error> for Failure {
    fn from(err: crate::Error) -> Self {
        tracing::warn!(error = %err, "request failed");
        fail(ErrorCode::Internal, "the relay could not complete this request; retry")
    }
}

impl From<crate::StoreError> for Failure {
    fn from(err: crate::StoreError) -> Self {
        crate::Error::from(err).into()
    }
}

pub(super) async fn handle(router: &Router, conn: &Arc<UserConnection>, frame: ClientFrame) {
    let ClientFrame { id, request } = frame;
    let result = match request {
        ClientRequest::Auth { .. } => Err(fail(ErrorCode::BadRequest, "already authenticated")),
        ClientRequest::Chat { client_id, agent_id, content, session_id } => {
            chat(router, conn, client_id, agent_id, content, session_id).await
        }
        ClientRequest::History { session_id, before_seq, limit } => {
            history(router, conn, id.clone(), session_id, before_seq, limit).await
        }
        ClientRequest::Resume { sessions } => {
            // A resume may send more frames than the queue holds: it runs beside the socket's
            // loop, which keeps writing them out.
            let (router, conn, id) = (router.clone(), conn.clone(), id.clone());
            tokio::spawn(async move {
                if let Err(f) = resume(&router, &conn, id.clone(), sessions).await {
                    let frame = ServerFrame::Error {
                        id,
                        code: f.code,
                        message: f.message,
                        retry_after_ms: None,
                    };
                    conn.send_waiting(&frame).await;
                }
            });
            Ok(())
        }
        ClientRequest::Sessions => sessions(router, conn, id.clone()).await,
        ClientRequest::Abort { session_id, run_id } => {
            abort(router, conn, id.clone(), session_id, run_id).await
        }
        ClientRequest::Heartbeat => {
            conn.send_frame(&ServerFrame::Heartbeat { id: id.clone() });
            Ok(())
        }
        ClientRequest::Subscribe { topics } | ClientRequest::Unsubscribe { topics }
            if !conn.principal.is_admin() =>
        {
            let _ = topics;
            Err(fail(ErrorCode::Forbidden, "subscribing to events needs the admin role"))
        }
        ClientRequest::Subscribe { topics } => {
            let bits = topics
                .iter()
                .fold(conn.topics.load(std::sync::atomic::Ordering::Relaxed), |b, t| b | t.bit());
            hub::Hub::set_topics(router, conn, bits).await;
            Ok(())
        }
        ClientRequest::Unsubscribe { topics } => {
            let bits = topics
                .iter()
                .fold(conn.topics.load(std::sync::atomic::Ordering::Relaxed), |b, t| b & !t.bit());
            hub::Hub::set_topics(router, conn, bits).await;
            Ok(())
        }
    };
    if let Err(f) = result {
        conn.send_frame(&ServerFrame::Error {
            id,
            code: f.code,
            message: f.message,
            retry_after_ms: f.retry_after_ms,
        });
    }
}

/// The user's session, from the cache or the store; `SESSION_NOT_FOUND` if it is not theirs.
async fn session_meta(
    router: &Router,
    conn: &UserConnection,
    session: SessionId,
) -> Result<SessionMeta, Failure> {
    let user = conn.principal.user_id;
    if let Some(meta) = router.inner.hub.cached_session(user, session) {
        return Ok(meta);
    }
    let stored = router.relay().store().get_session(session).await?;
    let Some(stored) = stored.filter(|s| s.user_id == user) else {
        return Err(fail(ErrorCode::SessionNotFound, format!("no session {session} of yours")));
    };
    let meta = SessionMeta {
        agent_id: stored.agent_id,
        gateway_id: stored.gateway_id,
        session_key: stored.session_key,
        status: stored.status,
    };
    router.inner.hub.cache_session(user, session, meta.clone());
    Ok(meta)
}

async fn assignment(
    router: &Router,
    conn: &UserConnection,
    agent: AgentId,
) -> Result<crate::store::AssignedAgent, Failure> {
    let user = conn.principal.user_id;
    let assignments = match router.inner.hub.cached_assignments(user) {
        Some(cached) => cached,
        None => {
            let loaded = hub::load_assignments(router, user).await?;
            router.inner.hub.cache_assignments(user, loaded.clone());
            loaded
        }
    };
    assignments.get(&agent).cloned().ok_or_else(|| {
        fail(ErrorCode::NotAssigned, format!("agent {agent} is not assigned to you"))
    })
}

async fn chat(
    router: &Router,
    conn: &Arc<UserConnection>,
    client_id: Uuid,
    agent_id: AgentId,
    content: String,
    session_id: Option<SessionId>,
) -> Result<(), Failure> {
    let limits = &router.inner.limits;
    if content.len() > limits.max_content_bytes {
        return Err(fail(
            ErrorCode::PayloadTooLarge,
            format!(
                "content is {} bytes; at most {} are accepted",
                content.len(),
                limits.max_content_bytes
            ),
        ));
    }
    if content.trim().is_empty() {
        return Err(fail(ErrorCode::BadRequest, "chat payload.content: must not be empty"));
    }
    let user = conn.principal.user_id;
    let store = router.relay().store();
    if let Err(wait) = router.inner.hub.take_token(user, limits.rate_per_sec, limits.rate_burst) {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        return Err(Failure {
            code: ErrorCode::RateLimited,
            message: format!("too many messages; retry in {ms} ms"),
            retry_after_ms: Some(ms),
        });
    }
    let assigned = assignment(router, conn, agent_id).await?;
    if assigned.agent.status == AgentStatus::Gone {
        return Err(fail(
            ErrorCode::AgentUnavailable,
            "the agent is no longer reported by its gateway; nothing was stored",
        ));
    }
    let gateway = assigned.agent.gateway_id;
    let gateway_up = router.inner.hub.has_gateway(gateway)
        || router.inner.bus.has_subscribers(BusTopic::Gateway(gateway)).await.unwrap_or(false);
    if !gateway_up {
        return Err(fail(
            ErrorCode::AgentUnavailable,
            "the agent's gateway is not connected; nothing was stored, send it again later",
        ));
    }

    let now = router.relay().clock().now();
    let (session, meta) = match session_id {
        Some(session) => {
            let meta = session_meta(router, conn, session).await?;
            if meta.agent_id != agent_id {
                return Err(fail(
                    ErrorCode::BadRequest,
                    format!("session {session} is with another agent"),
                ));
            }
            if meta.status == SessionStatus::Closed {
                return Err(fail(
                    ErrorCode::SessionNotFound,
                    format!("session {session} is closed"),
                ));
            }
            (session, meta)
        }
        None => {
            // A retry of a message that started a session finds that session.
            if let Some(existing) = store.find_user_message(user, client_id).await? {
                conn.send_frame(&ServerFrame::Ack {
                    client_id,
                    session_id: existing.session_id,
                    message_id: existing.id,
                    seq: existing.seq,
                });
                return Ok(());
            }
            let id = SessionId::new();
            let session = ChatSession {
                id,
                user_id: user,
                agent_id,
                gateway_id: gateway,
                session_key: ChatSession::session_key_for(&assigned.agent.agent_key, id),
                status: SessionStatus::Active,
                last_seq: 0,
                last_message_at: None,
                created_at: now,
                updated_at: now,
            };
            store.create_session(&session).await?;
            let meta = SessionMeta {
                agent_id,
                gateway_id: gateway,
                session_key: session.session_key.clone(),
                status: SessionStatus::Active,
            };
            router.inner.hub.cache_session(user, id, meta.clone());
            session_created(router, conn, &session).await;
            (id, meta)
        }
    };

    let new = NewMessage {
        id: MessageId::new(),
        session_id: session,
        role: MessageRole::User,
        content,
        client_msg_id: Some(client_id),
        run_id: None,
        created_at: now,
    };
    let (message, fresh) = match router.append(new).await? {
        Appended::New(m) => (m, true),
        Appended::Existing(m) => (m, false),
    };
    conn.send_frame(&ServerFrame::Ack {
        client_id,
        session_id: session,
        message_id: message.id,
        seq: message.seq,
    });
    if !fresh {
        return Ok(());
    }
    // The user's other devices see the message too.
    let echo = ServerFrame::Chat(ChatMessage::new(&message, agent_id)).to_json();
    router
        .publish_user(
            user,
            BusMessage::ToUser { frame: echo.into(), only: None, except: Some(conn.id) },
        )
        .await;

    let command = GatewayCommand::ChatSend(ChatSend {
        session_id: session,
        user_id: user,
        agent_id,
        session_key: meta.session_key,
        message_id: message.id,
        client_id,
        content: message.content.clone(),
    });
    let delivered = hub::to_gateway(router, gateway, command).await.unwrap_or(0);
    if delivered == 0 {
        // The gateway went away between the check and the hand-off.
        let text = "The agent's gateway disconnected before the message could be delivered; send it again later.";
        store_system(router, user, agent_id, session, None, text).await;
        return Err(fail(ErrorCode::AgentUnavailable, text));
    }
    Ok(())
}

async fn session_created(router: &Router, conn: &UserConnection, session: &ChatSession) {
    let org = conn.principal.organization_id;
    let actor = format!("user:{}", session.user_id);
    let event = ActivityEvent::new(
        org,
        "session.created",
        actor,
        "session",
        session.id,
        session.created_at,
    )
    .with_metadata(
        serde_json::json!({ "agent_id": session.agent_id, "gateway_id": session.gateway_id }),
    );
    let relay = router.relay();
    if let Err(err) =
        crate::events::record_activity(relay.store().as_ref(), relay.events(), event).await
    {
        tracing::warn!(error = %err, "cannot record session.created");
    }
    relay.events().publish(RelayEvent::SessionCreated {
        organization_id: org,
        session_id: session.id,
        user_id: session.user_id,
        agent_id: session.agent_id,
        gateway_id: session.gateway_id,
    });
}

/// Stores a system message in a session and sends it to the user's connections.
pub(crate) async fn store_system(
    router: &Router,
    user: crate::ids::UserId,
    agent: AgentId,
    session: SessionId,
    run_id: Option<String>,
    text: &str,
) -> Option<Message> {
    let message = NewMessage {
        id: MessageId::new(),
        session_id: session,
        role: MessageRole::System,
        content: text.to_owned(),
        client_msg_id: None,
        run_id,
        created_at: router.relay().clock().now(),
    };
    match router.append(message).await {
        Ok(stored) => {
            let stored = stored.into_message();
            router.publish_frame(user, &ServerFrame::Chat(ChatMessage::new(&stored, agent))).await;
            Some(stored)
        }
        Err(err) => {
            tracing::warn!(error = %err, %session, "cannot store a system message");
            None
        }
    }
}

async fn history(
    router: &Router,
    conn: &UserConnection,
    id: Option<String>,
    session: SessionId,
    before_seq: Option<u64>,
    limit: u32,
) -> Result<(), Failure> {
    let meta = session_meta(router, conn, session).await?;
    let page = router.relay().store().list_messages(session, before_seq, limit).await?;
    let messages = page.messages.iter().map(|m| ChatMessage::new(m, meta.agent_id)).collect();
    conn.send_frame(&ServerFrame::History {
        id,
        session_id: session,
        messages,
        has_more: page.has_more,
    });
    Ok(())
}

async fn resume(
    router: &Router,
    conn: &UserConnection,
    id: Option<String>,
    points: Vec<ResumePoint>,
) -> Result<(), Failure> {
    // Check every session first, so a bad one sends nothing.
    let mut metas = Vec::with_capacity(points.len());
    for point in &points {
        metas.push(session_meta(router, conn, point.session_id).await?);
    }
    let store = router.relay().store();
    for (point, meta) in points.iter().zip(metas) {
        let mut after = point.after_seq;
        loop {
            let batch =
                store.messages_after(point.session_id, after, crate::store::MAX_PAGE_LIMIT).await?;
            let full = batch.len() == crate::store::MAX_PAGE_LIMIT as usize;
            for message in &batch {
                if !conn
                    .send_waiting(&ServerFrame::Chat(ChatMessage::new(message, meta.agent_id)))
                    .await
                {
                    return Ok(());
                }
                after = message.seq;
            }
            if !full {
                break;
            }
        }
        let last_seq = store.get_session(point.session_id).await?.map_or(after, |s| s.last_seq);
        conn.send_frame(&ServerFrame::Resumed {
            id: id.clone(),
            session_id: point.session_id,
            last_seq,
        });
        let catch_up = GatewayCommand::CatchUp {
            session_id: point.session_id,
            user_id: conn.principal.user_id,
            connection: conn.id,
        };
        let _ = hub::to_gateway(router, meta.gateway_id, catch_up).await;
    }
    Ok(())
}

async fn sessions(
    router: &Router,
    conn: &UserConnection,
    id: Option<String>,
) -> Result<(), Failure> {
    let page =
        router.relay().store().list_user_sessions(conn.principal.user_id, Page::first(200)).await?;
    let sessions = page
        .items
        .into_iter()
        .map(|s| SessionInfo {
            session_id: s.id,
            agent_id: s.agent_id,
            last_seq: s.last_seq,
            last_message_at: s.last_message_at,
            status: s.status,
        })
        .collect();
    conn.send_frame(&ServerFrame::Sessions { id, sessions });
    Ok(())
}

async fn abort(
    router: &Router,
    conn: &UserConnection,
    id: Option<String>,
    session: SessionId,
    run_id: Option<String>,
) -> Result<(), Failure> {
    let meta = session_meta(router, conn, session).await?;
    let command = GatewayCommand::Abort {
        session_id: session,
        session_key: meta.session_key,
        run_id,
        user_id: conn.principal.user_id,
        connection: conn.id,
        request_id: id,
    };
    let delivered = hub::to_gateway(router, meta.gateway_id, command).await.unwrap_or(0);
    if delivered == 0 {
        return Err(fail(ErrorCode::AgentUnavailable, "the agent's gateway is not connected"));
    }
    Ok(())
}
