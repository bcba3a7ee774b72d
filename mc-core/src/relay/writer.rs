//! [`MessageWriter`]: group commit. Concurrent appends, and the delivery states recorded meanwhile,
//! are gathered into one store call ([`MessageStore::write_batch`], one transaction where
//! the store can), so throughput is not capped at one transaction per message. With no
//! contention a batch is a single message and adds no delay.
//!
//! An append may carry a delivery update that must be stored with it (an agent's reply and
//! its request's `answered`, a failure notice and its request's `failed`): both then land in
//! the same batch. Other delivery updates (`sent`, `started`) are recorded without waiting
//! and held for [`LAZY_UPDATES`] before they ride along with a batch: a later update of the
//! same message replaces them meanwhile, so a run that is answered within that time costs no
//! write beyond its `answered`. (A crash loses at most that much of `sent`/`started`; such a
//! message is simply still `stored` and is sent again, which its idempotency key makes
//! harmless.)
//!
//! A store that commits several transactions at once to advantage (PostgreSQL: each commit
//! waits on the WAL flush, not the CPU) asks for several lanes
//! ([`MessageStore::write_lanes`]): each lane is a group-commit loop of its own, and a
//! session's appends and delivery updates always take the same lane, so one session's messages
//! are committed in the order they were appended.
//!
//! [`MessageStore::write_batch`]: crate::store::MessageStore::write_batch
//! [`MessageStore::write_lanes`]: crate::store::MessageStore::write_lanes

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::ids::SessionId;
use crate::model::NewMessage;
use crate::store::{Appended, DeliveryUpdate, Store, StoreError, StoreResult};

/// Most appends in one batch.
const MAX_BATCH: usize = 256;
/// How long delivery updates wait for appends to ride along with.
pub(crate) const LAZY_UPDATES: std::time::Duration = std::time::Duration::from_millis(50);

struct Append {
    message: NewMessage,
    with: Option<DeliveryUpdate>,
    done: oneshot::Sender<StoreResult<Appended>>,
}

/// Most lanes a store may ask for.
const MAX_LANES: usize = 16;

/// Group commit of messages and delivery states (the relay's writer; usable on its own, e.g.
/// to measure a store). Cheap to clone; its tasks end, after writing what they hold, when every
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct MessageWriter {
    lanes: Arc<[Lane]>,
}

/// One group-commit loop's queues.
#[derive(Debug)]
struct Lane {
    appends: mpsc::Sender<Append>,
    deliveries: mpsc::UnboundedSender<Note>,
}

/// What a lane is told besides appends, in order.
#[derive(Debug)]
enum Note {
    /// A delivery state to hold until it rides along with a batch.
    Update(DeliveryUpdate),
    /// Write everything held now; answer once it is committed.
    Flush(oneshot::Sender<()>),
}

impl std::fmt::Debug for Append {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append").field("message", &self.message.id).finish_non_exhaustive()
    }
}

