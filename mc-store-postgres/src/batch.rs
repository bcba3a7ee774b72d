//! Appending a batch of messages and applying delivery states in one round trip: one call of
//! the `mc_write_batch` function (migration 0005), which locks the batch's sessions in id
//! order (so concurrent batches on several instances cannot deadlock), bumps them, inserts
//! every row and then applies the delivery states, as one statement and so one transaction.
//! The planning is `mc_core`'s, shared with the SQLite store: the function is told which
//! messages are new rows and each row's place among its session's new rows.
//!
//! A batch first assumes that none of its idempotency keys is stored yet (a retried message,
//! or a run's reply written again, is rare). If one is, the call fails on the unique (client
//! id, session) or (run id, session) index and keeps nothing; the batch is then planned again
//! with the stored copies read first and called once more. The lookup is not made on every batch because it costs a round trip, and because
//! PostgreSQL caches a plan for it: a generic plan made while the table was small (a sequential
//! scan) stayed in the writer's connection as the table grew, until an `ANALYZE`
//! (BENCHMARKS.md, 2026-12-04).

use std::collections::HashMap;

use mc_core::*;
use sqlx::PgPool;
use uuid::Uuid;

use crate::chat::message_from_row;
use crate::codec::{RowExt, int};
use crate::error::store_error;

/// Appends `messages`, then applies `deliveries`, in one transaction. An `Err` means the batch
/// could not be written as a whole and nothing of it was kept: the caller writes one by one
/// instead.
pub(crate) async fn write_batch(
    pool: &PgPool,
    messages: &[NewMessage],
    deliveries: &[DeliveryUpdate],
) -> StoreResult<Vec<StoreResult<Appended>>> {
    match call(pool, messages, deliveries, &StoredCopies::new()).await {
        Err(StoreError::Conflict(ConflictKind::ClientMessageId | ConflictKind::RunReply)) => {
            // A retried client id, or a run's reply written again: again, with the stored
            // copies read first.
            let stored = stored_copies(pool, messages).await?;
            call(pool, messages, deliveries, &stored).await
        }
        written => written,
    }
}

/// The stored messages with the idempotency keys of `messages` (client ids, and the runs of
/// its replies), by (session, key). Each key is looked up in its own session, through the
/// (key, session) unique indexes: a client id reused in thousands of sessions reads one row.
async fn stored_copies(pool: &PgPool, messages: &[NewMessage]) -> StoreResult<StoredCopies> {
    let keys = keys_to_look_up(messages);
    let (client_sessions, clients): (Vec<Uuid>, Vec<Uuid>) =
        keys.clients.iter().map(|(s, c)| (s.as_uuid(), *c)).unzip();
    let mut rows = sqlx::query(
        "SELECT m.* FROM messages m
         JOIN unnest($1::uuid[], $2::uuid[]) AS k(client_msg_id, session_id)
           ON m.client_msg_id = k.client_msg_id AND m.session_id = k.session_id",
    )
    .bind(&clients)
    .bind(&client_sessions)
    .fetch_all(pool)
    .await
    .map_err(|e| store_error(e, "message"))?;
    if !keys.runs.is_empty() {
        let (run_sessions, runs): (Vec<Uuid>, Vec<&str>) =
            keys.runs.iter().map(|(s, r)| (s.as_uuid(), *r)).unzip();
        let replies = sqlx::query(
            "SELECT m.* FROM messages m
             JOIN unnest($1::text[], $2::uuid[]) AS k(run_id, session_id)
               ON m.run_id = k.run_id AND m.session_id = k.session_id
             WHERE m.role = 'agent'",
        )
        .bind(&runs)
        .bind(&run_sessions)
        .fetch_all(pool)
        .await
        .map_err(|e| store_error(e, "message"))?;
        rows.extend(replies);
    }
    let mut stored = StoredCopies::new();
    for row in rows {
        let m = message_from_row(&row)?;
        if let Some(key) = m.idempotency_key() {
            stored.insert((m.session_id, key), m);
        }
    }
    Ok(stored)
}

