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
#[derive(Debug, Serialize)]
pub(crate) struct TokenView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<UserView>,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u64,
}

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
