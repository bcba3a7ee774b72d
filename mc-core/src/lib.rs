//! # mc-core
//!
//! The heart of the Mission Control relay: the domain model, the storage traits every store
//! implements, and (in later layers) the engines that need only those traits. It knows nothing
//! of sockets, HTTP or databases: adapters (`mc-store-sqlite`, `mc-store-postgres`,
//! `mc-transport-ws`, …) depend on it, never the reverse.
//!
//! ## Layout
//! Every public name has one path. The vocabulary every crate speaks sits at the root:
//! - typed UUID v7 identifiers ([`UserId`], [`SessionId`], …) and the entities and statuses
//!   of the relay ([`User`], [`ChatSession`], [`Message`], …);
//! - the async storage traits, [`Store`] (all of them, held as `Arc<dyn Store>`),
//!   [`StoreError`] and cursor paging ([`Page`], [`Paged`]);
//! - [`Clock`], so time-dependent logic is testable;
//! - [`RelayEvent`]: what services publish, a lossless feed for the relay engine
//!   ([`EventFeed`]) and a bounded broadcast for observers ([`Events`]);
//! - [`Error`]: the one error of the services; [`Secret`] for values that never reach a log;
//! - [`Services`] (feature `server`): the services of one instance, built from parts.
//!
//! The engines and the wire live in their own modules, reached only through them:
//! - [`auth`]: the `Authenticator` trait and `Principal`; with `server`, the built-in account
//!   service (argon2id passwords, HS256 JWTs, rotating refresh tokens, lockout).
//! - `admin` (feature `server`): user administration and assignments.
//! - `registry` (feature `server`): gateway registration, heartbeats and the liveness sweeper.
//! - [`validate`]: field checks with messages that name the field.
//! - [`protocol`]: the socket protocols as data (users' frames; the gateway link's frames
//!   around OpenClaw's), with decoders that say what is wrong, and the close codes.
//! - `relay`, `bus`, `link`, `socket` (feature `server`): the relay engine: `relay::Relay`
//!   deciding what to store and whom to send what (its module docs follow one message through
//!   it), the `bus::Bus` every delivery crosses (`bus::InProcessBus` by default), the
//!   `link::GatewayLink` any gateway transport implements, and the sans-IO socket rules every
//!   socket obeys.
//! - `testing` (feature): the store conformance suite.
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
//! use mc_core::{Clock, OrgId, Organization, Store, SystemClock};
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
mod clock;
mod error;
mod events;
mod ids;
#[cfg(feature = "server")]
pub mod link;
mod model;
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
mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;

pub use clock::*;
pub use error::{Error, Result, TokenRejection};
pub use events::*;
pub use ids::*;
pub use model::*;
pub use redact::Secret;
#[cfg(feature = "server")]
pub use services::{Services, ServicesBuilder};
pub use store::*;
