//! [`Engine`]: one relay's state — its parts, each owning its own — and the few steps every flow
//! shares (publishing to a user, storing a notice, failing a delivery). The flows themselves
//! are `impl Engine` blocks in their own modules: `chat` (a user's message, up to its ack),
//! `reads` (history, sessions, resume), `links` (gateway links coming and going), `replies`
//! (what gateways answer and stream), `control` (the services' events).

use std::sync::{Arc, Weak};

use super::connections::Connections;
use super::gateways::Gateways;
use super::limits::{Limiter, RelayLimits};
use super::outbox::Outbox;
use super::tasks::Tasks;
use super::writer::MessageWriter;
use crate::Services;
use crate::bus::{Bus, BusMessage, BusTopic, ChatSend, ConnectionId, GatewayCommand};
use crate::ids::{AgentId, MessageId, SessionId, UserId};
use crate::model::{DeliveryState, Message, MessageRole, NewMessage, Timestamp};
use crate::protocol::{ChatMessage, ErrorCode, ServerFrame};
use crate::store::DeliveryUpdate;

/// A request's failure: the `error` frame to answer with.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) retry_after_ms: Option<u64>,
}

impl Failure {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_ms: None }
    }

    /// The frame answering request `id`.
    pub(crate) fn frame(self, id: Option<String>) -> ServerFrame {
        ServerFrame::Error {
            id,
            code: self.code,
            message: self.message,
            retry_after_ms: self.retry_after_ms,
        }
    }
}

impl From<crate::Error> for Failure {
    fn from(err: crate::Error) -> Self {
        tracing::warn!(error = %err, "request failed");
        Failure::new(ErrorCode::Internal, "the relay could not complete this request; retry")
    }
}

impl From<crate::StoreError> for Failure {
    fn from(err: crate::StoreError) -> Self {
        crate::Error::from(err).into()
    }
}

/// One relay's state.
pub(crate) struct Engine {
    pub(crate) services: Services,
    pub(crate) bus: Arc<dyn Bus>,
    /// The bus serves this instance only: deliveries go straight to their target.
    pub(crate) single_instance: bool,
    pub(crate) limits: RelayLimits,
    pub(crate) connections: Connections,
    pub(crate) limiter: Limiter,
    pub(crate) gateways: Gateways,
    pub(crate) outbox: Outbox,
    pub(crate) writer: MessageWriter,
    pub(crate) tasks: Tasks,
    pub(crate) me: Weak<Engine>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("bus", &self.bus)
            .field("limits", &self.limits)
            .field("connections", &self.connections.count())
            .field("gateways", &self.gateways.linked())
            .field("pending deliveries", &self.outbox.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The time to stamp records with.
    pub(crate) fn now(&self) -> Timestamp {
        self.services.clock().now()
    }

    /// Runs `work` as a task owned by the relay; it gets the relay only if the relay still
    /// exists when the task starts.
    pub(crate) fn spawn<F, Fut>(&self, work: F)
    where
        F: FnOnce(Arc<Engine>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let me = self.me.clone();
        self.tasks.spawn(async move {
            if let Some(engine) = me.upgrade() {
                work(engine).await;
            }
        });
    }

    /// Publishes to a user's topic (every instance holding one of the user's sockets).
    pub(crate) async fn publish_user(&self, user: UserId, message: BusMessage) {
        if self.single_instance {
            // The fast path: this instance holds every socket there is.
            self.connections.deliver(user, message);
            return;
        }
        if let Err(err) = self.bus.publish(BusTopic::User(user), message).await {
            tracing::warn!(error = %err, %user, "bus publish to user failed");
        }
    }

    /// Sends a frame to every socket of the user, optionally only one or all but one.
    pub(crate) async fn send_to_user(
        &self,
        user: UserId,
        frame: &ServerFrame,
        only: Option<ConnectionId>,
        except: Option<ConnectionId>,
    ) {
        let message = BusMessage::ToUser { frame: frame.to_json().into(), only, except };
        self.publish_user(user, message).await;
    }

    /// Hands a command to whichever instance holds the gateway; how many received it.
    pub(crate) async fn to_gateway(
        &self,
        gateway: crate::ids::GatewayId,
        command: GatewayCommand,
    ) -> usize {
        if self.single_instance {
            // The fast path: a gateway is held here (linked, or away within its grace
            // period) or nowhere.
            if !self.gateways.holds(gateway) {
                return 0;
            }
            self.on_gateway_command(gateway, command);
            return 1;
        }
        match self.bus.publish(BusTopic::Gateway(gateway), BusMessage::ToGateway(command)).await {
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(error = %err, %gateway, "bus publish to gateway failed");
                0
            }
        }
    }

    /// Stores a `system` message in a session (with `with` in the same batch) and sends it
    /// to the user's sockets.
    pub(crate) async fn store_notice(
        &self,
        user: UserId,
        agent: AgentId,
        session: SessionId,
        run_id: Option<String>,
        text: &str,
        with: Option<DeliveryUpdate>,
    ) -> Option<Message> {
        let notice = NewMessage {
            id: MessageId::new(),
            session_id: session,
            role: MessageRole::System,
            content: text.to_owned(),
            client_msg_id: None,
            run_id,
            created_at: self.now(),
        };
        match self.writer.append(notice, with).await {
            Ok(stored) => {
                let stored = stored.into_message();
                let frame = ServerFrame::Chat(ChatMessage::new(&stored, agent));
                self.send_to_user(user, &frame, None, None).await;
                Some(stored)
            }
            Err(err) => {
                tracing::warn!(error = %err, %session, "cannot store a system message");
                None
            }
        }
    }

    /// Tells the user a delivery failed: a stored `system` message (recording `failed` with
    /// it) and an `error` frame carrying the message's client id.
    pub(crate) async fn fail_delivery(&self, send: &ChatSend, code: ErrorCode, text: &str) {
        tracing::info!(message = %send.message_id, ?code, text, "delivery failed");
        let failed = DeliveryUpdate {
            session_id: send.session_id,
            seq: send.seq,
            state: DeliveryState::Failed,
        };
        let run = Some(send.message_id.to_string());
        self.store_notice(send.user_id, send.agent_id, send.session_id, run, text, Some(failed))
            .await;
        let error = ServerFrame::Error {
            id: Some(send.client_id.to_string()),
            code,
            message: text.to_owned(),
            retry_after_ms: None,
        };
        self.send_to_user(send.user_id, &error, None, None).await;
    }

    /// Records a delivery state of a message, without waiting.
    pub(crate) fn record(&self, send: &ChatSend, state: DeliveryState) {
        self.writer.record(DeliveryUpdate { session_id: send.session_id, seq: send.seq, state });
    }
}
