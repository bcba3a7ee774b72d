//! [`FrameQueue`]: what waits to be written to one user socket, and the one policy every
//! frame the relay queues follows.
//!
//! Frames come in three kinds, and each kind has its rule:
//! - **replies** to the socket's own requests (`ack`, `error`, `history`, `sessions`, a
//!   heartbeat's answer) never wait and are never refused; instead, while too many of them
//!   are unwritten, the socket stops reading requests ([`FrameQueue::accepts_requests`]), so a
//!   client that sends faster than it reads is slowed down by TCP itself;
//! - **live** frames nobody on this socket asked for (chunks, stored messages, `system`
//!   events, admin events) never wait either: a socket with `limit` of them unwritten cannot
//!   keep up, and is closed with 1013 (it reconnects and resumes);
//! - **bulk** frames (a `resume`'s stored messages) are produced only when no reply or live
//!   frame is waiting (the session's resume job fetches its next page then), so a resume of
//!   any size paces itself to the reader and never pushes the socket over its limit.
//!
//! Replies and live frames share one first-in, first-out line (so nothing overtakes what was
//! queued before it, and a flood of requests cannot starve live frames); bulk frames come
//! after both.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Unwritten replies past which the socket stops reading requests.
pub(crate) const REPLY_BACKLOG: usize = 32;

#[derive(Debug, Default)]
struct Lanes {
    /// Replies and live frames, in the order they were queued; `true` marks a live one.
    line: VecDeque<(bool, Arc<str>)>,
    replies: usize,
    live: usize,
}

/// The frames waiting to be written to one socket.
#[derive(Debug)]
pub(crate) struct FrameQueue {
    lanes: Mutex<Lanes>,
    ready: Notify,
    live_limit: usize,
}

/// Whether a live frame was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued.
    Queued,
    /// `limit` live frames are unwritten: the socket cannot keep up.
    Full,
}

impl FrameQueue {
    pub(crate) fn new(live_limit: usize) -> Self {
        Self { lanes: Mutex::default(), ready: Notify::new(), live_limit: live_limit.max(1) }
    }

    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a reply to the socket's own request.
    pub(crate) fn push_reply(&self, frame: Arc<str>) {
        let mut lanes = self.lanes();
        lanes.line.push_back((false, frame));
        lanes.replies += 1;
        drop(lanes);
        self.ready.notify_one();
    }

    /// Queues a live frame, unless the socket already has `limit` of them unwritten.
    pub(crate) fn push_live(&self, frame: Arc<str>) -> Pushed {
        let mut lanes = self.lanes();
        if lanes.live >= self.live_limit {
            return Pushed::Full;
        }
        lanes.line.push_back((true, frame));
        lanes.live += 1;
        drop(lanes);
        self.ready.notify_one();
        Pushed::Queued
    }

    /// The next reply or live frame, in the order they were queued.
    pub(crate) fn pop(&self) -> Option<Arc<str>> {
        let mut lanes = self.lanes();
        let (live, frame) = lanes.line.pop_front()?;
        if live {
            lanes.live -= 1;
        } else {
            lanes.replies -= 1;
        }
        Some(frame)
    }

    /// Whether nothing is queued.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.lanes().line.is_empty()
    }

    /// Whether the socket may read its next request (few enough replies are unwritten).
    pub(crate) fn accepts_requests(&self) -> bool {
        self.lanes().replies < REPLY_BACKLOG
    }

    /// Resolves once something was queued (or [`wake`](Self::wake) was called) since the last
    /// [`pop`](Self::pop) found nothing (one waiter: the socket's writer).
    pub(crate) async fn changed(&self) {
        self.ready.notified().await;
    }

    /// Wakes the writer without queuing a frame (the socket is to close).
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn frames_keep_their_order_and_live_frames_are_capped() {
        let q = FrameQueue::new(2);
        assert_eq!(q.push_live(f("live1")), Pushed::Queued);
        q.push_reply(f("reply"));
        assert_eq!(q.push_live(f("live2")), Pushed::Queued);
        assert_eq!(q.push_live(f("live3")), Pushed::Full, "a slow socket");
        for _ in 0..10 {
            q.push_reply(f("more replies are never refused"));
        }
        assert_eq!(q.pop().as_deref(), Some("live1"), "nothing overtakes what came first");
        assert_eq!(q.pop().as_deref(), Some("reply"));
        assert_eq!(q.pop().as_deref(), Some("live2"));
        assert_eq!(q.push_live(f("live3")), Pushed::Queued, "room again");
        while q.pop().is_some() {}
        assert!(q.is_empty());
    }

    #[test]
    fn too_many_unwritten_replies_stop_reading() {
        let q = FrameQueue::new(2);
        for i in 0..REPLY_BACKLOG {
            assert!(q.accepts_requests());
            q.push_reply(f(&i.to_string()));
        }
        assert!(!q.accepts_requests(), "replies are never refused, reading stops instead");
        q.pop();
        assert!(q.accepts_requests());
    }

    #[tokio::test]
    async fn a_push_wakes_the_writer_even_if_it_came_first() {
        let q = Arc::new(FrameQueue::new(4));
        q.push_live(f("early"));
        // The permit is kept: the writer does not miss a frame queued before it waited.
        q.changed().await;
        assert_eq!(q.pop().as_deref(), Some("early"));
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move {
                q.changed().await;
                q.pop()
            })
        };
        tokio::task::yield_now().await;
        q.push_reply(f("later"));
        assert_eq!(waiter.await.unwrap().as_deref(), Some("later"));
    }
}
