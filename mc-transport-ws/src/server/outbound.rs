//! [`OutboundPool`]: the gateways this relay dials (docs/openclaw.md), one [`OpenClawConnection`]
//! each, kept up for as long as the gateway exists.
//!
//! Each connection has a task that turns what happens into the relay's terms: once connected
//! it reads `agents.list` (the gateway's agents), attaches the connection to the router as the
//! gateway's link (the gateway goes `online`), forwards the gateway's events, and detaches it
//! when the socket is lost (runs wait out the router's grace period). A refused `connect`
//! makes the gateway `error`, with the reason and, for `PAIRING_REQUIRED`, the pairing request
//! an operator approves with `openclaw devices approve <id>`; the connection keeps retrying,
//! so after the approval it connects by itself and keeps the device token the gateway issues.
//!
//! Connections stay open while idle (a client that closed them after 30 s without use would miss events): a closed
//! connection would hear neither the agents' status nor replies the gateway finishes, and
//! users would see the agents offline between chats.
//!
//! The relay's device key (its identity towards every gateway) is made once and kept in the
//! store's settings, so every instance presents the same device.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use mc_core::link::GatewayLink;
use mc_core::protocol::close_code;
use mc_core::relay::Relay;
use mc_core::{AgentReport, Error, GatewayId, OutboundLink};
use mc_openclaw::ConnectFailure;
use mc_openclaw::Payload;
use mc_openclaw::address::AddressPolicy;
use mc_openclaw::connection::{ConnectionEvent, OpenClawConnection, OpenClawOptions};
use mc_openclaw::device::DeviceIdentity;
use mc_openclaw::method::AgentsList;
use mc_openclaw::rpc::CallError;
use tokio::sync::{OnceCell, mpsc};

use super::link_board::{LinkBoard, Probe};

/// The settings key of the relay's device key (base64url of the Ed25519 secret).
pub(crate) const DEVICE_KEY_SETTING: &str = "openclaw.device_key";
/// Time `agents.list` may take after a connect.
const AGENTS_TIMEOUT: Duration = Duration::from_secs(15);

/// The gateways this relay dials.
#[derive(Debug, Clone)]
pub(crate) struct OutboundPool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    relay: Relay,
    board: LinkBoard,
    running: Mutex<HashMap<GatewayId, OpenClawConnection>>,
    device: OnceCell<DeviceIdentity>,
    /// Which addresses the gateways may be dialled at.
    addresses: AddressPolicy,
}

impl PoolInner {
    fn running(&self) -> MutexGuard<'_, HashMap<GatewayId, OpenClawConnection>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl OutboundPool {
    pub(crate) fn new(relay: Relay, board: LinkBoard, addresses: AddressPolicy) -> Self {
        let running = Mutex::default();
        let inner = PoolInner { relay, board, running, device: OnceCell::new(), addresses };
        Self { inner: Arc::new(inner) }
    }

    /// Starts a connection to every stored outbound gateway.
    pub(crate) async fn start_all(&self) -> Result<usize, Error> {
        let links = self.inner.relay.services().registry().all_outbound_links().await?;
        let count = links.len();
        for link in links {
            self.start(link).await?;
        }
        Ok(count)
    }

    /// Which addresses the gateways may be dialled at.
    pub(crate) fn addresses(&self) -> &AddressPolicy {
        &self.inner.addresses
    }

    /// Starts the connection to one gateway (nothing if it runs already).
    pub(crate) async fn start(&self, link: OutboundLink) -> Result<(), Error> {
        let device = self.device().await?.clone();
        let gateway = link.gateway_id;
        if self.inner.running().contains_key(&gateway) {
            return Ok(());
        }
        let options = OpenClawOptions::new(link.url.clone())
            .token(link.token)
            .device(Some(device))
            .device_token(link.device_token)
            .addresses(self.inner.addresses.clone());
        let (events_tx, events) = mpsc::unbounded_channel();
        let connection = OpenClawConnection::start(options, events_tx);
        {
            let mut running = self.inner.running();
            if running.contains_key(&gateway) {
                return Ok(()); // another caller won the race; ours closes on drop
            }
            running.insert(gateway, connection.clone());
        }
        let url = mc_openclaw::connection::loggable_url(&link.url);
        tracing::info!(%gateway, %url, "dialling an OpenClaw gateway");
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(drive(weak, gateway, link.url, connection, events));
        Ok(())
    }

