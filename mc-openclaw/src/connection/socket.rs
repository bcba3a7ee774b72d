//! The socket of a connection: dialled at an address the policy allows, read a text frame at
//! a time, written and closed within deadlines.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::options::{OpenClawOptions, loggable_url};

/// The largest frame read before the gateway's `hello-ok` says its own limit (`maxPayload`;
/// 25 MiB is OpenClaw's): past it the socket fails instead of buffering more.
pub(super) const MAX_FRAME_BYTES: usize = 25 * 1024 * 1024;

/// A gateway's socket.
pub(super) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame, or why there is none.
pub(super) async fn next_text(socket: &mut Socket) -> Result<String, String> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(close))) => {
                // The code only: the reason is the gateway's text.
                let why =
                    close.map_or_else(String::new, |c| format!("(code {})", u16::from(c.code)));
                return Err(format!("closed by the gateway {why}").trim_end().to_owned());
            }
            None => return Err("the socket ended".into()),
            Some(Err(e)) => return Err(format!("socket error: {e}")),
            Some(Ok(_)) => {}
        }
    }
}

/// Opens the gateway's socket: resolves its host, checks every address against the policy,
/// and connects to the first allowed one that answers (the WebSocket handshake then goes
/// over that very connection).
pub(super) async fn dial(options: &OpenClawOptions) -> Result<Socket, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let shown = loggable_url(&options.url);
    let request = options
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{shown} is not a usable URL: {e}"))?;
    let uri = request.uri().clone();
    if uri.scheme_str() != Some("ws") {
        return Err(format!(
            "{shown}: only ws:// gateways can be dialled (no TLS to OpenClaw yet)"
        ));
    }
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let resolved = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {shown}: {e}"))?;
    let mut why = format!("{shown} resolves to no address");
    for address in resolved {
        if let Err(refused) = options.addresses.check(address.ip()) {
            why = refused.to_string();
            continue;
        }
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let config = WebSocketConfig::default().max_message_size(Some(MAX_FRAME_BYTES));
                let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
                let (socket, _) =
                    tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                        .await
                        .map_err(|e| format!("cannot open the socket of {shown}: {e}"))?;
                return Ok(socket);
            }
            Err(e) => why = format!("cannot connect to {shown} ({address}): {e}"),
        }
    }
    Err(why)
}

/// Writes one message within `deadline`.
pub(super) async fn write(
    socket: &mut Socket,
    message: Message,
    deadline: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(deadline, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no write completed in {} s", deadline.as_secs())),
    }
}

/// Closes the socket with `code`, giving the closing handshake at most `deadline`.
pub(super) async fn close_socket(
    socket: &mut Socket,
    code: u16,
    reason: &'static str,
    deadline: Duration,
) {
    let frame = CloseFrame { code: code.into(), reason: reason.into() };
    let _ = tokio::time::timeout(deadline, socket.close(Some(frame))).await;
}
