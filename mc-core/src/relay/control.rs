//! What the relay does about the services' [`RelayEvent`]s: close sockets (suspension 4003,
//! logout 4001), drop cached assignments, announce agents going online and offline to their
//! users, and turn activity into admin `event` frames.
//!
//! The events come from the engine's feed ([`Events::attach_feed`](crate::Events::attach_feed)),
//! which drops nothing; events that revoke access have their own lane and are always handled
//! first, so a flood of other events cannot keep a suspended user's sockets open.

use std::sync::{Arc, Weak};

use serde_json::json;

use super::engine::Engine;
use crate::bus::{BusMessage, BusTopic, GatewayCommand};
use crate::events::{EventFeed, RelayEvent};
use crate::ids::{GatewayId, OrgId};
use crate::model::GatewayStatus;
use crate::protocol::close_code;
use crate::protocol::{ServerFrame, Topic};

/// Starts the task handling the feed; it ends with the relay.
pub(crate) fn start(engine: &Arc<Engine>, feed: EventFeed) {
    let me: Weak<Engine> = Arc::downgrade(engine);
    let EventFeed { mut access, mut other } = feed;
    engine.tasks.spawn(async move {
        loop {
            let event = tokio::select! {
                biased;
                Some(event) = access.recv() => event,
                Some(event) = other.recv() => event,
                else => return,
            };
            let Some(engine) = me.upgrade() else { return };
            engine.on_event(event).await;
        }
    });
}

/// Starts the task answering the bus's gaps (messages from other instances may have been
/// lost): every user socket here is closed with 1012, so its client reconnects and resumes
/// from the store, and every gateway linked here is sent what the store has pending for it.
pub(crate) fn watch_bus_gaps(engine: &Arc<Engine>) {
    let Some(mut gaps) = engine.bus.gaps() else { return };
    let me: Weak<Engine> = Arc::downgrade(engine);
    engine.tasks.spawn(async move {
        while gaps.changed().await.is_ok() {
            let Some(engine) = me.upgrade() else { return };
            tracing::warn!(
                users = engine.connections.count(),
                "the bus may have lost messages: clients are asked to resume"
            );
            engine.connections.kick_all(close_code::RESTARTING);
            engine.recover_lost_hand_overs().await;
        }
    });
}

impl Engine {
    async fn on_event(&self, event: RelayEvent) {
        match event {
            RelayEvent::UserBlocked { user_id } => {
                self.close_user(user_id, close_code::FORBIDDEN, "account suspended").await;
            }
            RelayEvent::LoggedOut { user_id } => {
                self.close_user(user_id, close_code::UNAUTHORIZED, "logged out").await;
            }
            // The sockets reconnect: a signed-out session's token no longer works, and every
            // socket is authorised again with the account as it is now.
            RelayEvent::PasswordChanged { user_id } => {
                self.close_user(user_id, close_code::UNAUTHORIZED, "password changed").await;
            }
            RelayEvent::RoleChanged { user_id } => {
                self.close_user(user_id, close_code::UNAUTHORIZED, "role changed").await;
            }
            RelayEvent::AssignmentsChanged { user_id, .. } => {
                self.publish_user(user_id, BusMessage::InvalidateUser).await;
            }
            RelayEvent::GatewayCredentialsRevoked { gateway_id } => {
                let command = BusMessage::ToGateway(GatewayCommand::Close);
                if let Err(err) = self.bus.publish(BusTopic::Gateway(gateway_id), command).await {
                    tracing::warn!(error = %err, %gateway_id, "cannot ask the gateway's holder to close it");
                }
            }
            RelayEvent::GatewayStatusChanged { organization_id, gateway_id, previous, current } => {
                let announce = match (previous, current) {
                    (_, GatewayStatus::Online) => Some("agent_online"),
                    (GatewayStatus::Online, GatewayStatus::Offline | GatewayStatus::Error) => {
                        Some("agent_offline")
                    }
                    _ => None,
                };
                self.tell_assigned_users(gateway_id, announce).await;
                let payload =
                    json!({ "gateway_id": gateway_id, "previous": previous, "status": current });
                self.org_event(organization_id, Topic::GatewayStatus, payload).await;
            }
            RelayEvent::GatewayMetricsReported { organization_id, gateway_id, metrics, at } => {
                let payload =
                    json!({ "gateway_id": gateway_id, "metrics": metrics, "metrics_at": at });
                self.org_event(organization_id, Topic::GatewayMetrics, payload).await;
            }
            RelayEvent::AgentsChanged { organization_id, gateway_id, added, returned, gone } => {
                self.tell_assigned_users(gateway_id, None).await;
                for (agents, status) in [(added, "added"), (returned, "active"), (gone, "gone")] {
                    for agent in agents {
                        let payload = json!({ "gateway_id": gateway_id, "agent_id": agent, "status": status });
                        self.org_event(organization_id, Topic::AgentStatus, payload).await;
                    }
                }
            }
            RelayEvent::Activity(activity) => {
                let payload = json!({
                    "id": activity.id,
                    "kind": activity.kind,
                    "actor": activity.actor,
                    "target_type": activity.target_type,
                    "target_id": activity.target_id,
                    "metadata": activity.metadata,
                    "created_at": activity.created_at,
                });
                self.org_event(activity.organization_id, Topic::Activity, payload).await;
            }
            RelayEvent::SessionCreated {
                organization_id,
                session_id,
                user_id,
                agent_id,
                gateway_id,
            } => {
                let payload = json!({
                    "session_id": session_id, "user_id": user_id, "agent_id": agent_id, "gateway_id": gateway_id,
                });
                self.org_event(organization_id, Topic::SessionCreated, payload).await;
            }
        }
    }

    /// Closes every socket of the user, on every instance.
    async fn close_user(&self, user: crate::ids::UserId, code: u16, reason: &str) {
        self.publish_user(user, BusMessage::CloseUser { code, reason: reason.into() }).await;
    }

    async fn org_event(&self, org: OrgId, topic: Topic, payload: serde_json::Value) {
        let frame = ServerFrame::Event { topic, payload, ts: self.now() };
        let message = BusMessage::OrgEvent { topic, frame: Arc::from(frame.to_json()) };
        if let Err(err) = self.bus.publish(BusTopic::Org(org), message).await {
            tracing::warn!(error = %err, "cannot publish an admin event");
        }
    }

    /// Tells every user assigned to the gateway's agents about `event`, and drops their
    /// cached assignments.
    async fn tell_assigned_users(&self, gateway: GatewayId, event: Option<&'static str>) {
        let assignments = match self.services.store().list_gateway_assignments(gateway).await {
            Ok(list) => list,
            Err(err) => {
                tracing::warn!(error = %err, %gateway, "cannot list the gateway's assignments");
                return;
            }
        };
        for a in assignments {
            self.publish_user(a.user_id, BusMessage::InvalidateUser).await;
            if let Some(event) = event {
                let frame = ServerFrame::System {
                    event: event.into(),
                    agent_id: Some(a.agent_id),
                    session_id: None,
                };
                self.send_to_user(a.user_id, &frame, None, None).await;
            }
        }
    }
}
