//! Limits and timers of the relay (SPEC §12), and the per-user request budget.
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

/// Limits and timers of the relay. Every default is SPEC §12's.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    pub(crate) max_frame_bytes: usize,
    pub(crate) max_content_bytes: usize,
    pub(crate) max_reply_bytes: usize,
    pub(crate) rate_per_sec: u32,
    pub(crate) rate_burst: u32,
    pub(crate) max_connections_per_user: usize,
    pub(crate) max_connections: usize,
    pub(crate) auth_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) gateway_timeout: Duration,
    pub(crate) outbound_queue: usize,
    pub(crate) offline_grace: Duration,
    pub(crate) run_idle_timeout: Duration,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) max_violations_per_minute: u32,
    pub(crate) max_unauthenticated: usize,
    pub(crate) max_unauthenticated_per_ip: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_content_bytes: 16 * 1024,
            max_reply_bytes: 256 * 1024,
            rate_per_sec: 20,
            rate_burst: 40,
            max_connections_per_user: 8,
            max_connections: 10_000,
            auth_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(30),
            gateway_timeout: Duration::from_secs(30),
            outbound_queue: 256,
            offline_grace: Duration::from_secs(10),
            run_idle_timeout: Duration::from_secs(300),
            allowed_origins: Vec::new(),
            max_violations_per_minute: 100,
            max_unauthenticated: 1_000,
            max_unauthenticated_per_ip: 64,
        }
    }
}

/// A chained setter and a getter of the same name.
macro_rules! limit {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    };
}

impl RelayLimits {
    limit!(
        /// Largest WebSocket message accepted (default 64 KiB); larger ones close with 1009.
        max_frame_bytes: usize
    );
    limit!(
        /// Longest chat content in UTF-8 bytes (default 16 KiB).
        max_content_bytes: usize
    );
    limit!(
        /// Longest agent reply in UTF-8 bytes (default 256 KiB): past it the run is stopped at
        /// the gateway and the user is told (`GATEWAY_ERROR`).
        max_reply_bytes: usize
    );
    limit!(
        /// Request tokens per second per user (default 20; a `chat` costs one); 0 turns the
        /// limit off.
        rate_per_sec: u32
    );
    limit!(
        /// Burst allowance of the rate limit (default 40); 0 turns the limit off.
        rate_burst: u32
    );
    limit!(
        /// Sockets one user may hold at once (default 8).
        max_connections_per_user: usize
    );
    limit!(
        /// Sockets this instance accepts (default 10 000); more are closed with 1013.
        max_connections: usize
    );
    limit!(
        /// Time to send the `auth` frame (default 10 s).
        auth_timeout: Duration
    );
    limit!(
        /// Heartbeat interval; a socket silent for three is closed (default 30 s).
        heartbeat_interval: Duration
    );
    limit!(
        /// Time a gateway has to answer a request (default 30 s).
        gateway_timeout: Duration
    );
    limit!(
        /// Live frames (those the user did not ask for: chunks, messages, events) queued for
        /// one socket before it counts as too slow and is closed with 1013 (default 256).
        outbound_queue: usize
    );
    limit!(
        /// Time a gateway's link may be down before its runs fail and its agents are announced
        /// offline (default 10 s). Messages sent meanwhile wait for it.
        offline_grace: Duration
    );
    limit!(
        /// A run with no event for this long is given up with `GATEWAY_TIMEOUT` (default 5 min).
        run_idle_timeout: Duration
    );
    limit!(
        /// Origins browsers may open sockets from (`https://app.example.com`); empty allows any.
        allowed_origins: Vec<String>
    );
    limit!(
        /// Bad frames tolerated per minute before the socket is closed with 4008 (default 100).
        max_violations_per_minute: u32
    );

    limit!(
        /// Sockets (users' and gateways') not authenticated yet that this instance holds at
        /// once (default 1 000); more are refused with 503 before the WebSocket handshake.
        /// They do not count against `max_connections` until they authenticate.
        max_unauthenticated: usize
    );
    limit!(
        /// Unauthenticated sockets from one source IP (default 64). Behind a proxy every client
        /// has the proxy's address unless `HttpConfig::trust_forwarded_for` is set.
        max_unauthenticated_per_ip: usize
    );

    /// The caps on unauthenticated sockets: in all, and per source IP.
    pub fn unauthenticated_caps(&self) -> (usize, usize) {
        (self.max_unauthenticated, self.max_unauthenticated_per_ip)
    }

    /// The largest frame accepted.
    pub fn frame_limit(&self) -> usize {
        self.max_frame_bytes
    }
    /// The auth deadline.
    pub fn auth_deadline(&self) -> Duration {
        self.auth_timeout
    }
    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat_interval
    }
    /// The instance's socket cap.
    pub fn connection_cap(&self) -> usize {
        self.max_connections
    }
    /// Tolerated bad frames per minute.
    pub fn violations_per_minute(&self) -> u32 {
        self.max_violations_per_minute
    }
    /// Whether a browser `Origin` may open a socket.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(_) if self.allowed_origins.is_empty() => true,
            Some(o) => {
                self.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(o.trim_end_matches('/')))
            }
        }
    }
}

/// What a request costs from the user's bucket.
pub(crate) fn cost(request: &ClientRequest) -> f64 {
    match request {
        ClientRequest::Heartbeat | ClientRequest::Auth { .. } => 0.0,
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
    }

    #[test]
    fn origins() {
        let open = RelayLimits::default();
        assert!(open.origin_allowed(Some("https://evil.example")));
        let strict = RelayLimits::default().allowed_origins(vec!["https://app.example.com".into()]);
        assert!(strict.origin_allowed(None), "apps send no Origin");
        assert!(strict.origin_allowed(Some("https://APP.example.com/")));
        assert!(!strict.origin_allowed(Some("https://evil.example")));
    }
}
