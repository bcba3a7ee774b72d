//! `mc-server serve`: logging, the JWT secret, the relay, the server, the sweeper, the demo,
//! and a graceful shutdown on SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use mc_core::Services;
use mc_core::auth::{AuthConfig, JwtKey};
use mc_core::bus::InProcessBus;
use mc_core::protocol::close_code;
use mc_core::registry::RegistryConfig;
use mc_core::relay::Relay;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use super::settings::{LogFormat, ServeArgs, Settings};
use super::{OpenStore, beside, demo, metrics};

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("MC_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The access-token secret: given, or kept in `<db>.jwt-secret` (0600) beside a SQLite file,
/// or (in-memory databases) made up for this run.
fn jwt_secret(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(secret.expose().as_bytes().to_vec());
    }
    let Some(db) = settings.sqlite_file() else {
        tracing::warn!(
            "no MC_JWT_SECRET and an in-memory database: tokens are valid for this run only"
        );
        return Ok(mc_gateway::random_bytes::<32>()?.to_vec());
    };
    let path = beside(&db, "jwt-secret");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let secret = text.trim();
        anyhow::ensure!(
            secret.len() >= mc_core::auth::MIN_SECRET_LEN,
            "{} holds a secret that is too short",
            path.display()
        );
        return Ok(secret.as_bytes().to_vec());
    }
    let secret: String =
        mc_gateway::random_bytes::<32>()?.iter().map(|b| format!("{b:02x}")).collect();
    mc_gateway::files::write_secret(&path, secret.as_bytes())?;
    tracing::info!(path = %path.display(), "generated a JWT secret and saved it beside the database (mode 0600); set MC_JWT_SECRET to manage it yourself");
    Ok(secret.into_bytes())
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "Ctrl-C"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Runs the server; returns the exit code.
pub async fn serve(args: ServeArgs) -> i32 {
    let settings = match Settings::resolve(&args) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return 2;
        }
    };
    let tls = match load_tls(&settings) {
        Ok(tls) => tls,
        Err(err) => {
            eprintln!("error: {err}");
            return 2;
        }
    };
    init_logging(settings.log_format);
    match serve_with(settings, tls).await {
        Ok(()) => 0,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "mc-server stopped");
            eprintln!("error: {err:#}");
            1
        }
    }
}

/// The TLS acceptor of `--tls-cert` and `--tls-key`, or why they cannot be used (naming the
/// setting: a bad file is a configuration error, exit 2).
fn load_tls(
    settings: &Settings,
) -> Result<Option<mc_transport_ws::server::tls::TlsAcceptor>, String> {
    let Some((cert, key)) = &settings.tls else { return Ok(None) };
    let read = |path: &std::path::Path, flag: &str, env: &str| {
        std::fs::read(path).map_err(|e| {
            format!("invalid setting --{flag} / {env}: cannot read {}: {e}", path.display())
        })
    };
    let cert_pem = read(cert, "tls-cert", "MC_TLS_CERT")?;
    let key_pem = read(key, "tls-key", "MC_TLS_KEY")?;
    mc_transport_ws::server::tls::acceptor(&cert_pem, &key_pem).map(Some).map_err(|e| {
        let (flag, env) = match e {
            mc_transport_ws::server::tls::TlsError::Key(_) => ("tls-key", "MC_TLS_KEY"),
            _ => ("tls-cert", "MC_TLS_CERT"),
        };
        format!("invalid setting --{flag} / {env}: {e}")
    })
}

/// The bus: Redis when `--redis` is given (one of several instances), else in-process.
async fn open_bus(settings: &Settings) -> anyhow::Result<Arc<dyn mc_core::bus::Bus>> {
    let Some(url) = &settings.redis else {
        return Ok(Arc::new(InProcessBus::with_instance_id(settings.instance_id.clone())));
    };
    let config = mc_bus_redis::RedisBusConfig::new(url.expose())
        .with_instance_id(settings.instance_id.clone());
    let bus = mc_bus_redis::RedisBus::connect(config)
        .await
        .with_context(|| format!("Redis at {}", super::settings::redacted_url(url.expose())))?;
    Ok(Arc::new(bus))
}

