//! The rules every relay socket follows, users' and gateways', as a state machine without I/O:
//! [`SocketRules`] is told what happened (a frame heard, a bad frame, the token accepted) and
//! asked what is due (a heartbeat, a close, and when to ask again); the transport's socket pump
//! does the reading and writing. So the rules are written once and tested with paused time.
//!
//! - **Authentication**: the `auth` frame must come within [`SocketLimits::auth_timeout`];
//!   past it the socket closes with 4001 (`timeout`).
//! - **Violations**: bad frames (unreadable, binary, or anything but `auth` before it) are
//!   counted in a sliding minute; past [`SocketLimits::max_violations_per_minute`] the socket
//!   closes with 4008.
//! - **Heartbeats**: once authenticated, a heartbeat is due every interval; a peer silent for
//!   three intervals is closed with 1001.
//! - **Expiry**: a socket lasts as long as its token (a fresh `auth` extends it); then it
//!   closes with 4001 (`expired_token`).

use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::close_code;

/// The settings of the socket rules (every default is the relay's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLimits {
    auth_timeout: Duration,
    max_violations_per_minute: u32,
    write_timeout: Duration,
}

impl Default for SocketLimits {
    fn default() -> Self {
        Self {
            auth_timeout: Duration::from_secs(10),
            max_violations_per_minute: 100,
            write_timeout: Duration::from_secs(10),
        }
    }
}

impl SocketLimits {
    /// Time to send the `auth` frame (default 10 s).
    pub fn with_auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// Bad frames tolerated per minute before the socket is closed with 4008 (default 100).
    pub fn with_max_violations_per_minute(mut self, max: u32) -> Self {
        self.max_violations_per_minute = max;
        self
    }

    /// Time one write, flush or close of a socket may take (default 10 s): a peer that does not
    /// read is closed when it passes, and its place freed.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// See [`with_auth_timeout`](Self::with_auth_timeout).
    pub fn auth_timeout(&self) -> Duration {
        self.auth_timeout
    }

    /// See [`with_max_violations_per_minute`](Self::with_max_violations_per_minute).
    pub fn max_violations_per_minute(&self) -> u32 {
        self.max_violations_per_minute
    }

    /// See [`with_write_timeout`](Self::with_write_timeout).
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }
}

/// How and why a socket closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// The close code (`close_code`).
    pub code: u16,
    /// The close frame's reason.
    pub reason: &'static str,
}

impl Close {
    /// The `auth` frame did not come in time.
    pub const AUTH_TIMEOUT: Close =
        Close { code: close_code::UNAUTHORIZED, reason: "no auth frame in time" };
    /// The token expired.
    pub const TOKEN_EXPIRED: Close =
        Close { code: close_code::UNAUTHORIZED, reason: "token expired; refresh it and reconnect" };
    /// Too many bad frames.
    pub const VIOLATIONS: Close =
        Close { code: close_code::VIOLATIONS, reason: "too many protocol violations" };
    /// Silent for three heartbeat intervals.
    pub const SILENT: Close =
        Close { code: close_code::GOING_AWAY, reason: "no frames for three heartbeat intervals" };
    /// A frame over the size limit.
    pub const TOO_BIG: Close = Close { code: close_code::TOO_BIG, reason: "frame too big" };

    /// A close with `code` and the reason that code stands for.
    pub fn with_code(code: u16) -> Close {
        Close { code, reason: close_code::reason(code) }
    }
}

/// What is due when the rules' deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet (ask again at [`SocketRules::deadline`]).
    Nothing,
    /// Send heartbeat number `n` (1, 2, …).
    Heartbeat(u64),
    /// Close the socket.
    Close(Close),
}

/// One socket's rules (see the module docs). About 100 bytes: every idle socket keeps one.
#[derive(Debug, Clone)]
pub struct SocketRules {
    heartbeat: Duration,
    /// While authenticating: the auth deadline; after: the token's expiry (far off if none).
    phase_ends: Instant,
    authenticated: bool,
    max_violations: u32,
    violations: u32,
    window_start: Instant,
    last_heard: Instant,
    next_beat: Instant,
    beats: u64,
}

/// A deadline that never comes (a hundred years).
fn far(now: Instant) -> Instant {
    now + Duration::from_secs(100 * 365 * 24 * 3600)
}

impl SocketRules {
    /// A socket opened at `now`, waiting for its `auth` frame; heartbeats every `heartbeat`
    /// once authenticated.
    pub fn new(limits: &SocketLimits, heartbeat: Duration, now: Instant) -> Self {
        Self {
            heartbeat: heartbeat.max(Duration::from_millis(1)),
            phase_ends: now + limits.auth_timeout,
            authenticated: false,
            max_violations: limits.max_violations_per_minute,
            violations: 0,
            window_start: now,
            last_heard: now,
            next_beat: far(now),
            beats: 0,
        }
    }

