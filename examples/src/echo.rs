//! The demo echo agent: answers OpenClaw's `chat.send` the way a real gateway does (`res`
//! with the run id, then `chat` events: `delta`s with the cumulative text, then `final`), with
//! the reply "Echo: <message>" streamed word by word. `chat.abort` stops a run (`aborted`).

use std::collections::{HashMap, HashSet};
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
    finished: Mutex<HashSet<String>>,
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
            finished: Mutex::new(HashSet::new()),
        })
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
                if self.finished.lock().is_ok_and(|f| f.contains(&run)) {
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
                    }
                    if let Ok(mut running) = agent.running.lock() {
                        running.remove(&task_run);
                    }
                    if let Ok(mut finished) = agent.finished.lock() {
                        if finished.len() > 10_000 {
                            finished.clear();
                        }
                        finished.insert(task_run);
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

    async fn stream(&self, run: &str, key: &str, message: &str, out: &mpsc::Sender<String>) {
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
            if out.send(event(delta)).await.is_err() {
                return;
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
        let _ = out.send(event(done)).await;
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
}
