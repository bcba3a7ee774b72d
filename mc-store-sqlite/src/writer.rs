//! [`WriterThread`]: the message write path of a SQLite file, on a thread of its own.
//!
//! Group-commit batches (`write_batch`) are the relay's hot path. Through sqlx every statement
//! is a hand-off to sqlx's connection thread and back (a wake-up of each side, and rows sent
//! one by one); a batch of ~40 messages costs a dozen of them. Here a whole batch is one job:
//! the thread runs every statement of it synchronously on its own connection (rusqlite, on
//! the same bundled libsqlite3 as sqlx), from statements prepared once, and sends back one
//! result. Measured: BENCHMARKS.md ("store").
//!
//! It is a second connection that writes, beside sqlx's writer (which keeps every other
//! write): the two take SQLite's write lock in turn, each waiting in SQLite's busy handler for
//! the other. In-memory databases (one connection each) do not use it.
//!
//! A third thread checkpoints the WAL (copies it into the database file and flushes it),
//! which SQLite would otherwise do inside whichever commit crosses 1 000 pages, stalling that
//! commit's callers for the flush: every [`CHECKPOINT_EVERY`] it runs a passive checkpoint,
//! which never blocks the writers. A commit still checkpoints by itself past
//! [`WAL_SAFETY_PAGES`] (the WAL growing that far means the checkpointer cannot keep up).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use mc_core::*;
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::copy_error;
use crate::group_commit::{LastSeqs, set_delivery, write_batch};
use crate::store::Synchronous;

type Job = Box<dyn FnOnce(&mut Writer) + Send>;

/// What the writer thread owns: its connection, and what it remembers of the sessions it
/// wrote (`group_commit::LastSeqs`).
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) last_seqs: LastSeqs,
}

/// The checkpointer's page cache, KiB.
const CHECKPOINT_CACHE_KIB: u32 = 2048;
/// How often the checkpointer runs.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL size (pages) past which a commit checkpoints by itself.
pub(crate) const WAL_SAFETY_PAGES: u32 = 16_384;

/// The writer and checkpointer threads of one SQLite file. Dropping it ends both threads once
/// the writer's queue is done.
#[derive(Debug)]
pub(crate) struct WriterThread {
    jobs: mpsc::Sender<Job>,
    _stop_checkpoints: mpsc::Sender<()>,
}

/// Opens a connection to the database file with the store's settings.
fn connect(
    path: &Path,
    synchronous: Synchronous,
    busy_timeout: Duration,
    cache_kib: u32,
) -> Result<Connection, crate::Error> {
    let conn = Connection::open(path).map_err(|e| crate::Error::Writer(e.to_string()))?;
    conn.busy_timeout(busy_timeout).map_err(|e| crate::Error::Writer(e.to_string()))?;
    let sync = match synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{cache_kib}; PRAGMA mmap_size = 268435456;
         PRAGMA wal_autocheckpoint = {WAL_SAFETY_PAGES};"
    ))
    .map_err(|e| crate::Error::Writer(e.to_string()))?;
    Ok(conn)
}

fn unavailable(message: &str) -> StoreError {
    StoreError::Unavailable { message: message.into(), source: None }
}

/// Maps a rusqlite error; `missing` names what an absent row means.
pub(crate) fn store_error(err: rusqlite::Error, missing: &'static str) -> StoreError {
    match &err {
        rusqlite::Error::SqliteFailure(e, _) => match e.code {
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                StoreError::unavailable("SQLite database is busy", err)
            }
            rusqlite::ErrorCode::ConstraintViolation
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                StoreError::NotFound(missing)
            }
            _ => StoreError::backend("SQLite write failed", err),
        },
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound(missing),
        _ => StoreError::backend("SQLite write failed", err),
    }
}

impl WriterThread {
    /// Opens its connection on the (migrated) database file at `path` and starts the thread.
    pub(crate) fn open(
        path: &Path,
        synchronous: Synchronous,
        busy_timeout: Duration,
        cache_kib: u32,
    ) -> Result<Self, crate::Error> {
        let conn = connect(path, synchronous, busy_timeout, cache_kib)?;
        conn.set_prepared_statement_cache_capacity(64);
        // Checkpoints copy WAL frames into the file; they need little cache of their own.
        let checkpoints = connect(path, synchronous, busy_timeout, CHECKPOINT_CACHE_KIB)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("mc-sqlite-writer".into())
            .spawn(move || {
                let mut writer = Writer { conn, last_seqs: LastSeqs::default() };
                while let Ok(job) = queue.recv() {
                    job(&mut writer);
                }
            })
            .map_err(|e| crate::Error::Writer(e.to_string()))?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("mc-sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    if let Err(err) =
                        checkpoints.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(error = %err, "WAL checkpoint failed; retrying later");
                    }
                }
            })
            .map_err(|e| crate::Error::Writer(e.to_string()))?;
        Ok(Self { jobs, _stop_checkpoints: stop })
    }

    /// Runs `work` on the writer thread's connection and waits for its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> StoreResult<T> {
        self.run_writer(move |writer| work(&mut writer.conn)).await
    }

    /// Runs `work` on the writer thread and waits for its result.
    pub(crate) async fn run_writer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Writer) -> T + Send + 'static,
    ) -> StoreResult<T> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move |writer| {
            let _ = done.send(work(writer));
        });
        self.jobs.send(job).map_err(|_| unavailable("the SQLite writer thread stopped"))?;
        result.await.map_err(|_| unavailable("the SQLite writer thread stopped"))
    }

    /// One group commit (see `MessageStore::write_batch`).
    pub(crate) async fn write_batch(
        &self,
        messages: Vec<NewMessage>,
        deliveries: Vec<DeliveryUpdate>,
    ) -> Vec<StoreResult<Appended>> {
        let n = messages.len();
        match self.run_writer(move |writer| write_batch(writer, &messages, &deliveries)).await {
            Ok((results, _route)) => results,
            Err(e) => (0..n).map(|_| Err(copy_error(&e))).collect(),
        }
    }

    /// One delivery update, in its own transaction.
    pub(crate) async fn set_delivery(&self, update: DeliveryUpdate) -> StoreResult<bool> {
        self.run(move |conn| {
            in_transaction(conn, |tx| {
                set_delivery(tx, &update).map_err(|e| store_error(e, "message"))
            })
        })
        .await?
    }
}

/// Runs `work` in a write transaction (`BEGIN IMMEDIATE`), committing if it succeeds and
/// rolling back if it fails; the statements are prepared once.
pub(crate) fn in_transaction<T, E: From<StoreError>>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ());
    run("BEGIN IMMEDIATE").map_err(|e| store_error(e, "session"))?;
    match work(conn) {
        Ok(value) => match run("COMMIT") {
            Ok(()) => Ok(value),
            Err(e) => {
                let _ = run("ROLLBACK");
                Err(store_error(e, "session").into())
            }
        },
        Err(e) => {
            let _ = run("ROLLBACK");
            Err(e)
        }
    }
}
