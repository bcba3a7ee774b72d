//! The network under the client, behind [`Backend`]: the relay's WebSocket (`ws://` or
//! `wss://` on rustls) and its token refresh. The client's tests put their own relay here.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::http::HttpApi;
use super::types::{ClientError, Tokens};

/// How long opening a socket (TCP, TLS, upgrade) may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest frame the client reads (the relay's own limit is 64 KiB by default).
const MAX_FRAME: usize = 4 << 20;
/// How much the socket reads at a time.
const READ_BUFFER: usize = 8 * 1024;

/// What a socket yields.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A text frame.
    Text(String),
    /// The socket closed, with the peer's close code if it sent one.
    Closed(Option<u16>),
}

/// One open socket to the relay. `recv` must be cancel-safe (it runs in `select!`).
#[async_trait]
pub(crate) trait Socket: Send {
    /// Sends a text frame.
    async fn send(&mut self, text: String) -> Result<(), ClientError>;
    /// The next frame, or the close.
    async fn recv(&mut self) -> Incoming;
    /// Closes the socket (best effort).
    async fn close(&mut self);
}

/// Opens sockets and refreshes tokens.
#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    /// Opens a socket to `/ws/chat` (not yet authenticated).
    async fn open(&self) -> Result<Box<dyn Socket>, ClientError>;
    /// Trades a refresh token for new tokens.
    async fn refresh(&self, refresh: &str) -> Result<Tokens, ClientError>;
}

/// A TLS configuration trusting the Mozilla roots (webpki-roots) and any CA certificates in
/// `ca_pem` (a private CA, or a self-signed server certificate).
pub fn tls_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, ClientError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    // The Mozilla roots, parsed once per process and shared by every client (~100 KiB).
    static MOZILLA: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    let mozilla = MOZILLA.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Arc::new(roots)
    });
    let mut roots = Arc::clone(mozilla);
    if let Some(pem) = ca_pem {
        let roots = Arc::make_mut(&mut roots);
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| ClientError::InvalidInput(format!("ca_pem: {e}")))?;
            roots.add(cert).map_err(|e| ClientError::InvalidInput(format!("ca_pem: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(ClientError::InvalidInput("ca_pem: no CERTIFICATE block".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::InvalidInput(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The relay over the network.
pub(crate) struct NetBackend {
    pub(crate) http: HttpApi,
    /// `ws[s]://host:port/prefix/ws/chat`.
    pub(crate) ws_url: reqwest::Url,
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

impl NetBackend {
    async fn dial(&self) -> Result<Box<dyn Socket>, ClientError> {
        let url = &self.ws_url;
        let host = url.host_str().ok_or_else(|| ClientError::InvalidInput("no host".into()))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let host_only = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::net::TcpStream::connect((host_only, port))
            .await
            .map_err(|e| ClientError::Network(format!("{host}:{port}: {e}")))?;
        tcp.set_nodelay(true).ok();
        let stream: Box<dyn Io> = if url.scheme() == "wss" {
            let name = rustls_pki_types::ServerName::try_from(host_only.to_owned())
                .map_err(|e| ClientError::InvalidInput(format!("server name {host}: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| ClientError::Network(format!("TLS with {host}: {e}")))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        // Small buffers: an idle client should cost kilobytes (tungstenite reads 128 KiB at
        // a time by default).
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_frame_size(Some(MAX_FRAME))
            .max_message_size(Some(MAX_FRAME));
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
                .await
                .map_err(|e| ClientError::Network(format!("WebSocket upgrade: {e}")))?;
        Ok(Box::new(WsSocket { ws }))
    }
}

#[async_trait]
impl Backend for NetBackend {
    async fn open(&self) -> Result<Box<dyn Socket>, ClientError> {
        tokio::time::timeout(OPEN_TIMEOUT, self.dial()).await.map_err(|_| ClientError::Timeout)?
    }

    async fn refresh(&self, refresh: &str) -> Result<Tokens, ClientError> {
        self.http.refresh(refresh).await
    }
}

struct WsSocket {
    ws: WebSocketStream<Box<dyn Io>>,
}

#[async_trait]
impl Socket for WsSocket {
    async fn send(&mut self, text: String) -> Result<(), ClientError> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| ClientError::Network(e.to_string()))
    }

    async fn recv(&mut self) -> Incoming {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Incoming::Text(text.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => {
                    return Incoming::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Incoming::Closed(None),
            }
        }
    }

    async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }
}
