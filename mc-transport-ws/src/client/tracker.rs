//! What the client has seen of each session: the resume point (the highest seq below which
//! nothing is missing), the stored messages above it, and the reply text of runs still
//! streaming, assembled from chunks by offset.

use std::collections::{BTreeSet, HashMap};

use mc_core::SessionId;
use mc_core::protocol::ResumePoint;

#[derive(Debug, Default)]
struct SessionSeen {
    /// Every seq up to this one was seen (or predates what this client tracks).
    through: u64,
    /// Seqs seen above `through` (a gap lies below the smallest).
    above: BTreeSet<u64>,
}

/// Seqs and reply text per session. Seqs run 1, 2, 3… per session with no gaps, so the
/// resume point only moves over seqs actually seen: a message lost in between holds it back
/// until `resume` fills the gap.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    sessions: HashMap<SessionId, SessionSeen>,
    replies: HashMap<(SessionId, String), String>,
}

impl Tracker {
    /// Starts tracking `session` from `after_seq` (e.g. from `sessions`, or an app restoring
    /// what it has); a session already tracked keeps the higher point.
    pub(crate) fn know(&mut self, session: SessionId, after_seq: u64) {
        let seen = self.sessions.entry(session).or_default();
        if after_seq > seen.through {
            seen.through = after_seq;
            // Keep only what lies above the new point (nothing lies above `u64::MAX`).
            seen.above = match after_seq.checked_add(1) {
                Some(next) => seen.above.split_off(&next),
                None => BTreeSet::new(),
            };
            Self::advance(seen);
        }
    }

    /// Starts tracking `session` from `after_seq` unless it is tracked already (what
    /// `sessions` lists: a tracked session's own point is more exact).
    pub(crate) fn know_if_new(&mut self, session: SessionId, after_seq: u64) {
        if !self.sessions.contains_key(&session) {
            self.know(session, after_seq);
        }
    }

    /// A stored message `seq` of `session` arrived (a `chat` frame or an `ack`). Returns
    /// false when it was seen before (a duplicate the app must not get twice).
    pub(crate) fn saw(&mut self, session: SessionId, seq: u64) -> bool {
        let seen = self.sessions.entry(session).or_insert_with(|| SessionSeen {
            // The first sight of a session: track it from here.
            through: seq.saturating_sub(1),
            above: BTreeSet::new(),
        });
        if seq <= seen.through || !seen.above.insert(seq) {
            return false;
        }
        Self::advance(seen);
        true
    }

    /// `resumed {last_seq}`: every message up to `last_seq` has been sent.
    pub(crate) fn resumed(&mut self, session: SessionId, last_seq: u64) {
        self.know(session, last_seq);
    }

    fn advance(seen: &mut SessionSeen) {
        while let Some(next) = seen.through.checked_add(1)
            && seen.above.first() == Some(&next)
        {
            seen.above.pop_first();
            seen.through = next;
        }
    }

    /// Where to resume each tracked session.
    pub(crate) fn resume_points(&self) -> Vec<ResumePoint> {
        let mut points: Vec<ResumePoint> = self
            .sessions
            .iter()
            .map(|(id, seen)| ResumePoint { session_id: *id, after_seq: seen.through })
            .collect();
        points.sort_by_key(|p| p.session_id);
        points
    }

    /// Applies a chunk of `run_id`'s reply: appended when `offset` is the text's length,
    /// replacing from `offset` when it is less (a rewrite, or the catch-up after a reconnect).
    /// Returns the reply so far, or `None` when text before `offset` is missing (the next
    /// catch-up brings it).
    pub(crate) fn chunk(
        &mut self,
        session: SessionId,
        run_id: &str,
        offset: usize,
        delta: &str,
    ) -> Option<&str> {
        let text = self.replies.entry((session, run_id.to_owned())).or_default();
        if offset > text.len() {
            return None;
        }
        let mut cut = offset;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(delta);
        Some(text.as_str())
    }

    /// The run ended (its final message was stored): forget its text.
    pub(crate) fn finish(&mut self, session: SessionId, run_id: &str) {
        self.replies.remove(&(session, run_id.to_owned()));
    }

    /// The reply text so far of a run still streaming.
    #[cfg(test)]
    pub(crate) fn reply_text(&self, session: SessionId, run_id: &str) -> Option<&str> {
        self.replies.get(&(session, run_id.to_owned())).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: &Tracker, s: SessionId) -> u64 {
        t.resume_points().iter().find(|p| p.session_id == s).map_or(0, |p| p.after_seq)
    }

    #[test]
    fn resume_points_move_only_over_seqs_seen() {
        let mut t = Tracker::default();
        let s = SessionId::new();
        assert!(t.saw(s, 1));
        assert!(t.saw(s, 2));
        assert_eq!(point(&t, s), 2);
        // 3 is lost in transit: 4 and 5 arrive, the point stays before the gap.
        assert!(t.saw(s, 4));
        assert!(t.saw(s, 5));
        assert_eq!(point(&t, s), 2);
        assert!(!t.saw(s, 4), "a duplicate is reported as such");
        assert!(t.saw(s, 3));
        assert_eq!(point(&t, s), 5);
        assert!(!t.saw(s, 2));
        // Chunks never move it.
        t.chunk(s, "r", 0, "hello");
        assert_eq!(point(&t, s), 5);
        t.resumed(s, 9);
        assert_eq!(point(&t, s), 9);
        t.know(s, 3);
        assert_eq!(point(&t, s), 9, "never backwards");
    }

    #[test]
    fn a_session_first_seen_mid_way_is_tracked_from_there() {
        let mut t = Tracker::default();
        let s = SessionId::new();
        assert!(t.saw(s, 7));
        assert_eq!(point(&t, s), 7);
    }

    #[test]
    fn chunks_assemble_by_offset_per_run() {
        let mut t = Tracker::default();
        let s = SessionId::new();
        assert_eq!(t.chunk(s, "a", 0, "Hé"), Some("Hé"));
        assert_eq!(t.chunk(s, "b", 0, "other run"), Some("other run"));
        assert_eq!(t.chunk(s, "a", 3, "llo"), Some("Héllo"));
        assert_eq!(t.chunk(s, "a", 1, "i"), Some("Hi"), "replace from the offset");
        assert_eq!(t.chunk(s, "a", 9, "x"), None, "a gap waits for the catch-up");
        assert_eq!(t.chunk(s, "a", 0, "Hi there"), Some("Hi there"), "catch-up");
        // An offset inside a character (a diverged copy) never panics.
        assert_eq!(t.chunk(s, "b", 0, "é"), Some("é"));
        assert_eq!(t.chunk(s, "b", 1, "e"), Some("e"));
        t.finish(s, "a");
        assert_eq!(t.reply_text(s, "a"), None);
        assert_eq!(t.reply_text(s, "b"), Some("e"));
    }
}
