//! Things that happened inside the relay that other parts must react to (close a suspended
//! user's sockets, refresh a cached assignment list…), on an in-process broadcast channel.

use tokio::sync::broadcast;

use crate::ids::{AgentId, GatewayId, OrgId, UserId};
use crate::model::{ActivityEvent, GatewayStatus};

/// An event published by a service.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// The user was suspended or deleted: their tokens no longer work; close their sockets.
    UserBlocked {
        /// Who.
        user_id: UserId,
    },
    /// The user logged out: their refresh family is revoked; close their sockets.
    LoggedOut {
        /// Who.
        user_id: UserId,
    },
    /// The user's password changed: other sessions were signed out.
    PasswordChanged {
        /// Who.
        user_id: UserId,
    },
    /// An agent was assigned to or unassigned from the user.
    AssignmentsChanged {
        /// Whose assignments.
        user_id: UserId,
        /// Which agent.
        agent_id: AgentId,
    },
    /// A gateway's status changed (and an activity event was written).
    GatewayStatusChanged {
        /// Its organization.
        organization_id: OrgId,
        /// Which gateway.
        gateway_id: GatewayId,
        /// The status before.
        previous: GatewayStatus,
        /// The status now.
        current: GatewayStatus,
    },
    /// A gateway's relay token was replaced (re-registration) or revoked (deregistration, or
    /// the gateway was deleted): close any socket it authenticated with the old one.
    GatewayCredentialsRevoked {
        /// Which gateway.
        gateway_id: GatewayId,
    },
    /// An activity-feed entry was written.
    Activity(ActivityEvent),
    /// A chat session was created.
    SessionCreated {
        /// Its organization.
        organization_id: OrgId,
        /// The session.
        session_id: crate::ids::SessionId,
        /// Its user.
        user_id: UserId,
        /// Its agent.
        agent_id: AgentId,
        /// Its gateway.
        gateway_id: GatewayId,
    },
    /// A gateway's agents changed at a registration or heartbeat.
    AgentsChanged {
        /// Its organization.
        organization_id: OrgId,
        /// Which gateway.
        gateway_id: GatewayId,
        /// Agents seen for the first time.
        added: Vec<AgentId>,
        /// Agents reported again after being gone.
        returned: Vec<AgentId>,
        /// Agents no longer reported.
        gone: Vec<AgentId>,
    },
}

/// The sending side of the relay's event channel. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    sender: broadcast::Sender<RelayEvent>,
}

impl Events {
    /// A channel keeping up to `capacity` events for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity.max(1)).0 }
    }

    /// Publishes an event; with no subscriber it is dropped.
    pub fn publish(&self, event: RelayEvent) {
        tracing::debug!(?event, "relay event");
        let _ = self.sender.send(event);
    }

    /// A new subscription, receiving events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.sender.subscribe()
    }
}

/// Writes an activity-feed entry and publishes it (for admins' `activity` topic).
#[cfg(feature = "server")]
pub(crate) async fn record_activity(
    store: &dyn crate::store::Store,
    events: &Events,
    event: ActivityEvent,
) -> crate::error::Result<()> {
    store.record_activity(&event).await?;
    events.publish(RelayEvent::Activity(event));
    Ok(())
}

impl Default for Events {
    fn default() -> Self {
        Self::new(1024)
    }
}
