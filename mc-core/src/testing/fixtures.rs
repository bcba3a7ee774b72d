//! Builders of valid entities with unique names, for tests.

use std::sync::Arc;

use chrono::TimeDelta;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::ids::*;
use crate::model::*;
use crate::store::Store;

/// Now, as the stores keep it.
pub fn now() -> Timestamp {
    SystemClock.now()
}

/// A short unique suffix for names.
pub fn unique(prefix: &str) -> String {
    let id = Uuid::now_v7().simple().to_string();
    format!("{prefix}_{}", &id[id.len() - 12..])
}

pub fn org() -> Organization {
    Organization { id: OrgId::new(), name: unique("org"), created_at: now() }
}

pub fn user(org: OrgId) -> User {
    let t = now();
    User {
        id: UserId::new(),
        organization_id: org,
        username: unique("user"),
        email: None,
        phone: None,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        display_name: None,
        avatar_url: None,
        role: Role::Member,
        status: UserStatus::Active,
        last_login_at: None,
        created_at: t,
        updated_at: t,
    }
}

pub fn refresh_token(user: UserId, family: TokenFamilyId) -> RefreshToken {
    let t = now();
    RefreshToken {
        id: RefreshTokenId::new(),
        user_id: user,
        family_id: family,
        token_hash: SecretHash::of(&unique("refresh")),
        expires_at: t + TimeDelta::days(30),
        used_at: None,
        revoked: false,
        replaced_by: None,
        created_at: t,
    }
}

/// A registration token and its secret.
pub fn registration_token(org: OrgId) -> (RegistrationToken, String) {
    let secret = unique("gw_reg");
    let token = RegistrationToken {
        id: RegistrationTokenId::new(),
        organization_id: org,
        token_hash: SecretHash::of(&secret),
        label: unique("label"),
        expires_at: None,
        max_uses: None,
        uses: 0,
        revoked: false,
        created_at: now(),
    };
    (token, secret)
}

pub fn gateway(org: OrgId) -> Gateway {
    let t = now();
    Gateway {
        id: GatewayId::new(),
        organization_id: org,
        name: unique("gw"),
        url: None,
        workspace_root: None,
        version: None,
        capabilities: vec![],
        status: GatewayStatus::Pending,
        relay_token_hash: SecretHash::of(&unique("relay")),
        last_heartbeat_at: None,
        connection_info: ConnectionInfo::default(),
        auto_registered: true,
        created_at: t,
        updated_at: t,
    }
}

pub fn agent(gateway: GatewayId) -> Agent {
    let key = unique("agent");
    Agent {
        id: AgentId::new(),
        gateway_id: gateway,
        name: format!("Agent {key}"),
        agent_key: key,
        status: AgentStatus::Active,
        created_at: now(),
    }
}

pub fn assignment(user: UserId, agent: AgentId) -> Assignment {
    Assignment {
        user_id: user,
        agent_id: agent,
        role: AssignmentRole::User,
        board_name: None,
        assigned_by: None,
        assigned_at: now(),
    }
}

pub fn session(user: UserId, agent: &Agent) -> ChatSession {
    let t = now();
    let id = SessionId::new();
    ChatSession {
        id,
        user_id: user,
        agent_id: agent.id,
        gateway_id: agent.gateway_id,
        session_key: ChatSession::session_key_for(&agent.agent_key, id),
        status: SessionStatus::Active,
        last_seq: 0,
        last_message_at: None,
        created_at: t,
        updated_at: t,
        origin_client_msg_id: None,
    }
}

pub fn user_message(session: SessionId, content: &str) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        session_id: session,
        role: MessageRole::User,
        content: content.to_owned(),
        client_msg_id: Some(Uuid::now_v7()),
        run_id: None,
        created_at: now(),
    }
}

pub fn activity(org: OrgId, kind: &str) -> ActivityEvent {
    ActivityEvent {
        id: ActivityId::new(),
        organization_id: org,
        kind: kind.to_owned(),
        actor: "system".into(),
        target_type: "gateway".into(),
        target_id: GatewayId::new().to_string(),
        metadata: serde_json::json!({ "reason": "test", "n": 1 }),
        created_at: now(),
    }
}

/// Everything one chat needs, stored: an org, a user, a gateway, an agent, an assignment and a
/// session.
pub struct ChatWorld {
    pub org: Organization,
    pub user: User,
    pub gateway: Gateway,
    pub agent: Agent,
    pub session: ChatSession,
}

impl ChatWorld {
    pub async fn create(store: &Arc<dyn Store>) -> Self {
        let org = org();
        store.create_org(&org).await.unwrap();
        let user = user(org.id);
        store.create_user(&user).await.unwrap();
        let gateway = gateway(org.id);
        store.create_gateway(&gateway).await.unwrap();
        let agent = agent(gateway.id);
        store.create_agent(&agent).await.unwrap();
        store.create_assignment(&assignment(user.id, agent.id)).await.unwrap();
        let session = session(user.id, &agent);
        store.create_session(&session).await.unwrap();
        Self { org, user, gateway, agent, session }
    }
}
