//! What callers hand the account service and what it answers. Secrets in them never show in
//! `Debug`.

use crate::ids::OrgId;
use crate::model::{Role, User};

/// How a request names an organization: by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgSelector {
    /// By id.
    Id(OrgId),
    /// By exact name.
    Name(String),
}

impl OrgSelector {
    /// An id if `text` parses as one, else a name.
    pub fn parse(text: &str) -> Self {
        text.parse().map(OrgSelector::Id).unwrap_or_else(|_| OrgSelector::Name(text.to_owned()))
    }
}

/// A signed-in user and their tokens.
#[derive(Clone)]
pub struct SignedIn {
    /// The account.
    pub user: User,
    /// A short-lived JWT for `Authorization: Bearer` and socket `auth`.
    pub access_token: String,
    /// An opaque token to get the next access token; rotated on every use.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// New tokens from a refresh.
#[derive(Clone, PartialEq, Eq)]
pub struct Refreshed {
    /// A new access token.
    pub access_token: String,
    /// The refresh token to use next time (the presented one is now used).
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// A request to create an account.
#[derive(Clone, Default)]
pub struct NewAccount {
    /// Where; defaults to the caller's organization (admins) or the configured default.
    pub organization: Option<OrgSelector>,
    /// Sign-in name.
    pub username: String,
    /// Password, 8–128 characters.
    pub password: String,
    /// Optional email.
    pub email: Option<String>,
    /// Optional phone.
    pub phone: Option<String>,
    /// Optional display name.
    pub display_name: Option<String>,
    /// Role; only an admin may ask for one other than `member`.
    pub role: Option<Role>,
}

/// What registering produced: for self-registration the new user is signed in.
#[derive(Debug, Clone)]
pub enum Registered {
    /// Created by an admin.
    Created(User),
    /// Self-registered and signed in.
    SignedIn(SignedIn),
}

/// A password change: the new one, proven by the current one.
#[derive(Clone)]
pub struct PasswordChange {
    /// The current password.
    pub current: String,
    /// The new password.
    pub new: String,
}

/// Changes to one's own profile. For the optional fields, `None` keeps the value,
/// `Some(None)` clears it, `Some(Some(v))` sets it.
#[derive(Clone, Default)]
pub struct ProfileUpdate {
    /// Display name.
    pub display_name: Option<Option<String>>,
    /// Email.
    pub email: Option<Option<String>>,
    /// Phone.
    pub phone: Option<Option<String>>,
    /// Avatar URL.
    pub avatar_url: Option<Option<String>>,
    /// New password.
    pub password: Option<PasswordChange>,
}

crate::debug_redacted!(SignedIn { user, expires_in } secret { access_token, refresh_token });
crate::debug_redacted!(Refreshed { expires_in } secret { access_token, refresh_token });
crate::debug_redacted!(NewAccount { organization, username, email, phone, display_name, role } secret { password });
crate::debug_redacted!(PasswordChange {} secret { current, new });
crate::debug_redacted!(ProfileUpdate { display_name, email, phone, avatar_url } secret { password });
