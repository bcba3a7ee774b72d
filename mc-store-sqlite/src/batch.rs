//! Appending a batch of messages in a few statements, whatever its size: find existing client
//! ids, bump every session's `last_seq` at once, insert every row at once (each cut into chunks
//! of fixed sizes so the statements stay prepared). Under load this is what lets one SQLite
//! writer keep up: the cost per statement (a round trip to the connection's worker thread, and
//! preparing it) is paid per chunk, not per message.

use std::collections::HashMap;

use mc_core::*;
use sqlx::{AssertSqlSafe, Sqlite, Transaction};
use uuid::Uuid;

use crate::chat::message_from_row;
use crate::codec::{RowExt, ts};
use crate::error::store_error;

/// Statement sizes: a batch is cut into chunks of these sizes, so only a handful of distinct
/// statements exist and each is prepared once and cached, instead of parsing new SQL for every
/// batch size.
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// Splits `items` into chunks of the sizes in [`CHUNKS`].
fn chunked<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    for size in CHUNKS {
        while items.len() >= size {
            let (head, tail) = items.split_at(size);
            out.push(head);
            items = tail;
        }
    }
    out
}

/// What becomes of one message of the batch.
enum Plan {
    /// Stored earlier: this message.
    Existing(Message),
    /// Repeats the client id of the batch's message at this index.
    SameAs(usize),
    /// To insert.
    Insert,
}

/// Appends `messages` inside `tx`. An `Err` means the batch could not be planned or written
/// as a whole: the caller rolls back and appends one by one instead.
pub(crate) async fn append_batch(
    tx: &mut Transaction<'static, Sqlite>,
    messages: &[NewMessage],
) -> StoreResult<Vec<StoreResult<Appended>>> {
    // 1. Client ids already stored.
    let client_ids: Vec<Uuid> = messages.iter().filter_map(|m| m.client_msg_id).collect();
    let mut stored: HashMap<(Uuid, Uuid), Message> = HashMap::new();
    for ids in chunked(&client_ids) {
        let sql = format!(
            "SELECT * FROM messages WHERE client_msg_id IN ({})",
            vec!["?"; ids.len()].join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut **tx).await.map_err(|e| store_error(e, "message"))? {
            let m = message_from_row(&row)?;
            if let Some(client) = m.client_msg_id {
                stored.insert((m.session_id.as_uuid(), client), m);
            }
        }
    }

    // 2. Plan each message; count the inserts per session, in batch order.
    let mut first_in_batch: HashMap<(Uuid, Uuid), usize> = HashMap::new();
    let mut per_session: Vec<(SessionId, u64, Timestamp)> = Vec::new();
    let mut plans = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let key = m.client_msg_id.map(|c| (m.session_id.as_uuid(), c));
        let plan = match key {
            Some(k) if stored.contains_key(&k) => Plan::Existing(stored[&k].clone()),
            Some(k) if first_in_batch.contains_key(&k) => Plan::SameAs(first_in_batch[&k]),
            _ => {
                if let Some(k) = key {
                    first_in_batch.insert(k, i);
                }
                match per_session.iter_mut().find(|(s, _, _)| *s == m.session_id) {
                    Some(entry) => {
                        entry.1 += 1;
                        entry.2 = entry.2.max(m.created_at);
                    }
                    None => per_session.push((m.session_id, 1, m.created_at)),
                }
                Plan::Insert
            }
        };
        plans.push(plan);
    }

    // 3. Reserve the seqs: one UPDATE for every session.
    let mut last_seqs: HashMap<Uuid, i64> = HashMap::new();
    for sessions in chunked(&per_session) {
        let cases = vec!["WHEN ? THEN ?"; sessions.len()].join(" ");
        let sql = format!(
            "UPDATE chat_sessions SET last_seq = last_seq + CASE id {cases} END,
                last_message_at = CASE id {cases} END
             WHERE id IN ({}) RETURNING id, last_seq",
            vec!["?"; sessions.len()].join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (session, count, _) in sessions {
            query = query.bind(session.as_uuid()).bind(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        for (session, _, at) in sessions {
            query = query.bind(session.as_uuid()).bind(ts(*at));
        }
        for (session, _, _) in sessions {
            query = query.bind(session.as_uuid());
        }
        for row in query.fetch_all(&mut **tx).await.map_err(|e| store_error(e, "session"))? {
            last_seqs
                .insert(row.uuid("id")?, i64::try_from(row.count("last_seq")?).unwrap_or(i64::MAX));
        }
    }
    // The first seq of each session's inserts.
    let mut next_seq: HashMap<Uuid, i64> = HashMap::new();
    for (session, count, _) in &per_session {
        if let Some(last) = last_seqs.get(&session.as_uuid()) {
            next_seq.insert(session.as_uuid(), last - i64::try_from(*count).unwrap_or(0) + 1);
        }
    }

    // 4. Insert every row of an existing session at once.
    let mut rows: Vec<(usize, i64)> = Vec::new();
    for (i, (m, plan)) in messages.iter().zip(&plans).enumerate() {
        if matches!(plan, Plan::Insert)
            && let Some(seq) = next_seq.get_mut(&m.session_id.as_uuid())
        {
            rows.push((i, *seq));
            *seq += 1;
        }
    }
    for chunk in chunked(&rows) {
        let sql = format!(
            "INSERT INTO messages (id, session_id, seq, role, content, client_msg_id, run_id, created_at) VALUES {}",
            vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (i, seq) in chunk {
            let m = &messages[*i];
            query = query
                .bind(m.id.as_uuid())
                .bind(m.session_id.as_uuid())
                .bind(*seq)
                .bind(m.role.as_str())
                .bind(&m.content)
                .bind(m.client_msg_id)
                .bind(&m.run_id)
                .bind(ts(m.created_at));
        }
        query.execute(&mut **tx).await.map_err(|e| store_error(e, "session"))?;
    }

    // 5. The results, in batch order.
    let seq_of: HashMap<usize, i64> = rows.into_iter().collect();
    let mut results: Vec<StoreResult<Appended>> = Vec::with_capacity(messages.len());
    for (i, (m, plan)) in messages.iter().zip(plans).enumerate() {
        let result = match plan {
            Plan::Existing(existing) => Ok(Appended::Existing(existing)),
            Plan::SameAs(j) => match &results[j] {
                Ok(first) => Ok(Appended::Existing(first.message().clone())),
                Err(_) => Err(StoreError::NotFound("session")),
            },
            Plan::Insert => match seq_of.get(&i) {
                Some(seq) => Ok(Appended::New(Message {
                    id: m.id,
                    session_id: m.session_id,
                    seq: u64::try_from(*seq).unwrap_or_default(),
                    role: m.role,
                    content: m.content.clone(),
                    client_msg_id: m.client_msg_id,
                    run_id: m.run_id.clone(),
                    created_at: m.created_at,
                })),
                None => Err(StoreError::NotFound("session")),
            },
        };
        results.push(result);
    }
    Ok(results)
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
    #[test]
    fn chunks_have_fixed_sizes() {
        let sizes = |n: usize| chunked(&vec![0u8; n]).iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(37), vec![16, 16, 4, 1]);
        assert_eq!(sizes(130), vec![64, 64, 1, 1]);
    }

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
        let results = append_batch(&mut tx, &batch).await.expect("one batch");
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
        let results = append_batch(&mut tx, &batch).await.expect("one batch");
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
