//! User administration: admins act only inside their own organization,
//! and anything of another organization answers "not found", never "forbidden".

use std::sync::Arc;

use crate::auth::Principal;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::events::{Events, RelayEvent};
use crate::ids::{AgentId, SessionId, UserId};
use crate::model::{
    ActivityEvent, Agent, Assignment, AssignmentRole, ChatSession, Role, User, UserStatus,
};
use crate::store::{MessagePage, Page, Paged, Store};
use crate::validate;

/// An admin's change to a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAdminUpdate {
    /// New status, if any.
    pub status: Option<UserStatus>,
    /// New role, if any.
    pub role: Option<Role>,
}

/// An admin's request to assign an agent to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignAgent {
    /// The agent.
    pub agent_id: AgentId,
    /// As what (default `user`).
    pub role: AssignmentRole,
    /// Optional board, 1–64 characters.
    pub board_name: Option<String>,
}

/// Admin operations on users and assignments.
#[derive(Debug, Clone)]
pub struct AdminService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    events: Events,
}

pub(crate) fn require_admin(principal: &Principal) -> Result<()> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden("this needs the admin role".into()))
    }
}

impl AdminService {
    /// The service over `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, events: Events) -> Self {
        Self { store, clock, events }
    }

    async fn record(
        &self,
        admin: &Principal,
        kind: &str,
        target_type: &str,
        target: String,
        metadata: serde_json::Value,
    ) -> Result<()> {
        let actor = format!("user:{}", admin.user_id);
        let event = ActivityEvent::new(
            admin.organization_id,
            kind,
            actor,
            target_type,
            target,
            self.clock.now(),
        )
        .with_metadata(metadata);
        crate::events::record_activity(self.store.as_ref(), &self.events, event).await
    }

    /// A user of the admin's organization.
    pub async fn user(&self, admin: &Principal, id: UserId) -> Result<User> {
        require_admin(admin)?;
        self.store
            .get_user(id)
            .await?
            .filter(|u| u.organization_id == admin.organization_id)
            .ok_or(Error::NotFound("user"))
    }

    /// The organization's users, in creation order.
    pub async fn list_users(&self, admin: &Principal, page: Page) -> Result<Paged<User>> {
        require_admin(admin)?;
        Ok(self.store.list_users(admin.organization_id, page).await?)
    }

    /// Changes a user's status or role. Suspending or deleting revokes their refresh tokens
    /// and tells the relay to close their sockets. Admins cannot demote, suspend or delete
    /// themselves (so an organization never locks its last admin out by accident).
    pub async fn update_user(
        &self,
        admin: &Principal,
        id: UserId,
        update: UserAdminUpdate,
    ) -> Result<User> {
        let mut user = self.user(admin, id).await?;
        if update.status.is_none() && update.role.is_none() {
            return Err(Error::invalid("body", "give at least one of status, role"));
        }
        if id == admin.user_id
            && (update.status.is_some_and(|s| s != UserStatus::Active)
                || update.role.is_some_and(|r| r != Role::Admin))
        {
            return Err(Error::Conflict(
                "admins cannot demote, suspend or delete themselves".into(),
            ));
        }
        let blocked = update.status.is_some_and(|s| s != UserStatus::Active)
            && user.status == UserStatus::Active;
        let role_changed = update.role.is_some_and(|r| r != user.role);
        if let Some(status) = update.status {
            user.status = status;
        }
        if let Some(role) = update.role {
            user.role = role;
        }
        user.updated_at = self.clock.now();
        self.store.update_user(&user).await?;
        if blocked {
            self.store.revoke_user_refresh_tokens(user.id, None).await?;
            self.events.publish(RelayEvent::UserBlocked { user_id: user.id });
        } else if role_changed {
            self.events.publish(RelayEvent::RoleChanged { user_id: user.id });
        }
        let metadata = serde_json::json!({
            "status": update.status.map(|s| s.as_str()),
            "role": update.role.map(|r| r.as_str()),
        });
        self.record(admin, "user.updated", "user", user.id.to_string(), metadata).await?;
        Ok(user)
    }

    /// An agent of a gateway of the admin's organization.
    async fn agent(&self, admin: &Principal, id: AgentId) -> Result<Agent> {
        let agent = self.store.get_agent(id).await?.ok_or(Error::NotFound("agent"))?;
        let gateway =
            self.store.get_gateway(agent.gateway_id).await?.ok_or(Error::NotFound("agent"))?;
        if gateway.organization_id != admin.organization_id {
            return Err(Error::NotFound("agent"));
        }
        Ok(agent)
    }

    /// Assigns an agent to a user; both must be of the admin's organization.
    pub async fn assign(
        &self,
        admin: &Principal,
        user: UserId,
        request: AssignAgent,
    ) -> Result<Assignment> {
        if let Some(board) = &request.board_name {
            validate::display_text("board_name", board, 64)?;
        }
        let user = self.user(admin, user).await?;
        self.agent(admin, request.agent_id).await?;
        let actor = format!("user:{}", admin.user_id);
        self.create_assignment(&user, request, Some(admin.user_id), &actor).await
    }

    /// Assigns an agent to a user with no permission check (operators' tools): the agent must
    /// belong to a gateway of the user's organization. `actor` is recorded in the activity feed.
    pub async fn assign_as_operator(
        &self,
        user: UserId,
        request: AssignAgent,
        actor: &str,
    ) -> Result<Assignment> {
        if let Some(board) = &request.board_name {
            validate::display_text("board_name", board, 64)?;
        }
        let user = self.store.get_user(user).await?.ok_or(Error::NotFound("user"))?;
        let operator = Principal {
            user_id: user.id,
            organization_id: user.organization_id,
            role: Role::Admin,
        };
        self.agent(&operator, request.agent_id).await?;
        self.create_assignment(&user, request, None, actor).await
    }

    async fn create_assignment(
        &self,
        user: &User,
        request: AssignAgent,
        by: Option<UserId>,
        actor: &str,
    ) -> Result<Assignment> {
        let assignment = Assignment {
            user_id: user.id,
            agent_id: request.agent_id,
            role: request.role,
            board_name: request.board_name,
            assigned_by: by,
            assigned_at: self.clock.now(),
        };
        self.store.create_assignment(&assignment).await?;
        self.events.publish(RelayEvent::AssignmentsChanged {
            user_id: user.id,
            agent_id: request.agent_id,
        });
        let event = ActivityEvent::new(
            user.organization_id,
            "assignment.created",
            actor,
            "user",
            user.id,
            self.clock.now(),
        )
        .with_metadata(
            serde_json::json!({ "agent_id": request.agent_id, "role": assignment.role.as_str() }),
        );
        crate::events::record_activity(self.store.as_ref(), &self.events, event).await?;
        Ok(assignment)
    }

    /// A user's chat sessions, newest first (the user must be of the admin's organization).
    pub async fn user_sessions(
        &self,
        admin: &Principal,
        user: UserId,
        page: Page,
    ) -> Result<Paged<ChatSession>> {
        let user = self.user(admin, user).await?;
        Ok(self.store.list_user_sessions(user.id, page).await?)
    }

    /// A page of a session's messages, oldest first, before `before_seq` (the session's user
    /// must be of the admin's organization).
    pub async fn session_messages(
        &self,
        admin: &Principal,
        session: SessionId,
        before_seq: Option<u64>,
        limit: u32,
    ) -> Result<MessagePage> {
        require_admin(admin)?;
        let found = self.store.get_session(session).await?.ok_or(Error::NotFound("session"))?;
        self.user(admin, found.user_id).await.map_err(|_| Error::NotFound("session"))?;
        Ok(self.store.list_messages(session, before_seq, limit).await?)
    }

    /// Removes an assignment.
    pub async fn unassign(&self, admin: &Principal, user: UserId, agent: AgentId) -> Result<()> {
        let user = self.user(admin, user).await?;
        let agent = self.agent(admin, agent).await?;
        self.store.delete_assignment(user.id, agent.id).await?;
        self.events
            .publish(RelayEvent::AssignmentsChanged { user_id: user.id, agent_id: agent.id });
        let metadata = serde_json::json!({ "agent_id": agent.id });
        self.record(admin, "assignment.deleted", "user", user.id.to_string(), metadata).await?;
        Ok(())
    }
}
