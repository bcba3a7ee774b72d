//! Writing a group-commit batch in a few statements, whatever its size: find existing
//! idempotency keys (client ids, runs with their reply), bump every session's `last_seq` at
//! once, insert every row at once, then move delivery states, one statement per target state
//! (each cut into chunks of fixed sizes so the statements stay prepared). Under load this is what lets one SQLite
//! writer keep up: the cost per statement (a round trip to the connection's worker thread, and
//! preparing it) is paid per chunk, not per message. The planning is `mc_core`'s, shared with
//! the PostgreSQL store.

use std::collections::HashMap;

use mc_core::*;
use sqlx::{AssertSqlSafe, Sqlite, Transaction};

use crate::chat::message_from_row;
use crate::codec::{RowExt, int, ts};
use crate::error::store_error;

/// Keeps the stored messages `rows` found by their idempotency keys.
fn remember_stored(
    stored: &mut StoredCopies,
    rows: Result<Vec<sqlx::sqlite::SqliteRow>, sqlx::Error>,
) -> StoreResult<()> {
    for row in rows.map_err(|e| store_error(e, "message"))? {
        let m = message_from_row(&row)?;
        if let Some(key) = m.idempotency_key() {
            stored.insert((m.session_id, key), m);
        }
    }
    Ok(())
}

