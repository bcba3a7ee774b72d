//! `mc-chat`: chat with an agent from a terminal.
//!
//! ```sh
//! mc-chat --server http://127.0.0.1:8080 --org demo --username alice --password …
//! ```
//!
//! It signs in, lists the agents assigned to you, and sends each line you type to the chosen
//! agent, printing the reply as it streams. If the connection drops it reconnects (0.5 s → 20 s,
//! jittered), refreshes the access token when the relay asks for it, resumes the session so
//! no message is missed, and sends the lines you typed meanwhile with their original ids.
//! Commands: `/agents`, `/history`, `/quit`.

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(name = "mc-chat", version, about = "Chat with a Mission Control agent from the terminal")]
struct Args {
    /// The relay.
    #[arg(long, env = "MC_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Your organization (name or id).
    #[arg(long, env = "MC_ORG")]
    org: String,
    /// Your username.
    #[arg(long, env = "MC_USERNAME")]
    username: String,
    /// Your password [default: asked for].
    #[arg(long, env = "MC_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// The agent to talk to (name or id) [default: the first assigned].
    #[arg(long)]
    agent: Option<String>,
}

struct Tokens {
    access: String,
    refresh: String,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn post(http: &reqwest::Client, url: String, body: Value) -> anyhow::Result<Value> {
    let response = http.post(url).json(&body).send().await.context("cannot reach the relay")?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{}", answer["error"]["message"].as_str().unwrap_or(status.as_str()));
    }
    Ok(answer)
}

async fn connect(
    server: &str,
    access: &str,
) -> anyhow::Result<(Ws, Value), (Option<u16>, anyhow::Error)> {
    let url = format!("{}/ws/chat", server.trim_end_matches('/').replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| (None, e.into()))?;
    let auth = json!({ "type": "auth", "payload": { "token": access } });
    ws.send(Message::Text(auth.to_string().into())).await.map_err(|e| (None, e.into()))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                match frame["type"].as_str() {
                    Some("auth_ok") => return Ok((ws, frame["payload"].clone())),
                    Some("auth_error") => {
                        let code =
                            if frame["payload"]["reason"] == "suspended" { 4003 } else { 4001 };
                        return Err((
                            Some(code),
                            anyhow::anyhow!(
                                "authentication failed: {}",
                                frame["payload"]["reason"]
                            ),
                        ));
                    }
                    _ => continue,
                }
            }
            Some(Ok(Message::Close(close))) => {
                return Err((close.map(|c| c.code.into()), anyhow::anyhow!("closed")));
            }
            Some(Ok(_)) => continue,
            _ => return Err((None, anyhow::anyhow!("the connection dropped"))),
        }
    }
}

fn pick_agent(assignments: &Value, wanted: Option<&str>) -> Option<(String, String)> {
    assignments.as_array()?.iter().find_map(|a| {
        let id = a["agent_id"].as_str()?;
        let name = a["agent_name"].as_str()?;
        wanted
            .is_none_or(|w| w == id || w.eq_ignore_ascii_case(name))
            .then(|| (id.to_owned(), name.to_owned()))
    })
}

fn print_agents(assignments: &Value) {
    for a in assignments.as_array().into_iter().flatten() {
        println!(
            "  {} ({}) — {}",
            a["agent_name"].as_str().unwrap_or("?"),
            a["status"].as_str().unwrap_or("?"),
            a["agent_id"].as_str().unwrap_or("?")
        );
    }
}

