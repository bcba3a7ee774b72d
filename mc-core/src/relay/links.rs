//! Gateway links coming and going, and the relay's periodic sweep.
//!
//! - **Attach**: the link gets its driver; this instance subscribes to the gateway's topic;
//!   everything pending for the gateway — in the outbox, and in the store (messages a
//!   previous run of the relay accepted) — is sent on the new link, with the same
//!   idempotency key, so OpenClaw runs each message once.
//! - **Detach**: the gateway is *away*: its runs wait, messages for it queue, for the offline
//!   grace period. A new link within it picks everything up (runs are re-attached by run id;
//!   OpenClaw sends their events to the new connection, and `chat.history` fills the gap).
//! - **Sweep** (once a second): gateways away past the grace period expire (their deliveries
//!   fail with `GATEWAY_ERROR`, their agents go offline); silent runs get a last look at
//!   their session's history (stored if they finished, else given up); full rate
//!   buckets and old finished deliveries are forgotten; once, a grace period after start,
//!   messages left pending by a previous run for gateways nobody holds fail; every
//!   [`RECOVER_EVERY`], messages the store has pending for a gateway linked here that the
//!   outbox does not know are sent (another instance stored and acked them, then died before
//!   its hand-over reached this one).

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::driver::{Driver, Job};
use super::engine::Engine;
use crate::bus::{BusMessage, BusTopic, ChatSend, GatewayCommand};
use crate::ids::{GatewayId, MessageId};
use crate::link::GatewayLink;
use crate::model::DeliveryState;
use crate::protocol::ErrorCode;
use crate::store::{PendingDelivery, Store};

/// Pending messages read from the store at a time (attach, recovery, orphans): any number
/// of them is walked a page at a time.
const PENDING_PAGE: u32 = 500;
/// How long finished deliveries are remembered, so a late copy of one is not run again: a
/// copy read from the store just before the final state was committed (reads and commits
/// take milliseconds to seconds; the recovery runs every [`RECOVER_EVERY`]), or one handed
/// over the bus. Memory follows it: ~20 bytes per message finished within it. A delivery
/// whose final state could not be stored at all (the store failed) is sent again after it,
/// with the same idempotency key.
const FINISHED_MEMORY: Duration = Duration::from_secs(60);
/// How often the store is asked for messages pending for the gateways linked here that the
/// outbox does not know (an instance that acked one died before handing it over).
const RECOVER_EVERY: Duration = Duration::from_secs(10);

fn chat_send(pending: PendingDelivery) -> ChatSend {
    let PendingDelivery { message, session } = pending;
    ChatSend {
        session_id: session.id,
        user_id: session.user_id,
        agent_id: session.agent_id,
        session_key: session.session_key,
        message_id: message.id,
        seq: message.seq,
        client_id: message.client_msg_id.unwrap_or_else(|| message.id.as_uuid()),
        content: message.content,
    }
}

/// The store's pending messages, of one gateway or of all, read a page at a time.
struct PendingPages<'a> {
    store: &'a dyn Store,
    gateway: Option<GatewayId>,
    after: Option<MessageId>,
    done: bool,
}

impl<'a> PendingPages<'a> {
    fn new(store: &'a dyn Store, gateway: Option<GatewayId>) -> Self {
        Self { store, gateway, after: None, done: false }
    }

    /// The next page; `None` past the last one, or when the store fails (logged: the next
    /// recovery or attach reads them again).
    async fn next(&mut self) -> Option<Vec<PendingDelivery>> {
        if self.done {
            return None;
        }
        match self.store.pending_deliveries(self.gateway, self.after, PENDING_PAGE).await {
            Ok(page) => {
                self.done = page.len() < PENDING_PAGE as usize;
                self.after = page.last().map(|p| p.message.id);
                (!page.is_empty()).then_some(page)
            }
            Err(err) => {
                let gateway = self.gateway.map(|g| g.to_string());
                tracing::warn!(error = %err, gateway, "cannot load pending messages");
                self.done = true;
                None
            }
        }
    }
}

