//! The demo echo agent: answers OpenClaw's `chat.send` the way a real gateway does (`res`
//! with the run id, then `chat` events: `delta`s with the cumulative text, then `final`), with
//! the reply "Echo: <message>" streamed word by word. `chat.abort` stops a run (`aborted`);
//! `chat.history` lists a session's finished replies with their run ids. As OpenClaw does, a
//! run's events go to the connection that is current when they happen (once
//! [`EchoAgent::set_relay`] was called): a run outlives a relay link that drops, and its later
//! events reach the next link.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mc_core::AgentReport;
use mc_core::protocol::encode_response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The agent key the echo agent reports.
pub const ECHO_AGENT_KEY: &str = "echo";

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

fn event(payload: Value) -> String {
    json!({ "type": "event", "event": "chat", "payload": payload }).to_string()
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

    /// Answers one OpenClaw request (`id`, `method`, `params`); every frame to send goes to
    /// `out`.
    pub fn handle(
        self: &Arc<Self>,
        id: &str,
        method: &str,
        params: &Value,
        out: mpsc::Sender<String>,
    ) {
        let reply = |ok: bool, payload: Value| {
            encode_response(id, if ok { Ok(payload) } else { Err(payload) })
        };
        match method {
            "chat.send" => {
                let (Some(run), Some(key), Some(message)) = (
                    params["idempotencyKey"].as_str(),
                    params["sessionKey"].as_str(),
                    params["message"].as_str(),
                ) else {
                    let error = json!({ "code": "INVALID_REQUEST", "message": "chat.send needs sessionKey, message and idempotencyKey" });
                    let _ = out.try_send(reply(false, error));
                    return;
                };
                let run = run.to_owned();
                if self.finished.lock().is_ok_and(|f| f.contains_key(&run)) {
                    let _ = out.try_send(reply(true, json!({ "runId": run, "status": "ok" })));
                    return;
                }
                if self.running.lock().is_ok_and(|r| r.contains_key(&run)) {
                    let _ =
                        out.try_send(reply(true, json!({ "runId": run, "status": "in_flight" })));
                    return;
                }
                let started = reply(true, json!({ "runId": run, "status": "started" }));
                let agent = self.clone();
                let (key, message) = (key.to_owned(), message.to_owned());
                let task_run = run.clone();
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
            "chat.abort" => {
                let key = params["sessionKey"].as_str().unwrap_or_default().to_owned();
                let wanted = params["runId"].as_str().map(str::to_owned);
                let stopped: Vec<String> = match self.running.lock() {
                    Ok(mut running) => {
                        let ids: Vec<String> = running
                            .keys()
                            .filter(|r| wanted.as_ref().is_none_or(|w| w == *r))
                            .cloned()
                            .collect();
                        for id in &ids {
                            if let Some(task) = running.remove(id) {
                                task.abort();
                            }
                        }
                        ids
                    }
                    Err(_) => vec![],
                };
                for run in &stopped {
                    let _ = out.try_send(event(json!({ "runId": run, "sessionKey": key, "state": "aborted", "stopReason": "rpc" })));
                }
                let _ = out.try_send(reply(
                    true,
                    json!({ "ok": true, "aborted": !stopped.is_empty(), "runIds": stopped }),
                ));
            }
            "chat.history" => {
                let key = params["sessionKey"].as_str().unwrap_or_default();
                let messages: Vec<Value> = match self.finished.lock() {
                    Ok(finished) => finished
                        .iter()
                        .filter(|(_, (k, _))| k == key)
                        .map(|(run, (_, text))| {
                            json!({ "role": "assistant", "content": [{ "type": "text", "text": text }], "__openclaw": { "runId": run } })
                        })
                        .collect(),
                    Err(_) => vec![],
                };
                let _ =
                    out.try_send(reply(true, json!({ "sessionKey": key, "messages": messages })));
            }
            "agents.list" => {
                let agents: Vec<Value> = Self::agents()
                    .iter()
                    .map(|a| json!({ "id": a.agent_key, "name": a.name }))
                    .collect();
                let _ = out.try_send(reply(
                    true,
                    json!({ "defaultId": ECHO_AGENT_KEY, "agents": agents }),
                ));
            }
            other => {
                let error = json!({ "code": "INVALID_REQUEST", "message": format!("unknown method: {other}") });
                let _ = out.try_send(reply(false, error));
            }
        }
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
            let delta = json!({
                "runId": run, "sessionKey": key, "agentId": ECHO_AGENT_KEY, "seq": seq, "state": "delta",
                "deltaText": piece,
                "message": { "role": "assistant", "content": [{ "type": "text", "text": text }] },
            });
            if let Some(out) = self.events_to(requester) {
                // A link that just closed loses the event, as with OpenClaw.
                let _ = out.send(event(delta)).await;
            }
            seq += 1;
            if !self.word_delay.is_zero() {
                tokio::time::sleep(self.word_delay).await;
            }
        }
        let done = json!({
            "runId": run, "sessionKey": key, "agentId": ECHO_AGENT_KEY, "seq": seq, "state": "final", "stopReason": "stop",
            "message": { "role": "assistant", "content": [{ "type": "text", "text": text }] },
        });
        if let Ok(mut running) = self.running.lock() {
            running.remove(run);
        }
        if let Ok(mut finished) = self.finished.lock() {
            if finished.len() > 10_000 {
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

    #[tokio::test]
    async fn streams_then_finals_and_dedupes_runs() {
        let agent = EchoAgent::new(Duration::ZERO);
        let (tx, mut rx) = mpsc::channel::<String>(64);
        let params = json!({ "sessionKey": "agent:echo:mc-1", "message": "hi there", "idempotencyKey": "run-1" });
        agent.handle("1", "chat.send", &params, tx.clone());
        let mut frames = vec![];
        while let Some(f) = rx.recv().await {
            let v: Value = serde_json::from_str(&f).unwrap();
            let last = v["payload"]["state"] == "final";
            frames.push(v);
            if last {
                break;
            }
        }
        assert_eq!(frames[0]["payload"]["status"], "started");
        let deltas: Vec<&str> = frames
            .iter()
            .filter(|f| f["payload"]["state"] == "delta")
            .map(|f| f["payload"]["deltaText"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, vec!["Echo:", " hi", " there"]);
        assert_eq!(
            frames.last().unwrap()["payload"]["message"]["content"][0]["text"],
            "Echo: hi there"
        );
        tokio::task::yield_now().await;
        agent.handle("1", "chat.send", &params, tx);
        let again: Value = serde_json::from_str(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(again["payload"]["status"], "ok", "the same idempotency key does not run twice");
    }

    #[tokio::test]
    async fn a_run_outlives_its_link_and_its_events_reach_the_next_one() {
        let agent = EchoAgent::new(Duration::from_millis(30));
        let (first, mut on_first) = mpsc::channel::<String>(64);
        agent.set_relay(Some(first.clone()));
        let params = json!({ "sessionKey": "agent:echo:mc-1", "message": "one two three four", "idempotencyKey": "run-2" });
        agent.handle("1", "chat.send", &params, first.clone());
        let started: Value = serde_json::from_str(&on_first.recv().await.unwrap()).unwrap();
        assert_eq!(started["payload"]["status"], "started");
        on_first.recv().await.unwrap();
        // The link drops and another comes: the rest of the run goes to the new one.
        agent.set_relay(None);
        drop((first, on_first));
        let (second, mut on_second) = mpsc::channel::<String>(64);
        agent.set_relay(Some(second.clone()));
        let last = loop {
            let v: Value = serde_json::from_str(&on_second.recv().await.unwrap()).unwrap();
            if v["payload"]["state"] == "final" {
                break v;
            }
        };
        assert_eq!(last["payload"]["message"]["content"][0]["text"], "Echo: one two three four");
        // chat.history lists the finished reply under its run id.
        agent.handle("2", "chat.history", &json!({ "sessionKey": "agent:echo:mc-1" }), second);
        let history: Value = serde_json::from_str(&on_second.recv().await.unwrap()).unwrap();
        let messages = &history["payload"]["messages"];
        assert_eq!(messages[0]["__openclaw"]["runId"], "run-2", "{history}");
        assert_eq!(messages[0]["content"][0]["text"], "Echo: one two three four");
    }
}
