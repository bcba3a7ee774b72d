//! Connecting: options, the pool, migrations.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use mc_core::{StoreHealth, StoreResult};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::error::{Error, store_error};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How to connect a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    connect: PgConnectOptions,
    max_connections: u32,
    acquire_timeout: Duration,
    write_lanes: Option<usize>,
}

impl PgStoreOptions {
    /// Options from already-parsed connect options (to set a schema search path, TLS, …).
    pub fn new(connect: PgConnectOptions) -> Self {
        Self {
            connect,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            write_lanes: None,
        }
    }

    /// Options from a `postgres://user:password@host:port/database` URL.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        PgConnectOptions::from_str(url).map(Self::new).map_err(Error::InvalidUrl)
    }

    /// The most connections the pool opens (default 10).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How many message batches the relay's writer commits at once, each on a connection of
    /// its own (default 1, at most `max_connections`). More lanes raise pure append
    /// throughput when PostgreSQL has cores to spare (store bench: 6 000 → 23 000/s with 3),
    /// but cost CPU: with PostgreSQL on the relay's own 2 cores, 3 lanes lowered relay round
    /// trips by ~23 % (BENCHMARKS.md).
    pub fn write_lanes(mut self, n: usize) -> Self {
        self.write_lanes = Some(n.max(1));
        self
    }

    /// How long a call waits for a free connection before failing with
    /// `StoreError::Unavailable` (default 5 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }
}

/// The PostgreSQL store. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    pub(crate) write_lanes: usize,
}

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(PgStoreOptions::from_url(url)?).await
    }

    /// Connects as `options` say and migrates the database.
    pub async fn connect_with(options: PgStoreOptions) -> Result<Self, Error> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(options.connect)
            .await
            .map_err(Error::Connect)?;
        MIGRATOR.run(&pool).await.map_err(Error::Migrate)?;
        let write_lanes = options.write_lanes.unwrap_or(1).min(options.max_connections as usize);
        tracing::debug!(
            max_connections = options.max_connections,
            write_lanes,
            "connected PostgreSQL store"
        );
        Ok(Self { pool, write_lanes })
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await.map_err(|e| store_error(e, "database"))
    }
}

#[async_trait]
impl StoreHealth for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| store_error(e, "database"))
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
    }
}
