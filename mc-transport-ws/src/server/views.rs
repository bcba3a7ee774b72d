//! JSON shapes of responses.

use mc_core::{Assignment, Paged, Timestamp, User};
use serde::Serialize;

/// A user as clients see it (never the password hash).
#[derive(Debug, Serialize)]
pub(crate) struct UserView {
    id: String,
    organization_id: String,
    username: String,
    email: Option<String>,
    phone: Option<String>,
    display_name: Option<String>,
    avatar_url: Option<String>,
    role: mc_core::Role,
    status: mc_core::UserStatus,
    last_login_at: Option<Timestamp>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id.to_string(),
            organization_id: u.organization_id.to_string(),
            username: u.username,
            email: u.email,
            phone: u.phone,
            display_name: u.display_name,
            avatar_url: u.avatar_url,
            role: u.role,
            status: u.status,
            last_login_at: u.last_login_at,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A page of users.
#[derive(Debug, Serialize)]
pub(crate) struct UserPage {
    users: Vec<UserView>,
    next_cursor: Option<String>,
}

impl From<Paged<User>> for UserPage {
    fn from(page: Paged<User>) -> Self {
        Self {
            users: page.items.into_iter().map(UserView::from).collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        }
    }
}

/// Tokens handed out by login, registration and refresh.
#[derive(Serialize)]
pub(crate) struct TokenView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<UserView>,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u64,
}

mc_core::debug_redacted!(TokenView { user, token_type, expires_in } secret { access_token, refresh_token });

/// An assignment.
#[derive(Debug, Serialize)]
pub(crate) struct AssignmentView {
    user_id: String,
    agent_id: String,
    role: mc_core::AssignmentRole,
    board_name: Option<String>,
    assigned_by: Option<String>,
    assigned_at: Timestamp,
}

impl From<Assignment> for AssignmentView {
    fn from(a: Assignment) -> Self {
        Self {
            user_id: a.user_id.to_string(),
            agent_id: a.agent_id.to_string(),
            role: a.role,
            board_name: a.board_name,
            assigned_by: a.assigned_by.map(|u| u.to_string()),
            assigned_at: a.assigned_at,
        }
    }
}

/// A registration token as admins see it; `token` only in the answer that creates it.
#[derive(Serialize)]
pub(crate) struct RegistrationTokenView {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    label: String,
    expires_at: Option<Timestamp>,
    max_uses: Option<u32>,
    uses: u32,
    revoked: bool,
    created_at: Timestamp,
}

mc_core::debug_redacted!(RegistrationTokenView { id, label, expires_at, max_uses, uses, revoked, created_at } secret { token });

impl RegistrationTokenView {
    pub(crate) fn new(t: mc_core::RegistrationToken, secret: Option<String>) -> Self {
        Self {
            id: t.id.to_string(),
            token: secret,
            label: t.label,
            expires_at: t.expires_at,
            max_uses: t.max_uses,
            uses: t.uses,
            revoked: t.revoked,
            created_at: t.created_at,
        }
    }
}

/// A gateway as admins see it (never its relay token hash).
#[derive(Debug, Serialize)]
pub(crate) struct GatewayView {
    id: String,
    organization_id: String,
    name: String,
    url: Option<String>,
    workspace_root: Option<String>,
    version: Option<String>,
    capabilities: Vec<String>,
    status: mc_core::GatewayStatus,
    last_heartbeat_at: Option<Timestamp>,
    connection_info: mc_core::ConnectionInfo,
    auto_registered: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    agents: Option<Vec<AgentView>>,
    /// For gateways the relay dials: how that goes (never the tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    outbound: Option<OutboundView>,
}

/// How the relay dials a gateway, as admins see it: no token, only whether there is one.
#[derive(Debug, Serialize)]
pub(crate) struct OutboundView {
    url: String,
    has_token: bool,
    /// Whether the gateway issued the relay's device a token (it is paired).
    has_device_token: bool,
    /// The pairing request to approve: `openclaw devices approve <id>` on the gateway.
    pairing_request_id: Option<String>,
    last_error: Option<String>,
    updated_at: Timestamp,
}

