//! [`Gateways`]: the gateway links this instance holds, and the gateways whose link dropped
//! a moment ago and may come back.
//!
//! While a gateway is *linked* here or *away* (its link dropped less than the offline grace
//! period ago) this instance keeps its bus subscription, so messages for it keep arriving
//! here and wait in the outbox. When the grace period passes without a new link, the entry
//! expires: the subscription ends and the gateway's pending deliveries fail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use super::driver::{Driver, Jobs};
use crate::bus::Subscription;
use crate::ids::GatewayId;
use crate::link::GatewayLink;

/// Serialises what is published of a gateway's runs' text (deltas and resume catch-ups), so
/// a catch-up is never overtaken by an older delta.
pub(crate) type PublishGate = Arc<tokio::sync::Mutex<()>>;

enum LinkState {
    Linked { generation: u64, link: Arc<dyn GatewayLink>, driver: Driver },
    Away { until: Instant },
}

struct Entry {
    state: LinkState,
    subscription: Option<Subscription>,
    gate: PublishGate,
}

/// A link just registered.
pub(crate) struct Linked {
    pub(crate) generation: u64,
    /// The link it replaces (a reconnect that won the race with the old socket's close).
    pub(crate) replaced: Option<Arc<dyn GatewayLink>>,
    /// Whether this instance must now subscribe to the gateway's topic.
    pub(crate) needs_subscription: bool,
}

/// The gateways of this instance.
#[derive(Default)]
pub(crate) struct Gateways {
    entries: Mutex<HashMap<GatewayId, Entry>>,
    next_generation: AtomicU64,
}

impl Gateways {
    fn entries(&self) -> MutexGuard<'_, HashMap<GatewayId, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a gateway's new link and its driver.
    pub(crate) fn link(
        &self,
        gateway: GatewayId,
        link: Arc<dyn GatewayLink>,
        driver: Driver,
    ) -> Linked {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let mut entries = self.entries();
        let entry = entries.entry(gateway).or_insert_with(|| Entry {
            state: LinkState::Away { until: Instant::now() },
            subscription: None,
            gate: PublishGate::default(),
        });
        let previous =
            std::mem::replace(&mut entry.state, LinkState::Linked { generation, link, driver });
        let replaced = match previous {
            LinkState::Linked { link, .. } => Some(link),
            LinkState::Away { .. } => None,
        };
        Linked { generation, replaced, needs_subscription: entry.subscription.is_none() }
    }

    /// Keeps the gateway's bus subscription while it has an entry here.
    pub(crate) fn subscribed(&self, gateway: GatewayId, subscription: Subscription) {
        if let Some(entry) = self.entries().get_mut(&gateway).filter(|e| e.subscription.is_none()) {
            entry.subscription = Some(subscription);
        }
    }

    /// The link `generation` ended: the gateway is away until `until`. Returns the link if it
    /// was the current one (a stale generation changes nothing).
    pub(crate) fn unlink(
        &self,
        gateway: GatewayId,
        generation: u64,
        until: Instant,
    ) -> Option<Arc<dyn GatewayLink>> {
        let mut entries = self.entries();
        let entry = entries.get_mut(&gateway)?;
        match &entry.state {
            LinkState::Linked { generation: current, .. } if *current == generation => {}
            _ => return None,
        }
        match std::mem::replace(&mut entry.state, LinkState::Away { until }) {
            LinkState::Linked { link, .. } => Some(link),
            LinkState::Away { .. } => None,
        }
    }

    /// Forgets a gateway another instance now holds; gives its link if it was still linked
    /// here (a socket whose drop this instance has not noticed yet).
    pub(crate) fn release(&self, gateway: GatewayId) -> Option<Arc<dyn GatewayLink>> {
        match self.entries().remove(&gateway)?.state {
            LinkState::Linked { link, .. } => Some(link),
            LinkState::Away { .. } => None,
        }
    }

    /// The gateways linked here.
    pub(crate) fn linked_ids(&self) -> Vec<GatewayId> {
        self.entries()
            .iter()
            .filter(|(_, e)| matches!(e.state, LinkState::Linked { .. }))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Removes the gateways away past their grace period; returns them.
    pub(crate) fn expire(&self, now: Instant) -> Vec<GatewayId> {
        let mut entries = self.entries();
        let expired: Vec<GatewayId> = entries
            .iter()
            .filter(|(_, e)| matches!(e.state, LinkState::Away { until } if until <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            entries.remove(id);
        }
        expired
    }

    /// The jobs handle of the gateway's current link.
    pub(crate) fn jobs(&self, gateway: GatewayId) -> Option<Jobs> {
        match &self.entries().get(&gateway)?.state {
            LinkState::Linked { driver, .. } => Some(driver.jobs()),
            LinkState::Away { .. } => None,
        }
    }

    /// The gateway's current link.
    pub(crate) fn link_of(&self, gateway: GatewayId) -> Option<Arc<dyn GatewayLink>> {
        match &self.entries().get(&gateway)?.state {
            LinkState::Linked { link, .. } => Some(link.clone()),
            LinkState::Away { .. } => None,
        }
    }

    /// Whether the gateway is linked here, or away within its grace period.
    pub(crate) fn holds(&self, gateway: GatewayId) -> bool {
        self.entries().contains_key(&gateway)
    }

    /// The gate of the gateway's published text.
    pub(crate) fn gate(&self, gateway: GatewayId) -> Option<PublishGate> {
        self.entries().get(&gateway).map(|e| e.gate.clone())
    }

    /// Links held.
    pub(crate) fn linked(&self) -> usize {
        self.entries().values().filter(|e| matches!(e.state, LinkState::Linked { .. })).count()
    }

    /// Closes every link with `code`.
    pub(crate) fn close_all(&self, code: u16) {
        for entry in self.entries().values() {
            if let LinkState::Linked { link, .. } = &entry.state {
                link.close(code);
            }
        }
    }
}
