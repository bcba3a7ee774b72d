//! [`BusError`]: why the Redis bus could not start or answer.

/// An error of the Redis bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The Redis URL is not one the `redis` crate accepts (`redis://host:port/db`).
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// Redis did not answer.
    #[error("cannot reach Redis: {0}")]
    Unreachable(String),
    /// Redis answered something unexpected.
    #[error("unexpected answer from Redis: {0}")]
    Protocol(String),
}

impl From<redis::RedisError> for BusError {
    fn from(err: redis::RedisError) -> Self {
        if err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
        {
            BusError::Unreachable(err.to_string())
        } else {
            BusError::Protocol(err.to_string())
        }
    }
}

impl From<BusError> for mc_core::Error {
    fn from(err: BusError) -> Self {
        mc_core::Error::Bus(err.to_string())
    }
}
