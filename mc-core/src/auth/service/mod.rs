//! The built-in account service: register, sign in, refresh, sign out, profile; and the JWT
//! [`Authenticator`]. The lockout's attempts are in `lockout`, the requests and answers in
//! `requests`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;

use super::config::AuthConfig;
use super::password::Passwords;
use super::refresh::{REFRESH_PREFIX, SuccessorKey, random_secret};
use super::tokens::AccessTokens;
use super::{Authenticator, Principal};
use crate::clock::Clock;
use crate::error::{Error, Result, TokenRejection};
use crate::events::{Events, RelayEvent};
use crate::ids::{OrgId, RefreshTokenId, TokenFamilyId, UserId};
use crate::model::{
    ActivityEvent, Organization, RefreshToken, Role, SecretHash, Timestamp, User, UserStatus,
};
use crate::store::Store;
use crate::validate;

mod lockout;
mod requests;

pub use requests::{
    NewAccount, OrgSelector, PasswordChange, ProfileUpdate, Refreshed, Registered, SignedIn,
};

/// Accounts and sessions with the relay's own user store.
#[derive(Debug, Clone)]
pub struct AuthService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    events: Events,
    tokens: AccessTokens,
    passwords: Passwords,
    successors: SuccessorKey,
    config: AuthConfig,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn validate_optional(
    field: &str,
    value: &Option<String>,
    check: impl Fn(&str, &str) -> Result<()>,
) -> Result<()> {
    match value {
        Some(v) => check(field, v),
        None => Ok(()),
    }
}

fn check_display_name(field: &str, value: &str) -> Result<()> {
    validate::display_text(field, value, 64)
}

