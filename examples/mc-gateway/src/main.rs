//! `mc-gateway`: the bridge that runs beside an OpenClaw gateway (docs/gateway-link.md).
//!
//! ```sh
//! mc-gateway --config gateway-config.yaml --echo
//! ```
//!
//! It reads a YAML config shaped like the H5 deployment's `gateway-config.yaml`, registers with the
//! relay (or reuses the id and relay token saved in its state file, mode 0600), links to the
//! relay and reconnects forever (1 s base, 10 s cap, full jitter), heartbeating with this
//! process's memory and CPU. Without `--echo` it connects to the local OpenClaw gateway named
//! by `openclaw.url` (with `openclaw.token`, or `OPENCLAW_GATEWAY_TOKEN` from the environment,
//! which wins) as `gateway-client`/`backend`, reports the agents of its `agents.list`, and
//! forwards the relay's requests and the gateway's events both ways. `--echo` serves the
//! built-in demo agent instead, which streams its reply word by word.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mc_gateway::bridge::{self, Backend, BridgeEnd, BridgeSettings};
use mc_gateway::echo::EchoAgent;
use mc_gateway::forward::OpenClawBackend;
use mc_openclaw::connection::OpenClawOptions;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "mc-gateway",
    version,
    about = "Link an OpenClaw gateway (or the demo echo agent) to a Mission Control relay"
)]
struct Args {
    /// The YAML config.
    #[arg(long, env = "MC_GATEWAY_CONFIG", default_value = "gateway-config.yaml")]
    config: PathBuf,
    /// Where the gateway id and relay token are kept [default: <config>.state.json].
    #[arg(long, env = "MC_GATEWAY_STATE")]
    state: Option<PathBuf>,
    /// Serve the built-in echo agent instead of a local OpenClaw gateway.
    #[arg(long)]
    echo: bool,
    /// Pause between the echo agent's streamed words, in milliseconds.
    #[arg(long, default_value_t = 60)]
    echo_word_delay_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mission_control: MissionControl,
    gateway: GatewaySection,
    #[serde(default)]
    openclaw: Option<OpenClaw>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MissionControl {
    api_server: String,
    organization_id: String,
    registration_token: String,
    /// A PEM CA certificate to trust for an `https` relay besides the Mozilla roots.
    #[serde(default)]
    ca_file: Option<PathBuf>,
}
mc_core::debug_redacted!(MissionControl { api_server, organization_id, ca_file } secret { registration_token });

impl MissionControl {
    /// The CA certificates of `ca_file`, if set.
    fn ca_pem(&self) -> anyhow::Result<Option<String>> {
        self.ca_file
            .as_ref()
            .map(|path| {
                std::fs::read_to_string(path).with_context(|| {
                    format!("mission_control.ca_file: cannot read {}", path.display())
                })
            })
            .transpose()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewaySection {
    name: String,
    #[serde(default)]
    workspace_root: Option<String>,
    /// -1 (or absent): reconnect forever; N: give up after N failed attempts in a row.
    #[serde(default)]
    reconnect_max_retries: Option<i64>,
    #[serde(default)]
    reconnect_base_interval_seconds: Option<f64>,
    #[serde(default)]
    reconnect_max_interval_seconds: Option<f64>,
    #[serde(default)]
    heartbeat_interval_seconds: Option<u64>,
}

/// The local OpenClaw gateway.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenClaw {
    /// `ws://127.0.0.1:18789`.
    url: String,
    /// The gateway's shared token (`OPENCLAW_GATEWAY_TOKEN` overrides it).
    #[serde(default)]
    token: Option<String>,
}

impl std::fmt::Debug for OpenClaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenClaw")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
struct State {
    api_server: String,
    organization_id: String,
    name: String,
    gateway_id: String,
    relay_token: String,
    relay_ws_url: String,
}
mc_core::debug_redacted!(State { api_server, organization_id, name, gateway_id, relay_ws_url } secret { relay_token });

/// A config problem: exit code 2, naming the setting.
fn bad(setting: &str, message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("invalid setting {setting}: {message}").context(ExitCode(2))
}

#[derive(Debug)]
struct ExitCode(i32);

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("--config", format!("cannot read {}: {e}", path.display())))?;
    let config: Config = serde_saphyr::from_str(&text)
        .map_err(|e| bad("--config", format!("{}: {e}", path.display())))?;
    let api = &config.mission_control.api_server;
    if !(api.starts_with("http://") || api.starts_with("https://")) {
        return Err(bad("mission_control.api_server", format!("{api:?} is not an http(s):// URL")));
    }
    if api.starts_with("https://") {
        return Err(bad(
            "mission_control.api_server",
            "https is not built into this bridge yet; use http:// behind a local TLS proxy",
        ));
    }
    if config.mission_control.organization_id.parse::<mc_core::OrgId>().is_err() {
        return Err(bad("mission_control.organization_id", "is not an organization id"));
    }
    if !config.mission_control.registration_token.starts_with("gw_reg_") {
        return Err(bad("mission_control.registration_token", "is not a gw_reg_… token"));
    }
    mc_core::validate::identifier("gateway.name", &config.gateway.name, 64, false)
        .map_err(|e| bad("gateway.name", e))?;
    for (name, value) in [
        ("gateway.reconnect_base_interval_seconds", config.gateway.reconnect_base_interval_seconds),
        ("gateway.reconnect_max_interval_seconds", config.gateway.reconnect_max_interval_seconds),
    ] {
        if value.is_some_and(|v| !(v > 0.0 && v <= 3600.0)) {
            return Err(bad(name, "must be a number of seconds from 0 to 3600"));
        }
    }
    if config.gateway.heartbeat_interval_seconds == Some(0) {
        return Err(bad("gateway.heartbeat_interval_seconds", "must be at least 1"));
    }
    if let Some(openclaw) = &config.openclaw {
        if openclaw.url.starts_with("wss://") {
            return Err(bad(
                "openclaw.url",
                "wss:// is not built into this bridge yet; the local gateway is on loopback: use ws://",
            ));
        }
        if !openclaw.url.starts_with("ws://") {
            return Err(bad("openclaw.url", format!("{:?} is not a ws:// URL", openclaw.url)));
        }
    }
    Ok(config)
}

