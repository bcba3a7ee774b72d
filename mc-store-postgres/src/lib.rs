//! # mc-store-postgres
//!
//! [`PgStore`]: the PostgreSQL implementation of every `mc-core` storage trait, for
//! deployments that run several relay instances on shared state. Migrations are embedded and
//! run on connect (under PostgreSQL's advisory lock, so instances starting together are safe).
//!
//! ```no_run
//! # async fn demo() -> Result<(), mc_store_postgres::Error> {
//! use std::sync::Arc;
//! use mc_store_postgres::PgStore;
//!
//! let store: Arc<dyn mc_core::Store> =
//!     Arc::new(PgStore::connect("postgres://postgres@127.0.0.1:5432/mc").await?);
//! # Ok(()) }
//! ```

mod batch;
mod chat;
mod codec;
mod error;
mod identity;
mod outbound;
mod registry;
mod store;

pub use error::Error;
/// Re-exported so callers can build [`PgStoreOptions`] from parsed connect options.
pub use sqlx::postgres::PgConnectOptions;
pub use store::{PgStore, PgStoreOptions};