impl AuthService {
    /// The service over `store`, with time from `clock`, publishing on `events`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        events: Events,
        config: AuthConfig,
    ) -> Result<Self> {
        Ok(Self {
            tokens: AccessTokens::new(&config),
            passwords: Passwords::new(config.password, config.max_concurrent_hashes)?,
            successors: SuccessorKey::derive(&config.key.secret)?,
            store,
            clock,
            events,
            config,
        })
    }

    /// The password hasher (shared with user administration).
    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    /// The access-token signer and verifier.
    pub fn tokens(&self) -> &AccessTokens {
        &self.tokens
    }

    async fn resolve_org(&self, selector: Option<&OrgSelector>) -> Result<Option<Organization>> {
        let selector = match (selector, self.config.default_organization) {
            (Some(s), _) => s.clone(),
            (None, Some(id)) => OrgSelector::Id(id),
            // A server holding exactly one organization needs no name for it.
            (None, None) => {
                let orgs = self.store.list_orgs(crate::store::Page::first(2)).await?;
                return Ok(match orgs.items.as_slice() {
                    [only] => Some(only.clone()),
                    _ => None,
                });
            }
        };
        Ok(match selector {
            OrgSelector::Id(id) => self.store.get_org(id).await?,
            OrgSelector::Name(name) => self.store.find_org_by_name(&name).await?,
        })
    }

    async fn record(&self, org: OrgId, kind: &str, actor: &str, user: UserId) -> Result<()> {
        let event = ActivityEvent::new(org, kind, actor, "user", user, self.clock.now());
        crate::events::record_activity(self.store.as_ref(), &self.events, event).await
    }

    /// Issues an access token and a new refresh family for `user`.
    async fn start_session(&self, user: User, now: Timestamp) -> Result<SignedIn> {
        let family = TokenFamilyId::new();
        let refresh = random_secret(REFRESH_PREFIX)?;
        let stored = RefreshToken {
            id: RefreshTokenId::new(),
            user_id: user.id,
            family_id: family,
            token_hash: SecretHash::of(&refresh),
            expires_at: now + delta(self.config.refresh_ttl),
            used_at: None,
            revoked: false,
            replaced_by: None,
            created_at: now,
        };
        self.store.insert_refresh_token(&stored).await?;
        let access = self.tokens.issue(&principal_of(&user), Some(family), now)?;
        Ok(SignedIn {
            user,
            access_token: access.token,
            refresh_token: refresh,
            expires_in: access.expires_in,
        })
    }

    /// Creates an account. `by` is the caller if authenticated: an admin creates users in
    /// their own organization with any role; anyone else may only self-register as a member,
    /// and only when open registration is enabled.
    pub async fn register(
        &self,
        account: NewAccount,
        by: Option<&Principal>,
    ) -> Result<Registered> {
        match by.filter(|p| p.is_admin()) {
            Some(admin) => {
                if let Some(selector) = &account.organization {
                    let named = self.resolve_org(Some(selector)).await?;
                    if named.as_ref().map(|o| o.id) != Some(admin.organization_id) {
                        return Err(Error::invalid(
                            "organization",
                            "admins create users in their own organization; omit this field",
                        ));
                    }
                }
                let actor = format!("user:{}", admin.user_id);
                let user = self.create_account(admin.organization_id, account, &actor).await?;
                Ok(Registered::Created(user))
            }
            None => {
                if !self.config.open_registration {
                    return Err(Error::Forbidden(
                        "registration is closed; ask an admin of your organization for an account"
                            .into(),
                    ));
                }
                if account.role.is_some_and(|r| r != Role::Member) {
                    return Err(Error::Forbidden("only an admin can choose a role".into()));
                }
                let org = match self.resolve_org(account.organization.as_ref()).await? {
                    Some(org) => org.id,
                    None if account.organization.is_none() => {
                        return Err(Error::invalid("organization", "is required"));
                    }
                    None => return Err(Error::invalid("organization", "no such organization")),
                };
                let mut user = self.create_account(org, account, "self").await?;
                let now = self.clock.now();
                user.last_login_at = Some(now);
                self.store.update_user(&user).await?;
                Ok(Registered::SignedIn(self.start_session(user, now).await?))
            }
        }
    }

    /// Creates an account in `org` with no permission check (for operators' tools and
    /// bootstrapping; `account.organization` is ignored). Every field is validated; `actor`
    /// is recorded in the activity feed.
    pub async fn create_account(
        &self,
        org: OrgId,
        account: NewAccount,
        actor: &str,
    ) -> Result<User> {
        validate::username("username", &account.username)?;
        validate::password("password", &account.password)?;
        validate_optional("email", &account.email, validate::email)?;
        validate_optional("phone", &account.phone, validate::phone)?;
        validate_optional("display_name", &account.display_name, check_display_name)?;
        if self.store.get_org(org).await?.is_none() {
            return Err(Error::NotFound("organization"));
        }
        let now = self.clock.now();
        let user = User {
            id: UserId::new(),
            organization_id: org,
            username: account.username,
            email: account.email,
            phone: account.phone,
            password_hash: self.passwords.hash(&account.password).await?,
            display_name: account.display_name,
            avatar_url: None,
            role: account.role.unwrap_or(Role::Member),
            status: UserStatus::Active,
            last_login_at: None,
            created_at: now,
            updated_at: now,
        };
        self.store.create_user(&user).await?;
        self.record(org, "user.created", actor, user.id).await?;
        Ok(user)
    }

    /// Signs in. A wrong password, an unknown user and an unknown organization all give
    /// [`Error::InvalidCredentials`] after the same password-hashing work. After too many
    /// failures the account answers [`Error::LockedOut`] until they age out of the window.
    pub async fn login(
        &self,
        organization: Option<&OrgSelector>,
        username: &str,
        password: &str,
    ) -> Result<SignedIn> {
        let result = self.sign_in(organization, username, password).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Error::InvalidCredentials) => "invalid",
            Err(Error::LockedOut { .. }) => "locked_out",
            Err(Error::Suspended) => "suspended",
            Err(Error::Invalid { .. }) => "bad_request",
            Err(_) => "error",
        };
        metrics::counter!("mc_logins_total", "outcome" => outcome).increment(1);
        result
    }

    async fn sign_in(
        &self,
        organization: Option<&OrgSelector>,
        username: &str,
        password: &str,
    ) -> Result<SignedIn> {
        if username.is_empty() || username.len() > validate::USERNAME_LEN.1 {
            return Err(Error::invalid("username", "must be 1–64 characters long"));
        }
        if password.is_empty() || password.chars().count() > validate::PASSWORD_LEN.1 {
            return Err(Error::invalid("password", "must be 1–128 characters long"));
        }
        let org = self.resolve_org(organization).await?;
        if org.is_none() && organization.is_none() {
            return Err(Error::invalid("organization", "is required"));
        }
        // The attempt is reserved first, for known and unknown usernames alike: a failure
        // stays counted, a success clears the subject.
        let now = self.clock.now();
        let subject = Self::login_subject(org.as_ref(), organization, username);
        let attempt = self.reserve_attempt(&subject, password).await?;
        let user = match org {
            Some(org) => self.store.find_user_by_username(org.id, username).await?,
            None => None,
        };
        let Some(user) = user.filter(|u| u.status != UserStatus::Deleted) else {
            self.passwords.verify_dummy(password).await?;
            self.settle_attempt(&subject, attempt, false).await?;
            return Err(Error::InvalidCredentials);
        };
        let matches = self.passwords.verify(password, &user.password_hash).await;
        self.settle_attempt(&subject, attempt, matches.as_ref().is_ok_and(|m| *m)).await?;
        if !matches? {
            self.record(user.organization_id, "user.login_failed", "anonymous", user.id).await?;
            return Err(Error::InvalidCredentials);
        }
        if user.status == UserStatus::Suspended {
            return Err(Error::Suspended);
        }
        let mut user = user;
        user.last_login_at = Some(now);
        self.store.update_user(&user).await?;
        self.record(user.organization_id, "user.login", &format!("user:{}", user.id), user.id)
            .await?;
        self.start_session(user, now).await
    }

    /// Exchanges a refresh token for new tokens, rotating it. A token already used is reuse
    /// (RFC 9700 §4.14.2) and revokes its whole family, except within the overlap window,
    /// where the immediately previous token gets the same successor again.
    pub async fn refresh(&self, presented: &str) -> Result<Refreshed> {
        let invalid = Error::Token(TokenRejection::Invalid);
        if !presented.starts_with(REFRESH_PREFIX) || presented.len() > 128 {
            return Err(invalid);
        }
        let now = self.clock.now();
        let Some(token) = self.store.find_refresh_token(&SecretHash::of(presented)).await? else {
            return Err(invalid);
        };
        if token.revoked {
            return Err(invalid);
        }
        if token.expires_at <= now {
            return Err(Error::Token(TokenRejection::Expired));
        }
        let user = self
            .store
            .get_user(token.user_id)
            .await?
            .ok_or(Error::Token(TokenRejection::Invalid))?;
        if user.status != UserStatus::Active {
            return Err(Error::Suspended);
        }

        let successor_secret = self.successors.successor_of(presented)?;
        let mut token = token;
        if token.used_at.is_none() {
            let successor = RefreshToken {
                id: RefreshTokenId::new(),
                user_id: user.id,
                family_id: token.family_id,
                token_hash: SecretHash::of(&successor_secret),
                expires_at: now + delta(self.config.refresh_ttl),
                used_at: None,
                revoked: false,
                replaced_by: None,
                created_at: now,
            };
            if self.store.rotate_refresh_token(token.id, &successor, now).await? {
                return self.refreshed(&user, token.family_id, successor_secret, now);
            }
            // Another request rotated it first: judge it as a reuse below.
            token = self
                .store
                .get_refresh_token(token.id)
                .await?
                .ok_or(Error::Token(TokenRejection::Invalid))?;
        }

        let within_overlap =
            token.used_at.is_some_and(|used| now - used <= delta(self.config.refresh_overlap));
        if within_overlap
            && !token.revoked
            && let Some(next_id) = token.replaced_by
        {
            let next = self.store.get_refresh_token(next_id).await?;
            let is_live_successor = next.as_ref().is_some_and(|n| {
                !n.revoked
                    && n.used_at.is_none()
                    && n.token_hash == SecretHash::of(&successor_secret)
            });
            if is_live_successor {
                return self.refreshed(&user, token.family_id, successor_secret, now);
            }
        }
        let revoked = self.store.revoke_refresh_family(token.family_id).await?;
        tracing::warn!(user = %user.id, family = %token.family_id, revoked, "refresh token reuse: family revoked");
        self.record(
            user.organization_id,
            "user.refresh_reuse",
            &format!("user:{}", user.id),
            user.id,
        )
        .await?;
        Err(invalid)
    }

    fn refreshed(
        &self,
        user: &User,
        family: TokenFamilyId,
        refresh: String,
        now: Timestamp,
    ) -> Result<Refreshed> {
        let access = self.tokens.issue(&principal_of(user), Some(family), now)?;
        Ok(Refreshed {
            access_token: access.token,
            refresh_token: refresh,
            expires_in: access.expires_in,
        })
    }

    /// Signs out: revokes the refresh token's family and tells the relay to close the user's
    /// sockets. Unknown or already revoked tokens are not an error (logging out twice is fine).
    pub async fn logout(&self, presented: &str) -> Result<()> {
        if presented.len() > 128 {
            return Ok(());
        }
        if let Some(token) = self.store.find_refresh_token(&SecretHash::of(presented)).await? {
            self.store.revoke_refresh_family(token.family_id).await?;
            if let Some(user) = self.store.get_user(token.user_id).await? {
                self.record(
                    user.organization_id,
                    "user.logout",
                    &format!("user:{}", user.id),
                    user.id,
                )
                .await?;
            }
            self.events.publish(RelayEvent::LoggedOut { user_id: token.user_id });
        }
        Ok(())
    }

    /// The caller's account.
    pub async fn me(&self, principal: &Principal) -> Result<User> {
        self.store.get_user(principal.user_id).await?.ok_or(Error::NotFound("user"))
    }

    /// Changes the caller's profile. A password change needs the current password (wrong
    /// ones count towards lockout) and signs out every other session: refresh families other
    /// than `keep_family` (the caller's own) are revoked.
    pub async fn update_me(
        &self,
        principal: &Principal,
        keep_family: Option<TokenFamilyId>,
        update: ProfileUpdate,
    ) -> Result<User> {
        let set = |field: &str,
                   v: &Option<Option<String>>,
                   check: &dyn Fn(&str, &str) -> Result<()>| match v {
            Some(Some(value)) => check(field, value),
            _ => Ok(()),
        };
        set("display_name", &update.display_name, &check_display_name)?;
        set("email", &update.email, &validate::email)?;
        set("phone", &update.phone, &validate::phone)?;
        set("avatar_url", &update.avatar_url, &validate::http_url)?;
        if let Some(change) = &update.password {
            if change.current.is_empty() {
                return Err(Error::invalid(
                    "current_password",
                    "is required to change the password",
                ));
            }
            validate::password("password", &change.new)?;
        }

        let mut user = self.me(principal).await?;
        let now = self.clock.now();
        if let Some(change) = &update.password {
            // Wrong current passwords count against the same subject as sign-ins.
            let org = self.store.get_org(user.organization_id).await?;
            let subject = Self::login_subject(org.as_ref(), None, &user.username);
            let attempt = self.reserve_attempt(&subject, &change.current).await?;
            let matches = self.passwords.verify(&change.current, &user.password_hash).await;
            self.settle_attempt(&subject, attempt, matches.as_ref().is_ok_and(|m| *m)).await?;
            if !matches? {
                return Err(Error::invalid("current_password", "is not the current password"));
            }
            user.password_hash = self.passwords.hash(&change.new).await?;
        }
        if let Some(v) = update.display_name {
            user.display_name = v;
        }
        if let Some(v) = update.email {
            user.email = v;
        }
        if let Some(v) = update.phone {
            user.phone = v;
        }
        if let Some(v) = update.avatar_url {
            user.avatar_url = v;
        }
        user.updated_at = now;
        self.store.update_user(&user).await?;
        if update.password.is_some() {
            self.store.revoke_user_refresh_tokens(user.id, keep_family).await?;
            self.record(
                user.organization_id,
                "user.password_changed",
                &format!("user:{}", user.id),
                user.id,
            )
            .await?;
            self.events.publish(RelayEvent::PasswordChanged { user_id: user.id });
        }
        Ok(user)
    }

    /// Verifies an access token and checks the account is still active; returns the claims'
    /// principal (with the role as stored now) and the token's refresh family.
    pub async fn verify_access(&self, token: &str) -> Result<(Principal, Option<TokenFamilyId>)> {
        self.verify_access_until(token).await.map(|(principal, family, _)| (principal, family))
    }

    /// Like [`verify_access`](Self::verify_access), with the token's expiry (a socket
    /// authenticated with it closes then unless it is given a fresh one).
    pub async fn verify_access_until(
        &self,
        token: &str,
    ) -> Result<(Principal, Option<TokenFamilyId>, Timestamp)> {
        let claims = self.tokens.verify(token, self.clock.now()).map_err(Error::Token)?;
        let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0)
            .ok_or(Error::Token(TokenRejection::Invalid))?;
        let principal = claims.principal().ok_or(Error::Token(TokenRejection::Invalid))?;
        let user = self
            .store
            .get_user(principal.user_id)
            .await?
            .ok_or(Error::Token(TokenRejection::Invalid))?;
        if user.organization_id != principal.organization_id {
            return Err(Error::Token(TokenRejection::Invalid));
        }
        match user.status {
            UserStatus::Active => {}
            UserStatus::Suspended => return Err(Error::Suspended),
            UserStatus::Deleted => return Err(Error::Token(TokenRejection::Invalid)),
        }
        // Signed out (logout, refresh reuse, another session's password change): the session's
        // access tokens die with its refresh family, not at their expiry.
        if let Some(family) = claims.family()
            && !self.store.refresh_family_is_live(family).await?
        {
            return Err(Error::Token(TokenRejection::Invalid));
        }
        Ok((principal_of(&user), claims.family(), expires_at))
    }
}

fn principal_of(user: &User) -> Principal {
    Principal { user_id: user.id, organization_id: user.organization_id, role: user.role }
}

#[async_trait]
impl Authenticator for AuthService {
    async fn authenticate(&self, token: &str) -> Result<Principal> {
        self.verify_access(token).await.map(|(principal, _)| principal)
    }
}
