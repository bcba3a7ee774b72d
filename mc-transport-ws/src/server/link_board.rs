//! [`LinkBoard`]: the gateway links this instance holds right now, inbound sockets and
//! outbound connections alike, for `GET /api/v1/gateways/{id}/connections`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mc_core::{GatewayId, Timestamp};

use mc_core::link::FrameLink;
use serde::Serialize;
use tokio::time::Instant;

/// How a link's figures are read while it lives.
#[derive(Debug, Clone)]
pub(crate) enum Probe {
    /// A gateway's socket to the relay: its request table, and when it last sent a frame
    /// (milliseconds after `opened`).
    Inbound { link: Arc<FrameLink>, opened: Instant, last_frame_ms: Arc<AtomicU64> },
    /// The relay's connection to an OpenClaw gateway.
    Outbound(mc_openclaw::connection::OpenClawConnection),
}

#[derive(Debug, Clone)]
struct LiveLink {
    key: u64,
    kind: &'static str,
    remote: Option<String>,
    since: Timestamp,
    probe: Probe,
}

/// One live link, as `GET /gateways/{id}/connections` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct LinkView {
    /// `inbound` (the gateway dialled the relay) or `outbound` (the relay dialled it).
    kind: &'static str,
    /// The relay instance holding it.
    instance: String,
    /// The peer: the gateway's IP for inbound links, its URL for outbound ones.
    remote: Option<String>,
    /// When the link came up.
    since: Timestamp,
    /// When the last frame arrived on it.
    last_frame_at: Option<Timestamp>,
    /// Requests waiting for the gateway's answer.
    pending_requests: usize,
}

/// The live links of this instance, by gateway.
#[derive(Debug, Clone)]
pub(crate) struct LinkBoard {
    instance: Arc<str>,
    links: Arc<Mutex<HashMap<GatewayId, Vec<LiveLink>>>>,
    next_key: Arc<AtomicU64>,
}

/// Keeps a link on the board; dropping it takes the link off.
#[derive(Debug)]
pub(crate) struct OnBoard {
    board: LinkBoard,
    gateway: GatewayId,
    key: u64,
}

impl Drop for OnBoard {
    fn drop(&mut self) {
        let mut links = self.board.links();
        if let Some(list) = links.get_mut(&self.gateway) {
            list.retain(|l| l.key != self.key);
            if list.is_empty() {
                links.remove(&self.gateway);
            }
        }
    }
}

fn wall_clock_of(at: Instant) -> Timestamp {
    let age = chrono::TimeDelta::from_std(at.elapsed()).unwrap_or_default();
    chrono::Utc::now() - age
}

impl LinkBoard {
    /// An empty board for the instance named `instance`.
    pub(crate) fn new(instance: &str) -> Self {
        Self {
            instance: Arc::from(instance),
            links: Arc::default(),
            next_key: Arc::new(AtomicU64::new(1)),
        }
    }

    fn links(&self) -> MutexGuard<'_, HashMap<GatewayId, Vec<LiveLink>>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a link of `gateway` on the board until the returned guard is dropped.
    pub(crate) fn add(
        &self,
        gateway: GatewayId,
        kind: &'static str,
        remote: Option<String>,
        probe: Probe,
    ) -> OnBoard {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let link = LiveLink { key, kind, remote, since: chrono::Utc::now(), probe };
        self.links().entry(gateway).or_default().push(link);
        OnBoard { board: self.clone(), gateway, key }
    }

    /// The gateway's live links, oldest first.
    pub(crate) fn list(&self, gateway: GatewayId) -> Vec<LinkView> {
        let links = self.links().get(&gateway).cloned().unwrap_or_default();
        links
            .into_iter()
            .map(|l| {
                let (last_frame_at, pending_requests) = match &l.probe {
                    Probe::Inbound { link, opened, last_frame_ms } => {
                        let ms = last_frame_ms.load(Ordering::Relaxed);
                        let at = *opened + std::time::Duration::from_millis(ms);
                        (Some(wall_clock_of(at)), link.pending_requests())
                    }
                    Probe::Outbound(connection) => {
                        (connection.last_frame().map(wall_clock_of), connection.pending_requests())
                    }
                };
                LinkView {
                    kind: l.kind,
                    instance: self.instance.to_string(),
                    remote: l.remote,
                    since: l.since,
                    last_frame_at,
                    pending_requests,
                }
            })
            .collect()
    }
}