impl MessageWriter {
    /// Starts the writer over `store` (inside a tokio runtime), one task per lane the store
    /// asks for; returns its handle and a task that ends when every lane has.
    pub fn start(store: Arc<dyn Store>) -> (Self, tokio::task::JoinHandle<()>) {
        let count = store.write_lanes().clamp(1, MAX_LANES);
        let mut lanes = Vec::with_capacity(count);
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let (appends, append_rx) = mpsc::channel(4 * MAX_BATCH);
            let (deliveries, delivery_rx) = mpsc::unbounded_channel();
            tasks.push(tokio::spawn(run(store.clone(), append_rx, delivery_rx)));
            lanes.push(Lane { appends, deliveries });
        }
        let all = tokio::spawn(async move {
            for task in tasks {
                let _ = task.await;
            }
        });
        (Self { lanes: lanes.into() }, all)
    }

    /// The lane of `session`'s writes.
    fn lane(&self, session: SessionId) -> &Lane {
        let n = self.lanes.len();
        if n == 1 {
            return &self.lanes[0];
        }
        // Session ids are UUIDv7: their last bytes are random.
        let (_, low) = session.as_uuid().as_u64_pair();
        &self.lanes[(low % n as u64) as usize]
    }

    /// Appends a message (and stores `with` in the same batch); waits for the commit.
    pub async fn append(
        &self,
        message: NewMessage,
        with: Option<DeliveryUpdate>,
    ) -> StoreResult<Appended> {
        let (done, result) = oneshot::channel();
        let gone = || StoreError::Unavailable {
            message: "the message writer stopped".into(),
            source: None,
        };
        let lane = self.lane(message.session_id);
        lane.appends.send(Append { message, with, done }).await.map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    /// Records a delivery state with the next batch, without waiting.
    pub fn record(&self, update: DeliveryUpdate) {
        let _ = self.lane(update.session_id).deliveries.send(Note::Update(update));
    }

    /// Writes every delivery state recorded so far (those held back to ride along with a
    /// batch included) and waits for the commit: before the store is closed at shutdown, or
    /// to read them back at once.
    pub async fn flush(&self) {
        let mut done = Vec::with_capacity(self.lanes.len());
        for lane in self.lanes.iter() {
            let (tell, flushed) = oneshot::channel();
            if lane.deliveries.send(Note::Flush(tell)).is_ok() {
                done.push(flushed);
            }
        }
        for flushed in done {
            let _ = flushed.await;
        }
    }
}

/// Delivery updates waiting to be written, one per message (the furthest asked for).
#[derive(Default)]
struct Held {
    updates: HashMap<(SessionId, u64), (Instant, DeliveryUpdate)>,
}

impl Held {
    fn hold(&mut self, update: DeliveryUpdate, now: Instant) {
        let key = (update.session_id, update.seq);
        let entry = self.updates.entry(key).or_insert((now, update));
        if update.state.rank() > entry.1.state.rank() {
            entry.1 = update;
        }
    }

    /// An update written with an append supersedes what is held for the same message.
    fn supersede(&mut self, update: &DeliveryUpdate) {
        let key = (update.session_id, update.seq);
        if self.updates.get(&key).is_some_and(|(_, held)| held.state.rank() <= update.state.rank())
        {
            self.updates.remove(&key);
        }
    }

    /// Takes the updates held since before `ripe`.
    fn take_ripe(&mut self, ripe: Instant) -> Vec<DeliveryUpdate> {
        let mut taken = vec![];
        self.updates.retain(|_, (since, update)| {
            let keep = *since > ripe;
            if !keep {
                taken.push(*update);
            }
            keep
        });
        taken
    }

    fn take_all(&mut self) -> Vec<DeliveryUpdate> {
        self.updates.drain().map(|(_, (_, update))| update).collect()
    }

