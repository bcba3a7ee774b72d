//! # mc-core
//!
//! The heart of the Mission Control relay: the domain model, the storage traits every store
//! implements, and (in later layers) the engines that need only those traits. It knows nothing
//! of sockets, HTTP or databases: adapters (`mc-store-sqlite`, `mc-store-postgres`,
//! `mc-transport-ws`, …) depend on it, never the reverse.
//!
//! ## Layout
//! - [`ids`]: typed UUID v7 identifiers.
//! - [`model`]: the entities and statuses of the relay.
//! - [`store`]: the async storage traits, [`Store`] (all of them, held as `Arc<dyn Store>`),
//!   [`StoreError`] and cursor paging.
//! - [`clock`]: [`Clock`], so time-dependent logic is testable.
//! - [`auth`]: [`Authenticator`] and [`Principal`]; with `server`, the built-in account service
//!   (argon2id passwords, HS256 JWTs, rotating refresh tokens, lockout).
//! - `admin` (feature `server`): user administration and assignments.
//! - `registry` (feature `server`): gateway registration, heartbeats and the liveness sweeper.
//! - [`events`]: what services publish ([`RelayEvent`]): a lossless feed for the relay engine,
//!   a bounded broadcast for observers.
//! - [`validate`]: field checks with messages that name the field.
//! - [`protocol`]: the socket protocols as data (users' frames; the gateway link's OpenClaw
//!   frames), with decoders that say what is wrong.
//! - [`Services`] (feature `server`): the services of one instance, built from parts.
//! - `relay`, `bus`, `link` (feature `server`): the relay engine: the [`Relay`] deciding what
//!   to store and whom to send what (its module docs follow one message through it), the
//!   [`Bus`] every delivery crosses ([`InProcessBus`] by default), and the [`GatewayLink`] any
//!   gateway transport implements ([`FrameLink`]).
//! - [`Error`]: the one error of the services; `testing` (feature): the store conformance suite.
//!
//! ## Features
//! | feature | default | what it adds |
//! |---|---|---|
//! | `server` | yes | the server-side engines (`AuthService`, `AdminService`, `Relay`) and their dependencies (argon2, jsonwebtoken); client-only users turn it off |
//! | `testing` | no | `mc_core::testing` and [`store_conformance_tests!`]: the suite every store runs |
//!
//! ## Example
//! ```no_run
//! use std::sync::Arc;
//! use mc_core::{Organization, OrgId, Store, Clock, SystemClock};
//!
//! async fn create_org(store: Arc<dyn Store>, name: &str) -> Result<OrgId, mc_core::StoreError> {
//!     let org = Organization { id: OrgId::new(), name: name.into(), created_at: SystemClock.now() };
//!     store.create_org(&org).await?;
//!     Ok(org.id)
//! }
//! ```

#[cfg(feature = "server")]
pub mod admin;
pub mod auth;
#[cfg(feature = "server")]
pub mod bus;
pub mod clock;
mod error;
pub mod events;
pub mod ids;
#[cfg(feature = "server")]
pub mod link;
pub mod model;
pub mod protocol;
mod redact;
#[cfg(feature = "server")]
pub mod registry;
#[cfg(feature = "server")]
pub mod relay;
#[cfg(feature = "server")]
mod services;
mod setting;
#[cfg(feature = "server")]
pub mod socket;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;

#[cfg(feature = "server")]
pub use admin::{AdminService, AssignAgent, UserAdminUpdate};
pub use auth::{Authenticator, Principal};
#[cfg(feature = "server")]
pub use bus::{Bus, InProcessBus};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result, TokenRejection};
pub use events::{EventFeed, Events, RelayEvent};
pub use ids::*;
#[cfg(feature = "server")]
pub use link::{FrameLink, GatewayLink};
pub use model::*;
pub use redact::Secret;
#[cfg(feature = "server")]
pub use registry::{OutboundGatewayRequest, RegistryConfig, RegistryService};
#[cfg(feature = "server")]
pub use relay::{
    ConnectRefusal, MessageWriter, Outgoing, Relay, RelayLimits, UserConnection, UserSession,
};
#[cfg(feature = "server")]
pub use services::{Services, ServicesBuilder};
pub use store::*;
