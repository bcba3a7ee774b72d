//! A group-commit batch on the writer thread (`writer.rs`): the statements of the message
//! write path, run synchronously on the thread's connection.
//!
//! A batch is one transaction of, per session it touches, one bump of the session's
//! `last_seq`, and per message one insert; then the delivery states. Two reads that a batch
//! used to make are guesses checked by the write they feed instead:
//! - *Retried messages.* A batch assumes its idempotency keys are new (client ids, and the runs
//!   its replies answer): a stored one fails its insert on the unique (client id, session) or
//!   (run id, session) index, the transaction is rolled back, and the batch is written again
//!   after reading the stored copies (a retry is rare; a lookup per message was one statement
//!   of four).
//! - *Each session's last seq.* The thread remembers the `last_seq` it committed for each
//!   session ([`LastSeqs`]), and bumps a session only `WHERE last_seq` is still that; when
//!   another connection appended meanwhile (sqlx's writer, another process) or nothing is
//!   remembered, it reads the value first.
//!
//! So a retried message or a stale guess costs a read or a second try, never a wrong seq or
//! a duplicate.

use std::collections::HashMap;

use mc_core::*;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::error::copy_error;
use crate::writer::{Writer, in_transaction, store_error};

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

/// The session's message with idempotency key `key`, if stored.
fn find_stored(
    tx: &Connection,
    key: &IdempotencyKey,
    session: SessionId,
) -> Result<Option<Message>, StoreError> {
    let session = *session.as_uuid().as_bytes();
    let found = match key {
        IdempotencyKey::Client(client) => tx.prepare_cached(FIND_BY_CLIENT).and_then(|mut find| {
            find.query_row(params![client.as_bytes(), session], message_from_row).optional()
        }),
        IdempotencyKey::Reply(run) => tx.prepare_cached(FIND_REPLY).and_then(|mut find| {
            find.query_row(params![run, session], message_from_row).optional()
        }),
    };
    found.map_err(|e| store_error(e, "message"))?.transpose()
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
/// A run's stored reply, likewise (the terms of the `messages_run_reply` index).
const FIND_REPLY: &str = "SELECT
    id, session_id, seq, role, content, client_msg_id, run_id, created_at, delivery
    FROM messages WHERE run_id = ?1 AND session_id = ?2 AND role = 'agent'";
/// A session's last seq, read before its bump.
const READ_LAST_SEQ: &str = "SELECT last_seq FROM chat_sessions WHERE id = ?1";
/// A plain update: `RETURNING` would cost a throwaway b-tree per call.
const BUMP_SESSION: &str =
    "UPDATE chat_sessions SET last_seq = ?2, last_message_at = ?3 WHERE id = ?1";
/// The same, only if `last_seq` is still `?4` (the thread's guess).
const BUMP_SESSION_FROM: &str =
    "UPDATE chat_sessions SET last_seq = ?2, last_message_at = ?3 WHERE id = ?1 AND last_seq = ?4";
/// A delivery update, forward only.
const SET_DELIVERY: &str = "UPDATE messages SET delivery = ?3
    WHERE session_id = ?1 AND seq = ?2 AND (CASE delivery
        WHEN 'stored' THEN 0 WHEN 'sent' THEN 1 WHEN 'started' THEN 2
        WHEN 'failed' THEN 3 WHEN 'answered' THEN 4 END) < ?4";

/// Each session's `last_seq` as this thread last committed it: a guess, which a batch's bump
/// checks (`BUMP_SESSION_FROM`), so a stale one costs a read and never a wrong seq. Forgotten
/// whole past [`LastSeqs::MOST`] sessions.
#[derive(Debug, Default)]
pub(crate) struct LastSeqs {
    by_session: HashMap<SessionId, i64>,
}

impl LastSeqs {
    /// Most sessions remembered (~50 bytes each).
    const MOST: usize = 100_000;

    fn guess(&self, session: SessionId) -> Option<i64> {
        self.by_session.get(&session).copied()
    }

    /// Remembers what a committed batch left.
    fn remember(&mut self, committed: &HashMap<SessionId, u64>) {
        if self.by_session.len() + committed.len() > Self::MOST {
            self.by_session = HashMap::new();
        }
        for (session, last) in committed {
            self.by_session.insert(*session, seq_int(*last));
        }
    }
}

/// Why a batch was not written as planned.
enum BatchError {
    /// An idempotency key of the batch is stored already (a retried client id, a run's reply
    /// written again): plan again with the stored copies.
    KeyStored,
    /// Anything else: write message by message.
    Store(StoreError),
}

impl From<StoreError> for BatchError {
    fn from(err: StoreError) -> Self {
        BatchError::Store(err)
    }
}

/// A batch written: each message's result, and each session's `last_seq` after it.
type Written = (Vec<StoreResult<Appended>>, HashMap<SessionId, u64>);

/// How a batch was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// In one transaction, as planned.
    FirstTry,
    /// In one transaction, after a first try met a stored client id.
    AfterLookup,
    /// Message by message (the batch as a whole failed).
    OneByOne,
}

