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

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use mc_core::*;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::copy_error;
use crate::store::Synchronous;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

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
fn store_error(err: rusqlite::Error, missing: &'static str) -> StoreError {
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
                let mut conn = conn;
                while let Ok(job) = queue.recv() {
                    job(&mut conn);
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

    /// Runs `work` on the writer thread and waits for its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> StoreResult<T> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = done.send(work(conn));
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
        match self.run(move |conn| write_batch(conn, &messages, &deliveries)).await {
            Ok(results) => results,
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
fn in_transaction<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ());
    run("BEGIN IMMEDIATE").map_err(|e| store_error(e, "session"))?;
    match work(conn) {
        Ok(value) => match run("COMMIT") {
            Ok(()) => Ok(value),
            Err(e) => {
                let _ = run("ROLLBACK");
                Err(store_error(e, "session"))
            }
        },
        Err(e) => {
            let _ = run("ROLLBACK");
            Err(e)
        }
    }
}

fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

fn seq_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Message, StoreError>> {
    let uuid = |i: usize| -> rusqlite::Result<Option<Uuid>> {
        let bytes: Option<Vec<u8>> = row.get(i)?;
        Ok(bytes.and_then(|b| Uuid::from_slice(&b).ok()))
    };
    let (id, session, client) = (uuid(0)?, uuid(1)?, uuid(5)?);
    let seq: i64 = row.get(2)?;
    let role: String = row.get(3)?;
    let content: String = row.get(4)?;
    let run_id: Option<String> = row.get(6)?;
    let created: i64 = row.get(7)?;
    let delivery: Option<String> = row.get(8)?;
    Ok((|| {
        let (Some(id), Some(session)) = (id, session) else {
            return Err(StoreError::corrupt("a message id is not a UUID"));
        };
        Ok(Message {
            id: MessageId::from_uuid(id),
            session_id: SessionId::from_uuid(session),
            seq: u64::try_from(seq).map_err(|_| StoreError::corrupt("a negative seq"))?,
            role: role.parse().map_err(|e: UnknownVariant| StoreError::corrupt(e.to_string()))?,
            content,
            client_msg_id: client,
            run_id,
            created_at: chrono::DateTime::from_timestamp_micros(created)
                .ok_or_else(|| StoreError::corrupt("an impossible message time"))?,
            delivery: delivery
                .map(|d| d.parse())
                .transpose()
                .map_err(|e: UnknownVariant| StoreError::corrupt(e.to_string()))?,
        })
    })())
}

/// The session's message with client id `client`, if stored.
fn find_by_client(
    tx: &Connection,
    client: Uuid,
    session: SessionId,
) -> Result<Option<Message>, StoreError> {
    let found = tx
        .prepare_cached(FIND_BY_CLIENT)
        .and_then(|mut find| {
            find.query_row(params![client.as_bytes(), session.as_uuid().as_bytes()], |row| {
                message_from_row(row)
            })
            .optional()
        })
        .map_err(|e| store_error(e, "message"))?;
    found.transpose()
}

// The statements of the write path. Every one runs once per message or per delivery update,
// so none may build a throwaway b-tree per execution (`x IN (three or more constants)`, a
// CHECK or a partial index's WHERE written that way, `RETURNING`; the test
// `no_statement_of_the_hot_path_builds_a_throwaway_btree` reads their programs).

/// The batch's insert (seq reserved beforehand).
const INSERT_MESSAGE: &str = "INSERT INTO messages
    (id, session_id, seq, role, content, client_msg_id, run_id, created_at, delivery)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
/// The one-by-one fallback's insert, taking the session's next seq instead of `?3` (rare:
/// `RETURNING` allowed).
const INSERT_NEXT_MESSAGE: &str = "INSERT INTO messages
    (id, session_id, seq, role, content, client_msg_id, run_id, created_at, delivery)
    VALUES (?1, ?2, (SELECT last_seq + 1 FROM chat_sessions WHERE id = ?2), ?4, ?5, ?6, ?7, ?8, ?9)
    RETURNING seq";
/// A stored message by client id, in its columns' order for `message_from_row`.
const FIND_BY_CLIENT: &str = "SELECT
    id, session_id, seq, role, content, client_msg_id, run_id, created_at, delivery
    FROM messages WHERE client_msg_id = ?1 AND session_id = ?2";
/// A session's last seq, read before its bump.
const READ_LAST_SEQ: &str = "SELECT last_seq FROM chat_sessions WHERE id = ?1";
/// A plain update: `RETURNING` would cost a throwaway b-tree per call.
const BUMP_SESSION: &str =
    "UPDATE chat_sessions SET last_seq = ?2, last_message_at = ?3 WHERE id = ?1";
/// A delivery update, forward only.
const SET_DELIVERY: &str = "UPDATE messages SET delivery = ?3
    WHERE session_id = ?1 AND seq = ?2 AND (CASE delivery
        WHEN 'stored' THEN 0 WHEN 'sent' THEN 1 WHEN 'started' THEN 2
        WHEN 'failed' THEN 3 WHEN 'answered' THEN 4 END) < ?4";

/// The whole batch in one transaction; if that fails, message by message, each in a
/// savepoint, so one bad message does not fail the others.
fn write_batch(
    conn: &mut Connection,
    messages: &[NewMessage],
    deliveries: &[DeliveryUpdate],
) -> Vec<StoreResult<Appended>> {
    match in_transaction(conn, |tx| batch_in_one(tx, messages, deliveries)) {
        Ok(results) => return results,
        Err(err) => tracing::warn!(error = %err, "batched write failed; writing one by one"),
    }
    let one_by_one = in_transaction(conn, |tx| {
        let results: Vec<StoreResult<Appended>> =
            messages.iter().map(|m| append_one(tx, m)).collect();
        for update in deliveries {
            if let Err(err) = set_delivery(tx, update) {
                tracing::warn!(error = %err, "cannot record a delivery state");
            }
        }
        Ok(results)
    });
    match one_by_one {
        Ok(results) => results,
        Err(e) => messages.iter().map(|_| Err(copy_error(&e))).collect(),
    }
}

fn batch_in_one(
    tx: &Connection,
    messages: &[NewMessage],
    deliveries: &[DeliveryUpdate],
) -> Result<Vec<StoreResult<Appended>>, StoreError> {
    let err = |e| store_error(e, "session");
    // 1. Client ids already stored.
    let mut stored: HashMap<(SessionId, Uuid), Message> = HashMap::new();
    for m in messages {
        let Some(client) = m.client_msg_id else { continue };
        if let Some(found) = find_by_client(tx, client, m.session_id)? {
            stored.insert((m.session_id, client), found);
        }
    }
    // 2. The plan; 3. reserve each session's seqs.
    let plan = plan_append_batch(messages, &stored);
    let mut last_seqs: HashMap<SessionId, u64> = HashMap::new();
    {
        let mut read = tx.prepare_cached(READ_LAST_SEQ).map_err(err)?;
        let mut bump = tx.prepare_cached(BUMP_SESSION).map_err(err)?;
        for (session, count, at) in &plan.per_session {
            let id = session.as_uuid();
            let last: Option<i64> =
                read.query_row(params![id.as_bytes()], |r| r.get(0)).optional().map_err(err)?;
            if let Some(last) = last {
                let last = last.saturating_add(seq_int(*count));
                bump.execute(params![id.as_bytes(), last, micros(*at)]).map_err(err)?;
                last_seqs.insert(*session, u64::try_from(last).unwrap_or_default());
            }
        }
    }
    // 4. Insert the rows of existing sessions.
    let rows = plan.rows(messages, &last_seqs);
    {
        let mut insert = tx.prepare_cached(INSERT_MESSAGE).map_err(err)?;
        for (i, seq) in &rows {
            insert.execute(message_row(&messages[*i], *seq)).map_err(err)?;
        }
    }
    // 5. Delivery states, forward only.
    for update in deliveries {
        set_delivery(tx, update).map_err(|e| store_error(e, "message"))?;
    }
    Ok(plan.results(messages, &rows))
}

/// Appends one message inside `tx`: its insert takes the next seq (a missing session fails
/// the NOT NULL on `seq`), then the session is bumped; a failed statement changes nothing.
fn append_one(tx: &Connection, m: &NewMessage) -> StoreResult<Appended> {
    let err = |e| store_error(e, "session");
    if let Some(client) = m.client_msg_id
        && let Some(found) = find_by_client(tx, client, m.session_id)?
    {
        return Ok(Appended::Existing(found));
    }
    let inserted = tx
        .prepare_cached(INSERT_NEXT_MESSAGE)
        .map_err(err)?
        .query_row(message_row(m, 0), |r| r.get::<_, i64>(0));
    let seq = match inserted {
        Ok(seq) => seq,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL =>
        {
            return Err(StoreError::NotFound("session"));
        }
        Err(e) => return Err(err(e)),
    };
    tx.prepare_cached(BUMP_SESSION)
        .map_err(err)?
        .execute(params![m.session_id.as_uuid().as_bytes(), seq, micros(m.created_at)])
        .map_err(err)?;
    Ok(Appended::New(m.stored_at(u64::try_from(seq).unwrap_or_default())))
}

/// A message's columns as `INSERT_MESSAGE` and `INSERT_NEXT_MESSAGE` take them (`?1`–`?9`).
fn message_row(m: &NewMessage, seq: u64) -> impl rusqlite::Params + '_ {
    (
        *m.id.as_uuid().as_bytes(),
        *m.session_id.as_uuid().as_bytes(),
        seq_int(seq),
        m.role.as_str(),
        m.content.as_str(),
        m.client_msg_id.map(|c| *c.as_bytes()),
        m.run_id.as_deref(),
        micros(m.created_at),
        m.initial_delivery().map(|d| d.as_str()),
    )
}

