//! The WebSocket close codes of the relay's sockets, users' and gateways', and what each asks
//! the peer to do. Every close the relay, its SDK and the gateway bridge make uses one of these.

/// Normal closure: the peer is done (a link the relay no longer needs).
pub const NORMAL: u16 = 1000;
/// Going away: silent for three heartbeat intervals, or shutting down; reconnect.
pub const GOING_AWAY: u16 = 1001;
/// A frame or message over the size limit.
pub const TOO_BIG: u16 = 1009;
/// The server is restarting: reconnect (to another instance) and resume.
pub const RESTARTING: u16 = 1012;
/// Overloaded (too slow a reader, too many connections): back off, then reconnect and resume.
pub const OVERLOADED: u16 = 1013;
/// Unauthorized (no, expired or revoked credentials): refresh the token, then reconnect.
pub const UNAUTHORIZED: u16 = 4001;
/// Forbidden (suspended user, refused origin): do not retry.
pub const FORBIDDEN: u16 = 4003;
/// Too many protocol violations.
pub const VIOLATIONS: u16 = 4008;

/// The reason a close frame carries for `code`, when the code says it all.
pub fn reason(code: u16) -> &'static str {
    match code {
        NORMAL => "closing",
        GOING_AWAY => "going away",
        TOO_BIG => "frame too big",
        RESTARTING => "server restarting",
        OVERLOADED => "too slow or overloaded; reconnect and resume",
        UNAUTHORIZED => "unauthorized",
        FORBIDDEN => "forbidden",
        VIOLATIONS => "too many protocol violations",
        _ => "closed",
    }
}
