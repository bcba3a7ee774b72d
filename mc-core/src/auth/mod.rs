//! Authentication: who is calling, and the built-in way to find out.
//!
//! [`Authenticator`] is what the relay's sockets and HTTP routes use to turn a bearer token into
//! a [`Principal`]. The built-in one (feature `server`) verifies the relay's own JWTs; an
//! embedding team can plug in its own identity instead.

use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{OrgId, UserId};
use crate::model::Role;

#[cfg(feature = "server")]
mod config;
#[cfg(feature = "server")]
mod password;
#[cfg(feature = "server")]
pub(crate) mod refresh;
#[cfg(feature = "server")]
mod service;
#[cfg(feature = "server")]
mod tokens;

#[cfg(feature = "server")]
pub use config::{AuthConfig, JwtKey, MIN_SECRET_LEN, PasswordParams};
#[cfg(feature = "server")]
pub use password::Passwords;
#[cfg(feature = "server")]
pub use service::{
    AuthService, NewAccount, OrgSelector, PasswordChange, ProfileUpdate, Refreshed, Registered,
    SignedIn,
};
#[cfg(feature = "server")]
pub use tokens::{ACCESS_TYPE, AccessClaims, AccessTokens, IssuedAccessToken};

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// Who.
    pub user_id: UserId,
    /// In which organization.
    pub organization_id: OrgId,
    /// With which role.
    pub role: Role,
}

impl Principal {
    /// Whether the caller is an admin of their organization.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Turns a bearer token into a [`Principal`].
///
/// Errors: [`Error::Token`](crate::Error::Token) for a bad or expired token,
/// [`Error::Suspended`](crate::Error::Suspended) for a blocked account,
/// [`Error::Store`](crate::Error::Store) when the check could not be made.
#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Verifies `token` and says who presented it.
    async fn authenticate(&self, token: &str) -> Result<Principal>;
}
