//! `serve --demo`: an organization `demo`, an admin `admin`, a user `alice` assigned to the
//! agent `echo` of an in-process echo gateway, and how to chat. Created once; the passwords are
//! kept beside the SQLite file (mode 0600) so every start can print them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mc_core::admin::AssignAgent;
use mc_core::auth::NewAccount;
use mc_core::registry::GatewayRegistration;
use mc_core::{AgentId, AssignmentRole, GatewayId, OrgId, Organization, Role, Services, User};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use mc_gateway::bridge::{self, BridgeSettings};
use mc_gateway::echo::{ECHO_AGENT_KEY, EchoAgent};

const ORG: &str = "demo";
const GATEWAY: &str = "demo-echo";

#[derive(Default, Serialize, Deserialize)]
struct Credentials {
    admin_password: Option<String>,
    alice_password: Option<String>,
}
mc_core::debug_redacted!(Credentials {} secret { admin_password, alice_password });

/// What the demo needs after the server listens.
#[derive(Clone)]
pub struct DemoSetup {
    gateway_id: GatewayId,
    relay_token: String,
    alice_password: String,
}
mc_core::debug_redacted!(DemoSetup { gateway_id } secret { relay_token, alice_password });

async fn user(
    services: &Services,
    org: OrgId,
    name: &str,
    role: Role,
    saved: &mut Option<String>,
) -> anyhow::Result<(User, Option<String>)> {
    if let Some(existing) = services.store().find_user_by_username(org, name).await? {
        return Ok((existing, saved.clone()));
    }
    let password = random_password()?;
    let account = NewAccount {
        username: name.into(),
        password: password.clone(),
        role: Some(role),
        ..Default::default()
    };
    let created = services.auth().create_account(org, account, "demo").await?;
    *saved = Some(password.clone());
    Ok((created, Some(password)))
}

// The demo's set-up, top to bottom: organization, users, gateway, assignment, printed
// credentials, each created once (a second start finds them).
/// Creates (once) the demo's organization, users, gateway and assignment; prints how to chat.
pub async fn bootstrap(services: &Services, db: Option<&Path>) -> anyhow::Result<DemoSetup> {
    let store = services.store();
    let org = match store.find_org_by_name(ORG).await? {
        Some(org) => org,
        None => {
            let org = Organization {
                id: OrgId::new(),
                name: ORG.into(),
                created_at: services.clock().now(),
            };
            store.create_org(&org).await?;
            org
        }
    };
    let credentials_file = db.map(|db| super::beside(db, "demo-credentials"));
    let mut credentials: Credentials = credentials_file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let (admin, admin_password) =
        user(services, org.id, "admin", Role::Admin, &mut credentials.admin_password).await?;
    let (alice, alice_password) =
        user(services, org.id, "alice", Role::Member, &mut credentials.alice_password).await?;
    if let Some(file) = &credentials_file {
        mc_gateway::files::write_secret(
            file,
            serde_json::to_string_pretty(&credentials)?.as_bytes(),
        )?;
    }

    // The echo gateway re-registers under its name at every start (same id, fresh token): the
    // demo's admin releases the name first, as an admin would for a reinstalled gateway.
    if let Some(existing) = store.find_gateway_by_name(org.id, GATEWAY).await? {
        let principal = mc_core::auth::Principal {
            user_id: admin.id,
            organization_id: org.id,
            role: Role::Admin,
        };
        services.registry().release_gateway(&principal, existing.id).await?;
    }
    let issued = services
        .registry()
        .issue_registration_token(
            org.id,
            Some("demo".into()),
            Some(Duration::from_secs(60)),
            Some(1),
            "demo",
        )
        .await?;
    let registration = services
        .registry()
        .register(
            GatewayRegistration {
                organization_id: org.id,
                registration_token: issued.secret,
                name: GATEWAY.into(),
                url: None,
                workspace_root: None,
                version: Some(env!("CARGO_PKG_VERSION").into()),
                capabilities: vec!["chat".into()],
                agents: Some(EchoAgent::agents()),
                relay_token: None,
            },
            None,
        )
        .await?;
    let agent: AgentId = store
        .list_gateway_agents(registration.gateway_id)
        .await?
        .into_iter()
        .find(|a| a.agent_key == ECHO_AGENT_KEY)
        .map(|a| a.id)
        .ok_or_else(|| anyhow::anyhow!("the echo agent was not registered"))?;
    if store.get_assignment(alice.id, agent).await?.is_none() {
        let request = AssignAgent {
            agent_id: agent,
            role: AssignmentRole::User,
            board_name: Some("Demo".into()),
        };
        services.admin().assign_as_operator(alice.id, request, "demo").await?;
    }

    let shown = |p: Option<String>| p.unwrap_or_else(|| "(set earlier; its record is gone)".into());
    let alice_pw = shown(alice_password);
    println!();
    println!("Demo ready: organization \"{ORG}\"");
    println!("  admin / {}", shown(admin_password));
    println!(
        "  alice / {alice_pw}   (assigned to the agent \"echo\", which streams your words back)"
    );
    Ok(DemoSetup {
        gateway_id: registration.gateway_id,
        relay_token: registration.relay_token,
        alice_password: alice_pw,
    })
}

/// Says how to chat with the demo once the server listens on `address`.
pub fn print_instructions(setup: &DemoSetup, address: SocketAddr) {
    println!("Chat as alice in another terminal:");
    println!(
        "  cargo run -p mc-chat -- --server http://{address} --org {ORG} --username alice --password {}",
        setup.alice_password
    );
    println!();
}

/// Links the in-process echo gateway to this server once it listens on `address` (over
/// `wss://` trusting `tls_cert_pem`, the server's own certificate, when it serves TLS).
pub fn start_gateway(
    setup: &DemoSetup,
    address: SocketAddr,
    tls_cert_pem: Option<String>,
    stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let scheme = if tls_cert_pem.is_some() { "wss" } else { "ws" };
    let url = format!("{scheme}://{address}/ws/gateway/{}/relay", setup.gateway_id);
    let mut settings = BridgeSettings::new(url, setup.relay_token.clone());
    settings.relay_ca_pem = tls_cert_pem;
    tokio::spawn(async move {
        let backend = bridge::Backend::Echo(EchoAgent::new(Duration::from_millis(60)));
        let end = bridge::run(&settings, backend, stopped).await;
        tracing::info!(?end, "demo echo gateway stopped");
    })
}

/// A random password of 12 bytes of entropy, hex-encoded.
fn random_password() -> anyhow::Result<String> {
    Ok(mc_gateway::random_bytes::<12>()?.iter().map(|b| format!("{b:02x}")).collect())
}
