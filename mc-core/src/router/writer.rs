//! Group commit for messages: concurrent appends are gathered into one store call (one
//! transaction for stores that batch), so throughput is not capped at one transaction per
//! message. With no contention a batch is a single message and adds no delay.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::model::NewMessage;
use crate::store::{Appended, Store, StoreError, StoreResult};

/// Most messages in one batch.
const MAX_BATCH: usize = 256;

type Request = (NewMessage, oneshot::Sender<StoreResult<Appended>>);

#[derive(Debug, Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer task; it ends when every `Writer` clone is dropped.
    pub(crate) fn start(store: Arc<dyn Store>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Request>(4 * MAX_BATCH);
        let task = tokio::spawn(async move {
            let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (messages, waiters): (Vec<NewMessage>, Vec<_>) = batch.drain(..).unzip();
                let results = store.append_messages(&messages).await;
                for (waiter, result) in waiters.into_iter().zip(results) {
                    if let Ok(Appended::New(m)) = &result {
                        metrics::counter!("mc_messages_stored_total", "role" => m.role.as_str())
                            .increment(1);
                    }
                    let _ = waiter.send(result);
                }
            }
        });
        (Self { tx }, task)
    }

    /// Appends a message (see [`crate::store::MessageStore::append_message`]).
    pub(crate) async fn append(&self, message: NewMessage) -> StoreResult<Appended> {
        let (tx, rx) = oneshot::channel();
        let gone = || StoreError::Unavailable {
            message: "the message writer stopped".into(),
            source: None,
        };
        self.tx.send((message, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}
