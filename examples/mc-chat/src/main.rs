//! `mc-chat`: chat with an agent from a terminal, a thin user of the client SDK
//! ([`mc_transport_ws::client::McClient`]).
//!
//! ```sh
//! mc-chat --server http://127.0.0.1:8080 --org demo --username alice --password …
//! ```
//!
//! It signs in, lists the agents assigned to you, and sends each line you type to the chosen
//! agent, printing the reply as it streams. The SDK keeps the connection: it reconnects
//! (0.5 s → 20 s, jittered), refreshes the access token when the relay asks, resumes the
//! session so no message is missed, and sends what you typed meanwhile with the original
//! ids. Commands: `/agents`, `/history`, `/quit`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use mc_core::protocol::{AssignmentInfo, ChatMessage};
use mc_core::{MessageRole, SessionId};
use mc_transport_ws::client::{ClientOptions, ConnectionState, Listener, McClient, SystemEvent};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser)]
#[command(name = "mc-chat", version, about = "Chat with a Mission Control agent from the terminal")]
struct Args {
    /// The relay (`http://` or `https://`).
    #[arg(long, env = "MC_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Your organization (name or id) [default: the server's only one].
    #[arg(long, env = "MC_ORG", default_value = "")]
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
    /// A PEM CA certificate to trust (a private CA, or the server's self-signed certificate).
    #[arg(long, env = "MC_CA_FILE")]
    ca_file: Option<PathBuf>,
}

/// Prints what the SDK reports. Streaming text is redrawn on one line until the final reply.
#[derive(Default)]
struct Terminal {
    /// The run being printed and how much of its text is on screen.
    streaming: Mutex<Option<(String, String)>>,
}

impl Terminal {
    fn streaming(&self) -> std::sync::MutexGuard<'_, Option<(String, String)>> {
        self.streaming.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Listener for Terminal {
    fn on_state(&self, state: &ConnectionState) {
        match state {
            ConnectionState::Connected => eprintln!("[connected]"),
            ConnectionState::Disconnected => eprintln!("[disconnected; reconnecting…]"),
            ConnectionState::Closed { reason } => eprintln!("[closed: {reason:?}]"),
            ConnectionState::Connecting => {}
        }
    }

    fn on_reply_text(&self, _session: SessionId, run_id: &str, text: &str) {
        let mut streaming = self.streaming();
        let mut out = std::io::stdout();
        match &mut *streaming {
            Some((run, shown)) if run == run_id && text.starts_with(shown.as_str()) => {
                let _ = write!(out, "{}", &text[shown.len()..]);
                *shown = text.to_owned();
            }
            _ => {
                // A new run, or a rewrite: redraw the line.
                let _ = write!(out, "\r\x1b[K{text}");
                *streaming = Some((run_id.to_owned(), text.to_owned()));
            }
        }
        let _ = out.flush();
    }

    fn on_message(&self, message: &ChatMessage) {
        let mut streaming = self.streaming();
        let shown = streaming.take();
        match message.role {
            MessageRole::Agent => match shown {
                Some((_, text)) if text == message.content => println!(),
                Some(_) => println!("\r\x1b[K{}", message.content),
                None => println!("{}", message.content),
            },
            MessageRole::System => println!("\r\x1b[K[{}]", message.content),
            MessageRole::User => println!("(you, on another device) {}", message.content),
        }
    }

    fn on_system(&self, event: &SystemEvent) {
        if event.event != "agent_status" {
            eprintln!("[{}]", event.event);
        }
    }
}

fn pick_agent(agents: &[AssignmentInfo], wanted: Option<&str>) -> Option<AssignmentInfo> {
    agents
        .iter()
        .find(|a| {
            wanted.is_none_or(|w| {
                w == a.agent_id.to_string() || w.eq_ignore_ascii_case(&a.agent_name)
            })
        })
        .cloned()
}

fn print_agents(agents: &[AssignmentInfo]) {
    for a in agents {
        println!("  {} ({}) — {}", a.agent_name, a.status, a.agent_id);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let ca_pem = match &args.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let client = Arc::new(McClient::with_options(&args.server, ClientOptions { ca_pem })?);
    let password = match args.password.clone() {
        Some(p) => p,
        None => rpassword::prompt_password(format!("password for {}: ", args.username))?,
    };
    client.sign_in(&args.org, &args.username, &password).await?;
    client.set_listener(Arc::new(Terminal::default()));
    let agents = client.connect_and_wait(Duration::from_secs(30)).await?;
    println!("Agents:");
    print_agents(&agents);
    let Some(agent) = pick_agent(&agents, args.agent.as_deref()) else {
        bail!("no agent {} is assigned to you", args.agent.as_deref().unwrap_or("at all"));
    };
    println!("Talking to {}. Type a message; /agents, /history, /quit.", agent.agent_name);

    // Lines go out one after another, so the first reply's session carries the rest; the
    // SDK's outbox holds them while offline.
    let (lines, mut queued) = tokio::sync::mpsc::unbounded_channel::<String>();
    let session: Arc<Mutex<Option<SessionId>>> = Arc::default();
    let sender = {
        let (client, session) = (client.clone(), session.clone());
        tokio::spawn(async move {
            while let Some(text) = queued.recv().await {
                let current = *session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match client.send_message(agent.agent_id, current, &text).await {
                    Ok(receipt) => {
                        *session.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(receipt.session_id);
                    }
                    Err(err) => eprintln!("[not sent: {err}]"),
                }
            }
        })
    };
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = stdin.next_line().await? {
        match line.trim() {
            "" => {}
            "/quit" => break,
            "/agents" => print_agents(&client.agents()),
            "/history" => {
                let current = *session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(s) = current {
                    match client.history(s, None, 20).await {
                        Ok(page) => {
                            for m in page.messages {
                                println!("  #{} {}: {}", m.seq, m.role.as_str(), m.content);
                            }
                        }
                        Err(err) => eprintln!("[history: {err}]"),
                    }
                }
            }
            text => {
                let _ = lines.send(text.to_owned());
            }
        }
    }
    // Let what was typed go out before leaving.
    drop(lines);
    let _ = tokio::time::timeout(Duration::from_secs(30), sender).await;
    client.disconnect();
    Ok(())
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_configuration_reference_is_up_to_date() {
        let reference = testkit::docs::command_reference(&super::Args::command());
        testkit::docs::check_section("configuration.md", "mc-chat", &reference);
    }
}
