//! Opening the database: options, pools, migrations.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use mc_core::{StoreHealth, StoreResult};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{Error, store_error};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What a commit survives (SQLite's `synchronous` setting under WAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// A commit survives the process crashing; a power loss or OS crash may lose the last
    /// commits (never corrupts the file). The default, and what SQLite recommends under WAL.
    #[default]
    Normal,
    /// Every commit is flushed to the disk (`fsync`) before it returns: it survives a power
    /// loss too. Group commit keeps this to one flush per batch.
    Full,
}

/// How to open a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteStoreOptions {
    url: String,
    readers: u32,
    busy_timeout: Duration,
    synchronous: Synchronous,
    page_cache_kib: Option<u32>,
}

impl SqliteStoreOptions {
    /// Options for `url`: `sqlite://path/to/file.db`, `sqlite:relative.db` or
    /// `sqlite::memory:`. The file is created if missing.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Normal,
            page_cache_kib: None,
        }
    }

    /// The most page cache each connection keeps, in KiB (SQLite's `cache_size`; allocated as
    /// used). By default 32 MiB per reader and 64 MiB for the writer: a store serving a large
    /// database grows by up to about 256 MiB of cache, then stays there. Smaller caches trade
    /// memory for reads through the kernel (pages are also mapped, `mmap_size` 256 MiB).
    pub fn page_cache_kib(mut self, kib: u32) -> Self {
        self.page_cache_kib = Some(kib.max(64));
        self
    }

    /// What a commit survives (default [`Synchronous::Normal`]).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How many read-only connections to keep (default 4). Ignored for in-memory databases,
    /// which use one connection for everything.
    pub fn readers(mut self, readers: u32) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// How long a statement waits for another process's write lock before failing with
    /// `StoreError::Unavailable` (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    fn is_memory(&self) -> bool {
        self.url.contains(":memory:") || self.url.contains("mode=memory")
    }
}

/// The SQLite store. Cheap to clone: clones share the connection pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// One connection: every write but messages', and reads that must see the write in
    /// progress.
    pub(crate) writer: SqlitePool,
    /// Read-only connections (the writer itself for in-memory databases).
    pub(crate) reader: SqlitePool,
    /// Files only: the thread that writes messages and their delivery states.
    pub(crate) messages: Option<std::sync::Arc<crate::writer::WriterThread>>,
    /// In-memory only: a connection that is never used and never closed while the store
    /// lives. An in-memory database lasts as long as one connection to it is open, and the
    /// pool may replace its connection (sqlx closes one that fails its check after a
    /// cancelled query); without this the replacement would open an empty database.
    _memory_anchor: Option<std::sync::Arc<std::sync::Mutex<sqlx::SqliteConnection>>>,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `url` with default options.
    pub async fn open(url: &str) -> Result<Self, Error> {
        Self::open_with(SqliteStoreOptions::new(url)).await
    }

    /// Opens a fresh in-memory database, for tests.
    pub async fn open_in_memory() -> Result<Self, Error> {
        Self::open("sqlite::memory:").await
    }

    /// Opens (creating if needed) and migrates the database described by `options`.
    pub async fn open_with(options: SqliteStoreOptions) -> Result<Self, Error> {
        let url = options.url.clone();
        let connect = SqliteConnectOptions::from_str(&url)
            .map_err(|source| Error::InvalidUrl { url: url.clone(), source })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.synchronous {
                Synchronous::Normal => SqliteSynchronous::Normal,
                Synchronous::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            // Pages stay in memory instead of being read back through the kernel: a bigger
            // page cache per connection (a maximum, allocated as used) and reads through mmap.
            .pragma("cache_size", format!("-{}", options.page_cache_kib.unwrap_or(32 * 1024)))
            .pragma("mmap_size", "268435456");
        // Files are checkpointed by a thread of their own (`writer.rs`), not inside commits.
        let connect = if options.is_memory() {
            connect
        } else {
            connect.pragma("wal_autocheckpoint", crate::writer::WAL_SAFETY_PAGES.to_string())
        };

        let memory = options.is_memory();
        let memory_anchor = if memory {
            use sqlx::Connection as _;
            let anchor = sqlx::SqliteConnection::connect_with(&connect)
                .await
                .map_err(|source| Error::Open { url: url.clone(), source })?;
            Some(std::sync::Arc::new(std::sync::Mutex::new(anchor)))
        } else {
            None
        };
        // An in-memory database lives as long as a connection to it: never let it go idle.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(u32::from(memory))
            .idle_timeout(if memory { None } else { Some(Duration::from_secs(600)) })
            .max_lifetime(if memory { None } else { Some(Duration::from_secs(3600)) })
            .connect_with(connect.clone())
            .await
            .map_err(|source| Error::Open { url: url.clone(), source })?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|source| Error::Migrate { url: url.clone(), source })?;

        let (reader, messages) = if memory {
            (writer.clone(), None)
        } else {
            let reader = SqlitePoolOptions::new()
                .max_connections(options.readers)
                .connect_with(connect.clone().read_only(true))
                .await
                .map_err(|source| Error::Open { url: url.clone(), source })?;
            let thread = crate::writer::WriterThread::open(
                connect.get_filename(),
                options.synchronous,
                options.busy_timeout,
                options.page_cache_kib.unwrap_or(64 * 1024),
            )?;
            (reader, Some(std::sync::Arc::new(thread)))
        };
        tracing::debug!(%url, memory, readers = options.readers, "opened SQLite store");
        Ok(Self { writer, reader, messages, _memory_anchor: memory_anchor })
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Starts a write transaction that takes SQLite's write lock at once (`BEGIN IMMEDIATE`),
    /// so a read-then-write cannot fail halfway on another process's lock.
    pub(crate) async fn begin_write(
        &self,
    ) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(|e| store_error(e, "database"))
    }
}