/// The whole batch in one transaction, assuming its client ids are new, then (if one is
/// stored) again with the stored copies read first; if that fails, message by message, so one
/// bad message does not fail the others.
pub(crate) fn write_batch(
    writer: &mut Writer,
    messages: &[NewMessage],
    deliveries: &[DeliveryUpdate],
) -> (Vec<StoreResult<Appended>>, Route) {
    let Writer { conn, last_seqs } = writer;
    for (lookup, route) in [(false, Route::FirstTry), (true, Route::AfterLookup)] {
        let written =
            in_transaction(conn, |tx| batch_in_one(tx, last_seqs, messages, deliveries, lookup));
        match written {
            Ok((results, committed)) => {
                last_seqs.remember(&committed);
                return (results, route);
            }
            Err(BatchError::KeyStored) if !lookup => {}
            Err(BatchError::KeyStored) => {
                tracing::warn!("an idempotency key stored meanwhile; writing one by one");
                break;
            }
            Err(BatchError::Store(err)) => {
                tracing::warn!(error = %err, "batched write failed; writing one by one");
                break;
            }
        }
    }
    let one_by_one = in_transaction(conn, |tx| {
        let results: Vec<StoreResult<Appended>> =
            messages.iter().map(|m| append_one(tx, m)).collect();
        for update in deliveries {
            if let Err(err) = set_delivery(tx, update) {
                tracing::warn!(error = %err, "cannot record a delivery state");
            }
        }
        Ok::<_, StoreError>(results)
    });
    let results = match one_by_one {
        Ok(results) => results,
        Err(e) => messages.iter().map(|_| Err(copy_error(&e))).collect(),
    };
    (results, Route::OneByOne)
}

/// Whether `err` is a unique index of idempotency keys refusing a stored one: (client id,
/// session), or (run id, session) of replies.
fn is_stored_key(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, Some(message))
        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            && (message.contains("messages.client_msg_id") || message.contains("messages.run_id")))
}

/// The batch inside `tx`; with `lookup`, the stored copies of its client ids are read first,
/// otherwise a stored one fails it with [`BatchError::KeyStored`].
fn batch_in_one(
    tx: &Connection,
    known: &LastSeqs,
    messages: &[NewMessage],
    deliveries: &[DeliveryUpdate],
    lookup: bool,
) -> Result<Written, BatchError> {
    let err = |e| store_error(e, "session");
    // 1. Client ids already stored (when a first try met one).
    let mut stored = StoredCopies::new();
    for m in messages.iter().filter(|_| lookup) {
        let Some(key) = m.idempotency_key() else { continue };
        if let Some(found) = find_stored(tx, &key, m.session_id)? {
            stored.insert((m.session_id, key), found);
        }
    }
    // 2. The plan; 3. reserve each session's seqs.
    let plan = plan_append_batch(messages, &stored);
    let mut last_seqs: HashMap<SessionId, u64> = HashMap::new();
    for (session, count, at) in &plan.per_session {
        if let Some(last) = bump_session(tx, known.guess(*session), *session, *count, *at)? {
            last_seqs.insert(*session, last);
        }
    }
    // 4. Insert the rows of existing sessions.
    let rows = plan.rows(messages, &last_seqs);
    {
        let mut insert = tx.prepare_cached(INSERT_MESSAGE).map_err(err)?;
        for (i, seq) in &rows {
            match insert.execute(message_row(&messages[*i], *seq)) {
                Ok(_) => {}
                Err(e) if is_stored_key(&e) => {
                    return Err(BatchError::KeyStored);
                }
                Err(e) => return Err(err(e).into()),
            }
        }
    }
    // 5. Delivery states, forward only.
    for update in deliveries {
        set_delivery(tx, update).map_err(|e| store_error(e, "message"))?;
    }
    Ok((plan.results(messages, &rows), last_seqs))
}

