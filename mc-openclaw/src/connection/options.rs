//! [`OpenClawOptions`]: how to reach and authenticate to a gateway, and [`loggable_url`], how
//! its URL may be shown.

use std::time::Duration;

use crate::address::AddressPolicy;
use crate::device::DeviceIdentity;
use crate::handshake::{Challenge, ClientInfo, ConnectParams, SCOPE_READ, SCOPE_WRITE};

/// How to reach and authenticate to a gateway.
#[derive(Clone)]
pub struct OpenClawOptions {
    /// `ws://host:port` of the gateway.
    pub url: String,
    /// The gateway's shared token, if it uses one.
    pub token: Option<String>,
    /// The device key, for gateways that pair devices (remote ones do).
    pub device: Option<DeviceIdentity>,
    /// A device token issued earlier to this device.
    pub device_token: Option<String>,
    /// Who the client says it is.
    pub client: ClientInfo,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
    /// Client capabilities to declare.
    pub caps: Vec<String>,
    /// Time for the socket to open and the handshake to finish.
    pub handshake_timeout: Duration,
    /// Time one write (or the closing handshake) may take before the gateway counts as gone.
    pub write_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_first: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Which addresses the gateway's host may resolve to (link-local ones never).
    pub addresses: AddressPolicy,
}

impl std::fmt::Debug for OpenClawOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenClawOptions")
            .field("url", &loggable_url(&self.url))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("device", &self.device)
            .field("device_token", &self.device_token.as_ref().map(|_| "<redacted>"))
            .field("client", &self.client)
            .field("scopes", &self.scopes)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

/// `url` as it may be shown in a log line or a `Debug` output: its scheme, host, port and
/// path, without user info (a user name and password) or query (a token), which may hold
/// credentials.
pub fn loggable_url(url: &str) -> String {
    match url.parse::<tokio_tungstenite::tungstenite::http::Uri>() {
        Ok(uri) if uri.host().is_some() => {
            let scheme = uri.scheme_str().unwrap_or("ws");
            let host = uri.host().unwrap_or_default();
            let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{}", uri.path())
        }
        _ => "(a URL that does not parse)".into(),
    }
}

impl OpenClawOptions {
    /// Options for `url` with the relay's defaults: `gateway-client`/`backend`,
    /// `operator.read` + `operator.write`, 15 s handshake, 10 s per write, reconnects 1 s →
    /// 30 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            device: None,
            device_token: None,
            client: ClientInfo::default(),
            scopes: vec![SCOPE_READ.into(), SCOPE_WRITE.into()],
            caps: Vec::new(),
            handshake_timeout: Duration::from_secs(15),
            write_timeout: Duration::from_secs(10),
            reconnect_first: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            addresses: AddressPolicy::new(),
        }
    }

    /// Which addresses may be dialled (default: any but link-local).
    pub fn addresses(mut self, policy: AddressPolicy) -> Self {
        self.addresses = policy;
        self
    }

    /// The gateway's shared token.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The device key to sign challenges with.
    pub fn device(mut self, device: Option<DeviceIdentity>) -> Self {
        self.device = device;
        self
    }

    /// A device token issued earlier.
    pub fn device_token(mut self, token: Option<String>) -> Self {
        self.device_token = token;
        self
    }

    /// The `connect` answering `challenge`, signed by the device if there is one.
    pub(super) fn connect_params(&self, challenge: &Challenge) -> ConnectParams {
        let mut params =
            ConnectParams::operator(self.client.clone(), self.scopes.clone(), self.caps.clone());
        params.auth.token = self.token.clone();
        params.auth.device_token = self.device_token.clone();
        params.device = self.device.as_ref().map(|device| device.prove(&params, challenge));
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::DeviceToken;
    use crate::handshake::Challenge;

    #[test]
    fn options_never_show_secrets() {
        let options =
            OpenClawOptions::new("wss://op:url-secret@127.0.0.1:18789/gw?token=url-token")
                .token(Some("shared-secret".into()))
                .device_token(Some("device-secret".into()));
        let shown = format!("{options:?}");
        assert!(!shown.contains("shared-secret") && !shown.contains("device-secret"), "{shown}");
        assert!(!shown.contains("url-secret") && !shown.contains("url-token"), "{shown}");
        assert!(shown.contains("wss://127.0.0.1:18789/gw"), "{shown}");
        assert!(!format!("{:?}", DeviceToken("dt-1".into())).contains("dt-1"));
    }

    #[test]
    fn urls_are_logged_without_credentials() {
        for (url, shown) in [
            ("ws://127.0.0.1:18789", "ws://127.0.0.1:18789/"),
            ("wss://user:pass@gw.example.com/x?token=t#f", "wss://gw.example.com/x"),
            ("ws://token@[::1]:9/", "ws://[::1]:9/"),
            ("not a url", "(a URL that does not parse)"),
            ("/relative", "(a URL that does not parse)"),
        ] {
            assert_eq!(loggable_url(url), shown, "{url}");
        }
    }

    #[test]
    fn the_connect_is_signed_when_there_is_a_device() {
        let device = DeviceIdentity::generate().unwrap();
        let challenge =
            Challenge { nonce: "n-1".into(), ts: 1795307049617, extra: Default::default() };
        let options =
            OpenClawOptions::new("ws://x").token(Some("tok".into())).device(Some(device.clone()));
        let params = options.connect_params(&challenge);
        assert_eq!((params.min_protocol, params.max_protocol), (4, 4));
        assert_eq!(params.client.id, "gateway-client");
        assert_eq!(params.auth.token.as_deref(), Some("tok"));
        let proof = params.device.as_ref().unwrap();
        assert_eq!(
            (proof.id.as_str(), proof.signed_at, proof.nonce.as_str()),
            (device.id().as_str(), 1795307049617, "n-1")
        );
        let without = OpenClawOptions::new("ws://x")
            .device_token(Some("dt".into()))
            .connect_params(&challenge);
        assert!(without.device.is_none());
        assert_eq!(without.auth.signed_token(), "dt");
    }
}
