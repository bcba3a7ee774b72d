//! Storage of organizations, users, login failures and refresh tokens.

use async_trait::async_trait;

use super::{Page, Paged, StoreResult};
use crate::ids::{OrgId, RefreshTokenId, TokenFamilyId, UserId};
use crate::model::{Organization, RefreshToken, SecretHash, Timestamp, User};

/// Organizations.
#[async_trait]
pub trait OrgStore: Send + Sync {
    /// Stores a new organization. `Conflict(OrganizationName)` if the name is taken.
    async fn create_org(&self, org: &Organization) -> StoreResult<()>;
    /// The organization with this id.
    async fn get_org(&self, id: OrgId) -> StoreResult<Option<Organization>>;
    /// The organization with exactly this name.
    async fn find_org_by_name(&self, name: &str) -> StoreResult<Option<Organization>>;
    /// Organizations in id order.
    async fn list_orgs(&self, page: Page) -> StoreResult<Paged<Organization>>;
}

/// Users, and the failed sign-ins counted against them.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user. `Conflict(Username)` if the username (ignoring ASCII case) is taken
    /// in the organization; `NotFound` if the organization does not exist.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// The user with this id.
    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// The user of `org` with this username, ignoring ASCII case.
    async fn find_user_by_username(&self, org: OrgId, username: &str) -> StoreResult<Option<User>>;
    /// Replaces every field of the stored user with `user`'s (the id and organization stay).
    /// `NotFound` if it does not exist; `Conflict(Username)` if renamed onto a taken name.
    async fn update_user(&self, user: &User) -> StoreResult<()>;
    /// Users of `org` in id (creation) order.
    async fn list_users(&self, org: OrgId, page: Page) -> StoreResult<Paged<User>>;
    /// Deletes the user and everything that is theirs: assignments, sessions, messages,
    /// refresh tokens, login failures. `NotFound` if it does not exist.
    async fn delete_user(&self, id: UserId) -> StoreResult<()>;

    /// Reserves a sign-in attempt for `subject` (who is signing in: an organization and a
    /// username, hashed, whether that user exists or not) before its password is checked.
    /// Atomically, counting `subject`'s attempts since `window_start` — failures, and pending
    /// ones (reserved, not settled yet; a pending one older than `stale_before` counts as a
    /// failure, its checker having died):
    /// - `threshold` failures: [`LoginAttempt::Refused`] with their times, oldest first;
    /// - `threshold` failures and pending ones together: [`LoginAttempt::Busy`] (try again
    ///   once those are settled);
    /// - else a pending attempt at `at` is recorded: [`LoginAttempt::Reserved`] with its id.
    ///
    /// Nothing is written unless reserved. So of any number of concurrent attempts at most
    /// `threshold` are being checked at once, and none once `threshold` have failed.
    async fn reserve_login_attempt(
        &self,
        subject: &SecretHash,
        at: Timestamp,
        window: AttemptWindow,
    ) -> StoreResult<LoginAttempt>;
    /// Settles a reserved attempt: a failure stays counted; a success forgets every attempt of
    /// `subject`.
    async fn settle_login_attempt(
        &self,
        subject: &SecretHash,
        attempt: uuid::Uuid,
        succeeded: bool,
    ) -> StoreResult<()>;
}

/// What [`UserStore::reserve_login_attempt`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptWindow {
    /// Attempts before this no longer count.
    pub start: Timestamp,
    /// Pending attempts before this count as failures.
    pub stale_before: Timestamp,
    /// How many failures lock the subject out.
    pub threshold: u32,
}

/// The answer to [`UserStore::reserve_login_attempt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Recorded as pending, with this id: check the password, then settle it.
    Reserved(uuid::Uuid),
    /// As many attempts are being checked as may fail: try again shortly.
    Busy,
    /// Too many failures in the window: their times, oldest first.
    Refused(Vec<Timestamp>),
}

/// Refresh tokens and their rotation families.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// Stores a newly issued token. `Conflict(TokenHash)` if the hash exists;
    /// `NotFound` if the user does not exist.
    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;
    /// The token with this hash, whatever its state.
    async fn find_refresh_token(&self, hash: &SecretHash) -> StoreResult<Option<RefreshToken>>;
    /// The token with this id, whatever its state.
    async fn get_refresh_token(&self, id: RefreshTokenId) -> StoreResult<Option<RefreshToken>>;
    /// Atomically marks `old` used at `at` (pointing at `successor`) and stores `successor`,
    /// only if `old` is neither used nor revoked. Returns `false` (and writes nothing) if it
    /// was; of two concurrent rotations of one token exactly one returns `true`.
    async fn rotate_refresh_token(
        &self,
        old: RefreshTokenId,
        successor: &RefreshToken,
        at: Timestamp,
    ) -> StoreResult<bool>;
    /// Whether the family still has a token that is not revoked (a signed-in session): access
    /// tokens of a family that has none are refused.
    async fn refresh_family_is_live(&self, family: TokenFamilyId) -> StoreResult<bool>;
    /// Revokes every token of the family; returns how many were newly revoked.
    async fn revoke_refresh_family(&self, family: TokenFamilyId) -> StoreResult<u64>;
    /// Revokes every token of the user except those of `keep` (the caller's own family);
    /// returns how many were newly revoked.
    async fn revoke_user_refresh_tokens(
        &self,
        user: UserId,
        keep: Option<TokenFamilyId>,
    ) -> StoreResult<u64>;
    /// Deletes tokens that expired before `before`; returns how many.
    async fn delete_expired_refresh_tokens(&self, before: Timestamp) -> StoreResult<u64>;
}
