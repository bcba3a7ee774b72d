//! # mc-core
//!
//! The heart of the Mission Control relay: the domain model, the storage traits every store
//! implements, and (in later layers) the engines that need only those traits. It knows nothing
//! of sockets, HTTP or databases: adapters (`mc-store-sqlite`, `mc-store-postgres`,
//! `mc-transport-ws`, …) depend on it, never the reverse.
//!
//! ## Layout
//! - [`ids`]: typed UUID v7 identifiers.
//! - [`model`]: the entities and statuses of SPEC §3.
//! - [`store`]: the async storage traits, [`Store`] (all of them, held as `Arc<dyn Store>`),
//!   [`StoreError`] and cursor paging.
//! - [`clock`]: [`Clock`], so time-dependent logic is testable.
//! - `testing` (feature `testing`): the store conformance suite.
//!
//! ## Features
//! | feature | what it adds |
//! |---|---|
//! | `testing` | `mc_core::testing` and [`store_conformance_tests!`]: the suite every store runs |
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

pub mod clock;
pub mod ids;
pub mod model;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::*;
pub use model::*;
pub use store::*;
