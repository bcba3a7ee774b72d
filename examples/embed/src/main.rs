//! Embedding the relay in your own axum app.
//!
//! ```sh
//! cargo run -p embed -- 127.0.0.1:8080 [sqlite://embed.db]
//! ```
//!
//! Your app keeps its own routes; the relay's routes (`/api/v1/…`, `/healthz`, `/readyz`) are
//! merged in. The relay keeps its data in `embed.db` (SQLite). On first start it creates an
//! organization `demo` with an admin `admin` and prints the admin's password. Set
//! `MC_JWT_SECRET` (at least 32 bytes) so tokens survive a restart; without it a random secret
//! is used for this run only.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use mc_core::auth::{AuthConfig, JwtKey, NewAccount};
use mc_core::bus::InProcessBus;
use mc_core::relay::{Relay, RelayLimits};
use mc_core::{OrgId, Organization, Role, Services, Store};
use mc_store_sqlite::SqliteStore;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".into());
    let database = std::env::args().nth(2).unwrap_or_else(|| "sqlite://embed.db".into());

    // 1. A store, and the relay's services built on it.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&database).await?);
    let secret = match std::env::var("MC_JWT_SECRET") {
        Ok(secret) => secret.into_bytes(),
        Err(_) => {
            let mut bytes = vec![0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
            tracing::warn!("MC_JWT_SECRET not set: tokens are valid for this run only");
            bytes
        }
    };
    let auth = AuthConfig::new(JwtKey::new(secret).context("MC_JWT_SECRET")?);
    let services = Services::builder(store, auth).build()?;
    seed(&services).await?;

    // 2. The relay (in-process bus, default limits), and your app with the relay's routes
    //    (without its chat page: `/` is yours here).
    let relay = Relay::new(services.clone(), Arc::new(InProcessBus::new()), RelayLimits::default());
    let config = mc_transport_ws::server::HttpConfig::default().with_web_pages(false);
    let app = Router::new()
        .route("/", get(|| async { "my app, with a relay inside: try /healthz" }))
        .merge(mc_transport_ws::server::app_with(relay.clone(), config));

    // 3. One liveness sweeper per process, stopped with the server.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let registry = services.registry().clone();
    let sweeper = tokio::spawn(async move {
        let mut stopped = stopped;
        registry
            .run_liveness(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
    });

    // 4. Serve until Ctrl-C (recording client IPs); then close sockets with 1012.
    let listener =
        tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("bind {listen}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    mc_transport_ws::server::serve(listener, app, async move {
        let _ = tokio::signal::ctrl_c().await;
        relay.close_all(mc_core::protocol::close_code::RESTARTING);
    })
    .await?;
    let _ = stop.send(true);
    sweeper.await?;
    Ok(())
}

/// Creates the `demo` organization and its `admin` once.
async fn seed(services: &Services) -> anyhow::Result<()> {
    if services.store().find_org_by_name("demo").await?.is_some() {
        return Ok(());
    }
    let org =
        Organization { id: OrgId::new(), name: "demo".into(), created_at: services.clock().now() };
    services.store().create_org(&org).await?;
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let account = NewAccount {
        username: "admin".into(),
        password: password.clone(),
        role: Some(Role::Admin),
        ..NewAccount::default()
    };
    let admin = services.auth().create_account(org.id, account, "embed-example").await?;
    println!(
        "created organization 'demo' ({}) and admin 'admin' ({}) with password {password}",
        org.id, admin.id
    );
    Ok(())
}
