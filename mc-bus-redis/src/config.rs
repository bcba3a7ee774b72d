//! [`RedisBusConfig`]: where Redis is and how presence is kept.

use std::time::Duration;

use mc_core::Secret;

/// How to run a [`RedisBus`](crate::RedisBus).
#[derive(Debug, Clone)]
pub struct RedisBusConfig {
    /// `redis://[user:password@]host:port[/db]`; may hold a password, so it is kept secret.
    pub url: Secret,
    /// This instance's id; unique among the instances (default: a fresh UUID v7).
    pub instance_id: String,
    /// How long presence (this instance, the gateways it holds, its users' socket counts)
    /// outlives its last refresh: an instance that dies is forgotten after this.
    pub presence_ttl: Duration,
    /// How long a Redis command may take before it counts as failed.
    pub response_timeout: Duration,
    /// Prefix of every key (several deployments can share one Redis).
    pub key_prefix: String,
}

impl RedisBusConfig {
    /// Defaults for `url`: a fresh instance id, presence TTL 15 s, 2 s response timeout,
    /// keys under `mc:`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url.into()),
            instance_id: uuid::Uuid::now_v7().to_string(),
            presence_ttl: Duration::from_secs(15),
            response_timeout: Duration::from_secs(2),
            key_prefix: "mc:".into(),
        }
    }

    /// Sets the instance id.
    pub fn with_instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// Sets the presence TTL (refreshed every third of it).
    pub fn with_presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl;
        self
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }
}
