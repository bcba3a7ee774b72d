//! `mc-server admin`: bootstrap and operate a relay's database from the command line. Each
//! command prints the id (or token) it created, or with `--json` one JSON object.

use std::time::Duration;

use clap::{Args, Subcommand};
use mc_core::admin::AssignAgent;
use mc_core::auth::{AuthConfig, JwtKey, NewAccount, OrgSelector};
use mc_core::{AgentId, AssignmentRole, Error, OrgId, Organization, Role, Services, UserId};
use serde_json::json;

use super::OpenStore;

/// `mc-server admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The database, as for `serve`.
    #[arg(long, env = "MC_DATABASE_URL", default_value = "sqlite://mc.db")]
    database: String,
    /// Print one JSON object instead of the bare id.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an organization; prints its id.
    CreateOrg {
        /// Its name (unique).
        name: String,
    },
    /// Create a user; prints its id.
    CreateUser {
        /// The organization (id or name).
        #[arg(long)]
        org: String,
        /// Sign-in name, 3–64 of [A-Za-z0-9_.-].
        #[arg(long)]
        username: String,
        /// Password, 8–128 characters.
        #[arg(long, env = "MC_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// `member` or `admin`.
        #[arg(long, default_value = "member")]
        role: String,
        /// Optional email.
        #[arg(long)]
        email: Option<String>,
        /// Optional display name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Issue a gateway registration token; prints the token (shown only now).
    CreateRegistrationToken {
        /// The organization (id or name).
        #[arg(long)]
        org: String,
        /// What to call it.
        #[arg(long)]
        label: Option<String>,
        /// Lifetime, e.g. `1h`, `30m`, `7days`.
        #[arg(long)]
        expires_in: Option<String>,
        /// How many registrations it allows.
        #[arg(long)]
        max_uses: Option<u32>,
    },
    /// Assign an agent to a user.
    Assign {
        /// The user's id.
        #[arg(long)]
        user: String,
        /// The agent's id.
        #[arg(long)]
        agent: String,
        /// `user` or `owner`.
        #[arg(long, default_value = "user")]
        role: String,
        /// Optional board name.
        #[arg(long)]
        board: Option<String>,
    },
}

/// A failure and its exit code.
struct Failure(i32, String);

fn usage(message: impl Into<String>) -> Failure {
    Failure(2, message.into())
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid { .. } | Error::NotFound(_) => Failure(2, err.to_string()),
            other => Failure(1, other.to_string()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure(1, format!("{err:#}"))
    }
}

impl From<mc_core::StoreError> for Failure {
    fn from(err: mc_core::StoreError) -> Self {
        Error::from(err).into()
    }
}

async fn org_id(services: &Services, text: &str) -> Result<OrgId, Failure> {
    let org = match OrgSelector::parse(text) {
        OrgSelector::Id(id) => services.store().get_org(id).await?,
        OrgSelector::Name(name) => services.store().find_org_by_name(&name).await?,
    };
    org.map(|o| o.id).ok_or_else(|| usage(format!("--org: no organization {text:?}")))
}

/// Runs an admin command; returns the exit code.
pub async fn run(args: AdminArgs) -> i32 {
    match execute(&args).await {
        Ok(output) => {
            if args.json {
                println!("{output}");
            } else {
                let bare = output
                    .get("token")
                    .or_else(|| output.get("id"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("ok");
                println!("{bare}");
            }
            0
        }
        Err(Failure(code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

async fn execute(args: &AdminArgs) -> Result<serde_json::Value, Failure> {
    if !(args.database.starts_with("sqlite:") || args.database.starts_with("postgres")) {
        return Err(usage(format!(
            "--database / MC_DATABASE_URL: {:?} is neither sqlite:… nor postgres://…",
            args.database
        )));
    }
    let store = OpenStore::open(&args.database).await?;
    // Only password hashing is used here; tokens are never issued, so any key will do.
    let key = JwtKey::new(mc_gateway::random_bytes::<32>()?.to_vec())?;
    let services = Services::builder(store.shared(), AuthConfig::new(key)).build()?;
    let actor = "mc-server admin";
    let result = match &args.command {
        AdminCommand::CreateOrg { name } => {
            mc_core::validate::display_text("name", name, 128)?;
            let org = Organization {
                id: OrgId::new(),
                name: name.clone(),
                created_at: services.clock().now(),
            };
            services.store().create_org(&org).await?;
            json!({ "id": org.id, "name": org.name })
        }
        AdminCommand::CreateUser { org, username, password, role, email, display_name } => {
            let org = org_id(&services, org).await?;
            let role: Role = role.parse().map_err(|e| usage(format!("--role: {e}")))?;
            let account = NewAccount {
                username: username.clone(),
                password: password.clone(),
                email: email.clone(),
                display_name: display_name.clone(),
                role: Some(role),
                ..Default::default()
            };
            let user = services.auth().create_account(org, account, actor).await?;
            json!({ "id": user.id, "username": user.username, "organization_id": org, "role": user.role })
        }
        AdminCommand::CreateRegistrationToken { org, label, expires_in, max_uses } => {
            let org = org_id(&services, org).await?;
            let expires: Option<Duration> = expires_in
                .as_deref()
                .map(humantime::parse_duration)
                .transpose()
                .map_err(|e| usage(format!("--expires-in: {e} (try 1h, 30m, 7days)")))?;
            let issued = services
                .registry()
                .issue_registration_token(org, label.clone(), expires, *max_uses, actor)
                .await?;
            json!({
                "id": issued.token.id,
                "token": issued.secret,
                "organization_id": org,
                "expires_at": issued.token.expires_at,
                "max_uses": issued.token.max_uses,
            })
        }
        AdminCommand::Assign { user, agent, role, board } => {
            let user: UserId = user.parse().map_err(|_| usage("--user: not a user id"))?;
            let agent: AgentId = agent.parse().map_err(|_| usage("--agent: not an agent id"))?;
            let role: AssignmentRole = role.parse().map_err(|e| usage(format!("--role: {e}")))?;
            let request = AssignAgent { agent_id: agent, role, board_name: board.clone() };
            let assignment = services.admin().assign_as_operator(user, request, actor).await?;
            json!({ "user_id": assignment.user_id, "agent_id": assignment.agent_id, "role": assignment.role })
        }
    };
    store.close().await;
    Ok(result)
}