impl Engine {
    /// Attaches a gateway's link; returns its generation.
    pub(crate) async fn attach(
        &self,
        gateway: GatewayId,
        link: Arc<dyn GatewayLink>,
    ) -> crate::Result<u64> {
        let answers: Weak<dyn super::driver::Answers> = self.me.clone();
        let driver = Driver::start(answers, gateway, link.clone(), self.limits.gateway_timeout());
        let linked = self.gateways.link(gateway, link, driver);
        if let Some(old) = linked.replaced {
            // A reconnect won the race with the old socket's close: the new link takes over
            // (OpenClaw sends run events to every connection).
            old.close(crate::protocol::close_code::UNAUTHORIZED);
            self.outbox.link_lost(gateway);
        }
        if linked.needs_subscription {
            let me = self.me.clone();
            let handler = Arc::new(move |message: BusMessage| {
                if let (Some(engine), BusMessage::ToGateway(command)) = (me.upgrade(), message) {
                    engine.on_gateway_command(gateway, command);
                }
            });
            let subscription = self.bus.subscribe(BusTopic::Gateway(gateway), handler).await?;
            self.gateways.subscribed(gateway, subscription);
        }
        // Any other instance still holding the gateway lets go and hands its pending
        // messages over (they arrive here: this instance is subscribed now).
        let by = self.bus.instance_id().to_owned();
        self.to_gateway(gateway, GatewayCommand::TakenOver { by }).await;
        self.services.registry().set_link_status(gateway, true).await?;
        self.redeliver(gateway).await;
        Ok(linked.generation)
    }

    /// The gateway linked to another instance: forget it here, close a link still open, and
    /// hand what is pending for it to its new holder. Nothing fails: the new holder runs it.
    pub(crate) fn hand_off(&self, gateway: GatewayId) {
        let link = self.gateways.release(gateway);
        if let Some(link) = &link {
            link.close(crate::protocol::close_code::NORMAL);
        }
        let pending = self.outbox.release_gateway(gateway);
        tracing::info!(%gateway, linked_here = link.is_some(), handed_over = pending.len(), "gateway taken over by another instance");
        if pending.is_empty() {
            return;
        }
        self.spawn(move |engine| async move {
            for send in pending {
                let command = GatewayCommand::ChatSend { send: (*send).clone(), retry: false };
                if engine.to_gateway(gateway, command).await == 0 {
                    // The new holder is gone too; the store still has the message, and the
                    // gateway's next link (or the orphan sweep) picks it up.
                    tracing::warn!(%gateway, message = %send.message_id, "no holder to hand a pending message to");
                }
            }
        });
    }

    /// The bus may have lost messages: send every gateway linked here what the store has
    /// pending for it and the outbox does not know (a lost hand-over). Already known ones are
    /// left alone, so nothing runs twice.
    pub(crate) async fn recover_lost_hand_overs(&self) {
        for gateway in self.gateways.linked_ids() {
            let mut pages = PendingPages::new(self.services.store().as_ref(), Some(gateway));
            while let Some(page) = pages.next().await {
                for pending in page {
                    self.accept_delivery(gateway, Arc::new(chat_send(pending)), false);
                }
            }
        }
    }

    /// Sends everything pending for the gateway on its new link.
    async fn redeliver(&self, gateway: GatewayId) {
        let mut pages = PendingPages::new(self.services.store().as_ref(), Some(gateway));
        while let Some(page) = pages.next().await {
            let now = Instant::now();
            for pending in page {
                self.outbox.accept(gateway, Arc::new(chat_send(pending)), false, now);
            }
        }
        let Some(jobs) = self.gateways.jobs(gateway) else { return };
        for send in self.outbox.for_new_link(gateway) {
            self.record(&send, DeliveryState::Sent);
            jobs.submit(Job::Send(send));
        }
    }

