//! Organizations, users and their refresh tokens.

use serde::{Deserialize, Serialize};

use super::{SecretHash, Timestamp, string_enum};
use crate::ids::{OrgId, RefreshTokenId, TokenFamilyId, UserId};

/// A tenant. Every other entity belongs to exactly one organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Its id.
    pub id: OrgId,
    /// Display name, unique across the deployment.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

string_enum!(
    /// What a user may do.
    Role, "role" {
        /// An end user: chats with the agents assigned to them.
        Member => "member",
        /// Manages users, gateways and assignments of their own organization.
        Admin => "admin",
    }
);

string_enum!(
    /// Whether a user may sign in.
    UserStatus, "user status" {
        /// May sign in and chat.
        Active => "active",
        /// Blocked by an admin: tokens stop working, sockets close.
        Suspended => "suspended",
        /// Removed; kept only so history still names its author.
        Deleted => "deleted",
    }
);

/// An account. `username` is unique per organization, compared without regard to ASCII case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The organization it belongs to.
    pub organization_id: OrgId,
    /// Sign-in name, 3–64 of `[A-Za-z0-9_.-]`.
    pub username: String,
    /// Optional contact address.
    pub email: Option<String>,
    /// Optional phone number.
    pub phone: Option<String>,
    /// Argon2id PHC string. Never serialized to clients by the HTTP layer.
    pub password_hash: String,
    /// Optional name shown instead of the username.
    pub display_name: Option<String>,
    /// Optional picture.
    pub avatar_url: Option<String>,
    /// What the user may do.
    pub role: Role,
    /// Whether the user may sign in.
    pub status: UserStatus,
    /// The last successful sign-in.
    pub last_login_at: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// One refresh token of a rotation family (RFC 9700 §4.14.2).
///
/// Each use rotates it: `used_at` and `replaced_by` are set and a successor with the same
/// `family_id` is stored. Presenting a used token outside the overlap window revokes the family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// Its id.
    pub id: RefreshTokenId,
    /// Whose token it is.
    pub user_id: UserId,
    /// Every token rotated from the same sign-in shares this.
    pub family_id: TokenFamilyId,
    /// SHA-256 of the opaque token.
    pub token_hash: SecretHash,
    /// After this it is refused.
    pub expires_at: Timestamp,
    /// When it was exchanged for its successor.
    pub used_at: Option<Timestamp>,
    /// Set when its family was revoked (logout, reuse, password change).
    pub revoked: bool,
    /// The token it was rotated into.
    pub replaced_by: Option<RefreshTokenId>,
    /// When it was issued.
    pub created_at: Timestamp,
}
