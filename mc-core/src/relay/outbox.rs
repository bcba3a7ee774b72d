//! [`Outbox`]: every user message from the moment its gateway's holder accepts it until it is
//! answered or its user is told it failed — the relay's delivery promise, in memory.
//!
//! An entry moves `Queued → Sent → Started` (mirrored, lazily, by the message's stored
//! [`DeliveryState`](crate::model::DeliveryState)) and leaves the outbox exactly once, through
//! [`Outbox::take`] and its siblings: whoever takes it stores the reply or the failure notice,
//! so a reply is never stored twice and a failure never reported twice. A link that drops
//! puts `Sent` entries back to `Queued`; `Started` runs stay, waiting for the link to return
//! within the grace period. Entries taken recently are remembered for a while, so a late copy
//! of the same message (loaded from the store, or redelivered over the bus) is not run again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::recent::RecentIds;
use super::run_text::{Applied, RunText};
use crate::bus::ChatSend;
use crate::ids::{GatewayId, MessageId, SessionId};
use mc_openclaw::TextUpdate;

/// Where a pending delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Accepted; waiting for a link.
    Queued,
    /// `chat.send` is on a link; no answer yet.
    Sent,
    /// The gateway accepted it; its run streams.
    Started,
}

/// A user message on its way to its agent, and its run once started.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) send: Arc<ChatSend>,
    pub(crate) gateway: GatewayId,
    pub(crate) stage: Stage,
    pub(crate) text: RunText,
    pub(crate) accepted_at: Instant,
    pub(crate) last_event: Instant,
    /// Silent past the idle timeout, the run's session history was asked whether it finished
    /// (the last look before it is given up); an event since clears it.
    pub(crate) looked: bool,
    /// The activity last announced to the user (`thinking`, `typing`, …).
    pub(crate) phase: Option<(&'static str, Option<String>)>,
}

impl Delivery {
    /// The run gave a sign of life.
    fn heard(&mut self, now: Instant) {
        self.last_event = now;
        self.looked = false;
    }
}

/// What the sweep does with runs silent past the idle timeout.
#[derive(Debug, Default)]
pub(crate) struct Silent {
    /// Silent for the first time: ask the session's history whether the run finished.
    pub(crate) look: Vec<(GatewayId, Arc<ChatSend>)>,
    /// Silent again after that look went unanswered: give them up.
    pub(crate) give_up: Vec<Delivery>,
}

/// What a text update did to a run.
#[derive(Debug)]
pub(crate) enum Progress {
    /// Send this chunk to the run's user.
    Chunk { send: Arc<ChatSend>, offset: usize, delta: String },
    /// The reply outgrew the cap: the run was taken out, to be stopped and reported.
    TooLong(Delivery),
    /// Nothing to send (no change, or not a run of ours).
    Nothing,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<MessageId, Delivery>,
    finished: RecentIds,
}

/// The deliveries held by this instance.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
}

impl Outbox {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts a message for `gateway`; `false` if it is pending already, or finished lately
    /// and this is not the user's `retry` of it.
    pub(crate) fn accept(
        &self,
        gateway: GatewayId,
        send: Arc<ChatSend>,
        retry: bool,
        now: Instant,
    ) -> bool {
        let mut state = self.state();
        let id = send.message_id;
        if state.pending.contains_key(&id) || (!retry && state.finished.contains(&id)) {
            return false;
        }
        state.finished.remove(&id);
        state.pending.insert(
            id,
            Delivery {
                send,
                gateway,
                stage: Stage::Queued,
                text: RunText::default(),
                accepted_at: now,
                last_event: now,
                looked: false,
                phase: None,
            },
        );
        true
    }

    /// Notes what a run of `gateway` is doing; gives its message when that is news (the
    /// phase or its detail changed), to tell the user.
    pub(crate) fn activity(
        &self,
        gateway: GatewayId,
        id: MessageId,
        phase: &'static str,
        detail: Option<String>,
        now: Instant,
    ) -> Option<Arc<ChatSend>> {
        let mut state = self.state();
        let d = state.pending.get_mut(&id).filter(|d| d.gateway == gateway)?;
        d.heard(now);
        let next = Some((phase, detail));
        if d.phase == next {
            return None;
        }
        d.phase = next;
        Some(d.send.clone())
    }