/// Applies a delivery update, only forward.
fn set_delivery(tx: &Connection, update: &DeliveryUpdate) -> rusqlite::Result<bool> {
    let changed = tx.prepare_cached(SET_DELIVERY)?.execute(params![
        update.session_id.as_uuid().as_bytes(),
        seq_int(update.seq),
        update.state.as_str(),
        i64::from(update.state.rank()),
    ])?;
    Ok(changed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-by-one fallback (taken when a batch fails as a whole) stores each message with
    /// its session's next seq, finds a retried client id, and refuses a missing session.
    #[tokio::test]
    async fn the_one_by_one_fallback_appends_with_the_next_seq() {
        use mc_core::testing::fixtures::{self, ChatWorld};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("fallback.db").display());
        let sqlite = crate::SqliteStore::open(&url).await.unwrap();
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(sqlite.clone());
        let world = ChatWorld::create(&store).await;
        let first = fixtures::user_message(world.session.id, "a");
        let mut again = fixtures::user_message(world.session.id, "a again");
        again.client_msg_id = first.client_msg_id;
        let lost = fixtures::user_message(SessionId::new(), "lost");
        let batch = [first, lost, again, fixtures::user_message(world.session.id, "b")];
        let thread = sqlite.messages.clone().unwrap();
        let results: Vec<StoreResult<Appended>> = thread
            .run(move |conn| {
                in_transaction(conn, |tx| Ok(batch.iter().map(|m| append_one(tx, m)).collect()))
            })
            .await
            .unwrap()
            .unwrap();
        let seqs: Vec<Option<u64>> = results
            .iter()
            .map(|r: &StoreResult<Appended>| r.as_ref().ok().map(|a| a.message().seq))
            .collect();
        assert_eq!(seqs, vec![Some(1), None, Some(1), Some(2)]);
        assert!(matches!(results[1], Err(StoreError::NotFound(_))));
        assert!(matches!(&results[2], Ok(Appended::Existing(m)) if m.content == "a"));
        let stored = store.messages_after(world.session.id, 0, 10).await.unwrap();
        let contents: Vec<&str> = stored.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["a", "b"]);
        assert_eq!(store.get_session(world.session.id).await.unwrap().unwrap().last_seq, 2);
    }

    /// SQLite builds a throwaway b-tree (`OpenEphemeral`: a pager, a page cache, their
    /// allocations) on every execution of a statement that evaluates `x IN (a, b, c)`,
    /// including through a CHECK constraint or a partial index's WHERE. The migrated schema
    /// keeps every statement of the hot path free of them (migration 0005).
    #[tokio::test]
    async fn no_statement_of_the_hot_path_builds_a_throwaway_btree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.db");
        crate::SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        for sql in [INSERT_MESSAGE, FIND_BY_CLIENT, READ_LAST_SEQ, BUMP_SESSION, SET_DELIVERY] {
            let mut explain = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let nulls = vec![rusqlite::types::Null; explain.parameter_count()];
            let opcodes: Vec<String> = explain
                .query_map(rusqlite::params_from_iter(nulls), |row| row.get(1))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(opcodes.len() > 3, "{sql}: no program");
            assert!(!opcodes.iter().any(|op| op == "OpenEphemeral"), "{sql}: {opcodes:?}");
        }
    }
}