    /// The relay's device identity: the stored one, or a new one stored now.
    async fn device(&self) -> Result<&DeviceIdentity, Error> {
        self.inner
            .device
            .get_or_try_init(|| async {
                let fresh = DeviceIdentity::generate()
                    .map_err(|e| Error::Internal(format!("no randomness for a device key: {e}")))?;
                let store = self.inner.relay.services().store();
                let stored = store.setting_or_insert(DEVICE_KEY_SETTING, &fresh.to_text()).await?;
                DeviceIdentity::from_text(&stored).ok_or_else(|| {
                    Error::Internal(format!(
                        "the stored setting {DEVICE_KEY_SETTING} is not a 32-byte key"
                    ))
                })
            })
            .await
    }
}

/// One session of a connection, as the router's link: the router closing it (the link ended,
/// the relay stops) ends only this session, and the connection reconnects as it would; the
/// router revoking it (4001: the gateway was deleted) closes the connection for good.
#[derive(Debug)]
struct SessionLink {
    connection: OpenClawConnection,
    open: AtomicBool,
}

#[async_trait]
impl GatewayLink for SessionLink {
    async fn call(
        &self,
        method: &str,
        params: Payload,
        timeout: Duration,
    ) -> Result<Payload, CallError> {
        if !self.open.load(Ordering::SeqCst) {
            return Err(CallError::Closed);
        }
        self.connection.call(method, params, timeout).await
    }

    fn close(&self, code: u16) {
        self.open.store(false, Ordering::SeqCst);
        if code == close_code::UNAUTHORIZED {
            self.connection.close();
        }
    }
}