fn load_state(path: &Path, config: &Config) -> Option<State> {
    let state: State = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let same = state.api_server == config.mission_control.api_server
        && state.organization_id == config.mission_control.organization_id
        && state.name == config.gateway.name;
    same.then_some(state)
}

/// Registers (retrying while the relay is unreachable); a refused token is a config error.
async fn register(
    config: &Config,
    backend: &Backend,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<State>> {
    let tls = mc_transport_ws::client::tls_config(config.mission_control.ca_pem()?.as_deref())
        .map_err(|e| anyhow::anyhow!("mission_control.ca_file: {e}"))?;
    let http = reqwest::Client::builder().use_preconfigured_tls(tls).build()?;
    let url = format!(
        "{}/api/v1/gateway-registry/register",
        config.mission_control.api_server.trim_end_matches('/')
    );
    let agents: Vec<_> = backend
        .agents()
        .iter()
        .map(|a| json!({ "agent_key": a.agent_key, "name": a.name }))
        .collect();
    let body = json!({
        "organization_id": config.mission_control.organization_id,
        "registration_token": config.mission_control.registration_token,
        "name": config.gateway.name,
        "workspace_root": config.gateway.workspace_root,
        "version": env!("CARGO_PKG_VERSION"),
        "capabilities": ["chat"],
        "agents": agents,
    });
    let mut backoff = mc_openclaw::Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
    loop {
        match http.post(&url).json(&body).send().await {
            Ok(response) if response.status().is_success() => {
                let answer: serde_json::Value =
                    response.json().await.context("registration answer")?;
                let field = |k: &str| {
                    answer[k]
                        .as_str()
                        .map(str::to_owned)
                        .context(format!("registration answer lacks {k}"))
                };
                return Ok(Some(State {
                    api_server: config.mission_control.api_server.clone(),
                    organization_id: config.mission_control.organization_id.clone(),
                    name: config.gateway.name.clone(),
                    gateway_id: field("gateway_id")?,
                    relay_token: field("relay_token")?,
                    relay_ws_url: field("relay_ws_url")?,
                }));
            }
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                return Err(bad(
                    "mission_control.registration_token",
                    format!("the relay refused the registration ({status}): {text}"),
                ));
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), "registration failed; retrying")
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot reach the relay to register; retrying")
            }
        }
        let wait = backoff.next_delay().max(Duration::from_millis(200));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = bridge::until_set(shutdown) => return Ok(None),
        }
    }
}