#[async_trait]
impl StoreHealth for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
            .map_err(|e| store_error(e, "database"))
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool may close its one connection (after a cancelled query fails its check); the
    /// in-memory database must outlive it.
    #[tokio::test]
    async fn an_in_memory_database_survives_its_connection_being_replaced() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        sqlx::query("CREATE TABLE kept (v INTEGER)").execute(&store.writer).await.unwrap();
        sqlx::query("INSERT INTO kept VALUES (7)").execute(&store.writer).await.unwrap();
        let mut conn = store.writer.acquire().await.unwrap();
        conn.close_on_drop();
        drop(conn);
        let (v,): (i64,) =
            sqlx::query_as("SELECT v FROM kept").fetch_one(&store.writer).await.unwrap();
        assert_eq!(v, 7);
    }

    /// `page_cache_kib` and `synchronous` reach every connection: the sqlx reader and writer
    /// and the messages' writer thread (SQLite takes a negative `cache_size` as KiB; `FULL` is
    /// 2 and `NORMAL` 1). By default: 32 MiB (64 MiB on the writer thread) and NORMAL.
    #[tokio::test]
    async fn the_options_reach_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("options.db").display());
        let pragmas = |store: SqliteStore| async move {
            let mut seen = Vec::new();
            for pool in [&store.reader, &store.writer] {
                let (cache,): (i64,) =
                    sqlx::query_as("PRAGMA cache_size").fetch_one(pool).await.unwrap();
                let (sync,): (i64,) =
                    sqlx::query_as("PRAGMA synchronous").fetch_one(pool).await.unwrap();
                seen.push((cache, sync));
            }
            let thread = store.messages.clone().unwrap();
            let on_thread = thread
                .run(|conn| {
                    let pragma = |name: &str| -> i64 {
                        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0)).unwrap()
                    };
                    (pragma("cache_size"), pragma("synchronous"))
                })
                .await
                .unwrap();
            seen.push(on_thread);
            store.close().await;
            seen
        };
        let tuned =
            SqliteStoreOptions::new(&url).page_cache_kib(1024).synchronous(Synchronous::Full);
        let tuned = SqliteStore::open_with(tuned).await.unwrap();
        assert_eq!(pragmas(tuned).await, [(-1024, 2); 3]);
        let tiny = SqliteStore::open_with(SqliteStoreOptions::new(&url).page_cache_kib(1));
        assert_eq!(pragmas(tiny.await.unwrap()).await, [(-64, 1); 3], "at least 64 KiB");
        let default = SqliteStore::open(&url).await.unwrap();
        assert_eq!(pragmas(default).await, [(-32 * 1024, 1), (-32 * 1024, 1), (-64 * 1024, 1)]);
    }

    /// Migration 0005 rebuilds the message table: every message keeps its columns and order,
    /// and the rules it rewrote (role, delivery state) still refuse what they refused.
    #[tokio::test]
    async fn migration_5_keeps_every_message_and_every_rule() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let connect = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(false);
        let old = SqlitePoolOptions::new().max_connections(1).connect_with(connect).await.unwrap();
        MIGRATOR.run_to(4, &old).await.unwrap();
        let session = [7_u8; 16].to_vec();
        sqlx::query(
            "INSERT INTO chat_sessions (id, user_id, agent_id, gateway_id, session_key, status,
                 last_seq, created_at, updated_at) VALUES (?1, ?1, ?1, ?1, 'k', 'active', 2, 0, 0)",
        )
        .bind(&session)
        .execute(&old)
        .await
        .unwrap();
        for (seq, role, delivery) in [(2, "agent", None), (1, "user", Some("sent"))] {
            sqlx::query(
                "INSERT INTO messages (id, session_id, seq, role, content, created_at, delivery)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?3, ?6)",
            )
            .bind(vec![seq as u8; 16])
            .bind(&session)
            .bind(seq)
            .bind(role)
            .bind(format!("text {seq}"))
            .bind(delivery)
            .execute(&old)
            .await
            .unwrap();
        }
        old.close().await;

        let store = SqliteStore::open(&url).await.unwrap();
        let rows: Vec<(i64, String, String, Option<String>)> =
            sqlx::query_as("SELECT seq, role, content, delivery FROM messages ORDER BY rowid")
                .fetch_all(&store.reader)
                .await
                .unwrap();
        assert_eq!(
            rows,
            [
                (2, "agent".into(), "text 2".into(), None),
                (1, "user".into(), "text 1".into(), Some("sent".into())),
            ]
        );
        for (role, delivery) in [("robot", None), ("user", Some("lost"))] {
            let refused = sqlx::query(
                "INSERT INTO messages (id, session_id, seq, role, content, created_at, delivery)
                 VALUES (?1, ?2, 3, ?3, 'x', 0, ?4)",
            )
            .bind(vec![9_u8; 16])
            .bind(&session)
            .bind(role)
            .bind(delivery)
            .execute(&store.writer)
            .await;
            assert!(refused.is_err(), "{role} / {delivery:?} was accepted");
        }
        store.close().await;
    }
}
