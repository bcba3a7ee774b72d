//! The gateway's side of a message, on the instance holding its link: accepting it into the
//! outbox and sending it, what the gateway answers (`res` to `chat.send`, `chat.abort`,
//! `chat.history`), and what it streams (`chat` events: deltas become `chunk`s, the first
//! terminal event ends the run — `final` stores the reply, `error`/`aborted` the failure).

use std::sync::Arc;

use mc_openclaw::agent::AgentEvent;
use mc_openclaw::chat::{ChatHistoryResult, ChatSendResult, SendStatus};
use mc_openclaw::rpc::CallError;
use mc_openclaw::{ChatEvent, ChatState, Event, EventFrame, TextUpdate};

use super::driver::{Answers, Asker, Job, Outcome};
use super::engine::Engine;
use super::outbox::{Delivery, Progress, Stage};
use crate::bus::{ChatSend, GatewayCommand};
use crate::ids::{GatewayId, MessageId};
use crate::model::{DeliveryState, MessageRole, NewMessage};
use crate::protocol::{ChatMessage, ErrorCode, ServerFrame};
use crate::store::DeliveryUpdate;

impl Engine {
    /// Handles a command for a gateway held here (the gateway topic's bus handler).
    pub(crate) fn on_gateway_command(&self, gateway: GatewayId, command: GatewayCommand) {
        match command {
            GatewayCommand::ChatSend { send, retry } => {
                self.accept_delivery(gateway, Arc::new(send), retry);
            }
            GatewayCommand::Abort {
                session_key, run_id, user_id, connection, request_id, ..
            } => {
                let asker = Asker { user: user_id, connection, request_id };
                let job = Job::Abort { session_key, run_id, asked_by: Some(asker.clone()) };
                if !self.gateways.jobs(gateway).is_some_and(|jobs| jobs.submit(job)) {
                    self.spawn(move |engine| async move {
                        let message = "the agent's gateway is not connected".to_owned();
                        engine.tell_asker(&asker, ErrorCode::AgentUnavailable, message).await;
                    });
                }
            }
            GatewayCommand::CatchUp { session_id, user_id, connection } => {
                self.spawn(move |engine| async move {
                    let Some(gate) = engine.gateways.gate(gateway) else { return };
                    let _order = gate.lock().await;
                    if let Some((run, text)) = engine.outbox.streaming_text(gateway, session_id) {
                        let chunk = ServerFrame::Chunk {
                            session_id,
                            run_id: run.to_string(),
                            delta: text,
                            offset: 0,
                        };
                        engine.send_to_user(user_id, &chunk, Some(connection), None).await;
                    }
                });
            }
            GatewayCommand::TakenOver { by } => {
                if by != self.bus.instance_id() {
                    self.hand_off(gateway);
                }
            }
            GatewayCommand::Close => {
                if let Some(link) = self.gateways.link_of(gateway) {
                    link.close(crate::protocol::close_code::UNAUTHORIZED);
                }
            }
        }
    }

    /// Takes a message into the outbox and, if the gateway is linked, sends it.
    pub(crate) fn accept_delivery(&self, gateway: GatewayId, send: Arc<ChatSend>, retry: bool) {
        if !self.outbox.accept(gateway, send.clone(), retry, tokio::time::Instant::now()) {
            return;
        }
        if let Some(jobs) = self.gateways.jobs(gateway)
            && self.outbox.mark_sent(send.message_id)
        {
            self.record(&send, DeliveryState::Sent);
            jobs.submit(Job::Send(send));
        }
    }