/// Plans the batch given the `stored` copies of its client ids and writes it in one call.
async fn call<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    messages: &[NewMessage],
    deliveries: &[DeliveryUpdate],
    stored: &StoredCopies,
) -> StoreResult<Vec<StoreResult<Appended>>> {
    let plan = plan_append_batch(messages, stored);
    let sessions: Vec<Uuid> = plan.per_session.iter().map(|(s, _, _)| s.as_uuid()).collect();
    let counts: Vec<i64> = plan.per_session.iter().map(|(_, n, _)| int(*n)).collect();
    let session_ats: Vec<Timestamp> = plan.per_session.iter().map(|(_, _, at)| *at).collect();
    // Each row's place among its session's new rows: its seq as if the session had none yet.
    let as_if_empty: HashMap<SessionId, u64> =
        plan.per_session.iter().map(|(s, n, _)| (*s, *n)).collect();
    let places = plan.rows(messages, &as_if_empty);
    let ids: Vec<Uuid> = places.iter().map(|(i, _)| messages[*i].id.as_uuid()).collect();
    let row_sessions: Vec<Uuid> =
        places.iter().map(|(i, _)| messages[*i].session_id.as_uuid()).collect();
    let row_places: Vec<i64> = places.iter().map(|(_, place)| int(*place)).collect();
    let roles: Vec<&str> = places.iter().map(|(i, _)| messages[*i].role.as_str()).collect();
    let contents: Vec<&str> = places.iter().map(|(i, _)| messages[*i].content.as_str()).collect();
    let clients: Vec<Option<Uuid>> =
        places.iter().map(|(i, _)| messages[*i].client_msg_id).collect();
    let runs: Vec<Option<&str>> =
        places.iter().map(|(i, _)| messages[*i].run_id.as_deref()).collect();
    let row_ats: Vec<Timestamp> = places.iter().map(|(i, _)| messages[*i].created_at).collect();
    let row_deliveries: Vec<Option<&str>> =
        places.iter().map(|(i, _)| messages[*i].initial_delivery().map(|d| d.as_str())).collect();
    let update_sessions: Vec<Uuid> = deliveries.iter().map(|u| u.session_id.as_uuid()).collect();
    let update_seqs: Vec<i64> = deliveries.iter().map(|u| int(u.seq)).collect();
    let update_states: Vec<&'static str> = deliveries.iter().map(|u| u.state.as_str()).collect();
    let update_ranks: Vec<i32> = deliveries.iter().map(|u| i32::from(u.state.rank())).collect();

    let bumped = sqlx::query(
        "SELECT bumped_session, bumped_last_seq FROM mc_write_batch(
             $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(&sessions)
    .bind(&counts)
    .bind(&session_ats)
    .bind(&ids)
    .bind(&row_sessions)
    .bind(&row_places)
    .bind(&roles)
    .bind(&contents)
    .bind(&clients)
    .bind(&runs)
    .bind(&row_ats)
    .bind(&row_deliveries)
    .bind(&update_sessions)
    .bind(&update_seqs)
    .bind(&update_states)
    .bind(&update_ranks)
    .fetch_all(executor)
    .await
    .map_err(|e| store_error(e, "session"))?;
    let mut last_seqs = HashMap::with_capacity(bumped.len());
    for row in bumped {
        last_seqs.insert(
            SessionId::from_uuid(row.col("bumped_session")?),
            row.count("bumped_last_seq")?,
        );
    }
    let rows = plan.rows(messages, &last_seqs);
    Ok(plan.results(messages, &rows))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::str::FromStr;
    use std::sync::Arc;

    use mc_core::testing::fixtures::{self, ChatWorld};
    use sqlx::{AssertSqlSafe, Connection, PgConnection};

    use super::*;
    use crate::{PgConnectOptions, PgStore, PgStoreOptions};

    /// A store on a schema of its own in the test server, removed by [`TestSchema::remove`].
    struct TestSchema {
        admin: PgConnection,
        name: String,
        pg: PgStore,
        store: Arc<dyn Store>,
    }

    impl TestSchema {
        /// `None` without `MC_TEST_POSTGRES_URL` (the test is skipped), except under CI.
        async fn open(prefix: &str) -> Option<Self> {
            let Some(url) = std::env::var("MC_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
            else {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "MC_TEST_POSTGRES_URL must be set under CI"
                );
                return None;
            };
            let name = format!("{prefix}_{}", Uuid::now_v7().simple());
            let mut admin = PgConnection::connect(&url).await.unwrap();
            sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
                .execute(&mut admin)
                .await
                .unwrap();
            let connect =
                PgConnectOptions::from_str(&url).unwrap().options([("search_path", name.as_str())]);
            let options = PgStoreOptions::new(connect).max_connections(2);
            let pg = PgStore::connect_with(options).await.unwrap();
            let store: Arc<dyn Store> = Arc::new(pg.clone());
            Some(Self { admin, name, pg, store })
        }

        /// A user's world with its session, and a second session of the same user and agent.
        async fn two_sessions(&self) -> (ChatWorld, ChatSession) {
            let world = ChatWorld::create(&self.store).await;
            let other = fixtures::session(world.user.id, &world.agent);
            self.store.create_session(&other).await.unwrap();
            (world, other)
        }

        async fn remove(mut self) {
            self.pg.close().await;
            sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", self.name)))
                .execute(&mut self.admin)
                .await
                .unwrap();
        }
    }

    async fn seqs_of(store: &Arc<dyn Store>, session: SessionId) -> Vec<u64> {
        store.messages_after(session, 0, 500).await.unwrap().iter().map(|m| m.seq).collect()
    }

    /// A retried message's stored copy is looked up in its own session: a client id the user
    /// reused in many sessions reads one row, not one per session.
    #[tokio::test]
    async fn a_retry_reads_its_own_sessions_copy_only() {
        let Some(db) = TestSchema::open("mc_lookup").await else { return };
        let world = ChatWorld::create(&db.store).await;
        let reused = Uuid::now_v7();
        let mut sessions = vec![world.session.clone()];
        for _ in 0..30 {
            let other = fixtures::session(world.user.id, &world.agent);
            db.store.create_session(&other).await.unwrap();
            sessions.push(other);
        }
        for session in &sessions {
            let m = NewMessage {
                client_msg_id: Some(reused),
                ..fixtures::user_message(session.id, "same id")
            };
            db.store.append_message(&m).await.unwrap();
        }
        let retry = NewMessage {
            client_msg_id: Some(reused),
            ..fixtures::user_message(world.session.id, "again")
        };
        let stored = stored_copies(&db.pg.pool, std::slice::from_ref(&retry)).await.unwrap();
        assert_eq!(stored.len(), 1, "only the retried session's copy");
        let key = (world.session.id, IdempotencyKey::Client(reused));
        assert_eq!(stored[&key].content, "same id");
        db.remove().await;
    }

    /// Migration 0006 on a database that holds a run's reply more than once: the first copy
    /// keeps its run, later copies keep their content with the run cleared, and other
    /// sessions' replies and notices of the run are left alone, so the unique index can be made.
    #[tokio::test]
    async fn migration_0006_detaches_the_later_copies_of_a_runs_reply() {
        let Some(mut schema) = TestSchema::open("mig6").await else { return };
        let bare = format!("{}_bare", schema.name);
        let conn = &mut schema.admin;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA {bare}; SET search_path = {bare};
             CREATE TABLE messages (session_id TEXT, seq BIGINT, role TEXT, run_id TEXT);
             INSERT INTO messages VALUES ('a', 1, 'user', NULL), ('a', 2, 'agent', 'r1'),
                 ('a', 3, 'agent', 'r1'), ('a', 4, 'agent', 'r1'), ('b', 1, 'agent', 'r1'),
                 ('a', 5, 'system', 'r1'), ('a', 6, 'agent', 'r2');"
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
        sqlx::raw_sql(include_str!("../migrations/0006_one_reply_per_run.sql"))
            .execute(&mut *conn)
            .await
            .unwrap();
        let runs: Vec<(String, i64, Option<String>)> =
            sqlx::query_as("SELECT session_id, seq, run_id FROM messages ORDER BY session_id, seq")
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {bare} CASCADE; RESET search_path")))
            .execute(&mut *conn)
            .await
            .unwrap();
        let run = |s: &str, seq, run: Option<&str>| (s.to_owned(), seq, run.map(str::to_owned));
        assert_eq!(
            runs,
            [
                run("a", 1, None),
                run("a", 2, Some("r1")),
                run("a", 3, None),
                run("a", 4, None),
                run("a", 5, Some("r1")),
                run("a", 6, Some("r2")),
                run("b", 1, Some("r1")),
            ]
        );
        schema.remove().await;
    }

    /// The one-call path itself succeeds against a real server (the store would otherwise fall
    /// back silently to one-by-one appends), and a stored client id undoes a call as a whole.
    /// Skipped without `MC_TEST_POSTGRES_URL`, except under CI.
    #[tokio::test]
    async fn the_batched_path_is_taken() {
        let Some(db) = TestSchema::open("mc_batch").await else { return };
        let (pg, store) = (&db.pg, &db.store);
        let (world, other) = db.two_sessions().await;
        let first = fixtures::user_message(world.session.id, "a");
        store.append_message(&first).await.unwrap();
        let mut repeat = fixtures::user_message(world.session.id, "a again");
        repeat.client_msg_id = first.client_msg_id;
        let mut batch = vec![repeat, fixtures::user_message(SessionId::new(), "lost")];
        batch.extend((0..100).map(|i| {
            fixtures::user_message(if i % 2 == 0 { world.session.id } else { other.id }, "m")
        }));
        // Planned as if no client id were stored, the call fails on the stored one and keeps
        // nothing of the batch.
        let undone = call(&pg.pool, &batch, &[], &HashMap::new()).await;
        assert!(
            matches!(undone, Err(StoreError::Conflict(ConflictKind::ClientMessageId))),
            "{undone:?}"
        );
        assert_eq!(seqs_of(store, world.session.id).await, vec![1]);
        assert_eq!(seqs_of(store, other.id).await, Vec::<u64>::new());

        // The batch as the store writes it: the stored copy is read, then the call is repeated.
        let results = write_batch(&pg.pool, &batch, &[]).await.unwrap();
        assert!(matches!(&results[0], Ok(Appended::Existing(m)) if m.id == first.id));
        assert!(matches!(results[1], Err(StoreError::NotFound(_))));
        assert!(results[2..].iter().all(|r| matches!(r, Ok(Appended::New(_)))));
        assert_eq!(seqs_of(store, world.session.id).await, (1..=51).collect::<Vec<_>>());
        assert_eq!(seqs_of(store, other.id).await, (1..=50).collect::<Vec<_>>());

        // Only new client ids (one of them twice), and delivery states for a stored message
        // and for one of the batch's own: one call, the states applied after the rows.
        let fresh = fixtures::user_message(world.session.id, "fresh");
        let mut twice = fixtures::user_message(world.session.id, "fresh again");
        twice.client_msg_id = fresh.client_msg_id;
        let batch = vec![fresh, twice, fixtures::user_message(other.id, "new")];
        let deliveries = [
            DeliveryUpdate { session_id: world.session.id, seq: 1, state: DeliveryState::Sent },
            DeliveryUpdate { session_id: other.id, seq: 51, state: DeliveryState::Answered },
            DeliveryUpdate { session_id: other.id, seq: 51, state: DeliveryState::Started },
        ];
        let results = call(&pg.pool, &batch, &deliveries, &HashMap::new()).await.unwrap();
        let seqs: Vec<u64> = results
            .iter()
            .map(|r| match r {
                Ok(Appended::New(m) | Appended::Existing(m)) => m.seq,
                Err(e) => panic!("{e}"),
            })
            .collect();
        assert_eq!(seqs, vec![52, 52, 51], "the repeat within the batch is the first's copy");
        let delivery = |session, seq: u64| {
            let store = store.clone();
            async move {
                store
                    .messages_after(session, seq - 1, 1)
                    .await
                    .unwrap()
                    .first()
                    .and_then(|m| m.delivery)
            }
        };
        assert_eq!(delivery(world.session.id, 1).await, Some(DeliveryState::Sent));
        assert_eq!(delivery(other.id, 51).await, Some(DeliveryState::Answered), "highest wins");
        assert_eq!(delivery(world.session.id, 52).await, Some(DeliveryState::Stored));
        db.remove().await;
    }

    /// The call reads no table whole once its plans settle, whatever the statistics say: on a
    /// new schema (near-empty tables, as on a new deployment), after enough calls on one
    /// connection for PL/pgSQL to keep generic plans, further calls add no sequential scan of
    /// the tables a batch writes to the transaction's own statistics. (The first calls may
    /// scan: planned for their values, a scan of a one-page table is the cheaper way. A
    /// generic plan made then would scan for the connection's life.)
    #[tokio::test]
    async fn a_batch_never_scans_a_table() {
        let Some(db) = TestSchema::open("mc_scan").await else { return };
        let (pg, store) = (&db.pg, &db.store);
        let (world, other) = db.two_sessions().await;

        let mut tx = pg.begin().await.unwrap();
        let mut scans_after = Vec::new();
        for rounds in [1..=12u64, 13..=24] {
            for round in rounds {
                let batch: Vec<NewMessage> = [world.session.id, other.id, world.session.id]
                    .into_iter()
                    .map(|s| fixtures::user_message(s, "m"))
                    .collect();
                // The first session's two messages of the previous round are answered.
                let deliveries: Vec<DeliveryUpdate> = if round == 1 {
                    Vec::new()
                } else {
                    [round * 2 - 3, round * 2 - 2]
                        .map(|seq| DeliveryUpdate {
                            session_id: world.session.id,
                            seq,
                            state: DeliveryState::Answered,
                        })
                        .to_vec()
                };
                let results = call(&mut *tx, &batch, &deliveries, &HashMap::new()).await.unwrap();
                assert!(results.iter().all(|r| matches!(r, Ok(Appended::New(_)))), "{results:?}");
            }
            let scans: Vec<(String, i64)> = sqlx::query_as(
                "SELECT relname::text, seq_scan FROM pg_stat_xact_user_tables
                 WHERE schemaname = current_schema() AND relname IN ('messages', 'chat_sessions')
                 ORDER BY relname",
            )
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            assert_eq!(scans.len(), 2, "{scans:?}");
            scans_after.push(scans);
        }
        assert_eq!(scans_after[0], scans_after[1], "the settled plans scan a table");
        tx.commit().await.unwrap();
        let first = store.messages_after(world.session.id, 0, 100).await.unwrap();
        assert_eq!(first.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=48).collect::<Vec<_>>());
        assert!(first[..46].iter().all(|m| m.delivery == Some(DeliveryState::Answered)));
        assert!(first[46..].iter().all(|m| m.delivery == Some(DeliveryState::Stored)));
        db.remove().await;
    }
}
