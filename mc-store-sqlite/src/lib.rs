//! # mc-store-sqlite
//!
//! [`SqliteStore`]: the SQLite implementation of every `mc-core` storage trait, and the relay's
//! embedded default. One file (or `sqlite::memory:` for tests), migrations embedded and run on
//! open, WAL journal, a busy timeout, foreign keys on.
//!
//! Writes go through a single writer connection (SQLite allows one writer at a time; queueing
//! in the pool is fairer and faster than sleeping in SQLite's busy handler), except, for files,
//! messages: their group-commit batches run on a writer thread of their own, one job per batch
//! (`writer.rs`, the batch's statements in `group_commit.rs`); reads use a separate pool of read-only connections that WAL lets run
//! alongside the writers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mc_store_sqlite::Error> {
//! use std::sync::Arc;
//! use mc_store_sqlite::SqliteStore;
//!
//! let store: Arc<dyn mc_core::Store> = Arc::new(SqliteStore::open("sqlite://mc.db").await?);
//! # Ok(()) }
//! ```

mod batch;
mod chat;
mod codec;
mod error;
mod group_commit;
mod identity;
mod outbound;
mod registration;
mod registry;
mod store;
mod writer;

pub use error::Error;
pub use store::{SqliteStore, SqliteStoreOptions, Synchronous};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
