//! [`Writer`]: group commit. Concurrent appends, and the delivery states recorded meanwhile,
//! are gathered into one store call ([`MessageStore::write_batch`], one transaction where
//! the store can), so throughput is not capped at one transaction per message. With no
//! contention a batch is a single message and adds no delay.
//!
//! An append may carry a delivery update that must be stored with it (an agent's reply and
//! its request's `answered`, a failure notice and its request's `failed`): both then land in
//! the same batch. Other delivery updates (`sent`, `started`) are recorded without waiting
//! and ride along with the next batch; several updates of one message in a batch collapse to
//! the furthest.
//!
//! [`MessageStore::write_batch`]: crate::store::MessageStore::write_batch

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::ids::SessionId;
use crate::model::NewMessage;
use crate::store::{Appended, DeliveryUpdate, Store, StoreError, StoreResult};

/// Most appends in one batch.
const MAX_BATCH: usize = 256;

struct Append {
    message: NewMessage,
    with: Option<DeliveryUpdate>,
    done: oneshot::Sender<StoreResult<Appended>>,
}

/// The writer's handle. Cheap to clone; the task ends when every clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    appends: mpsc::Sender<Append>,
    deliveries: mpsc::UnboundedSender<DeliveryUpdate>,
}

impl std::fmt::Debug for Append {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append").field("message", &self.message.id).finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer task over `store`; the caller owns the returned task.
    pub(crate) fn start(store: Arc<dyn Store>) -> (Self, tokio::task::JoinHandle<()>) {
        let (appends, append_rx) = mpsc::channel(4 * MAX_BATCH);
        let (deliveries, delivery_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(store, append_rx, delivery_rx));
        (Self { appends, deliveries }, task)
    }

    /// Appends a message (and stores `with` in the same batch); waits for the commit.
    pub(crate) async fn append(
        &self,
        message: NewMessage,
        with: Option<DeliveryUpdate>,
    ) -> StoreResult<Appended> {
        let (done, result) = oneshot::channel();
        let gone = || StoreError::Unavailable {
            message: "the message writer stopped".into(),
            source: None,
        };
        self.appends.send(Append { message, with, done }).await.map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    /// Records a delivery state with the next batch, without waiting.
    pub(crate) fn record(&self, update: DeliveryUpdate) {
        let _ = self.deliveries.send(update);
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut appends: mpsc::Receiver<Append>,
    mut deliveries: mpsc::UnboundedReceiver<DeliveryUpdate>,
) {
    let mut batch: Vec<Append> = Vec::with_capacity(MAX_BATCH);
    let mut updates: Vec<DeliveryUpdate> = Vec::new();
    loop {
        // Wait for work of either kind, then take whatever else is already there.
        tokio::select! {
            biased;
            append = appends.recv() => match append {
                Some(a) => batch.push(a),
                None => break,
            },
            update = deliveries.recv() => match update {
                Some(u) => updates.push(u),
                None => break,
            },
        }
        while batch.len() < MAX_BATCH {
            match appends.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        while let Ok(u) = deliveries.try_recv() {
            updates.push(u);
        }
        commit(store.as_ref(), &mut batch, &mut updates).await;
    }
    // Whatever is left when the relay stops is still written.
    while let Ok(u) = deliveries.try_recv() {
        updates.push(u);
    }
    if !batch.is_empty() || !updates.is_empty() {
        commit(store.as_ref(), &mut batch, &mut updates).await;
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
