//! # mc-bus-redis
//!
//! Run several Mission Control relay instances on one Redis (README, "Several instances"): [`RedisBus`]
//! implements `mc_core::bus::Bus` over Redis pub/sub and keeps the instances' *presence* in Redis
//! keys with a TTL, so an instance that dies is forgotten by itself.
//!
//! ## Layout
//! - [`RedisBus`] (`bus`): publish (local handlers inline, other instances through Redis),
//!   subscribe, presence questions, the per-user socket count across instances.
//! - `subscriber`: the one pub/sub connection of the instance: (re)subscribes every channel
//!   it holds after each reconnect, dispatches what other instances publish, and moves the
//!   bus's *gap* counter when the connection dropped (messages may have been lost then; the
//!   relay asks clients to resume).
//! - `presence`: the keys and scripts (instance liveness, gateway holders, user socket
//!   counts) and the task refreshing them.
//! - `envelope`: what a message looks like on a channel.
//! - [`RedisBusConfig`], [`BusError`].
//!
//! ## Example
//! ```no_run
//! # async fn run() -> Result<(), mc_bus_redis::BusError> {
//! use mc_bus_redis::{RedisBus, RedisBusConfig};
//! let bus = RedisBus::connect(RedisBusConfig::new("redis://127.0.0.1:6379")).await?;
//! // Relay::new(services, std::sync::Arc::new(bus), limits)
//! # Ok(()) }
//! ```

mod bus;
mod config;
mod envelope;
mod error;
mod presence;
mod subscriber;

pub use bus::RedisBus;
pub use config::RedisBusConfig;
pub use error::BusError;
