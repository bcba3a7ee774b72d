//! [`RedisBus`]: `mc_core::bus::Bus` over Redis pub/sub.
//!
//! - **publish**: handlers on this instance get the message inline (no round trip); other
//!   instances get it through `PUBLISH` on the topic's channel (one multiplexed connection,
//!   so concurrent publishes are pipelined). A gateway's command is not sent to Redis when
//!   this instance holds the gateway (only one instance holds it; one that took over gets
//!   what the old holder had through the hand-over), except `TakenOver`, which is for the
//!   others.
//! - **subscribe**: a local handler, and the channel on the instance's one subscription
//!   connection (waits, up to the response timeout, for Redis to confirm it). Subscribing a
//!   gateway's topic claims the gateway in presence; dropping it releases the claim.
//! - **has_subscribers**: a gateway is held when its presence key exists (it expires with
//!   its holder); other topics ask `PUBSUB NUMSUB`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mc_core::UserId;
use mc_core::bus::InProcessBus;
use mc_core::bus::{Bus, BusHandler, BusMessage, BusTopic, GatewayCommand, Subscription};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{oneshot, watch};

use crate::config::RedisBusConfig;
use crate::envelope;
use crate::error::BusError;
use crate::presence::{Keys, Presence};
use crate::subscriber::{Channels, Subscriber};

