//! The sign-in lockout: attempts reserved in the store before a password is checked and
//! settled after, counted by organization + username whether or not that user exists.

use std::time::Duration;

use chrono::TimeDelta;

use super::OrgSelector;
use super::{AuthService, delta};
use crate::error::{Error, Result};
use crate::model::{Organization, SecretHash, Timestamp};
use crate::store::{AttemptWindow, LoginAttempt};

/// Longest a sign-in waits for the attempts being checked before it (then it is locked out).
const ATTEMPT_WAIT: Duration = Duration::from_secs(10);
/// A pending attempt this old counts as failed (its checker died).
const STALE_ATTEMPT: Duration = Duration::from_secs(60);

impl AuthService {
    /// Who is signing in, for the lockout: the organization (its id, or the name given when
    /// there is no such organization) and the username ignoring case, hashed — the same for
    /// a user who exists and one who does not.
    pub(super) fn login_subject(
        org: Option<&Organization>,
        named: Option<&OrgSelector>,
        username: &str,
    ) -> SecretHash {
        let org_key = match (org, named) {
            (Some(org), _) => org.id.to_string(),
            (None, Some(OrgSelector::Id(id))) => id.to_string(),
            (None, Some(OrgSelector::Name(name))) => format!("name:{name}"),
            (None, None) => String::new(),
        };
        SecretHash::of(&format!("{org_key}\n{}", username.to_lowercase()))
    }

    /// Reserves an attempt for `subject` before a password is checked (so at most the
    /// threshold are checked at once, and none once that many failed), waiting while others
    /// are being checked; or [`Error::LockedOut`] after the same hashing work a check costs,
    /// so a locked account answers like any other. Settle the attempt with
    /// [`settle_attempt`](Self::settle_attempt).
    pub(super) async fn reserve_attempt(
        &self,
        subject: &SecretHash,
        password: &str,
    ) -> Result<uuid::Uuid> {
        let threshold = self.config.lockout_threshold.max(1);
        let give_up = tokio::time::Instant::now() + ATTEMPT_WAIT;
        let mut pause = Duration::from_millis(10);
        loop {
            let now = self.clock.now();
            let window = AttemptWindow {
                start: self.window_start(now),
                stale_before: now - delta(STALE_ATTEMPT),
                threshold,
            };
            match self.store.reserve_login_attempt(subject, now, window).await? {
                LoginAttempt::Reserved(id) => return Ok(id),
                LoginAttempt::Busy if tokio::time::Instant::now() < give_up => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                LoginAttempt::Busy => {
                    self.passwords.verify_dummy(password).await?;
                    return Err(Error::LockedOut { retry_after: Duration::from_secs(1) });
                }
                LoginAttempt::Refused(failures) => {
                    self.passwords.verify_dummy(password).await?;
                    let window = delta(self.config.lockout_window);
                    let oldest_counted = failures.len().saturating_sub(threshold as usize);
                    let unlock_at = failures.get(oldest_counted).map_or(now, |t| *t + window);
                    let retry_after = (unlock_at - now).to_std().unwrap_or(Duration::from_secs(1));
                    return Err(Error::LockedOut {
                        retry_after: retry_after.max(Duration::from_secs(1)),
                    });
                }
            }
        }
    }

    /// Settles a reserved attempt: a failure stays counted, a success clears the subject.
    pub(super) async fn settle_attempt(
        &self,
        subject: &SecretHash,
        attempt: uuid::Uuid,
        ok: bool,
    ) -> Result<()> {
        Ok(self.store.settle_login_attempt(subject, attempt, ok).await?)
    }

    /// The oldest failure time still inside the lockout window: a failure exactly one window
    /// ago no longer counts.
    fn window_start(&self, now: Timestamp) -> Timestamp {
        now - delta(self.config.lockout_window) + TimeDelta::microseconds(1)
    }
}
