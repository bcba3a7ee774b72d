//! Appending a batch of messages in three statements, whatever its size, with arrays: lock the
//! sessions in id order (so concurrent batches on several instances cannot deadlock), bump
//! them, insert every row. The planning is `mc_core`'s, shared with the SQLite store.
//!
//! A batch first assumes that none of its client ids is stored yet (a retried message is
//! rare): the insert skips a row whose (session, client id) exists, and if one was skipped the
//! caller rolls the batch back and writes it again with [`Lookup::First`], which reads the
//! stored copies before planning. The lookup is not made on every batch because it costs a
//! round trip, and because PostgreSQL caches a plan for it: a generic plan made while the table
//! was small (a sequential scan) stayed in the writer's connection as the table grew, until an
//! `ANALYZE` (BENCHMARKS.md, 2026-12-04).

use std::collections::HashMap;

use mc_core::*;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::chat::message_from_row;
use crate::codec::{RowExt, int};
use crate::error::store_error;

/// Whether a batch reads its stored client ids before planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Assume none is stored; a row found stored makes the batch answer `None`.
    Optimistic,
    /// Read them first (after an optimistic batch answered `None`).
    First,
}

/// Appends `messages`, then applies `deliveries`, inside `tx`. `Ok(None)`: a client id the
/// batch did not look up was stored already, so nothing of it may be kept (roll back, then
/// write it again with [`Lookup::First`]). An `Err` means the batch could not be written as a
/// whole: the caller rolls back and writes one by one instead.
pub(crate) async fn write_batch(
    tx: &mut Transaction<'static, Postgres>,
    messages: &[NewMessage],
    deliveries: &[DeliveryUpdate],
    lookup: Lookup,
) -> StoreResult<Option<Vec<StoreResult<Appended>>>> {
    let client_ids: Vec<Uuid> = messages.iter().filter_map(|m| m.client_msg_id).collect();
    let mut stored: HashMap<(SessionId, Uuid), Message> = HashMap::new();
    if lookup == Lookup::First && !client_ids.is_empty() {
        let rows = sqlx::query("SELECT * FROM messages WHERE client_msg_id = ANY($1)")
            .bind(&client_ids)
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| store_error(e, "message"))?;
        for row in rows {
            let m = message_from_row(&row)?;
            if let Some(client) = m.client_msg_id {
                stored.insert((m.session_id, client), m);
            }
        }
    }

    let plan = plan_append_batch(messages, &stored);
    let mut last_seqs: HashMap<SessionId, u64> = HashMap::new();
    if !plan.per_session.is_empty() {
        let ids: Vec<Uuid> = plan.per_session.iter().map(|(s, _, _)| s.as_uuid()).collect();
        let counts: Vec<i64> = plan.per_session.iter().map(|(_, n, _)| int(*n)).collect();
        let ats: Vec<Timestamp> = plan.per_session.iter().map(|(_, _, at)| *at).collect();
        sqlx::query("SELECT id FROM chat_sessions WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut **tx)
            .await
            .map_err(|e| store_error(e, "session"))?;
        let rows = sqlx::query(
            "UPDATE chat_sessions c SET last_seq = c.last_seq + v.n, last_message_at = v.at
             FROM UNNEST($1::uuid[], $2::bigint[], $3::timestamptz[]) AS v(id, n, at)
             WHERE c.id = v.id RETURNING c.id, c.last_seq",
        )
        .bind(&ids)
        .bind(&counts)
        .bind(&ats)
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| store_error(e, "session"))?;
        for row in rows {
            last_seqs.insert(SessionId::from_uuid(row.col("id")?), row.count("last_seq")?);
        }
    }

    let rows = plan.rows(messages, &last_seqs);
    if !rows.is_empty() {
        let pick = |f: &dyn Fn(&NewMessage) -> _| -> Vec<_> {
            rows.iter().map(|(i, _)| f(&messages[*i])).collect()
        };
        let ids: Vec<Uuid> = pick(&|m| m.id.as_uuid());
        let sessions: Vec<Uuid> = pick(&|m| m.session_id.as_uuid());
        let seqs: Vec<i64> = rows.iter().map(|(_, seq)| int(*seq)).collect();
        let roles: Vec<String> =
            rows.iter().map(|(i, _)| messages[*i].role.as_str().to_owned()).collect();
        let contents: Vec<String> =
            rows.iter().map(|(i, _)| messages[*i].content.clone()).collect();
        let clients: Vec<Option<Uuid>> =
            rows.iter().map(|(i, _)| messages[*i].client_msg_id).collect();
        let runs: Vec<Option<String>> =
            rows.iter().map(|(i, _)| messages[*i].run_id.clone()).collect();
        let ats: Vec<Timestamp> = rows.iter().map(|(i, _)| messages[*i].created_at).collect();
        let deliveries_of_rows: Vec<Option<&'static str>> =
            rows.iter().map(|(i, _)| messages[*i].initial_delivery().map(|d| d.as_str())).collect();
        let inserted = sqlx::query(
            "INSERT INTO messages (id, session_id, seq, role, content, client_msg_id, run_id, created_at,
                delivery)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[],
                                  $6::uuid[], $7::text[], $8::timestamptz[], $9::text[])
             ON CONFLICT (session_id, client_msg_id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&sessions)
        .bind(&seqs)
        .bind(&roles)
        .bind(&contents)
        .bind(&clients)
        .bind(&runs)
        .bind(&ats)
        .bind(&deliveries_of_rows)
        .execute(&mut **tx)
        .await
        .map_err(|e| store_error(e, "session"))?
        .rows_affected();
        if usize::try_from(inserted).ok() != Some(rows.len()) {
            return Ok(None);
        }
    }

    // Delivery states in one statement, forward only (the highest rank per message wins).
    if !deliveries.is_empty() {
        let sessions: Vec<Uuid> = deliveries.iter().map(|u| u.session_id.as_uuid()).collect();
        let seqs: Vec<i64> = deliveries.iter().map(|u| int(u.seq)).collect();
        let states: Vec<&'static str> = deliveries.iter().map(|u| u.state.as_str()).collect();
        let ranks: Vec<i32> = deliveries.iter().map(|u| i32::from(u.state.rank())).collect();
        sqlx::query(
            "UPDATE messages m SET delivery = u.state
             FROM (SELECT DISTINCT ON (session_id, seq) session_id, seq, state, rank
                   FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::int[])
                        AS v(session_id, seq, state, rank)
                   ORDER BY session_id, seq, rank DESC) AS u
             WHERE m.session_id = u.session_id AND m.seq = u.seq
               AND (CASE m.delivery WHEN 'stored' THEN 0 WHEN 'sent' THEN 1 WHEN 'started' THEN 2
                    WHEN 'failed' THEN 3 WHEN 'answered' THEN 4 END) < u.rank",
        )
        .bind(&sessions)
        .bind(&seqs)
        .bind(&states)
        .bind(&ranks)
        .execute(&mut **tx)
        .await
        .map_err(|e| store_error(e, "message"))?;
    }
    Ok(Some(plan.results(messages, &rows)))
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

    /// Writes `batch` in a transaction of its own and commits it; panics if it is not kept.
    async fn committed(
        pg: &PgStore,
        batch: &[NewMessage],
        lookup: Lookup,
    ) -> Vec<StoreResult<Appended>> {
        let mut tx = pg.begin().await.unwrap();
        let results = write_batch(&mut tx, batch, &[], lookup)
            .await
            .expect("a batch")
            .unwrap_or_else(|| panic!("a {lookup:?} batch was undone"));
        tx.commit().await.unwrap();
        results
    }

    /// The array path itself succeeds against a real server (the store would otherwise fall
    /// back silently to one-by-one appends). Skipped without `MC_TEST_POSTGRES_URL`, except
    /// under CI.
    #[tokio::test]
    async fn the_batched_path_is_taken() {
        let Some(url) = std::env::var("MC_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "MC_TEST_POSTGRES_URL must be set under CI"
            );
            return;
        };
        let schema = format!("mc_batch_{}", Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&url).await.unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let connect =
            PgConnectOptions::from_str(&url).unwrap().options([("search_path", schema.as_str())]);
        let pg =
            PgStore::connect_with(PgStoreOptions::new(connect).max_connections(2)).await.unwrap();
        let store: Arc<dyn Store> = Arc::new(pg.clone());

        let world = ChatWorld::create(&store).await;
        let other = fixtures::session(world.user.id, &world.agent);
        store.create_session(&other).await.unwrap();
        let first = fixtures::user_message(world.session.id, "a");
        store.append_message(&first).await.unwrap();
        let mut repeat = fixtures::user_message(world.session.id, "a again");
        repeat.client_msg_id = first.client_msg_id;
        let mut batch = vec![repeat, fixtures::user_message(SessionId::new(), "lost")];
        batch.extend((0..100).map(|i| {
            fixtures::user_message(if i % 2 == 0 { world.session.id } else { other.id }, "m")
        }));
        // Optimistically, the stored client id is found by the insert: nothing may be kept.
        let mut tx = pg.begin().await.unwrap();
        let answer = write_batch(&mut tx, &batch, &[], Lookup::Optimistic).await.expect("a batch");
        assert!(answer.is_none(), "a stored client id undoes an optimistic batch");
        tx.rollback().await.unwrap();
        let results = committed(&pg, &batch, Lookup::First).await;
        assert!(matches!(results[0], Ok(Appended::Existing(_))));
        assert!(matches!(results[1], Err(StoreError::NotFound(_))));
        assert!(results[2..].iter().all(|r| matches!(r, Ok(Appended::New(_)))));
        for (session, expected) in [(world.session.id, 51), (other.id, 50)] {
            let seqs: Vec<u64> = store
                .messages_after(session, 0, 500)
                .await
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect();
            assert_eq!(seqs, (1..=expected).collect::<Vec<_>>());
        }
        // Only new client ids (one of them twice): the optimistic batch is kept as it is.
        let fresh = fixtures::user_message(world.session.id, "fresh");
        let mut twice = fixtures::user_message(world.session.id, "fresh again");
        twice.client_msg_id = fresh.client_msg_id;
        let batch = vec![fresh, twice, fixtures::user_message(other.id, "new")];
        let results = committed(&pg, &batch, Lookup::Optimistic).await;
        let seqs: Vec<u64> = results
            .iter()
            .map(|r| match r {
                Ok(Appended::New(m) | Appended::Existing(m)) => m.seq,
                Err(e) => panic!("{e}"),
            })
            .collect();
        assert_eq!(seqs, vec![52, 52, 51], "the repeat within the batch is the first's copy");
        pg.close().await;
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}