    /// `Queued → Sent`; `true` if it changed.
    pub(crate) fn mark_sent(&self, id: MessageId) -> bool {
        match self.state().pending.get_mut(&id) {
            Some(d) if d.stage == Stage::Queued => {
                d.stage = Stage::Sent;
                true
            }
            _ => false,
        }
    }

    /// `Queued | Sent → Started`; `true` if it changed.
    pub(crate) fn mark_started(&self, id: MessageId, now: Instant) -> bool {
        match self.state().pending.get_mut(&id) {
            Some(d) if d.stage != Stage::Started => {
                d.stage = Stage::Started;
                d.heard(now);
                true
            }
            _ => false,
        }
    }

    /// Whether the message is pending here, and where.
    pub(crate) fn stage(&self, id: MessageId) -> Option<Stage> {
        self.state().pending.get(&id).map(|d| d.stage)
    }

    /// The gateway's link dropped: what was sent and not answered waits for the next link.
    pub(crate) fn link_lost(&self, gateway: GatewayId) {
        for d in self.state().pending.values_mut() {
            if d.gateway == gateway && d.stage == Stage::Sent {
                d.stage = Stage::Queued;
            }
        }
    }

    /// What to hand to the gateway's new link: every pending message of it, oldest first
    /// (queued ones become sent; started runs are asked again, which OpenClaw answers with
    /// their state, so one that finished meanwhile is caught up). Messages already `Sent`
    /// went out on this link (a link that ends puts its sent ones back to queued).
    pub(crate) fn for_new_link(&self, gateway: GatewayId) -> Vec<Arc<ChatSend>> {
        let mut state = self.state();
        let mut sends: Vec<((Instant, MessageId), Arc<ChatSend>)> = state
            .pending
            .values_mut()
            .filter(|d| d.gateway == gateway && d.stage != Stage::Sent)
            .map(|d| {
                if d.stage == Stage::Queued {
                    d.stage = Stage::Sent;
                }
                ((d.accepted_at, d.send.message_id), d.send.clone())
            })
            .collect();
        sends.sort_by_key(|(order, _)| *order);
        sends.into_iter().map(|(_, s)| s).collect()
    }

    /// Applies a text update to a run of `gateway`, capped at `cap` bytes. Text flowing means
    /// the gateway is working on it: the message counts as started.
    pub(crate) fn apply(
        &self,
        gateway: GatewayId,
        id: MessageId,
        update: TextUpdate<'_>,
        cap: usize,
        now: Instant,
    ) -> Progress {
        let mut state = self.state();
        let Some(d) = state.pending.get_mut(&id).filter(|d| d.gateway == gateway) else {
            return Progress::Nothing;
        };
        d.heard(now);
        d.stage = Stage::Started;
        match d.text.apply(update, cap) {
            Applied::Unchanged => Progress::Nothing,
            Applied::Chunk { offset, delta } => {
                Progress::Chunk { send: d.send.clone(), offset, delta }
            }
            Applied::TooLong => match state.pending.remove(&id) {
                Some(d) => {
                    state.finished.insert(id, now);
                    Progress::TooLong(d)
                }
                None => Progress::Nothing,
            },
        }
    }

    /// Notes that the run is alive (a status event).
    pub(crate) fn touch(&self, gateway: GatewayId, id: MessageId, now: Instant) {
        if let Some(d) = self.state().pending.get_mut(&id).filter(|d| d.gateway == gateway) {
            d.heard(now);
        }
    }

    /// Takes a delivery of `gateway` out for good (its reply or its failure is stored by the
    /// caller); `None` if it is not pending (already finished, or not this gateway's).
    pub(crate) fn take(&self, gateway: GatewayId, id: MessageId, now: Instant) -> Option<Delivery> {
        let mut state = self.state();
        if state.pending.get(&id).is_none_or(|d| d.gateway != gateway) {
            return None;
        }
        let taken = state.pending.remove(&id);
        state.finished.insert(id, now);
        taken
    }

