//! The part of batched message appends every store shares: deciding, before anything is
//! written, which messages already exist, which repeat an earlier one of the batch (by
//! [`IdempotencyKey`]: a client id, or the run a reply answers), how many seqs each session
//! needs, and putting the results together afterwards. A store then needs three kinds of
//! statements per batch: find stored keys, bump sessions, insert rows.

use std::collections::HashMap;

use super::{Appended, StoreError, StoreResult};
use crate::ids::SessionId;
use crate::model::{IdempotencyKey, Message, NewMessage, Timestamp};

/// What becomes of one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedAppend {
    /// Stored earlier: this message.
    Existing(Message),
    /// Repeats the idempotency key of the batch's message at this index.
    SameAs(usize),
    /// To insert.
    Insert,
}

/// The plan of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    /// One entry per message, in batch order.
    pub plans: Vec<PlannedAppend>,
    /// Per session with inserts: how many, and the latest `created_at` among them.
    pub per_session: Vec<(SessionId, u64, Timestamp)>,
}

/// The messages already stored that a batch's messages repeat, by (session, key).
pub type StoredCopies = HashMap<(SessionId, IdempotencyKey), Message>;

/// The keys a store looks up to find the stored copies of a batch's messages, each with its
/// session (a key is unique only within its session, and a lookup by key alone would read
/// every session's copy of a reused client id).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeysToLookUp<'a> {
    /// User messages: (session, client id).
    pub clients: Vec<(SessionId, uuid::Uuid)>,
    /// Agent replies: (session, the run they answer).
    pub runs: Vec<(SessionId, &'a str)>,
}

/// What a store reads to find the stored copies of a batch's messages: their client ids, and
/// the runs their agent replies answer, each in its session.
pub fn keys_to_look_up(messages: &[NewMessage]) -> KeysToLookUp<'_> {
    let mut keys = KeysToLookUp::default();
    for m in messages {
        match (m.client_msg_id, m.idempotency_key()) {
            (Some(client), _) => keys.clients.push((m.session_id, client)),
            (None, Some(IdempotencyKey::Reply(_))) => {
                keys.runs.extend(m.run_id.as_deref().map(|run| (m.session_id, run)));
            }
            _ => {}
        }
    }
    keys
}

/// Plans a batch. `stored` are the messages already stored whose (session, idempotency key)
/// match some message of the batch.
pub fn plan_append_batch(messages: &[NewMessage], stored: &StoredCopies) -> BatchPlan {
    let mut first_in_batch: HashMap<(SessionId, IdempotencyKey), usize> = HashMap::new();
    let mut per_session: Vec<(SessionId, u64, Timestamp)> = Vec::new();
    let mut plans = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let key = m.idempotency_key().map(|k| (m.session_id, k));
        let plan = match key {
            Some(k) if stored.contains_key(&k) => PlannedAppend::Existing(stored[&k].clone()),
            Some(k) if first_in_batch.contains_key(&k) => PlannedAppend::SameAs(first_in_batch[&k]),
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
                PlannedAppend::Insert
            }
        };
        plans.push(plan);
    }
    BatchPlan { plans, per_session }
}

impl BatchPlan {
    /// The rows to insert, as (index in the batch, seq), given each session's `last_seq`
    /// after the bump (sessions missing from `last_seqs` do not exist: their messages are not
    /// inserted).
    pub fn rows(
        &self,
        messages: &[NewMessage],
        last_seqs: &HashMap<SessionId, u64>,
    ) -> Vec<(usize, u64)> {
        let mut next: HashMap<SessionId, u64> = HashMap::new();
        for (session, count, _) in &self.per_session {
            if let Some(last) = last_seqs.get(session) {
                next.insert(*session, last + 1 - count);
            }
        }
        let mut rows = Vec::new();
        for (i, (m, plan)) in messages.iter().zip(&self.plans).enumerate() {
            if *plan == PlannedAppend::Insert
                && let Some(seq) = next.get_mut(&m.session_id)
            {
                rows.push((i, *seq));
                *seq += 1;
            }
        }
        rows
    }

