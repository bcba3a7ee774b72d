//! WebSocket close codes the relay uses (SPEC §6).

/// Unauthorized: refresh the token, then reconnect.
pub const UNAUTHORIZED: u16 = 4001;
/// Forbidden (suspended user, refused origin): do not retry.
pub const FORBIDDEN: u16 = 4003;
/// Too many protocol violations.
pub const VIOLATIONS: u16 = 4008;
/// Frame too big.
pub const TOO_BIG: u16 = 1009;
/// Server restarting: reconnect elsewhere.
pub const RESTARTING: u16 = 1012;
/// Overloaded (too slow, too many connections): back off.
pub const OVERLOADED: u16 = 1013;
