//! [`ChangeBudget`]: how often a gateway's own reports may change its status or its agents.
//! Every change writes to the store (an activity row, agent rows) and fans out to each
//! assigned user's sockets, so a gateway that flaps (online, error, online…, or an agent list
//! that comes and goes) would cost that on every heartbeat. Past the budget a report's
//! changes are left out; heartbeats carry the gateway's whole state, so the first one the
//! budget allows again applies the latest (the flaps in between are coalesced away).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ids::GatewayId;
use crate::model::Timestamp;

/// A token bucket per gateway: `per_minute` changes, in bursts of as many.
#[derive(Debug, Clone)]
pub(crate) struct ChangeBudget {
    per_minute: u32,
    buckets: Arc<Mutex<HashMap<GatewayId, Bucket>>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

impl ChangeBudget {
    /// Most gateways tracked before full buckets are forgotten (a full bucket is the same as
    /// none).
    const MOST: usize = 10_000;

    pub(crate) fn new(per_minute: u32) -> Self {
        Self { per_minute, buckets: Arc::default() }
    }

    /// Whether `gateway` may change now; if so, the change is counted.
    pub(crate) fn take(&self, gateway: GatewayId, now: Timestamp) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let burst = f64::from(self.per_minute);
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= Self::MOST {
            buckets.retain(|_, bucket| refilled(bucket, burst, now) < burst);
        }
        let bucket = buckets.entry(gateway).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = refilled(bucket, burst, now);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }
}

/// The bucket's tokens at `now`: `burst` per minute since it was last counted, up to `burst`.
fn refilled(bucket: &Bucket, burst: f64, now: Timestamp) -> f64 {
    let elapsed = (now - bucket.at).to_std().unwrap_or(Duration::ZERO).as_secs_f64();
    (bucket.tokens + elapsed * burst / 60.0).min(burst)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn a_burst_then_one_change_per_share_of_the_minute() {
        let budget = ChangeBudget::new(6);
        let (gateway, start) = (GatewayId::new(), chrono::Utc::now());
        for _ in 0..6 {
            assert!(budget.take(gateway, start));
        }
        assert!(!budget.take(gateway, start), "the burst is spent");
        assert!(!budget.take(gateway, start + TimeDelta::seconds(9)));
        assert!(budget.take(gateway, start + TimeDelta::seconds(10)), "one more every 10 s");
        assert!(budget.take(GatewayId::new(), start), "per gateway");
        assert!(ChangeBudget::new(0).take(gateway, start), "0 turns it off");
        let back = start - TimeDelta::seconds(30);
        assert!(!budget.take(gateway, back), "a clock going back refills nothing");
    }
}
