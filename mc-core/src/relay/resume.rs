//! [`Resume`]: one socket's `resume` requests, served one session at a time, a page at a
//! time, only when the socket has written everything else (the *bulk* rule of
//! [`FrameQueue`](super::queue)): a resume of any size reaches a slow reader whole, and never
//! pushes its socket over the limit.
//!
//! Session points are de-duplicated: a session asked for again while it waits keeps its
//! lowest `after_seq` (and answers the latest request id); at most [`MAX_WAITING`] sessions
//! wait per socket. When a session is done its `resumed` frame goes out, then the session's
//! streaming run (if any) is caught up with one `chunk` at offset 0.

use std::collections::VecDeque;
use std::sync::Arc;

use super::connections::UserConnection;
use super::engine::{Engine, Failure};
use crate::bus::GatewayCommand;
use crate::ids::{AgentId, GatewayId, SessionId};
use crate::protocol::{ChatMessage, ErrorCode, ResumePoint, ServerFrame};

/// Most sessions waiting to be resumed on one socket.
pub(crate) const MAX_WAITING: usize = 200;
/// Stored messages fetched per page.
const PAGE: u32 = 50;

#[derive(Debug, Clone)]
struct Point {
    session: SessionId,
    after: u64,
    agent: AgentId,
    gateway: GatewayId,
    request_id: Option<String>,
}

#[derive(Debug)]
enum Buffered {
    Frame(Arc<str>),
    /// The session is caught up: send `resumed`, then ask for its run's text.
    Done {
        frame: Arc<str>,
        session: SessionId,
        gateway: GatewayId,
    },
}

/// A socket's resume work. Boxed while there is any, and nothing otherwise: every socket has
/// one, and almost every socket is idle (its place is kept in the socket's task for its
/// whole life).
#[derive(Debug, Default)]
pub(crate) struct Resume {
    work: Option<Box<Work>>,
}

impl Resume {
    /// Adds a request's session points, after checking every one is the user's (a bad one
    /// adds nothing).
    pub(crate) async fn plan(
        &mut self,
        engine: &Engine,
        conn: &UserConnection,
        request_id: Option<String>,
        points: Vec<ResumePoint>,
    ) -> Result<(), Failure> {
        let work = self.work.get_or_insert_with(Box::default);
        let planned = work.plan(engine, conn, request_id, points).await;
        self.forget_if_idle();
        planned
    }

    /// Whether there is anything left to send.
    pub(crate) fn is_idle(&self) -> bool {
        self.work.as_ref().is_none_or(|work| work.is_idle())
    }

    /// The next resumed frame already fetched, if any (see [`Work::next_buffered`]).
    pub(crate) fn next_buffered(
        &mut self,
        engine: &Engine,
        conn: &UserConnection,
    ) -> Option<Arc<str>> {
        let frame = self.work.as_mut()?.next_buffered(engine, conn);
        self.forget_if_idle();
        frame
    }

    /// Fetches the next page (see [`Work::fetch`]).
    pub(crate) async fn fetch(&mut self, engine: &Engine) {
        if let Some(work) = self.work.as_mut() {
            work.fetch(engine).await;
        }
        self.forget_if_idle();
    }

    fn forget_if_idle(&mut self) {
        if self.work.as_ref().is_some_and(|work| work.is_idle()) {
            self.work = None;
        }
    }
}

/// The sessions waiting, the one being sent, and the frames fetched and not yet written.
#[derive(Debug, Default)]
struct Work {
    waiting: VecDeque<Point>,
    current: Option<Point>,
    buffer: VecDeque<Buffered>,
}

