//! Limits and timers of the relay (docs/protocol.md, "Limits"), and the per-user request budget.
//!
//! Every request a user sends costs tokens from one bucket per user ([`Limiter`]): `chat`,
//! `abort`, `history`, `sessions` and `subscribe` one each, `resume` one plus a tenth per
//! session it names, `heartbeat` nothing (a client that floods heartbeats only fills its own
//! reply lane, which stops the socket from reading). The bucket belongs to the user, not to
//! a socket: it is kept until it has refilled completely, so reconnecting buys no new burst.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::ids::UserId;
use crate::protocol::ClientRequest;

/// Limits and timers of the relay engine. Every default is the relay's documented one. (The
/// sockets' own settings, such as frame size, origins and the auth deadline, belong to the
/// transport.)
#[derive(Debug, Clone)]
pub struct RelayLimits {
    max_content_bytes: usize,
    max_reply_bytes: usize,
    rate_per_sec: u32,
    rate_burst: u32,
    max_connections_per_user: usize,
    heartbeat_interval: Duration,
    gateway_timeout: Duration,
    live_queue: usize,
    offline_grace: Duration,
    run_idle_timeout: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_content_bytes: 16 * 1024,
            max_reply_bytes: 256 * 1024,
            rate_per_sec: 20,
            rate_burst: 40,
            max_connections_per_user: 8,
            heartbeat_interval: Duration::from_secs(30),
            gateway_timeout: Duration::from_secs(30),
            live_queue: 256,
            offline_grace: Duration::from_secs(10),
            run_idle_timeout: Duration::from_secs(300),
        }
    }
}

impl RelayLimits {
    crate::setting!(
        /// Longest chat content in UTF-8 bytes (default 16 KiB).
        with_max_content_bytes, max_content_bytes: usize
    );
    crate::setting!(
        /// Longest agent reply in UTF-8 bytes (default 256 KiB): past it the run is stopped at
        /// the gateway and the user is told (`GATEWAY_ERROR`).
        with_max_reply_bytes, max_reply_bytes: usize
    );
    crate::setting!(
        /// Request tokens per second per user (default 20; a `chat` costs one); 0 turns the
        /// limit off.
        with_rate_per_sec, rate_per_sec: u32
    );
    crate::setting!(
        /// Burst allowance of the rate limit (default 40); 0 turns the limit off.
        with_rate_burst, rate_burst: u32
    );
    crate::setting!(
        /// Sockets one user may hold at once (default 8).
        with_max_connections_per_user, max_connections_per_user: usize
    );
    crate::setting!(
        /// Heartbeat interval of users' sockets (told in `auth_ok`); a socket silent for three
        /// is closed (default 30 s).
        with_heartbeat_interval, heartbeat_interval: Duration
    );
    crate::setting!(
        /// Time a gateway has to answer a request (default 30 s).
        with_gateway_timeout, gateway_timeout: Duration
    );
    crate::setting!(
        /// Live frames (those the user did not ask for: chunks, messages, events) queued for
        /// one socket before it counts as too slow and is closed with 1013 (default 256).
        with_live_queue, live_queue: usize
    );
    crate::setting!(
        /// Time a gateway's link may be down before its runs fail and its agents are announced
        /// offline (default 10 s). Messages sent meanwhile wait for it.
        with_offline_grace, offline_grace: Duration
    );
    crate::setting!(
        /// A run with no event for this long is given up with `GATEWAY_TIMEOUT` (default 5 min).
        with_run_idle_timeout, run_idle_timeout: Duration
    );
}

/// A fresh token on an open socket costs two reads of the store, as much as a chat.
pub(crate) const FRESH_AUTH_COST: f64 = 1.0;

/// What a request costs from the user's bucket.
pub(crate) fn cost(request: &ClientRequest) -> f64 {
    match request {
        ClientRequest::Heartbeat => 0.0,
        ClientRequest::Auth { .. } => FRESH_AUTH_COST,
        ClientRequest::Resume { sessions } => 1.0 + sessions.len() as f64 / 10.0,
        ClientRequest::Chat { .. }
        | ClientRequest::History { .. }
        | ClientRequest::Sessions
        | ClientRequest::Abort { .. }
        | ClientRequest::Subscribe { .. }
        | ClientRequest::Unsubscribe { .. } => 1.0,
    }
}

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
    }
}

/// One bucket per user, shared by all the user's sockets.
#[derive(Debug)]
pub(crate) struct Limiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<UserId, Bucket>>,
}

impl Limiter {
    pub(crate) fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self { rate: f64::from(rate_per_sec), burst: f64::from(burst), buckets: Mutex::default() }
    }

    fn off(&self) -> bool {
        self.rate == 0.0 || self.burst == 0.0
    }

    /// Takes `cost` tokens from the user's bucket, or says how long until they are there.
    pub(crate) fn take(&self, user: UserId, cost: f64, now: Instant) -> Result<(), Duration> {
        if self.off() || cost == 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(user).or_insert(Bucket { tokens: self.burst, updated: now });
        bucket.refill(self.rate, self.burst, now);
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((cost.min(self.burst) - bucket.tokens) / self.rate))
        }
    }

    /// Forgets the buckets that have refilled completely: a full bucket is the same as a new
    /// one, so this loses nothing a reconnect could exploit.
    pub(crate) fn forget_refilled(&self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, bucket| {
            bucket.refill(rate, burst, now);
            bucket.tokens < burst
        });
    }

    /// Users with a bucket that is not full.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_the_burst_then_the_rate() {
        let start = Instant::now();
        let limiter = Limiter::new(20, 40);
        let user = UserId::new();
        for _ in 0..40 {
            assert!(limiter.take(user, 1.0, start).is_ok());
        }
        let wait = limiter.take(user, 1.0, start).unwrap_err();
        assert!(wait <= Duration::from_millis(50) && wait > Duration::ZERO, "{wait:?}");
        assert!(limiter.take(user, 1.0, start + Duration::from_millis(50)).is_ok());
        assert!(limiter.take(UserId::new(), 1.0, start).is_ok(), "per user");
        assert!(Limiter::new(0, 0).take(user, 1.0, start).is_ok(), "0 turns it off");
    }

    #[test]
    fn a_bucket_is_kept_until_it_has_refilled() {
        let start = Instant::now();
        let limiter = Limiter::new(10, 20);
        let user = UserId::new();
        for _ in 0..20 {
            limiter.take(user, 1.0, start).unwrap();
        }
        limiter.forget_refilled(start + Duration::from_secs(1));
        assert_eq!(limiter.tracked(), 1, "half refilled: kept");
        assert!(limiter.take(user, 11.0, start + Duration::from_secs(1)).is_err());
        limiter.forget_refilled(start + Duration::from_secs(3));
        assert_eq!(limiter.tracked(), 0, "full again: forgotten, which changes nothing");
    }

    #[test]
    fn requests_cost_by_their_weight() {
        let resume = ClientRequest::Resume { sessions: vec![] };
        assert_eq!(cost(&resume), 1.0);
        assert_eq!(cost(&ClientRequest::Heartbeat), 0.0);
        assert_eq!(cost(&ClientRequest::Sessions), 1.0);
        assert_eq!(cost(&ClientRequest::Auth { token: "t".into() }), 1.0, "reads the store");
    }
}