/// Reserves `count` seqs of `session`: its `last_seq` after the bump, `None` if the session
/// does not exist. With a `guess` of its `last_seq`, one conditional update; without one, or
/// when the guess is stale, a read first.
fn bump_session(
    tx: &Connection,
    guess: Option<i64>,
    session: SessionId,
    count: u64,
    at: Timestamp,
) -> Result<Option<u64>, StoreError> {
    let err = |e| store_error(e, "session");
    let id = *session.as_uuid().as_bytes();
    if let Some(guess) = guess {
        let last = guess.saturating_add(seq_int(count));
        let bumped = tx
            .prepare_cached(BUMP_SESSION_FROM)
            .and_then(|mut bump| bump.execute(params![id, last, micros(at), guess]))
            .map_err(err)?;
        if bumped == 1 {
            return Ok(u64::try_from(last).ok());
        }
    }
    let read: Option<i64> = tx
        .prepare_cached(READ_LAST_SEQ)
        .and_then(|mut read| read.query_row(params![id], |r| r.get(0)).optional())
        .map_err(err)?;
    let Some(last) = read else { return Ok(None) };
    let last = last.saturating_add(seq_int(count));
    tx.prepare_cached(BUMP_SESSION)
        .and_then(|mut bump| bump.execute(params![id, last, micros(at)]))
        .map_err(err)?;
    Ok(u64::try_from(last).ok())
}

