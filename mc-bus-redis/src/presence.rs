//! Presence in Redis, with a TTL so a dead instance is forgotten by itself:
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `{prefix}instance:{id}` | `1`, TTL | the instance is alive |
//! | `{prefix}gateway:{id}` | instance id, TTL | which instance holds the gateway's link |
//! | `{prefix}user:{id}` | hash instance id → sockets | the user's sockets per instance |
//!
//! Pub/sub channels carry the prefix too (`{prefix}ws:route:user:{id}`, …). Every script
//! touches only the keys it declares, so the bus also runs on Redis Cluster.
//!
//! One task applies every change in order (so a socket's leave never overtakes its join),
//! refreshes the TTLs every third of the TTL, and after Redis lost its data (a restart)
//! writes this instance's presence again from what it holds.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mc_core::{GatewayId, UserId};
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::error::BusError;

/// Joins a user's socket to the count unless the user's sockets reach the limit, after
/// pruning the counts of the instances the caller found gone (`ARGV[4..]`). It touches only
/// its declared key, so it runs on Redis Cluster too (the instances' liveness keys are read
/// beforehand, one command each).
const JOIN_USER: &str = r"
for i = 4, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
local fields = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 2, #fields, 2 do total = total + tonumber(fields[i]) end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Counts one socket of the user less on this instance.
const LEAVE_USER: &str = r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
";

/// Extends the holder key if this instance still holds the gateway (or nobody does).
const REFRESH_GATEWAY: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Deletes the holder key if this instance is the holder.
const RELEASE_GATEWAY: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Names of the keys.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }
    /// The Redis channel of a bus topic: the topic's name under the prefix, like every key.
    pub(crate) fn channel(&self, topic: mc_core::bus::BusTopic) -> String {
        format!("{}{}", self.prefix, topic.channel())
    }
    pub(crate) fn instance(&self, id: &str) -> String {
        format!("{}instance:{id}", self.prefix)
    }
    pub(crate) fn gateway(&self, id: GatewayId) -> String {
        format!("{}gateway:{id}", self.prefix)
    }
    pub(crate) fn user(&self, id: UserId) -> String {
        format!("{}user:{id}", self.prefix)
    }
}

enum Op {
    Join {
        user: UserId,
        limit: usize,
        reply: oneshot::Sender<Result<bool, BusError>>,
    },
    Leave {
        user: UserId,
    },
    Claim {
        gateway: GatewayId,
    },
    Release {
        gateway: GatewayId,
    },
    /// Redis may have lost its data: write everything held again.
    Reassert,
}

/// What this instance holds, as presence shows it.
#[derive(Default)]
struct Held {
    users: HashMap<UserId, usize>,
    gateways: HashSet<GatewayId>,
}

/// The presence of one instance.
#[derive(Clone)]
pub(crate) struct Presence {
    ops: mpsc::UnboundedSender<Op>,
    held: Arc<Mutex<Held>>,
}

struct Writer {
    redis: ConnectionManager,
    keys: Keys,
    instance: String,
    ttl_ms: u64,
    held: Arc<Mutex<Held>>,
    /// A reassert failed: it is tried again every [`REASSERT_RETRY`] until it works.
    reassert_due: bool,
    join: redis::Script,
    leave: redis::Script,
    refresh_gateway: redis::Script,
    release_gateway: redis::Script,
}

fn lock(held: &Mutex<Held>) -> MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

impl Presence {
    /// Starts the presence task of `instance`; it ends when the last clone is dropped.
    pub(crate) fn start(
        redis: ConnectionManager,
        keys: Keys,
        instance: String,
        ttl: Duration,
    ) -> Self {
        let (ops, rx) = mpsc::unbounded_channel();
        let held = Arc::new(Mutex::new(Held::default()));
        let writer = Writer {
            redis,
            keys,
            instance,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1000),
            held: held.clone(),
            reassert_due: false,
            join: redis::Script::new(JOIN_USER),
            leave: redis::Script::new(LEAVE_USER),
            refresh_gateway: redis::Script::new(REFRESH_GATEWAY),
            release_gateway: redis::Script::new(RELEASE_GATEWAY),
        };
        tokio::spawn(writer.run(rx, ttl / 3));
        Self { ops, held }
    }

    /// Counts a socket of `user` unless the user holds `limit` on live instances. When Redis
    /// cannot answer, the socket is counted here only (the instance's own cap still holds).
    pub(crate) async fn join_user(&self, user: UserId, limit: usize) -> bool {
        let (reply, answer) = oneshot::channel();
        if self.ops.send(Op::Join { user, limit, reply }).is_err() {
            return true;
        }
        let joined = match answer.await {
            Ok(Ok(joined)) => joined,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, %user, "cannot count the user's sockets across instances; counting here only");
                true
            }
            Err(_) => true,
        };
        if joined {
            *lock(&self.held).users.entry(user).or_default() += 1;
        }
        joined
    }

    /// One socket of `user` counted by [`join_user`](Self::join_user) closed.
    pub(crate) fn leave_user(&self, user: UserId) {
        {
            let mut held = lock(&self.held);
            match held.users.get_mut(&user) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    held.users.remove(&user);
                }
                None => return,
            }
        }
        let _ = self.ops.send(Op::Leave { user });
    }

    /// This instance holds the gateway now.
    pub(crate) fn claim_gateway(&self, gateway: GatewayId) {
        lock(&self.held).gateways.insert(gateway);
        let _ = self.ops.send(Op::Claim { gateway });
    }

    /// This instance lets go of the gateway.
    pub(crate) fn release_gateway(&self, gateway: GatewayId) {
        lock(&self.held).gateways.remove(&gateway);
        let _ = self.ops.send(Op::Release { gateway });
    }

    /// Writes all presence again (after Redis came back).
    pub(crate) fn reassert(&self) {
        let _ = self.ops.send(Op::Reassert);
    }
}