    /// The link `generation` of a gateway ended: the gateway is away for the grace period.
    pub(crate) fn detach(&self, gateway: GatewayId, generation: u64) {
        let until = Instant::now() + self.limits.offline_grace();
        if let Some(link) = self.gateways.unlink(gateway, generation, until) {
            link.close(crate::protocol::close_code::NORMAL);
            self.outbox.link_lost(gateway);
        }
    }

    /// One sweep (see the module docs).
    pub(crate) async fn sweep(&self, now: Instant) {
        for gateway in self.gateways.expire(now) {
            self.gateway_gone(gateway).await;
        }
        // A silent run may have ended with its end lost on the way: its session's history
        // has the last word before it is given up.
        let silent = self.outbox.silent(now, self.limits.run_idle_timeout());
        for (gateway, send) in silent.look {
            let look = Job::History { send: send.clone(), last_look: true };
            if !self.gateways.jobs(gateway).is_some_and(|jobs| jobs.submit(look)) {
                self.give_up_silent(gateway, &send);
            }
        }
        for delivery in silent.give_up {
            self.fail_delivery(
                &delivery.send,
                ErrorCode::GatewayTimeout,
                "The agent stopped answering.",
            )
            .await;
        }
        self.limiter.forget_refilled(now);
        self.outbox.forget_finished(now.checked_sub(FINISHED_MEMORY).unwrap_or(now));
    }

    /// The gateway stayed away past the grace period: its deliveries fail, it goes offline
    /// (unless another instance holds it now).
    async fn gateway_gone(&self, gateway: GatewayId) {
        for delivery in self.outbox.take_gateway(gateway, Instant::now()) {
            self.fail_delivery(
                &delivery.send,
                ErrorCode::GatewayError,
                "The agent's gateway disconnected and did not come back.",
            )
            .await;
        }
        let elsewhere = self.bus.has_subscribers(BusTopic::Gateway(gateway)).await.unwrap_or(false);
        if !elsewhere
            && let Err(err) = self.services.registry().set_link_status(gateway, false).await
        {
            tracing::warn!(error = %err, %gateway, "cannot mark the gateway offline");
        }
    }

    /// Fails the messages a previous run of the relay left pending whose gateway nobody
    /// holds (called once, a grace period after start).
    pub(crate) async fn fail_orphans(&self) {
        let mut pages = PendingPages::new(self.services.store().as_ref(), None);
        while let Some(page) = pages.next().await {
            for pending in page {
                let gateway = pending.session.gateway_id;
                if self.gateways.holds(gateway)
                    || self.bus.has_subscribers(BusTopic::Gateway(gateway)).await.unwrap_or(false)
                {
                    continue;
                }
                let send = chat_send(pending);
                self.fail_delivery(
                    &send,
                    ErrorCode::GatewayError,
                    "The relay restarted and the agent's gateway did not come back; send it again.",
                )
                .await;
            }
        }
    }
}

/// Starts the sweeper: every `every`, one sweep; every [`RECOVER_EVERY`], lost hand-overs;
/// once, a grace period after start, orphans.
pub(crate) fn start_sweeper(engine: &Arc<Engine>, every: Duration) {
    let me: Weak<Engine> = Arc::downgrade(engine);
    let orphans_at = Instant::now() + engine.limits.offline_grace();
    engine.tasks.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut orphans_done = false;
        let mut recover_at = Instant::now() + RECOVER_EVERY;
        loop {
            let now = ticks.tick().await;
            let Some(engine) = me.upgrade() else { return };
            engine.sweep(now).await;
            if now >= recover_at {
                recover_at = now + RECOVER_EVERY;
                engine.recover_lost_hand_overs().await;
            }
            if !orphans_done && now >= orphans_at {
                orphans_done = true;
                engine.fail_orphans().await;
            }
        }
    });
}
