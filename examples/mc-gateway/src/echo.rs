//! The demo echo agent: answers OpenClaw's `chat.send` the way a real gateway does (`res` with
//! the run id, then `chat` events: `delta`s, then `final`), with the reply "Echo: <message>"
//! streamed word by word. Its first delta carries the cumulative snapshot and the later ones
//! only their new text, the form OpenClaw is moving to (a real 2026.9.6 gateway sends the
//! snapshot on every delta), so both forms are exercised end to end. `chat.abort` stops a run
//! (`aborted`); `chat.history` lists a session's finished replies with their run ids. As
//! OpenClaw does, a run's events go to the connection that is current when they happen (once
//! [`EchoAgent::set_relay`] was called): a run outlives a relay link that drops, and its later
//! events reach the next link.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mc_core::AgentReport;
use mc_openclaw::agent::{AgentSummary, AgentsListResult};
use mc_openclaw::chat::{
    ChatAbortResult, ChatHistoryResult, ChatSendParams, ChatSendResult, SendStatus,
    TranscriptMessage, TranscriptMeta,
};
use mc_openclaw::method::{AgentsList, ChatAbort, ChatHistory, ChatSend, Method};
use mc_openclaw::{ChatEvent, ChatState, ErrorShape, Event, Frame, Request, Response};
use tokio::sync::mpsc;

/// The agent key the echo agent reports.
pub const ECHO_AGENT_KEY: &str = "echo";

/// Finished runs kept for `chat.history` and repeated sends, at most.
const FINISHED_KEPT: usize = 10_000;

/// The echo agent. Cheap to share; runs are tasks.
#[derive(Debug)]
pub struct EchoAgent {
    word_delay: Duration,
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Finished runs: run id → (session key, reply).
    finished: Mutex<HashMap<String, (String, String)>>,
    /// Where run events go: `None` until `set_relay` is called (to the requester), then the
    /// current link, if any.
    relay: Mutex<Option<Option<mpsc::Sender<String>>>>,
}

/// A successful answer of method `M` to request `id`.
fn answer<M: Method>(id: &str, result: &M::Result) -> String {
    let response = Response::of::<M>(id, result)
        .unwrap_or_else(|e| Response::error(id, ErrorShape::new("INTERNAL", e.to_string())));
    Frame::Response(response).to_json()
}

/// A refusal of request `id`.
fn refuse(id: &str, message: impl Into<String>) -> String {
    Frame::Response(Response::error(id, ErrorShape::new("INVALID_REQUEST", message))).to_json()
}

/// An event frame of `event`.
fn event(event: ChatEvent) -> String {
    Event::frame(event).map(|frame| Frame::Event(frame).to_json()).unwrap_or_default()
}