/// The bus of one instance among several, over Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    instance: String,
    local: InProcessBus,
    redis: ConnectionManager,
    channels: Arc<Channels>,
    presence: Presence,
    keys: Keys,
    gaps: watch::Receiver<u64>,
    connected: watch::Receiver<bool>,
    timeout: Duration,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus").field("instance", &self.inner.instance).finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Connects to Redis (fails if it does not answer), starts the subscription connection
    /// and the presence task. Must be called inside a tokio runtime.
    pub async fn connect(config: RedisBusConfig) -> Result<Self, BusError> {
        let client = redis::Client::open(config.url.expose())
            .map_err(|err| BusError::InvalidUrl(err.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.response_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let mut redis = tokio::time::timeout(
            config.response_timeout * 2,
            client.get_connection_manager_with_config(manager_config),
        )
        .await
        .map_err(|_| BusError::Unreachable("connecting timed out".into()))??;
        let _: String = redis::cmd("PING").query_async(&mut redis).await?;
        let keys = Keys::new(&config.key_prefix);
        let instance = config.instance_id.clone();
        // Alive before the first socket is counted (the presence task extends it).
        let ttl_ms = u64::try_from(config.presence_ttl.as_millis()).unwrap_or(u64::MAX).max(1000);
        redis::cmd("SET")
            .arg(keys.instance(&instance))
            .arg(1)
            .arg("PX")
            .arg(ttl_ms)
            .query_async::<()>(&mut redis)
            .await?;
        let presence =
            Presence::start(redis.clone(), keys.clone(), instance.clone(), config.presence_ttl);
        let local = InProcessBus::with_instance_id(instance.clone());
        let channels = Arc::new(Channels::default());
        let (gaps_tx, gaps) = watch::channel(0);
        let (connected_tx, connected) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        let subscriber = Subscriber {
            client,
            channels: channels.clone(),
            local: local.clone(),
            instance: instance.clone(),
            gaps: gaps_tx,
            connected: connected_tx,
            presence: presence.clone(),
            timeout: config.response_timeout,
        };
        tokio::spawn(subscriber.run(stopped));
        let bus = Self {
            inner: Arc::new(Inner {
                instance,
                local,
                redis,
                channels,
                presence,
                keys,
                gaps,
                connected,
                timeout: config.response_timeout,
                _stop: stop,
            }),
        };
        bus.wait_connected(config.response_timeout * 2).await?;
        Ok(bus)
    }

    async fn wait_connected(&self, within: Duration) -> Result<(), BusError> {
        let mut connected = self.inner.connected.clone();
        tokio::time::timeout(within, connected.wait_for(|c| *c))
            .await
            .map_err(|_| BusError::Unreachable("the subscription connection did not open".into()))?
            .map_err(|_| BusError::Unreachable("the subscription task ended".into()))?;
        Ok(())
    }

    fn redis(&self) -> ConnectionManager {
        self.inner.redis.clone()
    }
}

/// Ends a [`RedisBus`] subscription: the local handler, the channel, a gateway's claim.
struct Unsubscribe {
    local: Option<Subscription>,
    inner: std::sync::Weak<Inner>,
    topic: BusTopic,
    channel: String,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        drop(self.local.take());
        let Some(inner) = self.inner.upgrade() else { return };
        inner.channels.remove(&self.channel);
        if let BusTopic::Gateway(gateway) = self.topic
            && !inner.local.has_local(self.topic)
        {
            inner.presence.release_gateway(gateway);
        }
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, topic: BusTopic, message: BusMessage) -> mc_core::Result<usize> {
        let inner = &self.inner;
        let here = inner.local.has_local(topic);
        let for_others = !matches!(
            (&topic, &message),
            (BusTopic::Gateway(_), BusMessage::ToGateway(command))
                if here && !matches!(command, GatewayCommand::TakenOver { .. })
        );
        let payload = for_others.then(|| envelope::encode(&inner.instance, topic, &message));
        let local = if here { inner.local.publish(topic, message).await? } else { 0 };
        let Some(payload) = payload else { return Ok(local) };
        let published = redis::cmd("PUBLISH")
            .arg(inner.keys.channel(topic))
            .arg(payload)
            .query_async::<usize>(&mut self.redis())
            .await;
        match published {
            // Redis counts this instance's own subscription too.
            Ok(n) => Ok(local + n.saturating_sub(usize::from(here))),
            Err(err) if local > 0 => {
                tracing::warn!(error = %err, channel = %inner.keys.channel(topic), "cannot publish to other instances");
                Ok(local)
            }
            Err(err) => Err(BusError::from(err).into()),
        }
    }

    async fn subscribe(
        &self,
        topic: BusTopic,
        handler: Arc<dyn BusHandler>,
    ) -> mc_core::Result<Subscription> {
        let inner = &self.inner;
        let local = inner.local.subscribe(topic, handler).await?;
        let channel = inner.keys.channel(topic);
        if let BusTopic::Gateway(gateway) = topic {
            inner.presence.claim_gateway(gateway);
        }
        if let Some(confirmed) = inner.channels.add(channel.clone())
            && tokio::time::timeout(inner.timeout, confirmed).await.is_err()
        {
            // Redis is away: the subscription is made when it is back.
            tracing::warn!(%channel, "Redis has not confirmed a subscription yet");
        }
        Ok(Subscription::new(Unsubscribe {
            local: Some(local),
            inner: Arc::downgrade(inner),
            topic,
            channel,
        }))
    }

    async fn has_subscribers(&self, topic: BusTopic) -> mc_core::Result<bool> {
        let inner = &self.inner;
        if inner.local.has_local(topic) {
            return Ok(true);
        }
        let mut redis = self.redis();
        let held = match topic {
            // Held: its presence key, or (Redis restarted and the holder has not written its
            // keys again yet) a subscription on its channel.
            BusTopic::Gateway(gateway) => redis::pipe()
                .cmd("EXISTS")
                .arg(inner.keys.gateway(gateway))
                .cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(inner.keys.channel(topic))
                .query_async::<(u32, Vec<(String, u64)>)>(&mut redis)
                .await
                .map(|(keys, counts)| keys > 0 || counts.iter().any(|(_, n)| *n > 0)),
            _ => redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(inner.keys.channel(topic))
                .query_async::<Vec<(String, u64)>>(&mut redis)
                .await
                .map(|counts| counts.iter().any(|(_, n)| *n > 0)),
        };
        held.map_err(|err| BusError::from(err).into())
    }

    fn instance_id(&self) -> &str {
        &self.inner.instance
    }

    async fn join_user(&self, user: UserId, limit: usize) -> mc_core::Result<bool> {
        Ok(self.inner.presence.join_user(user, limit).await)
    }

    fn leave_user(&self, user: UserId) {
        self.inner.presence.leave_user(user);
    }

    fn gaps(&self) -> Option<watch::Receiver<u64>> {
        Some(self.inner.gaps.clone())
    }

    async fn ping(&self) -> mc_core::Result<()> {
        if !*self.inner.connected.borrow() {
            return Err(mc_core::Error::Bus("the subscription connection is down".into()));
        }
        redis::cmd("PING")
            .query_async::<String>(&mut self.redis())
            .await
            .map(drop)
            .map_err(|err| BusError::from(err).into())
    }
}
