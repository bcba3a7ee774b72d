//! The instance's one pub/sub connection: every channel this instance has a local
//! subscriber for is subscribed on it, after every reconnect again; what other instances
//! publish is handed to the local handlers; a reconnect after a drop moves the gap counter.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use mc_core::bus::Bus;
use mc_core::bus::InProcessBus;
use redis::aio::PubSubSink;
use tokio::sync::{Notify, oneshot, watch};

use crate::envelope;
use crate::presence::Presence;

/// How often the connection is probed.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Channels per SUBSCRIBE.
const SUBSCRIBE_CHUNK: usize = 1000;

/// The channels wanted, shared between the bus and the subscriber task.
#[derive(Default)]
pub(crate) struct Channels {
    /// Channel → local subscriptions.
    wanted: Mutex<HashMap<String, usize>>,
    /// Who waits for a channel's subscription to be confirmed.
    waiters: Mutex<Vec<(String, oneshot::Sender<()>)>>,
    wake: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Channels {
    /// One more local subscription of `channel`; gives a receiver resolved once Redis
    /// confirmed it, when it is the first.
    pub(crate) fn add(&self, channel: String) -> Option<oneshot::Receiver<()>> {
        let first = {
            let mut wanted = lock(&self.wanted);
            let n = wanted.entry(channel.clone()).or_default();
            *n += 1;
            *n == 1
        };
        if !first {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).push((channel, tx));
        self.wake.notify_one();
        Some(rx)
    }

    /// One local subscription of `channel` less.
    pub(crate) fn remove(&self, channel: &str) {
        let mut wanted = lock(&self.wanted);
        if let Some(n) = wanted.get_mut(channel) {
            *n -= 1;
            if *n == 0 {
                wanted.remove(channel);
                self.wake.notify_one();
            }
        }
    }
}

/// What the subscriber task needs.
pub(crate) struct Subscriber {
    pub(crate) client: redis::Client,
    pub(crate) channels: Arc<Channels>,
    pub(crate) local: InProcessBus,
    pub(crate) instance: String,
    pub(crate) gaps: watch::Sender<u64>,
    pub(crate) connected: watch::Sender<bool>,
    pub(crate) presence: Presence,
    pub(crate) timeout: Duration,
}

impl Subscriber {
    /// Runs until `stop` resolves (the bus was dropped).
    pub(crate) async fn run(self, mut stop: oneshot::Receiver<()>) {
        let mut ever_connected = false;
        let mut backoff = Duration::from_millis(100);
        loop {
            let connection = tokio::select! {
                _ = &mut stop => return,
                c = tokio::time::timeout(self.timeout, self.client.get_async_pubsub()) => c,
            };
            let pubsub = match connection {
                Ok(Ok(pubsub)) => pubsub,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cannot open the Redis subscription connection");
                    tokio::select! { _ = &mut stop => return, _ = tokio::time::sleep(backoff) => {} }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(_) => {
                    tracing::warn!("opening the Redis subscription connection timed out");
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            let (mut sink, mut stream) = pubsub.split();
            let mut subscribed = HashSet::new();
            if let Err(err) = self.sync(&mut sink, &mut subscribed).await {
                tracing::warn!(error = %err, "cannot subscribe on Redis");
                continue;
            }
            let _ = self.connected.send(true);
            if ever_connected {
                // Whatever other instances published while the connection was down is lost.
                tracing::warn!(
                    channels = subscribed.len(),
                    "Redis subscription connection restored"
                );
                self.gaps.send_modify(|n| *n += 1);
                self.presence.reassert();
            } else {
                tracing::info!(instance = %self.instance, "connected to Redis");
            }
            ever_connected = true;
            let mut pings = tokio::time::interval(PING_EVERY);
            pings.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = self.channels.wake.notified() => {
                        if let Err(err) = self.sync(&mut sink, &mut subscribed).await {
                            tracing::warn!(error = %err, "cannot change subscriptions on Redis");
                            break;
                        }
                    }
                    message = stream.next() => match message {
                        Some(message) => self.dispatch(message.get_payload_bytes()).await,
                        None => {
                            tracing::warn!("the Redis subscription connection dropped");
                            break;
                        }
                    },
                    _ = pings.tick() => {
                        let ping = tokio::time::timeout(self.timeout, sink.ping::<redis::Value>()).await;
                        if !matches!(ping, Ok(Ok(_))) {
                            tracing::warn!("Redis stopped answering on the subscription connection");
                            break;
                        }
                    }
                }
            }
            let _ = self.connected.send(false);
        }
    }

    /// Subscribes the channels wanted and not subscribed, unsubscribes the others; tells
    /// the waiters of the ones now subscribed.
    async fn sync(
        &self,
        sink: &mut PubSubSink,
        subscribed: &mut HashSet<String>,
    ) -> redis::RedisResult<()> {
        let wanted: HashSet<String> = lock(&self.channels.wanted).keys().cloned().collect();
        let add: Vec<String> = wanted.difference(subscribed).cloned().collect();
        let drop: Vec<String> = subscribed.difference(&wanted).cloned().collect();
        for chunk in add.chunks(SUBSCRIBE_CHUNK) {
            tokio::time::timeout(self.timeout, sink.subscribe(chunk))
                .await
                .map_err(|_| timeout_error("SUBSCRIBE"))??;
            subscribed.extend(chunk.iter().cloned());
        }
        for chunk in drop.chunks(SUBSCRIBE_CHUNK) {
            tokio::time::timeout(self.timeout, sink.unsubscribe(chunk))
                .await
                .map_err(|_| timeout_error("UNSUBSCRIBE"))??;
            for channel in chunk {
                subscribed.remove(channel);
            }
        }
        let mut waiters = lock(&self.channels.waiters);
        let mut i = 0;
        while i < waiters.len() {
            if subscribed.contains(&waiters[i].0) || !wanted.contains(&waiters[i].0) {
                let (_, tx) = waiters.swap_remove(i);
                let _ = tx.send(());
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Hands a message another instance published to the local handlers.
    async fn dispatch(&self, payload: &[u8]) {
        match envelope::decode(payload) {
            Ok((origin, _, _)) if origin == self.instance => {}
            Ok((_, topic, message)) => {
                let _ = self.local.publish(topic, message).await;
            }
            Err(err) => tracing::warn!(error = %err, "ignoring an unreadable bus message"),
        }
    }
}

fn timeout_error(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "timed out", what.to_owned()))
}
