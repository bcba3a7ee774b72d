//! [`RecentIds`]: message ids remembered for a while, in memory that stays proportional to
//! the ids remembered.
//!
//! The outbox remembers every delivery it finished, so that a late copy of one (read from the
//! store just before its final state was committed, or handed over the bus) is not run again.
//! At thousands of messages a second that is millions of ids over a few minutes, and a hash
//! map emptied by `retain` keeps the capacity of its peak: the soak grew by ~250 MiB in 10
//! minutes that way. Here ids live in time buckets, and a bucket is dropped whole when its
//! ids are old enough, returning its memory.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::ids::MessageId;

/// The time one bucket covers.
const BUCKET: Duration = Duration::from_secs(10);

/// Ids, each with the time it was remembered (to a [`BUCKET`]'s precision).
#[derive(Debug, Default)]
pub(crate) struct RecentIds {
    /// Oldest first; each bucket holds the ids remembered from its start until the next
    /// bucket's start (at most `BUCKET` later).
    buckets: VecDeque<(Instant, HashSet<MessageId>)>,
}

impl RecentIds {
    /// Remembers `id` as of `now`.
    pub(crate) fn insert(&mut self, id: MessageId, now: Instant) {
        match self.buckets.back_mut() {
            Some((start, ids)) if now < *start + BUCKET => {
                ids.insert(id);
            }
            _ => self.buckets.push_back((now, HashSet::from([id]))),
        }
    }

    /// Whether `id` is remembered.
    pub(crate) fn contains(&self, id: &MessageId) -> bool {
        self.buckets.iter().any(|(_, ids)| ids.contains(id))
    }

    /// Forgets `id`.
    pub(crate) fn remove(&mut self, id: &MessageId) {
        for (_, ids) in &mut self.buckets {
            ids.remove(id);
        }
    }

    /// Forgets every id remembered before `before`; ids of the bucket that spans `before`
    /// stay a little longer (at most one `BUCKET`).
    pub(crate) fn forget_before(&mut self, before: Instant) {
        while self.buckets.len() > 1 && self.buckets[1].0 <= before {
            self.buckets.pop_front();
        }
        if self.buckets.front().is_some_and(|(start, _)| *start + BUCKET <= before) {
            self.buckets.pop_front();
        }
    }

    /// How many ids are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.iter().map(|(_, ids)| ids.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_forgotten_a_bucket_at_a_time_and_never_early() {
        let mut recent = RecentIds::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let ids: Vec<MessageId> = (0..4).map(|_| MessageId::new()).collect();
        recent.insert(ids[0], at(0));
        recent.insert(ids[1], at(9));
        recent.insert(ids[2], at(10));
        recent.insert(ids[3], at(25));
        assert_eq!(recent.buckets.len(), 3, "0–9, 10–19, 25–34");
        assert!(ids.iter().all(|id| recent.contains(id)));

        recent.forget_before(at(9));
        assert!(recent.contains(&ids[0]), "an id remembered at or after `before` stays");
        recent.forget_before(at(10));
        assert!(!recent.contains(&ids[0]) && !recent.contains(&ids[1]));
        assert!(recent.contains(&ids[2]) && recent.contains(&ids[3]));
        recent.forget_before(at(25));
        assert_eq!(recent.len(), 1);
        assert!(recent.contains(&ids[3]));
        recent.remove(&ids[3]);
        assert!(!recent.contains(&ids[3]));
        recent.forget_before(at(100));
        assert!(recent.buckets.is_empty(), "old buckets go whole, with their memory");
    }

    #[test]
    fn memory_follows_what_is_remembered() {
        let mut recent = RecentIds::default();
        let t0 = Instant::now();
        // 100 000 ids over 100 s, forgetting everything older than 30 s as time goes on: at
        // most four buckets (~40 000 ids) are ever held.
        for i in 0..100_000u64 {
            let now = t0 + Duration::from_millis(i);
            recent.insert(MessageId::new(), now);
            if i % 1000 == 0 {
                recent.forget_before(now.checked_sub(Duration::from_secs(30)).unwrap_or(t0));
            }
            assert!(recent.buckets.len() <= 5);
        }
        assert!(recent.len() <= 41_000, "{}", recent.len());
    }
}