impl Work {
    async fn plan(
        &mut self,
        engine: &Engine,
        conn: &UserConnection,
        request_id: Option<String>,
        points: Vec<ResumePoint>,
    ) -> Result<(), Failure> {
        let mut unique: Vec<ResumePoint> = Vec::with_capacity(points.len());
        for point in points {
            match unique.iter_mut().find(|p| p.session_id == point.session_id) {
                Some(p) => p.after_seq = p.after_seq.min(point.after_seq),
                None => unique.push(point),
            }
        }
        let mut checked = Vec::with_capacity(unique.len());
        for point in unique {
            let meta = engine.session_meta(conn, point.session_id).await?;
            checked.push(Point {
                session: point.session_id,
                after: point.after_seq,
                agent: meta.agent_id,
                gateway: meta.gateway_id,
                request_id: request_id.clone(),
            });
        }
        let new = checked.iter().filter(|p| !self.is_waiting(p.session)).count();
        if self.waiting.len() + new > MAX_WAITING {
            return Err(Failure {
                code: ErrorCode::RateLimited,
                message: format!(
                    "{} sessions are still being resumed on this socket (at most {MAX_WAITING} may wait); ask again when they are done",
                    self.waiting.len()
                ),
                retry_after_ms: Some(1000),
            });
        }
        for point in checked {
            match self.waiting.iter_mut().find(|p| p.session == point.session) {
                Some(p) => {
                    p.after = p.after.min(point.after);
                    p.request_id = point.request_id;
                }
                None => self.waiting.push_back(point),
            }
        }
        Ok(())
    }

    fn is_waiting(&self, session: SessionId) -> bool {
        self.waiting.iter().any(|p| p.session == session)
    }

    fn is_idle(&self) -> bool {
        self.buffer.is_empty() && self.current.is_none() && self.waiting.is_empty()
    }

    /// The next resumed frame already fetched, if any; a session's `resumed` frame also asks
    /// its gateway's holder to catch up its streaming run (which then arrives as a live
    /// frame, after the `resumed` frame the caller writes first).
    fn next_buffered(&mut self, engine: &Engine, conn: &UserConnection) -> Option<Arc<str>> {
        match self.buffer.pop_front()? {
            Buffered::Frame(frame) => Some(frame),
            Buffered::Done { frame, session, gateway } => {
                let catch_up = GatewayCommand::CatchUp {
                    session_id: session,
                    user_id: conn.principal().user_id,
                    connection: conn.id(),
                };
                engine.spawn(move |engine| async move {
                    engine.to_gateway(gateway, catch_up).await;
                });
                Some(frame)
            }
        }
    }

    /// Fetches the next page of the current session (starting the next waiting one) into the
    /// buffer. Cancel-safe: nothing changes until the page is read.
    async fn fetch(&mut self, engine: &Engine) {
        if self.current.is_none() {
            self.current = self.waiting.pop_front();
        }
        let Some(point) = self.current.clone() else { return };
        let store = engine.services.store();
        let page = match store.messages_after(point.session, point.after, PAGE).await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(error = %err, session = %point.session, "resume failed");
                self.current = None;
                let failure = Failure::from(err);
                self.buffer
                    .push_back(Buffered::Frame(failure.frame(point.request_id).to_json().into()));
                return;
            }
        };
        let full = page.len() == PAGE as usize;
        let after = page.last().map_or(point.after, |m| m.seq);
        let last_seq = if full {
            None
        } else {
            match store.get_session(point.session).await {
                Ok(Some(session)) => Some(session.last_seq.max(after)),
                _ => Some(after),
            }
        };
        // No await from here on: the state changes all at once.
        for message in &page {
            let frame = ServerFrame::Chat(ChatMessage::new(message, point.agent));
            self.buffer.push_back(Buffered::Frame(frame.to_json().into()));
        }
        let Some(last_seq) = last_seq else {
            if let Some(current) = self.current.as_mut() {
                current.after = after;
            }
            return;
        };
        let resumed =
            ServerFrame::Resumed { id: point.request_id, session_id: point.session, last_seq };
        self.buffer.push_back(Buffered::Done {
            frame: resumed.to_json().into(),
            session: point.session,
            gateway: point.gateway,
        });
        self.current = None;
    }
}
