//! Settings of the registry.

use std::time::Duration;

/// Settings of [`RegistryService`](super::RegistryService). Its defaults are the relay's.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub(crate) heartbeat_interval: Duration,
    pub(crate) missed_heartbeats: u32,
    pub(crate) sweep_every: Duration,
    pub(crate) max_registration_token_ttl: Duration,
    pub(crate) max_changes_per_minute: u32,
    pub(crate) max_outbound_gateways: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(30),
            missed_heartbeats: 3,
            sweep_every: Duration::from_secs(10),
            max_registration_token_ttl: Duration::from_secs(366 * 24 * 3600),
            max_changes_per_minute: 6,
            max_outbound_gateways: 64,
        }
    }
}

impl RegistryConfig {
    /// How often gateways must heartbeat (default 30 s, at least 1 s).
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval.max(Duration::from_secs(1));
        self
    }

    /// Missed intervals after which a gateway is `offline` (default 3).
    pub fn with_missed_heartbeats(mut self, n: u32) -> Self {
        self.missed_heartbeats = n.max(1);
        self
    }

    /// How often the liveness sweeper runs (default 10 s).
    pub fn with_sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = every.max(Duration::from_millis(100));
        self
    }

    /// How many times a minute a gateway's own reports may change its status or its agents
    /// (default 6, in bursts of as many; 0: no limit). Each change writes to the store and
    /// reaches every assigned user; past the limit a report's changes wait for a later one.
    pub fn with_max_changes_per_minute(mut self, n: u32) -> Self {
        self.max_changes_per_minute = n;
        self
    }

    /// The most gateways the relay dials per organization (default 64, at least 1); past it
    /// adding one is refused (409).
    pub fn with_max_outbound_gateways(mut self, n: u32) -> Self {
        self.max_outbound_gateways = n.max(1);
        self
    }

    /// See [`with_max_outbound_gateways`](Self::with_max_outbound_gateways).
    pub fn max_outbound_gateways(&self) -> u32 {
        self.max_outbound_gateways
    }

    /// See [`with_max_changes_per_minute`](Self::with_max_changes_per_minute).
    pub fn max_changes_per_minute(&self) -> u32 {
        self.max_changes_per_minute
    }

    /// See [`with_heartbeat_interval`](Self::with_heartbeat_interval).
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// See [`with_missed_heartbeats`](Self::with_missed_heartbeats).
    pub fn missed_heartbeats(&self) -> u32 {
        self.missed_heartbeats
    }

    /// See [`with_sweep_every`](Self::with_sweep_every).
    pub fn sweep_every(&self) -> Duration {
        self.sweep_every
    }
}