impl From<mc_core::OutboundLink> for OutboundView {
    fn from(l: mc_core::OutboundLink) -> Self {
        Self {
            url: l.url,
            has_token: l.token.is_some(),
            has_device_token: l.device_token.is_some(),
            pairing_request_id: l.pairing_request_id,
            last_error: l.last_error,
            updated_at: l.updated_at,
        }
    }
}

impl GatewayView {
    /// Adds how the relay dials it.
    pub(crate) fn with_outbound(mut self, link: Option<mc_core::OutboundLink>) -> Self {
        self.outbound = link.map(OutboundView::from);
        self
    }

    pub(crate) fn new(g: mc_core::Gateway, agents: Option<Vec<mc_core::Agent>>) -> Self {
        Self {
            id: g.id.to_string(),
            organization_id: g.organization_id.to_string(),
            name: g.name,
            url: g.url,
            workspace_root: g.workspace_root,
            version: g.version,
            capabilities: g.capabilities,
            status: g.status,
            last_heartbeat_at: g.last_heartbeat_at,
            connection_info: g.connection_info,
            auto_registered: g.auto_registered,
            created_at: g.created_at,
            updated_at: g.updated_at,
            agents: agents.map(|a| a.into_iter().map(AgentView::from).collect()),
            outbound: None,
        }
    }
}

/// An agent.
#[derive(Debug, Serialize)]
pub(crate) struct AgentView {
    id: String,
    gateway_id: String,
    agent_key: String,
    name: String,
    status: mc_core::AgentStatus,
    created_at: Timestamp,
}

impl From<mc_core::Agent> for AgentView {
    fn from(a: mc_core::Agent) -> Self {
        Self {
            id: a.id.to_string(),
            gateway_id: a.gateway_id.to_string(),
            agent_key: a.agent_key,
            name: a.name,
            status: a.status,
            created_at: a.created_at,
        }
    }
}

/// An activity event.
#[derive(Debug, Serialize)]
pub(crate) struct ActivityView {
    id: String,
    kind: String,
    actor: String,
    target_type: String,
    target_id: String,
    metadata: serde_json::Value,
    created_at: Timestamp,
}

impl From<mc_core::ActivityEvent> for ActivityView {
    fn from(e: mc_core::ActivityEvent) -> Self {
        Self {
            id: e.id.to_string(),
            kind: e.kind,
            actor: e.actor,
            target_type: e.target_type,
            target_id: e.target_id,
            metadata: e.metadata,
            created_at: e.created_at,
        }
    }
}

/// A page of any listing: `{"<name>": [...], "next_cursor": …}`.
pub(crate) fn page_json<T, V: Serialize>(
    name: &str,
    page: Paged<T>,
    view: impl Fn(T) -> V,
) -> serde_json::Value {
    let items: Vec<V> = page.items.into_iter().map(view).collect();
    serde_json::json!({ name: items, "next_cursor": page.next_cursor.map(|c| c.to_string()) })
}

/// A chat session as admins see it.
#[derive(Debug, Serialize)]
pub(crate) struct SessionView {
    id: String,
    user_id: String,
    agent_id: String,
    gateway_id: String,
    status: mc_core::SessionStatus,
    last_seq: u64,
    last_message_at: Option<Timestamp>,
    created_at: Timestamp,
}

impl From<mc_core::ChatSession> for SessionView {
    fn from(s: mc_core::ChatSession) -> Self {
        Self {
            id: s.id.to_string(),
            user_id: s.user_id.to_string(),
            agent_id: s.agent_id.to_string(),
            gateway_id: s.gateway_id.to_string(),
            status: s.status,
            last_seq: s.last_seq,
            last_message_at: s.last_message_at,
            created_at: s.created_at,
        }
    }
}

/// A stored message as admins see it.
#[derive(Debug, Serialize)]
pub(crate) struct MessageView {
    id: String,
    seq: u64,
    role: mc_core::MessageRole,
    content: String,
    client_msg_id: Option<uuid::Uuid>,
    run_id: Option<String>,
    created_at: Timestamp,
}

impl From<mc_core::Message> for MessageView {
    fn from(m: mc_core::Message) -> Self {
        Self {
            id: m.id.to_string(),
            seq: m.seq,
            role: m.role,
            content: m.content,
            client_msg_id: m.client_msg_id,
            run_id: m.run_id,
            created_at: m.created_at,
        }
    }
}
