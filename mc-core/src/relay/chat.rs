//! A user's `chat`, from the frame to its `ack`: check it, find its session, store it, show it
//! to the user's other devices, ack it, hand it to its gateway's holder. What happens next is
//! in `replies`.
//!
//! The `ack` promises delivery: the message is stored, and its gateway's holder has it in its
//! outbox (ARCHITECTURE.md, "Delivery"). If no instance holds the gateway when the message
//! is handed over (it went away after the check), the ack is followed at once by the failure
//! notice, so the user is never left with silence.

use std::sync::Arc;

use uuid::Uuid;

use super::connections::{SessionMeta, UserConnection};
use super::engine::{Engine, Failure};
use crate::bus::{BusTopic, ChatSend, GatewayCommand};
use crate::events::RelayEvent;
use crate::ids::{AgentId, MessageId, SessionId};
use crate::model::{
    ActivityEvent, AgentStatus, ChatSession, DeliveryState, Message, MessageRole, NewMessage,
    SessionStatus,
};
use crate::protocol::{ChatMessage, ErrorCode, ServerFrame};
use crate::store::{Appended, AssignedAgent, ConflictKind, StoreError};

/// A decoded `chat` request.
#[derive(Debug)]
pub(crate) struct ChatRequest {
    pub(crate) client_id: Uuid,
    pub(crate) agent_id: AgentId,
    pub(crate) content: String,
    pub(crate) session_id: Option<SessionId>,
}

impl Engine {
    /// Serves a `chat`: every step, in order.
    pub(crate) async fn chat(
        &self,
        conn: &UserConnection,
        chat: ChatRequest,
    ) -> Result<(), Failure> {
        self.check_content(&chat.content)?;
        let agent = self.chat_agent(conn, chat.agent_id).await?;
        self.check_reachable(agent.agent.gateway_id).await?;
        let (session_id, meta) = self.chat_session(conn, &chat, &agent).await?;
        let (message, fresh) = self.store_user_message(session_id, &chat).await?;
        if fresh {
            self.show_other_devices(conn, &message, chat.agent_id).await;
        }
        let send = Arc::new(ChatSend {
            session_id,
            user_id: conn.principal().user_id,
            agent_id: chat.agent_id,
            session_key: meta.session_key,
            message_id: message.id,
            seq: message.seq,
            client_id: chat.client_id,
            content: message.content.clone(),
        });
        // The ack is queued before the hand-off, so no chunk of the run can overtake it; a
        // hand-off that finds no holder is reported right after it.
        conn.reply(&ServerFrame::Ack {
            client_id: chat.client_id,
            session_id,
            message_id: message.id,
            seq: message.seq,
        });
        let handed = if fresh || needs_handing_again(&message) {
            self.hand_over(meta.gateway_id, send.clone(), !fresh).await
        } else {
            true
        };
        if !handed {
            let text = "The agent's gateway disconnected before the message could be delivered; send it again later.";
            self.fail_delivery(&send, ErrorCode::GatewayError, text).await;
        }
        Ok(())
    }

