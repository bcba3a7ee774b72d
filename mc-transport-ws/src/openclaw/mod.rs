//! The outbound OpenClaw connection (feature `client`; SPEC §7.2, OPENCLAW.md): how the relay
//! (or the gateway bridge) speaks protocol v4 to an OpenClaw gateway as `gateway-client` /
//! `backend`.
//!
//! - [`agents`]: reading `agents.list`;
//! - [`device`]: the Ed25519 device identity and the challenge signature;
//! - [`handshake`]: the `connect` request, `hello-ok`, and what a refusal means;
//! - [`connection`]: [`OpenClawConnection`], kept up by its own task (requests, events, the
//!   tick watchdog, reconnects).
//!
//! With the `server` feature too, an [`OpenClawConnection`] is a relay
//! [`GatewayLink`](mc_core::GatewayLink).

pub mod agents;
pub mod connection;
pub mod device;
pub mod handshake;

pub use agents::agent_reports;
pub use connection::{
    CallError, ConnectionEvent, ConnectionState, OpenClawConnection, OpenClawOptions,
};
pub use device::DeviceIdentity;
pub use handshake::{ClientInfo, ConnectFailure, HelloOk};

#[cfg(feature = "server")]
mod link {
    use std::time::Duration;

    use async_trait::async_trait;
    use mc_core::{GatewayLink, LinkError};
    use serde_json::Value;

    use super::{CallError, OpenClawConnection};

    #[async_trait]
    impl GatewayLink for OpenClawConnection {
        async fn call(
            &self,
            method: &str,
            params: Value,
            timeout: Duration,
        ) -> Result<Value, LinkError> {
            OpenClawConnection::call(self, method, params, timeout).await.map_err(|e| match e {
                CallError::Closed => LinkError::Closed,
                CallError::Timeout => LinkError::Timeout,
                CallError::Remote(shape) => LinkError::Remote(shape),
            })
        }

        fn close(&self, _code: u16) {
            OpenClawConnection::close(self);
        }
    }
}