    /// A frame (or a ping or pong) arrived.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// A bad frame arrived; the close when that is one too many this minute.
    pub fn violation(&mut self, now: Instant) -> Option<Close> {
        self.heard(now);
        if now.saturating_duration_since(self.window_start) > Duration::from_secs(60) {
            self.window_start = now;
            self.violations = 0;
        }
        self.violations += 1;
        (self.violations > self.max_violations).then_some(Close::VIOLATIONS)
    }

    /// The `auth` frame was accepted; the socket lasts until `expires` (always if `None`).
    pub fn authenticated(&mut self, expires: Option<Instant>, now: Instant) {
        self.authenticated = true;
        self.phase_ends = expires.unwrap_or_else(|| far(now));
        self.next_beat = now + self.heartbeat;
    }

    /// A fresh token extends the socket's life until `expires`.
    pub fn extended(&mut self, expires: Option<Instant>, now: Instant) {
        if self.authenticated {
            self.phase_ends = expires.unwrap_or_else(|| far(now));
        }
    }

    /// Whether the `auth` frame was accepted.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// When to ask [`on_timer`](Self::on_timer) next.
    pub fn deadline(&self) -> Instant {
        self.phase_ends.min(self.next_beat)
    }

    /// What is due at `now`.
    pub fn on_timer(&mut self, now: Instant) -> Due {
        if now >= self.phase_ends {
            return Due::Close(if self.authenticated {
                Close::TOKEN_EXPIRED
            } else {
                Close::AUTH_TIMEOUT
            });
        }
        if !self.authenticated || now < self.next_beat {
            return Due::Nothing;
        }
        self.next_beat = (self.next_beat + self.heartbeat).max(now);
        if now.saturating_duration_since(self.last_heard) > self.heartbeat * 3 {
            return Due::Close(Close::SILENT);
        }
        self.beats += 1;
        Due::Heartbeat(self.beats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SocketLimits {
        SocketLimits::default()
            .with_auth_timeout(Duration::from_secs(10))
            .with_max_violations_per_minute(3)
    }

    #[test]
    fn the_auth_frame_must_come_in_time() {
        let t0 = Instant::now();
        let mut rules = SocketRules::new(&limits(), Duration::from_secs(30), t0);
        assert_eq!(rules.deadline(), t0 + Duration::from_secs(10));
        assert_eq!(rules.on_timer(t0 + Duration::from_secs(9)), Due::Nothing);
        assert_eq!(rules.on_timer(t0 + Duration::from_secs(10)), Due::Close(Close::AUTH_TIMEOUT));
        let mut rules = SocketRules::new(&limits(), Duration::from_secs(30), t0);
        rules.authenticated(None, t0 + Duration::from_secs(1));
        assert!(rules.is_authenticated());
        assert_eq!(rules.deadline(), t0 + Duration::from_secs(31), "the first heartbeat");
    }

    #[test]
    fn bad_frames_close_the_socket_past_the_limit_of_a_minute() {
        let t0 = Instant::now();
        let mut rules = SocketRules::new(&limits(), Duration::from_secs(30), t0);
        for _ in 0..3 {
            assert_eq!(rules.violation(t0), None);
        }
        assert_eq!(rules.violation(t0), Some(Close::VIOLATIONS));
        // A minute later the count starts over.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(rules.violation(later), None);
    }

    #[test]
    fn heartbeats_are_due_and_silence_closes() {
        let t0 = Instant::now();
        let beat = Duration::from_secs(30);
        let mut rules = SocketRules::new(&limits(), beat, t0);
        rules.authenticated(None, t0);
        assert_eq!(rules.on_timer(t0 + beat), Due::Heartbeat(1));
        rules.heard(t0 + beat);
        assert_eq!(rules.on_timer(t0 + beat * 2), Due::Heartbeat(2));
        assert_eq!(rules.on_timer(t0 + beat * 3), Due::Heartbeat(3));
        assert_eq!(rules.on_timer(t0 + beat * 4), Due::Heartbeat(4));
        assert_eq!(rules.on_timer(t0 + beat * 5), Due::Close(Close::SILENT), "silent since 30 s");
    }

    #[test]
    fn the_socket_lasts_as_long_as_its_token() {
        let t0 = Instant::now();
        let mut rules = SocketRules::new(&limits(), Duration::from_secs(30), t0);
        rules.authenticated(Some(t0 + Duration::from_secs(5)), t0);
        assert_eq!(rules.deadline(), t0 + Duration::from_secs(5));
        rules.extended(Some(t0 + Duration::from_secs(20)), t0 + Duration::from_secs(4));
        assert_eq!(rules.on_timer(t0 + Duration::from_secs(6)), Due::Nothing);
        assert_eq!(rules.on_timer(t0 + Duration::from_secs(20)), Due::Close(Close::TOKEN_EXPIRED));
        assert_eq!(Close::with_code(close_code::RESTARTING).reason, "server restarting");
    }
}
