//! [`Backoff`]: how long to wait before each reconnect attempt, exponential with full jitter:
//! attempt `n` waits a uniformly random time in `[0, min(max, first × 2ⁿ)]`, so clients dropped
//! together spread out. Every client that reconnects in this workspace uses it: the OpenClaw
//! connection, the gateway bridge and the users' SDK.

use std::time::Duration;

/// Reconnect delays with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays from at most `first` doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { first, max: max.max(first), attempt: 0 }
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        self.first.saturating_mul(1u32 << self.attempt.min(16)).min(self.max)
    }

    /// The next delay (random from the OS); counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_at(random_unit())
    }

    /// The next delay at `unit` (in `[0, 1)`) of its ceiling; counts the attempt.
    pub fn next_delay_at(&mut self, unit: f64) -> Duration {
        let delay = self.ceiling().mul_f64(unit.clamp(0.0, 1.0));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// After a connection that held, or a network change: start again from `first`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts counted since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// A random number in `[0, 1)` from the OS (the middle when it has none).
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_from_first_to_max() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(20));
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = b.ceiling().as_millis() as u64;
                b.next_delay_at(0.0);
                c
            })
            .collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000, 20000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(500));
        let mut far = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(far.next_delay() <= Duration::from_secs(30));
        }
    }

    #[test]
    fn delays_spread_over_the_whole_range() {
        let max = Duration::from_secs(20);
        let mut b = Backoff::new(Duration::from_millis(500), max);
        for _ in 0..8 {
            b.next_delay_at(0.0);
        }
        let samples: Vec<Duration> = (0..2000).map(|_| b.clone().next_delay()).collect();
        assert!(samples.iter().all(|d| *d <= max));
        let low = samples.iter().filter(|d| **d < max / 4).count();
        let high = samples.iter().filter(|d| **d > max * 3 / 4).count();
        // Full jitter: about a quarter in each outer quarter (2000 samples: 500 ± a few dozen).
        assert!((350..650).contains(&low), "{low}");
        assert!((350..650).contains(&high), "{high}");
    }
}