/// How soon a failed reassert is tried again.
const REASSERT_RETRY: Duration = Duration::from_millis(200);

impl Writer {
    async fn run(mut self, mut ops: mpsc::UnboundedReceiver<Op>, every: Duration) {
        let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                op = ops.recv() => match op {
                    Some(op) => self.apply(op).await,
                    None => break,
                },
                // Redis just came back (the subscription reconnected before the command
                // connection did): the keys it lost are written again as soon as it answers,
                // so the other instances find this one's gateways without waiting for a tick.
                () = tokio::time::sleep(REASSERT_RETRY), if self.reassert_due => {
                    if let Err(err) = self.reassert().await {
                        tracing::debug!(error = %err, "presence not written again yet");
                    }
                }
                _ = ticks.tick() => {
                    let refreshed = if self.reassert_due {
                        self.reassert().await
                    } else {
                        self.refresh().await
                    };
                    if let Err(err) = refreshed {
                        tracing::warn!(error = %err, "cannot refresh presence in Redis");
                    }
                }
            }
        }
        // The bus is gone: forget this instance at once rather than after the TTL.
        let gateways: Vec<GatewayId> = lock(&self.held).gateways.iter().copied().collect();
        for gateway in gateways {
            let _ = self.release(gateway).await;
        }
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(self.keys.instance(&self.instance))
            .query_async(&mut self.redis)
            .await;
    }

    /// Counts one more socket of `user` here unless its sockets on live instances reach
    /// `limit`: the instances counting its sockets are checked first (their liveness keys),
    /// then the script prunes the gone ones and counts.
    async fn join_user(&mut self, user: UserId, limit: usize) -> Result<bool, BusError> {
        let key = self.keys.user(user);
        let counting: Vec<String> =
            redis::cmd("HKEYS").arg(&key).query_async(&mut self.redis).await?;
        let others: Vec<&String> = counting.iter().filter(|i| **i != self.instance).collect();
        let mut gone = Vec::new();
        if !others.is_empty() {
            let mut alive = redis::pipe();
            for instance in &others {
                alive.cmd("EXISTS").arg(self.keys.instance(instance));
            }
            let found: Vec<bool> = alive.query_async(&mut self.redis).await?;
            gone.extend(others.iter().zip(found).filter(|(_, up)| !up).map(|(i, _)| i.as_str()));
        }
        let joined = self
            .join
            .key(key)
            .arg(&self.instance)
            .arg(limit)
            .arg(self.ttl_ms.saturating_mul(40))
            .arg(gone)
            .invoke_async::<i64>(&mut self.redis)
            .await?;
        Ok(joined == 1)
    }

    async fn apply(&mut self, op: Op) {
        let result: Result<(), BusError> = match op {
            Op::Join { user, limit, reply } => {
                let _ = reply.send(self.join_user(user, limit).await);
                Ok(())
            }
            Op::Leave { user } => self
                .leave
                .key(self.keys.user(user))
                .arg(&self.instance)
                .invoke_async::<i64>(&mut self.redis)
                .await
                .map(drop)
                .map_err(BusError::from),
            Op::Claim { gateway } => redis::cmd("SET")
                .arg(self.keys.gateway(gateway))
                .arg(&self.instance)
                .arg("PX")
                .arg(self.ttl_ms)
                .query_async::<()>(&mut self.redis)
                .await
                .map_err(BusError::from),
            Op::Release { gateway } => self.release(gateway).await.map_err(BusError::from),
            Op::Reassert => self.reassert().await,
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "cannot update presence in Redis");
        }
    }

    async fn release(&mut self, gateway: GatewayId) -> redis::RedisResult<()> {
        self.release_gateway
            .key(self.keys.gateway(gateway))
            .arg(&self.instance)
            .invoke_async::<i64>(&mut self.redis)
            .await
            .map(drop)
    }

    /// Extends this instance's keys.
    async fn refresh(&mut self) -> Result<(), BusError> {
        redis::cmd("SET")
            .arg(self.keys.instance(&self.instance))
            .arg(1)
            .arg("PX")
            .arg(self.ttl_ms)
            .query_async::<()>(&mut self.redis)
            .await?;
        let gateways: Vec<GatewayId> = lock(&self.held).gateways.iter().copied().collect();
        for gateway in gateways {
            self.refresh_gateway
                .key(self.keys.gateway(gateway))
                .arg(&self.instance)
                .arg(self.ttl_ms)
                .invoke_async::<i64>(&mut self.redis)
                .await?;
        }
        Ok(())
    }

    /// Writes the instance key, the gateways held and the users' socket counts again.
    async fn reassert(&mut self) -> Result<(), BusError> {
        self.reassert_due = true;
        self.refresh().await?;
        let users: Vec<(UserId, usize)> =
            lock(&self.held).users.iter().map(|(u, n)| (*u, *n)).collect();
        for chunk in users.chunks(500) {
            let mut pipe = redis::pipe();
            for (user, n) in chunk {
                let key = self.keys.user(*user);
                pipe.cmd("HSET").arg(&key).arg(&self.instance).arg(*n).ignore();
                pipe.cmd("PEXPIRE").arg(&key).arg(self.ttl_ms.saturating_mul(40)).ignore();
            }
            pipe.query_async::<()>(&mut self.redis).await?;
        }
        self.reassert_due = false;
        tracing::info!(users = users.len(), "presence written to Redis again");
        Ok(())
    }
}