    /// Takes every delivery of a gateway out (it stayed away past the grace period).
    pub(crate) fn take_gateway(&self, gateway: GatewayId, now: Instant) -> Vec<Delivery> {
        self.take_where(now, |d| d.gateway == gateway)
    }

    /// Lets go of every delivery of a gateway another instance now holds: they leave without
    /// being remembered as finished (they are not finished; the new holder runs them).
    pub(crate) fn release_gateway(&self, gateway: GatewayId) -> Vec<Arc<ChatSend>> {
        let mut state = self.state();
        let mut released: Vec<((Instant, MessageId), Arc<ChatSend>)> = Vec::new();
        state.pending.retain(|id, d| {
            let keep = d.gateway != gateway;
            if !keep {
                released.push(((d.accepted_at, *id), d.send.clone()));
            }
            keep
        });
        released.sort_by_key(|(order, _)| *order);
        released.into_iter().map(|(_, send)| send).collect()
    }

    /// The runs silent for longer than `idle`: those not looked at yet are marked and listed
    /// to look at (their silence counts again from now); those looked at already, and still
    /// silent, are taken out.
    pub(crate) fn silent(&self, now: Instant, idle: Duration) -> Silent {
        let is_silent = |d: &Delivery| {
            d.stage == Stage::Started && now.saturating_duration_since(d.last_event) > idle
        };
        let mut look = Vec::new();
        for d in self.state().pending.values_mut().filter(|d| is_silent(d) && !d.looked) {
            d.looked = true;
            d.last_event = now;
            look.push((d.gateway, d.send.clone()));
        }
        let give_up = self.take_where(now, |d| is_silent(d) && d.looked);
        Silent { look, give_up }
    }