impl EchoAgent {
    /// An agent pausing `word_delay` between streamed words.
    pub fn new(word_delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            word_delay,
            running: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashMap::new()),
            relay: Mutex::new(None),
        })
    }

    /// The relay link run events go to from now on (`None`: no link; events are dropped, as
    /// OpenClaw drops them for a connection that is gone).
    pub fn set_relay(&self, link: Option<mpsc::Sender<String>>) {
        if let Ok(mut relay) = self.relay.lock() {
            *relay = Some(link);
        }
    }

    /// Where the next event of a run requested on `requester` goes.
    fn events_to(&self, requester: &mpsc::Sender<String>) -> Option<mpsc::Sender<String>> {
        match self.relay.lock().ok()?.as_ref() {
            None => Some(requester.clone()),
            Some(current) => current.clone(),
        }
    }

    /// The agents this gateway reports.
    pub fn agents() -> Vec<AgentReport> {
        vec![AgentReport { agent_key: ECHO_AGENT_KEY.into(), name: "Echo".into() }]
    }

    /// Runs in progress.
    pub fn active_runs(&self) -> usize {
        self.running.lock().map_or(0, |r| r.len())
    }

    /// Answers one OpenClaw request; every frame to send goes to `out`.
    pub fn handle(self: &Arc<Self>, request: &Request, out: mpsc::Sender<String>) {
        let id = request.id.as_str();
        let reply = match request.method.as_str() {
            ChatSend::NAME => match request.params_of::<ChatSend>() {
                Ok(params) => return self.send(id, params, out),
                Err(e) => refuse(id, format!("invalid chat.send params: {e}")),
            },
            ChatAbort::NAME => match request.params_of::<ChatAbort>() {
                Ok(params) => {
                    let stopped = self.abort(params.run_id.as_deref());
                    for run in &stopped {
                        let mut aborted =
                            ChatEvent::new(run, &params.session_key, ChatState::Aborted);
                        aborted.stop_reason = Some("rpc".into());
                        let _ = out.try_send(event(aborted));
                    }
                    let result = ChatAbortResult {
                        aborted: !stopped.is_empty(),
                        run_ids: stopped,
                        ..Default::default()
                    };
                    answer::<ChatAbort>(id, &result)
                }
                Err(e) => refuse(id, format!("invalid chat.abort params: {e}")),
            },
            ChatHistory::NAME => match request.params_of::<ChatHistory>() {
                Ok(params) => answer::<ChatHistory>(id, &self.history(&params.session_key)),
                Err(e) => refuse(id, format!("invalid chat.history params: {e}")),
            },
            AgentsList::NAME => {
                let agents: Vec<AgentSummary> = Self::agents()
                    .iter()
                    .map(|a| AgentSummary::new(&a.agent_key, &a.name))
                    .collect();
                let list = AgentsListResult {
                    default_id: Some(ECHO_AGENT_KEY.into()),
                    agents,
                    ..Default::default()
                };
                answer::<AgentsList>(id, &list)
            }
            other => refuse(id, format!("unknown method: {other}")),
        };
        let _ = out.try_send(reply);
    }

    /// `chat.send`: a new run, or what became of the one with this idempotency key.
    fn send(self: &Arc<Self>, id: &str, params: ChatSendParams, out: mpsc::Sender<String>) {
        let run = params.idempotency_key;
        let status = if self.finished.lock().is_ok_and(|f| f.contains_key(&run)) {
            Some(SendStatus::Ok)
        } else if self.running.lock().is_ok_and(|r| r.contains_key(&run)) {
            Some(SendStatus::InFlight)
        } else {
            None
        };
        if let Some(status) = status {
            let _ = out.try_send(answer::<ChatSend>(id, &ChatSendResult::new(run, status)));
            return;
        }
        let started = answer::<ChatSend>(id, &ChatSendResult::new(&run, SendStatus::Started));
        let agent = self.clone();
        let (key, message, task_run) = (params.session_key, params.message, run.clone());
        let task = tokio::spawn(async move {
            if out.send(started).await.is_ok() {
                agent.stream(&task_run, &key, &message, &out).await;
            } else if let Ok(mut running) = agent.running.lock() {
                running.remove(&task_run);
            }
        });
        if let Ok(mut running) = self.running.lock() {
            running.insert(run, task.abort_handle());
        }
    }

    /// Stops the run `wanted` (every run when `None`); the runs stopped.
    fn abort(&self, wanted: Option<&str>) -> Vec<String> {
        let Ok(mut running) = self.running.lock() else { return vec![] };
        let ids: Vec<String> =
            running.keys().filter(|r| wanted.is_none_or(|w| w == *r)).cloned().collect();
        for id in &ids {
            if let Some(task) = running.remove(id) {
                task.abort();
            }
        }
        ids
    }

    /// The finished replies of session `key`, as `chat.history` lists them.
    fn history(&self, key: &str) -> ChatHistoryResult {
        let messages = self.finished.lock().map_or_else(
            |_| vec![],
            |finished| {
                finished
                    .iter()
                    .filter(|(_, (k, _))| k == key)
                    .map(|(run, (_, text))| TranscriptMessage {
                        meta: Some(TranscriptMeta {
                            run_id: Some(run.clone()),
                            ..Default::default()
                        }),
                        ..TranscriptMessage::assistant(text)
                    })
                    .collect()
            },
        );
        ChatHistoryResult { session_key: Some(key.to_owned()), messages, ..Default::default() }
    }

    /// Streams the reply to `message`; the run counts as finished (for a repeated
    /// `chat.send` and for `chat.history`) from just before its `final` event.
    async fn stream(&self, run: &str, key: &str, message: &str, requester: &mpsc::Sender<String>) {
        let reply = format!("Echo: {message}");
        let mut text = String::new();
        let mut seq = 1;
        for (i, word) in reply.split(' ').enumerate() {
            let piece = if i == 0 { word.to_owned() } else { format!(" {word}") };
            text.push_str(&piece);
            let mut delta = ChatEvent::new(run, key, ChatState::Delta);
            delta.agent_id = Some(ECHO_AGENT_KEY.into());
            delta.seq = Some(seq);
            delta.delta_text = Some(piece);
            if i == 0 {
                delta.message = Some(TranscriptMessage::assistant(text.clone()));
            }
            if let Some(out) = self.events_to(requester) {
                // A link that just closed loses the event, as with OpenClaw.
                let _ = out.send(event(delta)).await;
            }
            seq += 1;
            if !self.word_delay.is_zero() {
                tokio::time::sleep(self.word_delay).await;
            }
        }
        let mut done = ChatEvent::new(run, key, ChatState::Final);
        done.agent_id = Some(ECHO_AGENT_KEY.into());
        done.seq = Some(seq);
        done.stop_reason = Some("stop".into());
        done.message = Some(TranscriptMessage::assistant(text.clone()));
        if let Ok(mut running) = self.running.lock() {
            running.remove(run);
        }
        if let Ok(mut finished) = self.finished.lock() {
            if finished.len() > FINISHED_KEPT {
                finished.clear();
            }
            finished.insert(run.to_owned(), (key.to_owned(), text));
        }
        if let Some(out) = self.events_to(requester) {
            let _ = out.send(event(done)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mc_openclaw::TextUpdate;
    use mc_openclaw::method;

    fn request<M: Method>(id: &str, params: &M::Params) -> Request {
        Request::of::<M>(id, params).unwrap()
    }

    fn send_params(key: &str, message: &str, run: &str) -> ChatSendParams {
        ChatSendParams {
            session_key: key.into(),
            message: message.into(),
            idempotency_key: run.into(),
            ..Default::default()
        }
    }

    fn frame(text: &str) -> Frame {
        Frame::decode(text).unwrap()
    }

    fn chat(text: &str) -> Option<ChatEvent> {
        let Frame::Event(frame) = frame(text) else { return None };
        let Ok(Event::Chat(chat)) = frame.decode() else { return None };
        Some(chat)
    }

    fn send_result(text: &str) -> ChatSendResult {
        let Frame::Response(res) = frame(text) else { panic!("{text}") };
        method::result::<ChatSend>(&res.into_answer().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn streams_then_finals_and_dedupes_runs() {
        let agent = EchoAgent::new(Duration::ZERO);
        let (tx, mut rx) = mpsc::channel::<String>(64);
        let params = send_params("agent:echo:mc-1", "hi there", "run-1");
        agent.handle(&request::<ChatSend>("1", &params), tx.clone());
        assert_eq!(send_result(&rx.recv().await.unwrap()).status, SendStatus::Started);
        let mut events = vec![];
        while let Some(f) = rx.recv().await {
            let chat = chat(&f).unwrap();
            let last = chat.state == ChatState::Final;
            events.push(chat);
            if last {
                break;
            }
        }
        let deltas: Vec<_> = events.iter().filter_map(|e| e.delta_text.as_deref()).collect();
        assert_eq!(deltas, vec!["Echo:", " hi", " there"]);
        assert_eq!(events[0].text_update(), Some(TextUpdate::Whole("Echo:")), "a first snapshot");
        assert_eq!(events[1].text_update(), Some(TextUpdate::Append(" hi")), "then deltas only");
        assert_eq!(events.last().unwrap().text().as_deref(), Some("Echo: hi there"));
        tokio::task::yield_now().await;
        agent.handle(&request::<ChatSend>("1", &params), tx.clone());
        let again = send_result(&rx.recv().await.unwrap());
        assert_eq!(again.status, SendStatus::Ok, "the same idempotency key does not run twice");
        let bad = Request::new("2", ChatSend::NAME, mc_openclaw::Payload::null());
        agent.handle(&bad, tx);
        let Frame::Response(refused) = frame(&rx.recv().await.unwrap()) else { panic!() };
        assert!(refused.into_answer().unwrap_err().message.contains("invalid chat.send"));
    }

    #[tokio::test]
    async fn a_run_outlives_its_link_and_its_events_reach_the_next_one() {
        let agent = EchoAgent::new(Duration::from_millis(30));
        let (first, mut on_first) = mpsc::channel::<String>(64);
        agent.set_relay(Some(first.clone()));
        let params = send_params("agent:echo:mc-1", "one two three four", "run-2");
        agent.handle(&request::<ChatSend>("1", &params), first.clone());
        assert_eq!(send_result(&on_first.recv().await.unwrap()).status, SendStatus::Started);
        on_first.recv().await.unwrap();
        // The link drops and another comes: the rest of the run goes to the new one.
        agent.set_relay(None);
        drop((first, on_first));
        let (second, mut on_second) = mpsc::channel::<String>(64);
        agent.set_relay(Some(second.clone()));
        let last = loop {
            if let Some(chat) = chat(&on_second.recv().await.unwrap())
                && chat.state == ChatState::Final
            {
                break chat;
            }
        };
        assert_eq!(last.text().as_deref(), Some("Echo: one two three four"));
        // chat.history lists the finished reply under its run id.
        let history = mc_openclaw::chat::ChatHistoryParams {
            session_key: "agent:echo:mc-1".into(),
            ..Default::default()
        };
        agent.handle(&request::<ChatHistory>("2", &history), second);
        let Frame::Response(res) = frame(&on_second.recv().await.unwrap()) else { panic!() };
        let history = method::result::<ChatHistory>(&res.into_answer().unwrap()).unwrap();
        let reply = history.reply_of("run-2").expect("the reply under its run id");
        assert_eq!(reply.text().as_deref(), Some("Echo: one two three four"));
    }
}