    /// When the oldest held update is ripe.
    fn next_ripe(&self) -> Option<Instant> {
        self.updates.values().map(|(since, _)| *since + LAZY_UPDATES).min()
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut appends: mpsc::Receiver<Append>,
    mut deliveries: mpsc::UnboundedReceiver<Note>,
) {
    let mut batch: Vec<Append> = Vec::with_capacity(MAX_BATCH);
    let mut held = Held::default();
    // Flushes asked for: this turn writes everything held, then answers them.
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        // Wait for an append (or for held updates to ripen), then take whatever else is
        // already there.
        let flush_at = held.next_ripe();
        tokio::select! {
            biased;
            append = appends.recv() => match append {
                Some(a) => batch.push(a),
                None => break,
            },
            note = deliveries.recv() => match note {
                Some(Note::Update(u)) => {
                    held.hold(u, Instant::now());
                    continue;
                }
                Some(Note::Flush(done)) => flushes.push(done),
                None => break,
            },
            () = sleep_until(flush_at), if flush_at.is_some() => {}
        }
        // Let the appenders that the last commit woke run first: they are usually about to
        // append again, and would otherwise wait a whole batch behind this one message.
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH {
            match appends.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        while let Ok(note) = deliveries.try_recv() {
            match note {
                Note::Update(u) => held.hold(u, now),
                Note::Flush(done) => flushes.push(done),
            }
        }
        for with in batch.iter().filter_map(|a| a.with.as_ref()) {
            held.supersede(with);
        }
        let mut updates = if flushes.is_empty() {
            held.take_ripe(now.checked_sub(LAZY_UPDATES).unwrap_or(now))
        } else {
            held.take_all()
        };
        if !batch.is_empty() || !updates.is_empty() {
            commit(store.as_ref(), &mut batch, &mut updates).await;
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
    // Whatever is left when the relay stops is still written.
    while let Ok(note) = deliveries.try_recv() {
        match note {
            Note::Update(u) => held.hold(u, Instant::now()),
            Note::Flush(done) => flushes.push(done),
        }
    }
    let mut updates = held.take_all();
    if !batch.is_empty() || !updates.is_empty() {
        commit(store.as_ref(), &mut batch, &mut updates).await;
    }
    for done in flushes {
        let _ = done.send(());
    }
}

async fn commit(store: &dyn Store, batch: &mut Vec<Append>, updates: &mut Vec<DeliveryUpdate>) {
    updates.extend(batch.iter().filter_map(|a| a.with));
    let updates = furthest(std::mem::take(updates));
    let (messages, waiters): (Vec<NewMessage>, Vec<_>) =
        batch.drain(..).map(|a| (a.message, a.done)).unzip();
    let results = store.write_batch(&messages, &updates).await;
    for (waiter, result) in waiters.into_iter().zip(results) {
        if let Ok(Appended::New(m)) = &result {
            metrics::counter!("mc_messages_stored_total", "role" => m.role.as_str()).increment(1);
        }
        let _ = waiter.send(result);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One update per message: the furthest state asked for.
fn furthest(updates: Vec<DeliveryUpdate>) -> Vec<DeliveryUpdate> {
    if updates.len() < 2 {
        return updates;
    }
    let mut best: HashMap<(SessionId, u64), DeliveryUpdate> = HashMap::with_capacity(updates.len());
    let mut order = Vec::with_capacity(updates.len());
    for update in updates {
        let key = (update.session_id, update.seq);
        match best.get_mut(&key) {
            Some(kept) if kept.state.rank() >= update.state.rank() => {}
            Some(kept) => *kept = update,
            None => {
                order.push(key);
                best.insert(key, update);
            }
        }
    }
    order.into_iter().filter_map(|key| best.remove(&key)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeliveryState;

    #[test]
    fn held_updates_ripen_unless_a_later_one_supersedes_them() {
        let (a, b) = (SessionId::new(), SessionId::new());
        let u = |session, state| DeliveryUpdate { session_id: session, seq: 1, state };
        let start = Instant::now();
        let mut held = Held::default();
        held.hold(u(a, DeliveryState::Sent), start);
        held.hold(u(a, DeliveryState::Started), start + LAZY_UPDATES / 2);
        held.hold(u(b, DeliveryState::Sent), start + LAZY_UPDATES / 2);
        assert_eq!(held.next_ripe(), Some(start + LAZY_UPDATES), "the first hold sets the time");
        let before = start.checked_sub(std::time::Duration::from_millis(1)).unwrap_or(start);
        assert!(held.take_ripe(before).is_empty(), "nothing held that long");
        held.supersede(&u(b, DeliveryState::Answered));
        let ripe = held.take_ripe(start + LAZY_UPDATES / 2);
        assert_eq!(ripe, vec![u(a, DeliveryState::Started)], "b was answered: nothing to write");
        assert!(held.take_all().is_empty());
    }

    #[test]
    fn updates_of_one_message_collapse_to_the_furthest() {
        let (a, b) = (SessionId::new(), SessionId::new());
        let u = |session, seq, state| DeliveryUpdate { session_id: session, seq, state };
        let collapsed = furthest(vec![
            u(a, 1, DeliveryState::Sent),
            u(b, 1, DeliveryState::Sent),
            u(a, 1, DeliveryState::Started),
            u(a, 1, DeliveryState::Sent),
            u(a, 2, DeliveryState::Failed),
        ]);
        assert_eq!(
            collapsed,
            vec![
                u(a, 1, DeliveryState::Started),
                u(b, 1, DeliveryState::Sent),
                u(a, 2, DeliveryState::Failed)
            ]
        );
    }
}