    fn take_where(&self, now: Instant, mut pick: impl FnMut(&Delivery) -> bool) -> Vec<Delivery> {
        let mut state = self.state();
        let ids: Vec<MessageId> =
            state.pending.iter().filter(|(_, d)| pick(d)).map(|(id, _)| *id).collect();
        let mut taken: Vec<Delivery> = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(d) = state.pending.remove(&id) {
                state.finished.insert(id, now);
                taken.push(d);
            }
        }
        taken.sort_by_key(|d| (d.accepted_at, d.send.message_id));
        taken
    }

    /// The text streamed so far of the session's run, if one is streaming.
    pub(crate) fn streaming_text(
        &self,
        gateway: GatewayId,
        session: SessionId,
    ) -> Option<(MessageId, String)> {
        self.state()
            .pending
            .values()
            .filter(|d| d.gateway == gateway && d.send.session_id == session)
            .filter(|d| !d.text.as_str().is_empty())
            .max_by_key(|d| d.accepted_at)
            .map(|d| (d.send.message_id, d.text.as_str().to_owned()))
    }

    /// Forgets finished deliveries taken before `before`.
    pub(crate) fn forget_finished(&self, before: Instant) {
        self.state().finished.forget_before(before);
    }

    /// Pending deliveries.
    pub(crate) fn len(&self) -> usize {
        self.state().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AgentId, UserId};

    fn send() -> Arc<ChatSend> {
        Arc::new(ChatSend {
            session_id: SessionId::new(),
            user_id: UserId::new(),
            agent_id: AgentId::new(),
            session_key: "agent:main:mc-x".into(),
            message_id: MessageId::new(),
            seq: 1,
            client_id: uuid::Uuid::now_v7(),
            content: "hi".into(),
        })
    }

    #[test]
    fn a_delivery_leaves_exactly_once() {
        let outbox = Outbox::default();
        let (gateway, now) = (GatewayId::new(), Instant::now());
        let s = send();
        assert!(outbox.accept(gateway, s.clone(), false, now));
        assert!(!outbox.accept(gateway, s.clone(), false, now), "a copy is not accepted twice");
        assert!(outbox.mark_sent(s.message_id));
        assert!(!outbox.mark_sent(s.message_id));
        assert!(outbox.take(GatewayId::new(), s.message_id, now).is_none(), "not that gateway's");
        assert!(outbox.take(gateway, s.message_id, now).is_some());
        assert!(outbox.take(gateway, s.message_id, now).is_none(), "only once");
        assert!(!outbox.accept(gateway, s.clone(), false, now), "finished lately: not run again");
        assert!(outbox.accept(gateway, s.clone(), true, now), "unless the user retries it");
        assert!(outbox.take(gateway, s.message_id, now).is_some());
        outbox.forget_finished(now + Duration::from_secs(1));
        assert!(!outbox.accept(gateway, s.clone(), false, now), "remembered a little longer");
        outbox.forget_finished(now + Duration::from_secs(10));
        assert!(outbox.accept(gateway, s, false, now));
    }

    #[test]
    fn a_lost_link_requeues_what_was_sent_and_keeps_runs() {
        let outbox = Outbox::default();
        let (gateway, now) = (GatewayId::new(), Instant::now());
        let (sent, started, queued) = (send(), send(), send());
        for s in [&sent, &started, &queued] {
            outbox.accept(gateway, s.clone(), false, now);
        }
        outbox.mark_sent(sent.message_id);
        outbox.mark_started(started.message_id, now);
        outbox.link_lost(gateway);
        assert_eq!(outbox.stage(sent.message_id), Some(Stage::Queued));
        assert_eq!(outbox.stage(started.message_id), Some(Stage::Started));
        let again = outbox.for_new_link(gateway);
        assert_eq!(again.len(), 3, "all of them are asked again, oldest first");
        assert_eq!(again[0].message_id, sent.message_id);
        assert_eq!(outbox.stage(queued.message_id), Some(Stage::Sent));
        assert_eq!(outbox.take_gateway(gateway, now).len(), 3);
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn text_is_capped_and_streams_as_chunks() {
        let outbox = Outbox::default();
        let (gateway, now) = (GatewayId::new(), Instant::now());
        let s = send();
        outbox.accept(gateway, s.clone(), false, now);
        let p = outbox.apply(gateway, s.message_id, TextUpdate::Whole("Echo"), 8, now);
        assert!(matches!(p, Progress::Chunk { offset: 0, ref delta, .. } if delta == "Echo"));
        assert_eq!(outbox.stage(s.message_id), Some(Stage::Started));
        assert_eq!(
            outbox.streaming_text(gateway, s.session_id),
            Some((s.message_id, "Echo".to_owned()))
        );
        let p = outbox.apply(GatewayId::new(), s.message_id, TextUpdate::Append("!"), 8, now);
        assert!(matches!(p, Progress::Nothing), "another gateway's event");
        let p = outbox.apply(gateway, s.message_id, TextUpdate::Append(": too long"), 8, now);
        assert!(matches!(p, Progress::TooLong(_)));
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn silent_runs_get_a_look_then_are_taken_out_unless_heard_from() {
        let outbox = Outbox::default();
        let (gateway, now) = (GatewayId::new(), Instant::now());
        let idle = Duration::from_secs(5);
        let (quiet, waiting, revived) = (send(), send(), send());
        for s in [&quiet, &waiting, &revived] {
            outbox.accept(gateway, s.clone(), false, now);
        }
        outbox.mark_started(quiet.message_id, now);
        outbox.mark_started(revived.message_id, now);
        let later = now + Duration::from_secs(10);
        let silent = outbox.silent(later, idle);
        let looked: Vec<MessageId> = silent.look.iter().map(|(_, s)| s.message_id).collect();
        assert_eq!(looked.len(), 2, "only started runs go silent");
        assert!(!looked.contains(&waiting.message_id));
        assert!(silent.give_up.is_empty(), "a look first");
        assert!(outbox.silent(later, idle).look.is_empty(), "one look each");
        outbox.touch(gateway, revived.message_id, later + Duration::from_secs(1));
        let again = outbox.silent(later + Duration::from_secs(6), idle);
        let given_up: Vec<MessageId> = again.give_up.iter().map(|d| d.send.message_id).collect();
        assert_eq!(given_up, [quiet.message_id], "the revived run is not given up");
        assert!(again.look.is_empty());
    }
}