    /// Step 1: the content is not empty and not too long.
    fn check_content(&self, content: &str) -> Result<(), Failure> {
        let max = self.limits.max_content_bytes();
        if content.len() > max {
            let message = format!("content is {} bytes; at most {max} are accepted", content.len());
            return Err(Failure::new(ErrorCode::PayloadTooLarge, message));
        }
        if content.trim().is_empty() {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                "chat payload.content: must not be empty",
            ));
        }
        Ok(())
    }

    /// Step 2: the agent is assigned to the user and still reported by its gateway.
    async fn chat_agent(
        &self,
        conn: &UserConnection,
        agent: AgentId,
    ) -> Result<AssignedAgent, Failure> {
        let assigned = self.assigned_agent(conn, agent).await?;
        if assigned.agent.status == AgentStatus::Gone {
            return Err(Failure::new(
                ErrorCode::AgentUnavailable,
                "the agent is no longer reported by its gateway; nothing was stored",
            ));
        }
        Ok(assigned)
    }

    /// Step 3: some instance holds the gateway (linked, or away within its grace period);
    /// otherwise nothing is stored.
    async fn check_reachable(&self, gateway: crate::ids::GatewayId) -> Result<(), Failure> {
        let held = self.gateways.holds(gateway)
            || (!self.single_instance
                && self.bus.has_subscribers(BusTopic::Gateway(gateway)).await.unwrap_or(false));
        if held {
            Ok(())
        } else {
            Err(Failure::new(
                ErrorCode::AgentUnavailable,
                "the agent's gateway is not connected; nothing was stored, send it again later",
            ))
        }
    }

    /// Step 4: the session named, or the session this first message starts (one per client
    /// id, however many sockets send it at once).
    async fn chat_session(
        &self,
        conn: &UserConnection,
        chat: &ChatRequest,
        agent: &AssignedAgent,
    ) -> Result<(SessionId, SessionMeta), Failure> {
        let (id, meta) = match chat.session_id {
            Some(id) => (id, self.session_meta(conn, id).await?),
            None => self.first_session(conn, chat.client_id, agent).await?,
        };
        if meta.agent_id != chat.agent_id {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!("session {id} is with another agent"),
            ));
        }
        if meta.status == SessionStatus::Closed {
            return Err(Failure::new(
                ErrorCode::SessionNotFound,
                format!("session {id} is closed"),
            ));
        }
        Ok((id, meta))
    }

    async fn first_session(
        &self,
        conn: &UserConnection,
        client_id: Uuid,
        agent: &AssignedAgent,
    ) -> Result<(SessionId, SessionMeta), Failure> {
        let user = conn.principal().user_id;
        let store = self.services.store();
        let now = self.now();
        let id = SessionId::new();
        let session = ChatSession {
            id,
            user_id: user,
            agent_id: agent.agent.id,
            gateway_id: agent.agent.gateway_id,
            session_key: ChatSession::session_key_for(&agent.agent.agent_key, id),
            status: SessionStatus::Active,
            last_seq: 0,
            last_message_at: None,
            created_at: now,
            updated_at: now,
            origin_client_msg_id: Some(client_id),
        };
        let session = match store.create_session(&session).await {
            Ok(()) => {
                self.session_created(conn, &session).await;
                session
            }
            // A retry, or the same message on another socket a moment ago: its session.
            Err(StoreError::Conflict(ConflictKind::SessionOrigin)) => store
                .find_session_by_origin(user, client_id)
                .await?
                .ok_or_else(|| Failure::new(ErrorCode::Internal, "the session vanished; retry"))?,
            Err(err) => return Err(err.into()),
        };
        let meta = SessionMeta {
            agent_id: session.agent_id,
            gateway_id: session.gateway_id,
            session_key: session.session_key,
            status: session.status,
        };
        self.connections.cache_session(user, session.id, meta.clone());
        Ok((session.id, meta))
    }

    async fn session_created(&self, conn: &UserConnection, session: &ChatSession) {
        let org = conn.principal().organization_id;
        let event = ActivityEvent::new(
            org,
            "session.created",
            format!("user:{}", session.user_id),
            "session",
            session.id,
            session.created_at,
        )
        .with_metadata(
            serde_json::json!({ "agent_id": session.agent_id, "gateway_id": session.gateway_id }),
        );
        let services = &self.services;
        if let Err(err) =
            crate::events::record_activity(services.store().as_ref(), services.events(), event)
                .await
        {
            tracing::warn!(error = %err, "cannot record session.created");
        }
        services.events().publish(RelayEvent::SessionCreated {
            organization_id: org,
            session_id: session.id,
            user_id: session.user_id,
            agent_id: session.agent_id,
            gateway_id: session.gateway_id,
        });
    }

    /// Step 5: store the message (group commit); a retried client id finds its first copy.
    async fn store_user_message(
        &self,
        session: SessionId,
        chat: &ChatRequest,
    ) -> Result<(Message, bool), Failure> {
        let message = NewMessage {
            id: MessageId::new(),
            session_id: session,
            role: MessageRole::User,
            content: chat.content.clone(),
            client_msg_id: Some(chat.client_id),
            run_id: None,
            created_at: self.now(),
        };
        Ok(match self.writer.append(message, None).await? {
            Appended::New(m) => (m, true),
            Appended::Existing(m) => (m, false),
        })
    }

    /// Step 6: the user's other sockets see the message too.
    async fn show_other_devices(&self, conn: &UserConnection, message: &Message, agent: AgentId) {
        let frame = ServerFrame::Chat(ChatMessage::new(message, agent));
        self.send_to_user(conn.principal().user_id, &frame, None, Some(conn.id())).await;
    }

    /// Step 7: hand the message to the instance holding its gateway; `false` if none does.
    /// `retry` lets a message that failed before be accepted again.
    async fn hand_over(
        &self,
        gateway: crate::ids::GatewayId,
        send: Arc<ChatSend>,
        retry: bool,
    ) -> bool {
        if self.single_instance {
            // The fast path: into this instance's outbox, no copy of the message.
            if !self.gateways.holds(gateway) {
                return false;
            }
            self.accept_delivery(gateway, send, retry);
            return true;
        }
        let command = GatewayCommand::ChatSend { send: (*send).clone(), retry };
        if self.to_gateway(gateway, command).await > 0 {
            return true;
        }
        // Linked here a moment ago, before its subscription was in place.
        if self.gateways.holds(gateway) {
            self.accept_delivery(gateway, send, retry);
            return true;
        }
        false
    }
}

/// Whether a retried message must be handed to its gateway again: it never got there, or
/// the user was told it failed.
fn needs_handing_again(message: &Message) -> bool {
    matches!(
        message.delivery,
        Some(DeliveryState::Stored | DeliveryState::Sent | DeliveryState::Failed)
    )
}