    /// Handles the answer to one of the relay's requests on a link (called by its driver).
    pub(crate) fn on_outcome(&self, gateway: GatewayId, outcome: Outcome) {
        match outcome {
            Outcome::Sent { send, answer: Ok(answer) } => self.on_sent(gateway, send, &answer),
            Outcome::Sent { send, answer: Err(err) } => self.on_send_failed(gateway, send, err),
            Outcome::Aborted { asked_by: Some(asker), answer: Err(err) } => {
                self.spawn(move |engine| async move {
                    let code = link_error_code(&err);
                    engine.tell_asker(&asker, code, format!("abort failed: {err}")).await;
                });
            }
            Outcome::Aborted { .. } => {}
            Outcome::History { send, answer: Ok(history), last_look: false } => {
                self.catch_up_from_history(gateway, send, &history);
            }
            Outcome::History { send, answer: Err(err), last_look: false } => {
                tracing::info!(error = %err, message = %send.message_id, "chat.history failed; waiting for the run's events");
            }
            Outcome::History { send, answer, last_look: true } => {
                let run = send.message_id.to_string();
                let reply = answer.ok().and_then(|h| h.reply_of(&run).and_then(|r| r.text()));
                match reply {
                    // Its end was lost on the way: the reply is stored now.
                    Some(text) => self.finish_run(gateway, send.message_id, Some(text)),
                    None => self.give_up_silent(gateway, &send),
                }
            }
        }
    }

    /// `chat.send` accepted: `started` is a new run; `in_flight` (still running) and `ok`
    /// (finished while the link was away) are caught up from the session's history.
    fn on_sent(&self, gateway: GatewayId, send: Arc<ChatSend>, answer: &ChatSendResult) {
        if self.outbox.stage(send.message_id).is_none() {
            return;
        }
        if self.outbox.mark_started(send.message_id, tokio::time::Instant::now()) {
            self.record(&send, DeliveryState::Started);
        }
        if matches!(answer.status, SendStatus::InFlight | SendStatus::Ok)
            && let Some(jobs) = self.gateways.jobs(gateway)
        {
            jobs.submit(Job::History { send, last_look: false });
        }
    }

    fn on_send_failed(&self, gateway: GatewayId, send: Arc<ChatSend>, err: CallError) {
        let (code, text) = match &err {
            // The link dropped: the message waits for the next one (or the grace period).
            CallError::Closed => return,
            // Events already flowing mean the gateway is working on it: a late answer is no
            // failure.
            CallError::Timeout if self.outbox.stage(send.message_id) == Some(Stage::Started) => {
                return;
            }
            CallError::Timeout => {
                (ErrorCode::GatewayTimeout, "The agent did not answer in time.".to_owned())
            }
            CallError::Remote(e) => (
                ErrorCode::GatewayError,
                format!("The agent's gateway refused the message: {}", e.message),
            ),
            CallError::Malformed(why) => (
                ErrorCode::GatewayError,
                format!("The agent's gateway answered something unreadable: {why}"),
            ),
            _ => (ErrorCode::GatewayError, format!("The agent's gateway failed: {err}")),
        };
        let Some(delivery) =
            self.outbox.take(gateway, send.message_id, tokio::time::Instant::now())
        else {
            return;
        };
        if matches!(err, CallError::Timeout) {
            self.stop_run(gateway, &delivery.send);
        }
        self.spawn(move |engine| async move {
            engine.fail_delivery(&delivery.send, code, &text).await;
        });
    }

    /// Gives up a run silent past the idle timeout whose session history does not show it
    /// finished: it fails with `GATEWAY_TIMEOUT`.
    pub(crate) fn give_up_silent(&self, gateway: GatewayId, send: &ChatSend) {
        let Some(delivery) =
            self.outbox.take(gateway, send.message_id, tokio::time::Instant::now())
        else {
            return;
        };
        self.spawn(move |engine| async move {
            let text = "The agent stopped answering.";
            engine.fail_delivery(&delivery.send, ErrorCode::GatewayTimeout, text).await;
        });
    }

    /// Asks the gateway to stop a run the relay gave up on (best effort).
    fn stop_run(&self, gateway: GatewayId, send: &ChatSend) {
        if let Some(jobs) = self.gateways.jobs(gateway) {
            jobs.submit(Job::Abort {
                session_key: send.session_key.clone(),
                run_id: Some(send.message_id.to_string()),
                asked_by: None,
            });
        }
    }

