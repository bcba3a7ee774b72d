//! Turns the services' [`RelayEvent`]s into deliveries: sockets to close, caches to drop,
//! `system` frames for users, `event` frames for subscribed admins.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{Router, close_code};
use crate::bus::{BusMessage, BusTopic, GatewayCommand};
use crate::events::RelayEvent;
use crate::ids::{GatewayId, OrgId};
use crate::model::GatewayStatus;
use crate::protocol::{ServerFrame, Topic};

pub(crate) fn start(router: &Router) {
    let mut events = router.relay().events().subscribe();
    let weak = router.downgrade();
    let handle = tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "relay event pump lagged");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let Some(inner) = weak.upgrade() else { return };
            handle(&Router::from_inner(inner), event).await;
        }
    });
    router.own_task(handle);
}

async fn org_event(router: &Router, org: OrgId, topic: Topic, payload: serde_json::Value) {
    let frame = ServerFrame::Event { topic, payload, ts: router.relay().clock().now() };
    let message = BusMessage::OrgEvent { topic, frame: Arc::from(frame.to_json()) };
    if let Err(err) = router.inner.bus.publish(BusTopic::Org(org), message).await {
        tracing::warn!(error = %err, "cannot publish an admin event");
    }
}

/// Tells every user assigned to the gateway's agents about `event`, and drops their caches.
async fn tell_assigned_users(router: &Router, gateway: GatewayId, event: Option<&'static str>) {
    let assignments = match router.relay().store().list_gateway_assignments(gateway).await {
        Ok(list) => list,
        Err(err) => {
            tracing::warn!(error = %err, %gateway, "cannot list the gateway's assignments");
            return;
        }
    };
    for a in assignments {
        router.publish_user(a.user_id, BusMessage::InvalidateUser).await;
        if let Some(event) = event {
            let frame = ServerFrame::System { event, agent_id: Some(a.agent_id), session_id: None };
            router.publish_frame(a.user_id, &frame).await;
        }
    }
}

async fn handle(router: &Router, event: RelayEvent) {
    match event {
        RelayEvent::UserBlocked { user_id } => {
            let msg = BusMessage::CloseUser {
                code: close_code::FORBIDDEN,
                reason: "account suspended".into(),
            };
            router.publish_user(user_id, msg).await;
        }
        RelayEvent::LoggedOut { user_id } => {
            let msg = BusMessage::CloseUser {
                code: close_code::UNAUTHORIZED,
                reason: "logged out".into(),
            };
            router.publish_user(user_id, msg).await;
        }
        RelayEvent::PasswordChanged { .. } => {}
        RelayEvent::AssignmentsChanged { user_id, .. } => {
            router.publish_user(user_id, BusMessage::InvalidateUser).await;
        }
        RelayEvent::GatewayStatusChanged { organization_id, gateway_id, previous, current } => {
            let announce = match (previous, current) {
                (_, GatewayStatus::Online) => Some("agent_online"),
                (GatewayStatus::Online, GatewayStatus::Offline | GatewayStatus::Error) => {
                    Some("agent_offline")
                }
                _ => None,
            };
            tell_assigned_users(router, gateway_id, announce).await;
            let payload =
                json!({ "gateway_id": gateway_id, "previous": previous, "status": current });
            org_event(router, organization_id, Topic::GatewayStatus, payload).await;
        }
        RelayEvent::GatewayCredentialsRevoked { gateway_id } => {
            if let Err(err) = router
                .inner
                .bus
                .publish(
                    BusTopic::Gateway(gateway_id),
                    BusMessage::ToGateway(GatewayCommand::Close),
                )
                .await
            {
                tracing::warn!(error = %err, %gateway_id, "cannot ask the gateway's holder to close it");
            }
        }
        RelayEvent::AgentsChanged { organization_id, gateway_id, added, returned, gone } => {
            tell_assigned_users(router, gateway_id, None).await;
            for (agents, status) in [(added, "added"), (returned, "active"), (gone, "gone")] {
                for agent in agents {
                    let payload =
                        json!({ "gateway_id": gateway_id, "agent_id": agent, "status": status });
                    org_event(router, organization_id, Topic::AgentStatus, payload).await;
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
            org_event(router, activity.organization_id, Topic::Activity, payload).await;
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
            org_event(router, organization_id, Topic::SessionCreated, payload).await;
        }
    }
}