/// Serves `routes` (`/metrics`) on `at`, plain HTTP, until `stopped`.
async fn serve_metrics(
    at: std::net::SocketAddr,
    routes: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .with_context(|| format!("cannot listen on {at} (--metrics-listen)"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "metrics listening");
    // A stable line for scripts (and the end-to-end tests).
    println!("metrics on http://{address}/metrics");
    Ok(tokio::spawn(async move {
        let until = async move { mc_gateway::bridge::until_set(&mut stopped).await };
        if let Err(err) = axum::serve(listener, routes).with_graceful_shutdown(until).await {
            tracing::warn!(error = %err, "the metrics listener failed");
        }
    }))
}

// The server's life, top to bottom: open, build, listen, serve, drain, close. The order is
// what shutdown relies on, so it stays in one place.
async fn serve_with(
    settings: Settings,
    tls: Option<mc_transport_ws::server::tls::TlsAcceptor>,
) -> anyhow::Result<()> {
    let prometheus = metrics::install(&settings.instance_id)?;
    let store =
        OpenStore::open_with(&settings.database, settings.sqlite_tuning()).await.with_context(
            || format!("database {}", super::settings::redacted_url(&settings.database)),
        )?;
    let auth = AuthConfig::new(JwtKey::new(jwt_secret(&settings)?)?)
        .access_token_ttl(settings.access_token_ttl)
        .open_registration(settings.open_registration);
    let registry = RegistryConfig::default().with_heartbeat_interval(settings.heartbeat_interval);
    let services = Services::builder(store.shared(), auth).registry(registry).build()?;
    let demo_setup = if settings.demo {
        Some(demo::bootstrap(&services, settings.sqlite_file().as_deref()).await?)
    } else {
        None
    };

    let bus = open_bus(&settings).await?;
    let relay = Relay::new(services.clone(), bus, settings.limits.clone());
    let metrics_routes =
        metrics::routes(prometheus, store.shared(), settings.metrics.token.as_ref());
    let mut app = mc_transport_ws::server::app_with(relay.clone(), settings.http.clone());
    if settings.metrics.token.is_some() {
        app = app.merge(metrics_routes.clone());
    }

    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    let database = super::settings::redacted_url(&settings.database);
    let instance = relay.instance_id().to_owned();
    tracing::info!(%address, %database, %instance, redis = settings.redis.is_some(), tls = tls.is_some(), "mc-server listening");
    // A stable line for scripts (and the end-to-end tests).
    println!("listening on {scheme}://{address}");

    let (stop, stopped) = watch::channel(false);
    let sweeper = {
        let registry = services.registry().clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            registry
                .run_liveness(async move { mc_gateway::bridge::until_set(&mut stopped).await })
                .await;
        })
    };
    let metrics_server = match settings.metrics.listen {
        Some(at) => Some(serve_metrics(at, metrics_routes, stopped.clone()).await?),
        None if settings.metrics.token.is_none() => {
            tracing::info!("GET /metrics is not served: give --metrics-listen or --metrics-token");
            None
        }
        None => None,
    };
    let demo_gateway = match demo_setup {
        Some(setup) => {
            demo::print_instructions(&setup, address);
            let cert = match &settings.tls {
                Some((cert, _)) => Some(std::fs::read_to_string(cert)?),
                None => None,
            };
            Some(demo::start_gateway(&setup, address, cert, stopped.clone()))
        }
        None => None,
    };

    let server = {
        let relay = relay.clone();
        let stop = stop.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(mc_transport_ws::server::serve_tls(listener, app, tls, async move {
            tokio::select! {
                signal = shutdown_signal() => {
                    tracing::info!(signal, "shutting down: closing sockets with 1012");
                    relay.close_all(close_code::RESTARTING);
                    let _ = stop.send(true);
                }
                _ = mc_gateway::bridge::until_set(&mut stopped) => {}
            }
        }))
    };
    // The server task ends once it stopped accepting and in-flight HTTP requests are done.
    server.await.context("server task")?.context("server")?;

    // Let sockets finish what they were doing (their in-flight stores), within the bound.
    let deadline = Instant::now() + settings.shutdown_timeout;
    while (relay.connection_count() > 0 || relay.gateway_count() > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), sweeper).await;
    if let Some(metrics_server) = metrics_server {
        let _ = tokio::time::timeout(Duration::from_secs(2), metrics_server).await;
    }
    if let Some(gateway) = demo_gateway {
        let _ = tokio::time::timeout(Duration::from_secs(2), gateway).await;
    }
    // The delivery states held back to batch are written before the store closes.
    tokio::time::timeout(settings.shutdown_timeout, relay.flush()).await.ok();
    drop(relay);
    tokio::time::timeout(settings.shutdown_timeout, store.close()).await.ok();
    tracing::info!("mc-server stopped");
    Ok(())
}
