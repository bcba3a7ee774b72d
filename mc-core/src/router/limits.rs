//! Limits and timers of the relay's sockets (SPEC §12), and the per-user rate limiter.

use std::time::{Duration, Instant};

/// Limits and timers of the sockets. Every default is SPEC §12's.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    pub(crate) max_frame_bytes: usize,
    pub(crate) max_content_bytes: usize,
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
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_content_bytes: 16 * 1024,
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
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    };
}

impl RelayLimits {
    setter!(
        /// Largest WebSocket message accepted (default 64 KiB); larger ones close with 1009.
        max_frame_bytes: usize
    );
    setter!(
        /// Longest chat content in UTF-8 bytes (default 16 KiB).
        max_content_bytes: usize
    );
    setter!(
        /// Chat messages per second per user (default 20); 0 turns the limit off.
        rate_per_sec: u32
    );
    setter!(
        /// Burst allowance of the rate limit (default 40); 0 turns the limit off.
        rate_burst: u32
    );
    setter!(
        /// Sockets one user may hold at once (default 8).
        max_connections_per_user: usize
    );
    setter!(
        /// Sockets this instance accepts (default 10 000); more are closed with 1013.
        max_connections: usize
    );
    setter!(
        /// Time to send the `auth` frame (default 10 s).
        auth_timeout: Duration
    );
    setter!(
        /// Heartbeat interval; a socket silent for three is closed (default 30 s).
        heartbeat_interval: Duration
    );
    setter!(
        /// Time a gateway has to answer a request (default 30 s).
        gateway_timeout: Duration
    );
    setter!(
        /// Frames queued for one socket before it counts as too slow and is closed with 1013
        /// (default 256).
        outbound_queue: usize
    );
    setter!(
        /// Time a gateway's link may be down before its agents are announced offline
        /// (default 10 s).
        offline_grace: Duration
    );
    setter!(
        /// A run with no event for this long is given up with `GATEWAY_TIMEOUT` (default 5 min).
        run_idle_timeout: Duration
    );
    setter!(
        /// Origins browsers may open sockets from (`https://app.example.com`); empty allows any.
        allowed_origins: Vec<String>
    );
    setter!(
        /// Bad frames tolerated per minute before the socket is closed with 4008 (default 100).
        max_violations_per_minute: u32
    );

    /// The largest frame.
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
    /// The per-socket queue length.
    pub fn queue(&self) -> usize {
        self.outbound_queue
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

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub(crate) fn new(burst: u32) -> Self {
        Self { tokens: f64::from(burst), updated: Instant::now() }
    }

    /// Takes a token, or says how long until one is available.
    pub(crate) fn take(&mut self, rate: u32, burst: u32, now: Instant) -> Result<(), Duration> {
        if rate == 0 || burst == 0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / f64::from(rate)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = RateLimiter::new(40);
        for _ in 0..40 {
            assert!(bucket.take(20, 40, start).is_ok());
        }
        let wait = bucket.take(20, 40, start).unwrap_err();
        assert!(wait <= Duration::from_millis(50) && wait > Duration::ZERO, "{wait:?}");
        assert!(bucket.take(20, 40, start + Duration::from_millis(50)).is_ok());
        assert!(bucket.take(0, 0, start).is_ok(), "0 turns it off");
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