/// The backend: the echo agent, or the local OpenClaw gateway of the config.
fn backend(args: &Args, config: &Config) -> anyhow::Result<Backend> {
    if args.echo {
        return Ok(Backend::Echo(EchoAgent::new(Duration::from_millis(args.echo_word_delay_ms))));
    }
    let Some(openclaw) = &config.openclaw else {
        return Err(bad(
            "openclaw.url",
            "is needed to forward to a local OpenClaw gateway (or run with --echo)",
        ));
    };
    let token = std::env::var("OPENCLAW_GATEWAY_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| openclaw.token.clone());
    let mut options = OpenClawOptions::new(openclaw.url.clone()).token(token);
    // The local gateway is next door: notice it is back within seconds.
    options.reconnect_max = Duration::from_secs(5);
    Ok(Backend::OpenClaw(OpenClawBackend::start(options)))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let backend = backend(&args, &config)?;
    let state_path = args.state.clone().unwrap_or_else(|| {
        let mut name = args.config.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".state.json");
        args.config.with_file_name(name)
    });
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(async move {
        let signal = shutdown_signal().await;
        tracing::info!(signal, "stopping");
        let _ = stop.send(true);
    });
    if matches!(backend, Backend::OpenClaw(_)) {
        tracing::info!("waiting for the local OpenClaw gateway");
        if !backend.ready(&mut stopped).await {
            return Ok(());
        }
    }
    loop {
        let state = match load_state(&state_path, &config) {
            Some(state) => {
                tracing::info!(gateway = %state.gateway_id, "reusing the saved registration");
                state
            }
            None => {
                let Some(state) = register(&config, &backend, &mut stopped).await? else {
                    return Ok(());
                };
                mc_gateway::files::write_secret(
                    &state_path,
                    serde_json::to_string_pretty(&state)?.as_bytes(),
                )?;
                tracing::info!(gateway = %state.gateway_id, state = %state_path.display(), "registered; saved the relay token (mode 0600)");
                state
            }
        };
        let mut settings =
            BridgeSettings::new(state.relay_ws_url.clone(), state.relay_token.clone());
        settings.relay_ca_pem = config.mission_control.ca_pem()?;
        if let Some(base) = config.gateway.reconnect_base_interval_seconds {
            settings.reconnect_base = Duration::from_secs_f64(base);
        }
        if let Some(max) = config.gateway.reconnect_max_interval_seconds {
            settings.reconnect_max = Duration::from_secs_f64(max);
        }
        settings.heartbeat_every =
            config.gateway.heartbeat_interval_seconds.map(Duration::from_secs);
        if config.gateway.reconnect_max_retries.is_some_and(|n| n >= 0) {
            tracing::info!("reconnect_max_retries is ignored: the bridge reconnects forever");
        }
        match bridge::run(&settings, backend.clone(), stopped.clone()).await {
            BridgeEnd::Shutdown => return Ok(()),
            BridgeEnd::Unauthorized => {
                tracing::warn!("the relay refused the saved relay token; registering again");
                let _ = std::fs::remove_file(&state_path);
            }
        }
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("MC_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => match runtime.block_on(run(args)) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("error: {}", err.root_cause());
                err.downcast_ref::<ExitCode>().map_or(1, |c| c.0)
            }
        },
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
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
        testkit::docs::check_section("configuration.md", "mc-gateway", &reference);
    }
}
