//! [`HttpConfig`]: the settings of the HTTP API and of both sockets (the relay engine's own
//! are `mc_core::relay::RelayLimits`). Every setting has a chained setter `with_<name>` and a getter
//! `<name>`.

use std::time::Duration;

use mc_core::socket::SocketLimits;

use super::serve;

/// Settings of the HTTP API and the sockets.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    max_body_bytes: usize,
    public_url: Option<String>,
    serves_tls: bool,
    trust_forwarded_for: bool,
    instance_id: String,
    request_timeout: Duration,
    web_pages: bool,
    max_frame_bytes: usize,
    max_connections: usize,
    allowed_origins: Vec<String>,
    max_unauthenticated: usize,
    max_unauthenticated_per_ip: usize,
    socket_limits: SocketLimits,
    outbound_allow: Vec<ipnet::IpNet>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            public_url: None,
            serves_tls: false,
            trust_forwarded_for: false,
            instance_id: "local".into(),
            request_timeout: serve::REQUEST_TIMEOUT,
            web_pages: true,
            max_frame_bytes: 64 * 1024,
            max_connections: 10_000,
            allowed_origins: Vec::new(),
            max_unauthenticated: 1_000,
            max_unauthenticated_per_ip: 64,
            socket_limits: SocketLimits::default(),
            outbound_allow: Vec::new(),
        }
    }
}

impl HttpConfig {
    mc_core::setting!(
        /// Serve the browser pages at `/` (default on; off leaves `/` to the embedder).
        with_web_pages, web_pages: bool
    );
    mc_core::setting!(
        /// Time to receive and handle one request, its body included (default 30 s); past it
        /// the answer is 408.
        with_request_timeout, request_timeout: Duration
    );
    mc_core::setting!(
        /// This instance's name in `GET /gateways/{id}/connections` (default `local`).
        with_instance_id, instance_id: ref String
    );
    mc_core::setting!(
        /// The URL clients reach this relay at (e.g. `https://relay.example.com`), used to tell
        /// gateways their `relay_ws_url`. Without it the request's `Host` is used, over `wss://`
        /// when [`HttpConfig::serves_tls`], else `ws://`.
        with_public_url, public_url: ref Option<String>
    );
    mc_core::setting!(
        /// The address ranges outbound gateways may be dialled in (default empty: any address
        /// but link-local ones, which are never dialled). Every address a gateway's host
        /// resolves to is checked when it is dialled.
        with_outbound_allow, outbound_allow: ref Vec<ipnet::IpNet>
    );
    mc_core::setting!(
        /// Whether this server terminates TLS itself (`mc-server --tls-cert`; default off): the
        /// socket URLs it derives from a request's `Host` are then `wss://`.
        with_serves_tls, serves_tls: bool
    );
    mc_core::setting!(
        /// Take the client IP from the first `X-Forwarded-For` entry (only behind a proxy you
        /// run; default off, which uses the socket peer when served with connect info).
        with_trust_forwarded_for, trust_forwarded_for: bool
    );
    mc_core::setting!(
        /// The largest request body accepted (default 64 KiB); larger ones get 413.
        with_max_body_bytes, max_body_bytes: usize
    );
    mc_core::setting!(
        /// Largest WebSocket message a user's socket accepts (default 64 KiB); larger ones
        /// close it with 1009.
        with_max_frame_bytes, max_frame_bytes: usize
    );
    mc_core::setting!(
        /// Authenticated sockets this instance holds (default 10 000); more are closed with
        /// 1013.
        with_max_connections, max_connections: usize
    );
    mc_core::setting!(
        /// Origins browsers may open sockets from (`https://app.example.com`); empty allows
        /// any.
        with_allowed_origins, allowed_origins: ref Vec<String>
    );
    mc_core::setting!(
        /// Sockets (users' and gateways') not authenticated yet that this instance holds at
        /// once (default 1 000); more are refused with 503 before the WebSocket handshake.
        /// They do not count against `max_connections` until they authenticate.
        with_max_unauthenticated, max_unauthenticated: usize
    );
    mc_core::setting!(
        /// Unauthenticated sockets from one source IP (default 64). Behind a proxy every client
        /// has the proxy's address unless `trust_forwarded_for` is set.
        with_max_unauthenticated_per_ip, max_unauthenticated_per_ip: usize
    );
    mc_core::setting!(
        /// Both sockets' rules: the auth deadline, the violations tolerated, the write deadline.
        with_socket_limits, socket_limits: SocketLimits
    );

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_matched_exactly_and_any_when_none_are_named() {
        let open = HttpConfig::default();
        assert!(open.origin_allowed(Some("https://anywhere.example")));
        let closed = HttpConfig::default().with_allowed_origins(vec!["https://app.example".into()]);
        assert!(closed.origin_allowed(Some("https://APP.example/")));
        assert!(!closed.origin_allowed(Some("https://evil.example")));
        assert!(closed.origin_allowed(None), "apps send no Origin");
    }
}
