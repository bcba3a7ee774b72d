//! Settings of the built-in authentication.

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::ids::OrgId;

/// The shortest JWT secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// An HMAC key for access tokens and the id (`kid`) that names it in token headers.
#[derive(Clone)]
pub struct JwtKey {
    pub(crate) kid: String,
    pub(crate) secret: Vec<u8>,
}

impl JwtKey {
    /// A key from `secret` (at least 32 bytes). Its `kid` is derived from the secret unless set
    /// with [`with_kid`](Self::with_kid).
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::Config(format!(
                "the JWT secret must be at least {MIN_SECRET_LEN} bytes long (got {})",
                secret.len()
            )));
        }
        let digest = Sha256::digest(&secret);
        let kid = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { kid, secret })
    }

    /// Names the key explicitly (1–64 characters of `[A-Za-z0-9_.-]`).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self> {
        let kid = kid.into();
        let ok = !kid.is_empty()
            && kid.len() <= 64
            && kid.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(Error::Config(format!("invalid JWT key id {kid:?}")));
        }
        self.kid = kid;
        Ok(self)
    }

    /// The key id put in the `kid` header.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// Argon2id cost parameters. The defaults are OWASP's: 19 MiB, 2 passes, 1 lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

/// Settings of [`AuthService`](super::AuthService). Built with [`AuthConfig::new`] and chained
/// setters; every default is the safe value.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub(crate) key: JwtKey,
    pub(crate) previous_key: Option<JwtKey>,
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) access_ttl: Duration,
    pub(crate) leeway: Duration,
    pub(crate) refresh_ttl: Duration,
    pub(crate) refresh_overlap: Duration,
    pub(crate) lockout_threshold: u32,
    pub(crate) lockout_window: Duration,
    pub(crate) password: PasswordParams,
    pub(crate) max_concurrent_hashes: usize,
    pub(crate) open_registration: bool,
    pub(crate) default_organization: Option<OrgId>,
}

impl AuthConfig {
    /// Settings signing access tokens with `key`.
    pub fn new(key: JwtKey) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            key,
            previous_key: None,
            issuer: "mission-control-relay".into(),
            audience: "mission-control".into(),
            access_ttl: Duration::from_secs(15 * 60),
            leeway: Duration::from_secs(30),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_overlap: Duration::from_secs(10),
            lockout_threshold: 5,
            lockout_window: Duration::from_secs(15 * 60),
            password: PasswordParams::default(),
            // One core is left to message routing: measured, a storm hashing on every core of
            // a 2-core machine raised chat p99 2.5-3.9x, on all but one 1.6-1.9x (BENCHMARKS.md).
            max_concurrent_hashes: cores.saturating_sub(1).max(1),
            open_registration: false,
            default_organization: None,
        }
    }

    /// A key that still verifies (never signs) tokens, during key rotation.
    pub fn previous_key(mut self, key: JwtKey) -> Self {
        self.previous_key = Some(key);
        self
    }

    /// The `iss` claim issued and required (default `mission-control-relay`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// The `aud` claim issued and required (default `mission-control`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Access-token lifetime (default 15 min).
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = ttl;
        self
    }

    /// Clock skew tolerated when checking expiry (default 30 s, at most 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(Duration::from_secs(60));
        self
    }

    /// Refresh-token lifetime (default 30 days).
    pub fn refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_ttl = ttl;
        self
    }

    /// How long a just-rotated refresh token still yields the same successor (default 10 s).
    pub fn refresh_overlap(mut self, overlap: Duration) -> Self {
        self.refresh_overlap = overlap;
        self
    }

    /// Failed sign-ins within `window` that lock an account until they age out (default 5 in
    /// 15 min).
    pub fn lockout(mut self, threshold: u32, window: Duration) -> Self {
        self.lockout_threshold = threshold.max(1);
        self.lockout_window = window;
        self
    }

    /// Argon2id cost (default OWASP: 19 MiB, t=2, p=1).
    pub fn password_params(mut self, params: PasswordParams) -> Self {
        self.password = params;
        self
    }

    /// Password hashes computed at once; more wait (default: one fewer than the CPU cores, at
    /// least one, so a sign-in storm leaves a core to message routing).
    pub fn max_concurrent_hashes(mut self, n: usize) -> Self {
        self.max_concurrent_hashes = n.max(1);
        self
    }

    /// Whether anyone may create a member account with `register` (default no: only admins).
    pub fn open_registration(mut self, open: bool) -> Self {
        self.open_registration = open;
        self
    }

    /// The organization used when a sign-in or registration names none.
    pub fn default_organization(mut self, org: Option<OrgId>) -> Self {
        self.default_organization = org;
        self
    }

    /// The access-token lifetime.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused() {
        let err = JwtKey::new(vec![7u8; 31]).unwrap_err();
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
        let key = JwtKey::new(vec![7u8; 32]).unwrap();
        assert_eq!(key.kid().len(), 12);
        assert!(!format!("{key:?}").contains("7, 7"), "secret not in Debug");
        assert!(key.clone().with_kid("bad kid").is_err());
        assert_eq!(key.with_kid("2026-11").unwrap().kid(), "2026-11");
    }
}
