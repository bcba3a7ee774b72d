//! Things that happened inside the relay that other parts must react to (close a suspended
//! user's sockets, refresh a cached assignment list…).
//!
//! Two ways to receive them, with different promises:
//! - the relay engine's **feed** ([`Events::attach_feed`]): every event, none ever dropped,
//!   and events that close sockets or revoke access ([`RelayEvent::revokes_access`]) on a lane
//!   of their own, so a flood of other events cannot delay a suspension;
//! - **observers** ([`Events::subscribe`], e.g. an embedder's audit hook or a test): a bounded
//!   broadcast that drops the oldest events for a subscriber that lags.

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};

use crate::ids::{AgentId, GatewayId, OrgId, UserId};
use crate::model::{ActivityEvent, GatewayMetrics, GatewayStatus};

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
    /// The user's password changed: other sessions were signed out; their sockets close.
    PasswordChanged {
        /// Who.
        user_id: UserId,
    },
    /// An admin changed the user's role: their sockets close, so they reconnect with it.
    RoleChanged {
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
    /// A gateway's heartbeat brought metrics.
    GatewayMetricsReported {
        /// Its organization.
        organization_id: OrgId,
        /// Which gateway.
        gateway_id: GatewayId,
        /// What it reported.
        metrics: GatewayMetrics,
        /// When the relay received them.
        at: crate::Timestamp,
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

impl RelayEvent {
    /// Whether the event closes sockets or takes access away (suspension, logout, a password
    /// change, a changed assignment, revoked gateway credentials): the relay engine handles
    /// these first and never drops one.
    pub fn revokes_access(&self) -> bool {
        matches!(
            self,
            RelayEvent::UserBlocked { .. }
                | RelayEvent::LoggedOut { .. }
                | RelayEvent::PasswordChanged { .. }
                | RelayEvent::RoleChanged { .. }
                | RelayEvent::AssignmentsChanged { .. }
                | RelayEvent::GatewayCredentialsRevoked { .. }
        )
    }
}

/// The relay engine's receiving side: every event published since the feed was attached.
#[derive(Debug)]
pub struct EventFeed {
    /// Events that close sockets or revoke access.
    pub access: mpsc::UnboundedReceiver<RelayEvent>,
    /// Every other event.
    pub other: mpsc::UnboundedReceiver<RelayEvent>,
}

type FeedSenders = (mpsc::UnboundedSender<RelayEvent>, mpsc::UnboundedSender<RelayEvent>);

/// The sending side of the relay's events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    observers: broadcast::Sender<RelayEvent>,
    feed: Arc<Mutex<Option<FeedSenders>>>,
}

impl Events {
    /// Events whose observers may each lag up to `capacity` events before losing the oldest.
    pub fn new(capacity: usize) -> Self {
        Self { observers: broadcast::channel(capacity.max(1)).0, feed: Arc::default() }
    }

    /// Publishes an event to the engine's feed (if attached) and to observers.
    pub fn publish(&self, event: RelayEvent) {
        tracing::debug!(?event, "relay event");
        if let Some((access, other)) = self.feed.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
        {
            let lane = if event.revokes_access() { access } else { other };
            let _ = lane.send(event.clone());
        }
        let _ = self.observers.send(event);
    }

    /// A new observer, receiving events published from now on; it loses the oldest events if
    /// it lags by more than the capacity.
    pub fn subscribe(&self) -> broadcast::Receiver<RelayEvent> {
        self.observers.subscribe()
    }

    /// Attaches the relay engine's feed: from now on every event also goes, unbounded and in
    /// order, to the returned receivers. Attaching again replaces the previous feed.
    pub fn attach_feed(&self) -> EventFeed {
        let (access_tx, access) = mpsc::unbounded_channel();
        let (other_tx, other) = mpsc::unbounded_channel();
        *self.feed.lock().unwrap_or_else(|p| p.into_inner()) = Some((access_tx, other_tx));
        EventFeed { access, other }
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
