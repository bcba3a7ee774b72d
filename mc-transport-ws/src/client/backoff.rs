//! Reconnect delays: exponential with full jitter (SPEC §11), 0.5 s doubling to 20 s.

use std::time::Duration;

/// The first ceiling.
pub(crate) const FIRST: Duration = Duration::from_millis(500);
/// The largest ceiling.
pub(crate) const CEILING: Duration = Duration::from_secs(20);

/// How long to wait before each reconnect attempt: attempt `n` waits a uniformly random time
/// in `[0, min(20 s, 0.5 s × 2ⁿ)]` ("full jitter"), so clients dropped together spread out.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff (the next delay is at most 0.5 s).
    pub fn new() -> Self {
        Self::default()
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        FIRST.saturating_mul(1u32 << self.attempt.min(6)).min(CEILING)
    }

    /// The next delay, with `unit` a random number in `[0, 1)`; counts the attempt.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let delay = self.ceiling().mul_f64(unit.clamp(0.0, 1.0));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// After a successful connection or a network change: start again from 0.5 s.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A random number in `[0, 1)` from the OS.
pub(crate) fn random_unit() -> f64 {
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
    fn ceilings_double_from_half_a_second_to_twenty() {
        let mut b = Backoff::new();
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = b.ceiling().as_millis() as u64;
                b.next_delay(0.0);
                c
            })
            .collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000, 20000]);
        b.reset();
        assert_eq!(b.ceiling(), FIRST);
    }

    #[test]
    fn delays_spread_over_the_whole_range() {
        let mut b = Backoff::new();
        for _ in 0..8 {
            b.next_delay(0.0);
        }
        let samples: Vec<Duration> =
            (0..2000).map(|_| b.clone().next_delay(random_unit())).collect();
        assert!(samples.iter().all(|d| *d <= CEILING));
        let low = samples.iter().filter(|d| **d < CEILING / 4).count();
        let high = samples.iter().filter(|d| **d > CEILING * 3 / 4).count();
        // Full jitter: about a quarter in each outer quarter (2000 samples: 500 ± a few dozen).
        assert!((350..650).contains(&low), "{low}");
        assert!((350..650).contains(&high), "{high}");
    }
}