// One transaction, statement after statement, as the PostgreSQL store's batch function is one
// SQL function: the two read side by side.
/// Appends `messages`, then applies `deliveries`, inside `tx`. An `Err` means the batch could
/// not be written as a whole: the caller rolls back and writes one by one instead.
pub(crate) async fn write_batch(
    tx: &mut Transaction<'static, Sqlite>,
    messages: &[NewMessage],
    deliveries: &[DeliveryUpdate],
) -> StoreResult<Vec<StoreResult<Appended>>> {
    // 1. Idempotency keys already stored: client ids, and runs that have their reply.
    //    Each key with its session: the (key, session) indexes answer each term.
    let keys = keys_to_look_up(messages);
    let mut stored = StoredCopies::new();
    for clients in batch_chunks(&keys.clients) {
        let terms = vec!["(client_msg_id = ? AND session_id = ?)"; clients.len()].join(" OR ");
        let mut query = sqlx::query(AssertSqlSafe(format!("SELECT * FROM messages WHERE {terms}")));
        for (session, client) in clients {
            query = query.bind(*client).bind(session.as_uuid());
        }
        remember_stored(&mut stored, query.fetch_all(&mut **tx).await)?;
    }
    for runs in batch_chunks(&keys.runs) {
        let terms =
            vec!["(run_id = ? AND session_id = ? AND role = 'agent')"; runs.len()].join(" OR ");
        let mut query = sqlx::query(AssertSqlSafe(format!("SELECT * FROM messages WHERE {terms}")));
        for (session, run) in runs {
            query = query.bind(*run).bind(session.as_uuid());
        }
        remember_stored(&mut stored, query.fetch_all(&mut **tx).await)?;
    }

    // 2. The plan; 3. reserve the seqs: one UPDATE per chunk of sessions.
    let plan = plan_append_batch(messages, &stored);
    let mut last_seqs: HashMap<SessionId, u64> = HashMap::new();
    for sessions in batch_chunks(&plan.per_session) {
        let cases = vec!["WHEN ? THEN ?"; sessions.len()].join(" ");
        let sql = format!(
            "UPDATE chat_sessions SET last_seq = last_seq + CASE id {cases} END,
                last_message_at = CASE id {cases} END
             WHERE id IN ({}) RETURNING id, last_seq",
            vec!["?"; sessions.len()].join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (session, count, _) in sessions {
            query = query.bind(session.as_uuid()).bind(int(*count));
        }
        for (session, _, at) in sessions {
            query = query.bind(session.as_uuid()).bind(ts(*at));
        }
        for (session, _, _) in sessions {
            query = query.bind(session.as_uuid());
        }
        for row in query.fetch_all(&mut **tx).await.map_err(|e| store_error(e, "session"))? {
            last_seqs.insert(SessionId::from_uuid(row.uuid("id")?), row.count("last_seq")?);
        }
    }

    // 4. Insert every row of an existing session, a chunk at a time.
    let rows = plan.rows(messages, &last_seqs);
    for chunk in batch_chunks(&rows) {
        let sql = format!(
            "INSERT INTO messages (id, session_id, seq, role, content, client_msg_id, run_id, created_at, delivery) VALUES {}",
            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (i, seq) in chunk {
            let m = &messages[*i];
            query = query
                .bind(m.id.as_uuid())
                .bind(m.session_id.as_uuid())
                .bind(int(*seq))
                .bind(m.role.as_str())
                .bind(&m.content)
                .bind(m.client_msg_id)
                .bind(&m.run_id)
                .bind(ts(m.created_at))
                .bind(m.initial_delivery().map(|d| d.as_str()));
        }
        query.execute(&mut **tx).await.map_err(|e| store_error(e, "session"))?;
    }

    // 5. Delivery states, one statement per target state, forward only.
    for state in DeliveryState::ALL {
        let targets: Vec<&DeliveryUpdate> =
            deliveries.iter().filter(|u| u.state == *state).collect();
        for chunk in batch_chunks(&targets) {
            let sql = format!(
                "UPDATE messages SET delivery = ?
                 WHERE (CASE delivery WHEN 'stored' THEN 0 WHEN 'sent' THEN 1 WHEN 'started' THEN 2
                        WHEN 'failed' THEN 3 WHEN 'answered' THEN 4 END) < ?
                   AND (session_id, seq) IN (VALUES {})",
                vec!["(?, ?)"; chunk.len()].join(", ")
            );
            let mut query =
                sqlx::query(AssertSqlSafe(sql)).bind(state.as_str()).bind(i64::from(state.rank()));
            for update in chunk {
                query = query.bind(update.session_id.as_uuid()).bind(int(update.seq));
            }
            query.execute(&mut **tx).await.map_err(|e| store_error(e, "message"))?;
        }
    }

    // 6. The results, in batch order.
    Ok(plan.results(messages, &rows))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use mc_core::testing::fixtures::{self, ChatWorld};

    use super::*;
    use crate::SqliteStore;

    /// The three-statement path itself succeeds (the store would otherwise fall back
    /// silently to one-by-one appends, which the conformance suite cannot tell apart).
    #[tokio::test]
    async fn the_batched_path_is_taken() {
        let sqlite = SqliteStore::open_in_memory().await.unwrap();
        let store: Arc<dyn Store> = Arc::new(sqlite.clone());
        let world = ChatWorld::create(&store).await;
        let other = fixtures::session(world.user.id, &world.agent);
        store.create_session(&other).await.unwrap();
        let first = fixtures::user_message(world.session.id, "a");
        store.append_message(&first).await.unwrap();
        let mut repeat = fixtures::user_message(world.session.id, "a again");
        repeat.client_msg_id = first.client_msg_id;
        let batch = vec![
            fixtures::user_message(world.session.id, "b"),
            repeat,
            fixtures::user_message(other.id, "c"),
            fixtures::user_message(SessionId::new(), "lost"),
            fixtures::user_message(world.session.id, "d"),
        ];
        let mut tx = sqlite.begin_write().await.unwrap();
        let results = write_batch(&mut tx, &batch, &[]).await.expect("one batch");
        tx.commit().await.unwrap();
        let seqs: Vec<Option<u64>> =
            results.iter().map(|r| r.as_ref().ok().map(|a| a.message().seq)).collect();
        assert_eq!(seqs, vec![Some(2), Some(1), Some(1), None, Some(3)]);
        assert!(matches!(results[1], Ok(Appended::Existing(_))));
        assert_eq!(store.get_session(world.session.id).await.unwrap().unwrap().last_seq, 3);
        assert_eq!(store.get_session(other.id).await.unwrap().unwrap().last_seq, 1);
    }

    /// A batch larger than one chunk, over several sessions, still gets gapless seqs.
    #[tokio::test]
    async fn a_batch_of_many_chunks_is_gapless() {
        let sqlite = SqliteStore::open_in_memory().await.unwrap();
        let store: Arc<dyn Store> = Arc::new(sqlite.clone());
        let world = ChatWorld::create(&store).await;
        let mut sessions = vec![world.session.id];
        for _ in 0..2 {
            let s = fixtures::session(world.user.id, &world.agent);
            store.create_session(&s).await.unwrap();
            sessions.push(s.id);
        }
        let batch: Vec<NewMessage> =
            (0..150).map(|i| fixtures::user_message(sessions[i % 3], &format!("m{i}"))).collect();
        let mut tx = sqlite.begin_write().await.unwrap();
        let results = write_batch(&mut tx, &batch, &[]).await.expect("one batch");
        tx.commit().await.unwrap();
        assert!(results.iter().all(|r| matches!(r, Ok(Appended::New(_)))));
        for session in sessions {
            let seqs: Vec<u64> = store
                .messages_after(session, 0, 500)
                .await
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect();
            assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        }
    }
}