    /// Catches a run up from `chat.history`: its final reply if it finished, else the text
    /// of the run in flight.
    fn catch_up_from_history(
        &self,
        gateway: GatewayId,
        send: Arc<ChatSend>,
        history: &ChatHistoryResult,
    ) {
        let run = send.message_id.to_string();
        if let Some(text) = history.reply_of(&run).and_then(|reply| reply.text()) {
            self.finish_run(gateway, send.message_id, Some(text));
            return;
        }
        if let Some(text) = history.in_flight_text(&run).map(str::to_owned) {
            self.spawn(move |engine| async move {
                engine.apply_text(gateway, send.message_id, TextUpdate::Whole(&text)).await;
            });
        }
    }

    /// Handles an event a gateway pushed: `chat` and `agent` events of the relay's runs; any
    /// other event is not the relay's business.
    pub(crate) async fn on_gateway_event(&self, gateway: GatewayId, frame: &EventFrame) {
        if !matches!(frame.event.as_str(), "chat" | "agent") {
            return;
        }
        match frame.decode() {
            Ok(Event::Chat(event)) => self.on_chat_event(gateway, event).await,
            Ok(Event::Agent(event)) => self.on_agent_event(gateway, &event).await,
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(%gateway, error = %err, "an unreadable gateway event ignored");
            }
        }
    }

    /// An `agent` event: what the run is doing, told to the user as `agent_status`.
    async fn on_agent_event(&self, gateway: GatewayId, event: &AgentEvent) {
        let Ok(id) = event.run_id.parse::<MessageId>() else { return };
        let stream = event.stream.as_str();
        let detail = event.phase().map(str::to_owned);
        let phase = match (stream, detail.as_deref()) {
            ("lifecycle", Some("start" | "model" | "fallback_step")) => "thinking",
            ("run_status", _) => "preparing",
            ("assistant", _) => "typing",
            _ if event.is_tool() => "tool_use",
            _ => {
                self.outbox.touch(gateway, id, tokio::time::Instant::now());
                return;
            }
        };
        let detail =
            if phase == "tool_use" || phase == "typing" { Some(stream.to_owned()) } else { detail };
        self.announce(gateway, id, phase, detail).await;
    }

    /// Tells the run's user what it is doing, if that changed.
    async fn announce(
        &self,
        gateway: GatewayId,
        id: MessageId,
        phase: &'static str,
        detail: Option<String>,
    ) {
        let now = tokio::time::Instant::now();
        let Some(send) = self.outbox.activity(gateway, id, phase, detail.clone(), now) else {
            return;
        };
        let frame = ServerFrame::AgentStatus {
            agent_id: send.agent_id,
            session_id: send.session_id,
            run_id: id.to_string(),
            phase: phase.into(),
            detail,
        };
        self.send_to_user(send.user_id, &frame, None, None).await;
    }

    async fn on_chat_event(&self, gateway: GatewayId, ev: ChatEvent) {
        // Runs of this relay are named by their message's id; anything else is not ours.
        let Ok(id) = ev.run_id.parse::<MessageId>() else { return };
        match ev.state {
            ChatState::Delta => {
                let Some(update) = ev.text_update() else { return };
                self.apply_text(gateway, id, update).await;
            }
            ChatState::Final => self.finish_run(gateway, id, ev.text()),
            ChatState::Error | ChatState::Aborted => {
                let Some(delivery) = self.outbox.take(gateway, id, tokio::time::Instant::now())
                else {
                    return;
                };
                let why = ev.error_message.unwrap_or_default();
                let text = match (ev.state, why.is_empty()) {
                    (ChatState::Aborted, true) => "The agent's run was stopped.".to_owned(),
                    (ChatState::Aborted, false) => format!("The agent's run was stopped: {why}"),
                    (_, true) => "The agent's run failed.".to_owned(),
                    (_, false) => format!("The agent's run failed: {why}"),
                };
                self.spawn(move |engine| async move {
                    engine.fail_delivery(&delivery.send, ErrorCode::GatewayError, &text).await;
                });
            }
            ChatState::Status => self.announce(gateway, id, "preparing", ev.phase).await,
            ChatState::Other(_) => self.outbox.touch(gateway, id, tokio::time::Instant::now()),
        }
    }

    /// Applies new text to a run and sends the user the chunk; a reply past the cap stops
    /// the run.
    async fn apply_text(&self, gateway: GatewayId, id: MessageId, update: TextUpdate<'_>) {
        let Some(gate) = self.gateways.gate(gateway) else { return };
        let _order = gate.lock().await;
        let cap = self.limits.max_reply_bytes();
        match self.outbox.apply(gateway, id, update, cap, tokio::time::Instant::now()) {
            Progress::Nothing => {}
            Progress::Chunk { send, offset, delta } => {
                let chunk = ServerFrame::Chunk {
                    session_id: send.session_id,
                    run_id: id.to_string(),
                    delta,
                    offset,
                };
                self.send_to_user(send.user_id, &chunk, None, None).await;
            }
            Progress::TooLong(delivery) => self.reply_too_long(gateway, delivery),
        }
    }

    fn reply_too_long(&self, gateway: GatewayId, delivery: Delivery) {
        self.stop_run(gateway, &delivery.send);
        let text = format!(
            "The agent's reply was longer than {} KiB, so it was stopped.",
            self.limits.max_reply_bytes() / 1024
        );
        self.spawn(move |engine| async move {
            engine.fail_delivery(&delivery.send, ErrorCode::GatewayError, &text).await;
        });
    }

    /// A run's first terminal `final`: stores the reply (with its request's `answered`) off
    /// the gateway's reading task, so the replies of many runs share a commit.
    fn finish_run(&self, gateway: GatewayId, id: MessageId, text: Option<String>) {
        let Some(delivery) = self.outbox.take(gateway, id, tokio::time::Instant::now()) else {
            return;
        };
        let text = text.unwrap_or_else(|| delivery.text.as_str().to_owned());
        if text.trim().is_empty() {
            // OpenClaw ends a run this way when it folds the message into another turn (e.g.
            // the recovery of a turn a restart interrupted) or the agent chose to stay
            // silent: there is no reply to store, and the user must not wait for one.
            let text = "The agent finished without a reply.";
            self.spawn(move |engine| async move {
                engine.fail_delivery(&delivery.send, ErrorCode::GatewayError, text).await;
            });
            return;
        }
        if text.len() > self.limits.max_reply_bytes() {
            self.reply_too_long(gateway, delivery);
            return;
        }
        self.spawn(move |engine| async move { engine.store_reply(delivery, text).await });
    }

    async fn store_reply(&self, delivery: Delivery, text: String) {
        let send = &delivery.send;
        let reply = NewMessage {
            id: MessageId::new(),
            session_id: send.session_id,
            role: MessageRole::Agent,
            content: text,
            client_msg_id: None,
            run_id: Some(send.message_id.to_string()),
            created_at: self.now(),
        };
        let answered = DeliveryUpdate {
            session_id: send.session_id,
            seq: send.seq,
            state: DeliveryState::Answered,
        };
        match self.writer.append(reply, Some(answered)).await {
            Ok(stored) => {
                let frame = ServerFrame::Chat(ChatMessage::new(stored.message(), send.agent_id));
                self.send_to_user(send.user_id, &frame, None, None).await;
                metrics::histogram!("mc_round_trip_seconds")
                    .record(delivery.accepted_at.elapsed().as_secs_f64());
            }
            Err(err) => {
                tracing::error!(error = %err, message = %send.message_id, "cannot store an agent reply");
                let frame = ServerFrame::Error {
                    id: Some(send.client_id.to_string()),
                    code: ErrorCode::Internal,
                    message: "the agent's reply could not be stored; ask again".into(),
                    retry_after_ms: None,
                };
                self.send_to_user(send.user_id, &frame, None, None).await;
            }
        }
    }
}

impl Answers for Engine {
    fn answered(&self, gateway: GatewayId, outcome: Outcome) {
        self.on_outcome(gateway, outcome);
    }
}

fn link_error_code(err: &CallError) -> ErrorCode {
    match err {
        CallError::Timeout => ErrorCode::GatewayTimeout,
        _ => ErrorCode::GatewayError,
    }
}