fn backoff(attempt: u32) -> Duration {
    let r = examples::random_bytes::<2>().map(u16::from_le_bytes).unwrap_or(u16::MAX / 2);
    let ceiling = Duration::from_millis(500)
        .saturating_mul(2u32.saturating_pow(attempt.min(6)))
        .min(Duration::from_secs(20));
    ceiling.mul_f64(f64::from(r) / f64::from(u16::MAX)).max(Duration::from_millis(100))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let base = args.server.trim_end_matches('/').to_owned();
    let password = match args.password.clone() {
        Some(p) => p,
        None => rpassword::prompt_password(format!("password for {}: ", args.username))?,
    };
    let login = post(
        &http,
        format!("{base}/api/v1/auth/login"),
        json!({ "organization": args.org, "username": args.username, "password": password }),
    )
    .await?;
    let mut tokens = Tokens {
        access: login["access_token"].as_str().unwrap_or_default().to_owned(),
        refresh: login["refresh_token"].as_str().unwrap_or_default().to_owned(),
    };

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut session: Option<String> = None;
    let mut last_seq: u64 = 0;
    // Lines typed while disconnected: (client id, text).
    let mut outbox: VecDeque<(String, String)> = VecDeque::new();
    let mut attempt = 0;
    let mut agent: Option<(String, String)> = None;
    'connection: loop {
        let (mut ws, hello) = match connect(&base, &tokens.access).await {
            Ok(linked) => linked,
            Err((Some(4003), err)) => bail!("{err}; the account cannot chat"),
            Err((Some(4001), _)) => {
                let renewed = post(
                    &http,
                    format!("{base}/api/v1/auth/refresh"),
                    json!({ "refresh_token": tokens.refresh }),
                )
                .await?;
                tokens.access = renewed["access_token"].as_str().unwrap_or_default().to_owned();
                tokens.refresh = renewed["refresh_token"].as_str().unwrap_or_default().to_owned();
                continue;
            }
            Err((_, err)) => {
                let wait = backoff(attempt);
                attempt += 1;
                eprintln!("[disconnected: {err}; reconnecting in {:.1} s]", wait.as_secs_f64());
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        attempt = 0;
        if agent.is_none() {
            println!("Agents:");
            print_agents(&hello["assignments"]);
            agent = pick_agent(&hello["assignments"], args.agent.as_deref());
            match &agent {
                Some((_, name)) => {
                    println!("Talking to {name}. Type a message; /agents, /history, /quit.")
                }
                None => bail!(
                    "no agent {} is assigned to you",
                    args.agent.as_deref().unwrap_or("at all")
                ),
            }
        }
        let (agent_id, _) = agent.clone().context("an agent")?;
        if let Some(s) = &session {
            let resume = json!({ "type": "resume", "payload": { "sessions": [{ "session_id": s, "after_seq": last_seq }] } });
            ws.send(Message::Text(resume.to_string().into())).await?;
        }
        while let Some((id, text)) = outbox.front().cloned() {
            let mut payload = json!({ "agent_id": agent_id, "content": text });
            if let Some(s) = &session {
                payload["session_id"] = json!(s);
            }
            if ws
                .send(Message::Text(
                    json!({ "type": "chat", "id": id, "payload": payload }).to_string().into(),
                ))
                .await
                .is_err()
            {
                continue 'connection;
            }
            outbox.pop_front();
        }
        let mut streamed = String::new();
        loop {
            tokio::select! {
                line = stdin.next_line() => {
                    let Some(line) = line? else { return Ok(()) };
                    let line = line.trim().to_owned();
                    match line.as_str() {
                        "" => {}
                        "/quit" => return Ok(()),
                        "/agents" => print_agents(&hello["assignments"]),
                        "/history" => {
                            if let Some(s) = &session {
                                let h = json!({ "type": "history", "id": "h", "payload": { "session_id": s, "limit": 20 } });
                                if ws.send(Message::Text(h.to_string().into())).await.is_err() { continue 'connection; }
                            }
                        }
                        text => {
                            let id = uuid::Uuid::now_v7().to_string();
                            let mut payload = json!({ "agent_id": agent_id, "content": text });
                            if let Some(s) = &session {
                                payload["session_id"] = json!(s);
                            }
                            let frame = json!({ "type": "chat", "id": id, "payload": payload });
                            if ws.send(Message::Text(frame.to_string().into())).await.is_err() {
                                outbox.push_back((id, text.to_owned()));
                                continue 'connection;
                            }
                        }
                    }
                }
                incoming = ws.next() => {
                    let frame: Value = match incoming {
                        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap_or_default(),
                        Some(Ok(Message::Close(close))) => {
                            let code: u16 = close.map_or(1005, |c| c.code.into());
                            if code == 4003 { bail!("the relay closed the connection: account suspended"); }
                            eprintln!("[connection closed ({code})]");
                            continue 'connection;
                        }
                        Some(Ok(_)) => continue,
                        _ => {
                            eprintln!("[connection lost]");
                            continue 'connection;
                        }
                    };
                    let p = &frame["payload"];
                    match frame["type"].as_str() {
                        // The relay's own heartbeat: answered, or it closes a quiet socket.
                        Some("heartbeat") if frame["id"].as_str().is_some_and(|id| id.starts_with("srv-")) => {
                            let answer = json!({ "type": "heartbeat", "id": frame["id"] });
                            if ws.send(Message::Text(answer.to_string().into())).await.is_err() { continue 'connection; }
                        }
                        Some("ack") => {
                            session = p["session_id"].as_str().map(str::to_owned);
                            last_seq = last_seq.max(p["seq"].as_u64().unwrap_or(0));
                        }
                        Some("chunk") => {
                            let offset = p["offset"].as_u64().unwrap_or(0) as usize;
                            if offset < streamed.len() {
                                // A rewrite (or a catch-up after reconnecting): reprint the line.
                                streamed.truncate(offset);
                                print!("\r\x1b[K{streamed}");
                            }
                            let delta = p["delta"].as_str().unwrap_or_default();
                            streamed.push_str(delta);
                            print!("{delta}");
                            std::io::stdout().flush()?;
                        }
                        Some("chat") => {
                            last_seq = last_seq.max(p["seq"].as_u64().unwrap_or(0));
                            let content = p["content"].as_str().unwrap_or_default();
                            match p["role"].as_str() {
                                Some("agent") if streamed == content => println!(),
                                Some("agent") if !streamed.is_empty() => println!("\r\x1b[K{content}"),
                                Some("agent") => println!("{content}"),
                                Some("system") => println!("[{content}]"),
                                _ => println!("(you, on another device) {content}"),
                            }
                            streamed.clear();
                        }
                        Some("history") => {
                            for m in p["messages"].as_array().into_iter().flatten() {
                                println!("  #{} {}: {}", m["seq"], m["role"].as_str().unwrap_or("?"), m["content"].as_str().unwrap_or(""));
                            }
                        }
                        Some("system") => println!("[{}]", p["event"].as_str().unwrap_or("?")),
                        Some("error") => println!("[error {}: {}]", p["code"].as_str().unwrap_or("?"), p["message"].as_str().unwrap_or("")),
                        _ => {}
                    }
                }
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    let code = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => match runtime.block_on(run(args)) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("error: {err:#}");
                1
            }
        },
        Err(err) => {
            eprintln!("error: {err}");
            1
        }
    };
    std::process::exit(code);
}