// One arm per connection event, each the registry call and the link change it makes: the
// state of an outbound gateway moves only here, so it reads as one table.
/// Follows one connection until it closes for good (the gateway was deleted, or the relay
/// closed its link).
async fn drive(
    pool: Weak<PoolInner>,
    gateway: GatewayId,
    url: String,
    connection: OpenClawConnection,
    mut events: mpsc::UnboundedReceiver<ConnectionEvent>,
) {
    let mut attached: Option<(u64, super::link_board::OnBoard)> = None;
    let interval = match pool.upgrade() {
        Some(p) => p.relay.services().registry().config().heartbeat_interval(),
        None => return,
    };
    let mut ticks = tokio::time::interval(interval);
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = ticks.tick() => {
                let Some(pool) = pool.upgrade() else { break };
                if attached.is_some()
                    && let Err(err) = pool.relay.services().registry().touch(gateway).await
                {
                    tracing::warn!(error = %err, %gateway, "cannot record gateway liveness");
                }
                continue;
            }
        };
        let (Some(event), Some(pool)) = (event, pool.upgrade()) else { break };
        let registry = pool.relay.services().registry();
        let gone = match event {
            ConnectionEvent::Up(hello) => {
                let agents = match connection
                    .call_method::<AgentsList>(&Default::default(), AGENTS_TIMEOUT)
                    .await
                {
                    Ok(list) => Some(AgentReport::from_agents_list(&list)),
                    Err(err) => {
                        tracing::warn!(error = %err, %gateway, "agents.list failed; keeping the agents known");
                        None
                    }
                };
                let version = Some(hello.server.version.as_str()).filter(|v| !v.is_empty());
                match registry.outbound_connected(gateway, version, agents.as_deref()).await {
                    Err(Error::NotFound(_)) => true,
                    other => {
                        if let Err(err) = other {
                            tracing::warn!(error = %err, %gateway, "cannot record the gateway's agents");
                        }
                        detach(&pool.relay, gateway, &mut attached);
                        let link = SessionLink {
                            connection: connection.clone(),
                            open: AtomicBool::new(true),
                        };
                        match pool.relay.attach_gateway(gateway, Arc::new(link)).await {
                            Ok(generation) => {
                                let board = pool.board.add(
                                    gateway,
                                    "outbound",
                                    Some(url.clone()),
                                    Probe::Outbound(connection.clone()),
                                );
                                attached = Some((generation, board));
                                tracing::info!(%gateway, agents = agents.as_ref().map(Vec::len), "OpenClaw gateway linked");
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, %gateway, "cannot attach the gateway")
                            }
                        }
                        false
                    }
                }
            }
            ConnectionEvent::Down(why) => {
                tracing::info!(%gateway, reason = %why, "OpenClaw gateway link lost");
                detach(&pool.relay, gateway, &mut attached);
                false
            }
            ConnectionEvent::Unreachable(why) => {
                detach(&pool.relay, gateway, &mut attached);
                matches!(
                    registry.outbound_unreachable(gateway, &why).await,
                    Err(Error::NotFound(_))
                )
            }
            ConnectionEvent::Refused(failure) => {
                detach(&pool.relay, gateway, &mut attached);
                let request = match &failure {
                    ConnectFailure::PairingRequired { request_id } => request_id.clone(),
                    _ => None,
                };
                matches!(
                    registry
                        .outbound_refused(gateway, request.as_deref(), &failure.summary())
                        .await,
                    Err(Error::NotFound(_))
                )
            }
            ConnectionEvent::DeviceToken(token) => {
                if let Err(err) = registry.keep_device_token(gateway, &token.0).await {
                    tracing::warn!(error = %err, %gateway, "cannot keep the issued device token");
                }
                false
            }
            ConnectionEvent::Event(event) => {
                pool.relay.gateway_event(gateway, &event).await;
                false
            }
            _ => false,
        };
        if gone {
            tracing::info!(%gateway, "the gateway was deleted; closing its connection");
            connection.close();
            break;
        }
    }
    if let Some(pool) = pool.upgrade() {
        detach(&pool.relay, gateway, &mut attached);
        pool.running().remove(&gateway);
    }
}

fn detach(
    relay: &Relay,
    gateway: GatewayId,
    attached: &mut Option<(u64, super::link_board::OnBoard)>,
) {
    if let Some((generation, _board)) = attached.take() {
        relay.detach_gateway(gateway, generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mc_openclaw::connection::ConnectionState;

    async fn ends(connection: &OpenClawConnection, within: Duration) -> bool {
        let mut state = connection.state();
        tokio::time::timeout(within, state.wait_for(|s| *s == ConnectionState::Closed))
            .await
            .is_ok()
    }

    /// The router ending a link leaves the connection reconnecting; revoking it (4001)
    /// closes the connection for good.
    #[tokio::test]
    async fn only_a_revoked_link_closes_the_connection() {
        let (tx, _events) = mpsc::unbounded_channel();
        let nowhere = OpenClawOptions::new("ws://127.0.0.1:1");
        let connection = OpenClawConnection::start(nowhere, tx);
        let link = SessionLink { connection: connection.clone(), open: AtomicBool::new(true) };
        link.close(close_code::NORMAL);
        let call = link.call("health", Payload::null(), Duration::from_secs(1)).await;
        assert_eq!(call, Err(CallError::Closed));
        assert!(!ends(&connection, Duration::from_millis(300)).await, "still reconnecting");

        let again = SessionLink { connection: connection.clone(), open: AtomicBool::new(true) };
        again.close(close_code::UNAUTHORIZED);
        assert!(ends(&connection, Duration::from_secs(5)).await, "closed for good");
    }
}