    /// The results, in batch order, once `rows` are inserted.
    pub fn results(
        self,
        messages: &[NewMessage],
        rows: &[(usize, u64)],
    ) -> Vec<StoreResult<Appended>> {
        let seq_of: HashMap<usize, u64> = rows.iter().copied().collect();
        let mut results: Vec<StoreResult<Appended>> = Vec::with_capacity(messages.len());
        for (i, (m, plan)) in messages.iter().zip(self.plans).enumerate() {
            let result = match plan {
                PlannedAppend::Existing(existing) => Ok(Appended::Existing(existing)),
                PlannedAppend::SameAs(j) => match &results[j] {
                    Ok(first) => Ok(Appended::Existing(first.message().clone())),
                    Err(_) => Err(StoreError::NotFound("session")),
                },
                PlannedAppend::Insert => match seq_of.get(&i) {
                    Some(seq) => Ok(Appended::New(m.stored_at(*seq))),
                    None => Err(StoreError::NotFound("session")),
                },
            };
            results.push(result);
        }
        results
    }
}

/// Statement sizes for batches: cut into chunks of these sizes, a batch uses only a handful of
/// distinct statements, each prepared once and cached.
pub const BATCH_CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// Splits `items` into chunks of the sizes in [`BATCH_CHUNKS`].
pub fn batch_chunks<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    for size in BATCH_CHUNKS {
        while items.len() >= size {
            let (head, tail) = items.split_at(size);
            out.push(head);
            items = tail;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::ids::MessageId;
    use crate::model::MessageRole;
    use uuid::Uuid;

    fn msg(session: SessionId, client: Option<Uuid>) -> NewMessage {
        NewMessage {
            id: MessageId::new(),
            session_id: session,
            role: MessageRole::User,
            content: "x".into(),
            client_msg_id: client,
            run_id: None,
            created_at: SystemClock.now(),
        }
    }

    #[test]
    fn plans_duplicates_and_seqs() {
        let (a, b) = (SessionId::new(), SessionId::new());
        let repeated = Uuid::now_v7();
        let batch =
            vec![msg(a, Some(repeated)), msg(b, None), msg(a, Some(repeated)), msg(a, None)];
        let plan = plan_append_batch(&batch, &HashMap::new());
        assert_eq!(plan.plans[2], PlannedAppend::SameAs(0));
        assert_eq!(
            plan.per_session.iter().map(|(s, n, _)| (*s, *n)).collect::<Vec<_>>(),
            vec![(a, 2), (b, 1)]
        );
        // a had 5 messages (now 7), b does not exist.
        let rows = plan.rows(&batch, &HashMap::from([(a, 7)]));
        assert_eq!(rows, vec![(0, 6), (3, 7)]);
        let results = plan.results(&batch, &rows);
        assert_eq!(results[0].as_ref().unwrap().message().seq, 6);
        assert!(matches!(results[1], Err(StoreError::NotFound(_))));
        assert!(matches!(&results[2], Ok(Appended::Existing(m)) if m.seq == 6));
    }

    #[test]
    fn a_runs_reply_is_planned_once_and_notices_are_not_keyed() {
        let s = SessionId::new();
        let reply = |run: &str, role| NewMessage { role, run_id: Some(run.into()), ..msg(s, None) };
        let stored = reply("r0", MessageRole::Agent).stored_at(1);
        let batch = vec![
            reply("r0", MessageRole::Agent),
            reply("r1", MessageRole::Agent),
            reply("r1", MessageRole::Agent),
            reply("r1", MessageRole::System),
            reply("r1", MessageRole::System),
        ];
        let client = msg(s, Some(Uuid::now_v7()));
        let keys = keys_to_look_up(std::slice::from_ref(&client));
        let want = KeysToLookUp { clients: vec![(s, client.client_msg_id.unwrap())], runs: vec![] };
        assert_eq!(keys, want, "each key with its session");
        let runs = keys_to_look_up(&batch).runs;
        assert_eq!(runs, [(s, "r0"), (s, "r1"), (s, "r1")], "replies' runs, not notices'");
        let copies =
            StoredCopies::from([((s, IdempotencyKey::Reply("r0".into())), stored.clone())]);
        let plan = plan_append_batch(&batch, &copies);
        assert_eq!(
            plan.plans,
            vec![
                PlannedAppend::Existing(stored),
                PlannedAppend::Insert,
                PlannedAppend::SameAs(1),
                PlannedAppend::Insert,
                PlannedAppend::Insert,
            ]
        );
    }

    #[test]
    fn chunks_have_fixed_sizes() {
        let sizes =
            |n: usize| batch_chunks(&vec![0u8; n]).iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(37), vec![16, 16, 4, 1]);
        assert_eq!(sizes(130), vec![64, 64, 1, 1]);
    }
}