/// Appends one message inside `tx`: its insert takes the next seq (a missing session fails
/// the NOT NULL on `seq`), then the session is bumped; a failed statement changes nothing.
fn append_one(tx: &Connection, m: &NewMessage) -> StoreResult<Appended> {
    let err = |e| store_error(e, "session");
    if let Some(key) = m.idempotency_key()
        && let Some(found) = find_stored(tx, &key, m.session_id)?
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
pub(crate) fn set_delivery(tx: &Connection, update: &DeliveryUpdate) -> rusqlite::Result<bool> {
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
                in_transaction(conn, |tx| {
                    Ok::<_, StoreError>(batch.iter().map(|m| append_one(tx, m)).collect())
                })
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

    async fn file_store(dir: &tempfile::TempDir) -> crate::SqliteStore {
        let url = format!("sqlite://{}", dir.path().join("batch.db").display());
        crate::SqliteStore::open(&url).await.unwrap()
    }

    /// Writes `batch` on `store`'s writer thread; its results and how it was written.
    async fn write(
        store: &crate::SqliteStore,
        batch: Vec<NewMessage>,
    ) -> (Vec<StoreResult<Appended>>, Route) {
        let thread = store.messages.clone().unwrap();
        thread.run_writer(move |writer| write_batch(writer, &batch, &[])).await.unwrap()
    }

    /// A batch assumes its client ids are new; a retried one fails the first try on the
    /// unique index, and the batch written again gets the stored copy back, with nothing kept
    /// of the first try and nothing stored twice.
    #[tokio::test]
    async fn a_retried_client_id_in_a_batch_gets_its_first_copy() {
        use mc_core::testing::fixtures::{self, ChatWorld};
        let dir = tempfile::tempdir().unwrap();
        let sqlite = file_store(&dir).await;
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(sqlite.clone());
        let world = ChatWorld::create(&store).await;
        let first = fixtures::user_message(world.session.id, "a");
        let (kept, route) = write(&sqlite, vec![first.clone()]).await;
        assert!(matches!(&kept[..], [Ok(Appended::New(m))] if m.seq == 1));
        assert_eq!(route, Route::FirstTry);
        let mut retry = fixtures::user_message(world.session.id, "a, again");
        retry.client_msg_id = first.client_msg_id;
        let batch = vec![
            fixtures::user_message(world.session.id, "b"),
            retry,
            fixtures::user_message(world.session.id, "c"),
        ];
        let (results, route) = write(&sqlite, batch).await;
        assert_eq!(route, Route::AfterLookup);
        assert!(matches!(&results[0], Ok(Appended::New(m)) if m.seq == 2));
        assert!(matches!(&results[1], Ok(Appended::Existing(m)) if m.id == first.id && m.seq == 1));
        assert!(matches!(&results[2], Ok(Appended::New(m)) if m.seq == 3));
        let stored = store.messages_after(world.session.id, 0, 10).await.unwrap();
        let contents: Vec<&str> = stored.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["a", "b", "c"]);
        assert_eq!(store.get_session(world.session.id).await.unwrap().unwrap().last_seq, 3);
    }

    /// Two stores on one file (each with its writer thread and its guesses of the sessions'
    /// last seqs) append to one session in turn: each one's guess is stale every time, and
    /// every seq is still taken once, in order.
    #[tokio::test]
    async fn a_stale_guess_of_a_sessions_last_seq_costs_a_read_not_a_seq() {
        use mc_core::testing::fixtures::{self, ChatWorld};
        let dir = tempfile::tempdir().unwrap();
        let (one, other) = (file_store(&dir).await, file_store(&dir).await);
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(one.clone());
        let world = ChatWorld::create(&store).await;
        for round in 0..6u64 {
            let batch = vec![
                fixtures::user_message(world.session.id, &format!("{round}a")),
                fixtures::user_message(world.session.id, &format!("{round}b")),
            ];
            let (results, route) = write(if round % 2 == 0 { &one } else { &other }, batch).await;
            let seqs: Vec<u64> = results.into_iter().map(|r| r.unwrap().message().seq).collect();
            assert_eq!(seqs, [2 * round + 1, 2 * round + 2], "round {round}");
            assert_eq!(route, Route::FirstTry, "round {round}: a stale guess is no failure");
        }
        let one: std::sync::Arc<dyn Store> = store;
        let stored = one.messages_after(world.session.id, 0, 20).await.unwrap();
        let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=12).collect::<Vec<u64>>());
        assert_eq!(one.get_session(world.session.id).await.unwrap().unwrap().last_seq, 12);
    }

    /// Migration 0006 on a database that holds a run's reply more than once: the first copy
    /// keeps its run, later copies keep their content with the run cleared, and other
    /// sessions' replies and notices of the run are left alone, so the unique index can be made.
    #[test]
    fn migration_0006_detaches_the_later_copies_of_a_runs_reply() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE messages (session_id TEXT, seq INTEGER, role TEXT, run_id TEXT);
             INSERT INTO messages VALUES ('a', 1, 'user', NULL), ('a', 2, 'agent', 'r1'),
                 ('a', 3, 'agent', 'r1'), ('a', 4, 'agent', 'r1'), ('b', 1, 'agent', 'r1'),
                 ('a', 5, 'system', 'r1'), ('a', 6, 'agent', 'r2');",
        )
        .unwrap();
        conn.execute_batch(include_str!("../migrations/0006_one_reply_per_run.sql")).unwrap();
        let runs: Vec<(String, i64, Option<String>)> = conn
            .prepare("SELECT session_id, seq, run_id FROM messages ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let run = |s: &str, seq, run: Option<&str>| (s.to_owned(), seq, run.map(str::to_owned));
        assert_eq!(
            runs,
            [
                run("a", 1, None),
                run("a", 2, Some("r1")),
                run("a", 3, None),
                run("a", 4, None),
                run("b", 1, Some("r1")),
                run("a", 5, Some("r1")),
                run("a", 6, Some("r2")),
            ]
        );
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
        for sql in [
            INSERT_MESSAGE,
            FIND_BY_CLIENT,
            FIND_REPLY,
            READ_LAST_SEQ,
            BUMP_SESSION,
            BUMP_SESSION_FROM,
            SET_DELIVERY,
        ] {
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
