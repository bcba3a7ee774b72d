//! Organizations, users, login failures and refresh tokens.

use async_trait::async_trait;
use mc_core::*;
use sqlx::postgres::PgRow;

use crate::PgStore;
use crate::codec::RowExt;
use crate::error::store_error;

fn org_from_row(row: &PgRow) -> StoreResult<Organization> {
    Ok(Organization {
        id: OrgId::from_uuid(row.col("id")?),
        name: row.col("name")?,
        created_at: row.col("created_at")?,
    })
}

fn user_from_row(row: &PgRow) -> StoreResult<User> {
    Ok(User {
        id: UserId::from_uuid(row.col("id")?),
        organization_id: OrgId::from_uuid(row.col("organization_id")?),
        username: row.col("username")?,
        email: row.col("email")?,
        phone: row.col("phone")?,
        password_hash: row.col("password_hash")?,
        display_name: row.col("display_name")?,
        avatar_url: row.col("avatar_url")?,
        role: row.parsed("role")?,
        status: row.parsed("status")?,
        last_login_at: row.col("last_login_at")?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
    })
}

fn refresh_from_row(row: &PgRow) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        id: RefreshTokenId::from_uuid(row.col("id")?),
        user_id: UserId::from_uuid(row.col("user_id")?),
        family_id: TokenFamilyId::from_uuid(row.col("family_id")?),
        token_hash: row.hash("token_hash")?,
        expires_at: row.col("expires_at")?,
        used_at: row.col("used_at")?,
        revoked: row.col("revoked")?,
        replaced_by: row.col::<Option<uuid::Uuid>>("replaced_by")?.map(RefreshTokenId::from_uuid),
        created_at: row.col("created_at")?,
    })
}

#[async_trait]
impl OrgStore for PgStore {
    async fn create_org(&self, org: &Organization) -> StoreResult<()> {
        sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(org.id.as_uuid())
            .bind(&org.name)
            .bind(org.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| store_error(e, "organization"))?;
        Ok(())
    }

    async fn get_org(&self, id: OrgId) -> StoreResult<Option<Organization>> {
        sqlx::query("SELECT * FROM organizations WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, "organization"))?
            .as_ref()
            .map(org_from_row)
            .transpose()
    }

    async fn find_org_by_name(&self, name: &str) -> StoreResult<Option<Organization>> {
        sqlx::query("SELECT * FROM organizations WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, "organization"))?
            .as_ref()
            .map(org_from_row)
            .transpose()
    }

    async fn list_orgs(&self, page: Page) -> StoreResult<Paged<Organization>> {
        let rows = sqlx::query(
            "SELECT * FROM organizations WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(page.cursor)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(e, "organization"))?;
        let items = rows.iter().map(org_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Paged::from_rows(items, page, |o| o.id.as_uuid()))
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, u: &User) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, organization_id, username, email, phone, password_hash,
                display_name, avatar_url, role, status, last_login_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(u.id.as_uuid())
        .bind(u.organization_id.as_uuid())
        .bind(&u.username)
        .bind(&u.email)
        .bind(&u.phone)
        .bind(&u.password_hash)
        .bind(&u.display_name)
        .bind(&u.avatar_url)
        .bind(u.role.as_str())
        .bind(u.status.as_str())
        .bind(u.last_login_at)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| store_error(e, "organization"))?;
        Ok(())
    }

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, "user"))?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn find_user_by_username(&self, org: OrgId, username: &str) -> StoreResult<Option<User>> {
        sqlx::query(
            "SELECT * FROM users WHERE organization_id = $1 AND lower(username) = lower($2)",
        )
        .bind(org.as_uuid())
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error(e, "user"))?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn update_user(&self, u: &User) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE users SET username = $2, email = $3, phone = $4, password_hash = $5,
                display_name = $6, avatar_url = $7, role = $8, status = $9, last_login_at = $10,
                created_at = $11, updated_at = $12
             WHERE id = $1",
        )
        .bind(u.id.as_uuid())
        .bind(&u.username)
        .bind(&u.email)
        .bind(&u.phone)
        .bind(&u.password_hash)
        .bind(&u.display_name)
        .bind(&u.avatar_url)
        .bind(u.role.as_str())
        .bind(u.status.as_str())
        .bind(u.last_login_at)
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| store_error(e, "user"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    async fn list_users(&self, org: OrgId, page: Page) -> StoreResult<Paged<User>> {
        let rows = sqlx::query(
            "SELECT * FROM users WHERE organization_id = $1 AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id LIMIT $3",
        )
        .bind(org.as_uuid())
        .bind(page.cursor)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(e, "user"))?;
        let items = rows.iter().map(user_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Paged::from_rows(items, page, |u| u.id.as_uuid()))
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(|e| store_error(e, "user"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    async fn reserve_login_attempt(
        &self,
        subject: &SecretHash,
        at: Timestamp,
        window: AttemptWindow,
    ) -> StoreResult<LoginAttempt> {
        let mut tx = self.begin().await?;
        // Attempts for one subject queue on a transaction-scoped advisory lock, so the count
        // and the insert of two concurrent attempts cannot interleave.
        let key = i64::from_be_bytes(subject.as_bytes()[..8].try_into().unwrap_or([0; 8]));
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(|e| store_error(e, "login attempt"))?;
        // Attempts past every window go, a few per reservation (no sweeper needed).
        sqlx::query(
            "DELETE FROM login_attempts WHERE id IN
                (SELECT id FROM login_attempts WHERE at < $1 LIMIT 16)",
        )
        .bind(window.start)
        .execute(&mut *tx)
        .await
        .map_err(|e| store_error(e, "login attempt"))?;
        let rows: Vec<(Timestamp, bool)> = sqlx::query_as(
            "SELECT at, pending FROM login_attempts WHERE subject = $1 AND at >= $2 ORDER BY at",
        )
        .bind(&subject.as_bytes()[..])
        .bind(window.start)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| store_error(e, "login attempt"))?;
        let mut failures = Vec::new();
        let mut pending = 0usize;
        for (at, is_pending) in rows {
            if is_pending && at >= window.stale_before {
                pending += 1;
            } else {
                failures.push(at);
            }
        }
        let threshold = window.threshold as usize;
        if failures.len() >= threshold {
            return Ok(LoginAttempt::Refused(failures));
        }
        if failures.len() + pending >= threshold {
            return Ok(LoginAttempt::Busy);
        }
        let id = uuid::Uuid::now_v7();
        sqlx::query(
            "INSERT INTO login_attempts (id, subject, at, pending) VALUES ($1, $2, $3, TRUE)",
        )
        .bind(id)
        .bind(&subject.as_bytes()[..])
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(|e| store_error(e, "login attempt"))?;
        tx.commit().await.map_err(|e| store_error(e, "login attempt"))?;
        Ok(LoginAttempt::Reserved(id))
    }

    async fn settle_login_attempt(
        &self,
        subject: &SecretHash,
        attempt: uuid::Uuid,
        succeeded: bool,
    ) -> StoreResult<()> {
        let query = if succeeded {
            // Its own attempt and the failures; others still being checked settle themselves.
            sqlx::query(
                "DELETE FROM login_attempts WHERE subject = $1 AND (NOT pending OR id = $2)",
            )
            .bind(&subject.as_bytes()[..])
            .bind(attempt)
        } else {
            sqlx::query("UPDATE login_attempts SET pending = FALSE WHERE id = $1").bind(attempt)
        };
        query.execute(&self.pool).await.map_err(|e| store_error(e, "login attempt"))?;
        Ok(())
    }
}

#[async_trait]
impl RefreshTokenStore for PgStore {
    async fn insert_refresh_token(&self, t: &RefreshToken) -> StoreResult<()> {
        insert_refresh(&self.pool, t).await
    }

    async fn find_refresh_token(&self, hash: &SecretHash) -> StoreResult<Option<RefreshToken>> {
        sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1")
            .bind(&hash.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, "refresh token"))?
            .as_ref()
            .map(refresh_from_row)
            .transpose()
    }

    async fn get_refresh_token(&self, id: RefreshTokenId) -> StoreResult<Option<RefreshToken>> {
        sqlx::query("SELECT * FROM refresh_tokens WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, "refresh token"))?
            .as_ref()
            .map(refresh_from_row)
            .transpose()
    }

    async fn rotate_refresh_token(
        &self,
        old: RefreshTokenId,
        successor: &RefreshToken,
        at: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // The row lock makes a concurrent rotation wait, then re-check `used_at` and lose.
        let marked = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2, replaced_by = $3
             WHERE id = $1 AND used_at IS NULL AND NOT revoked",
        )
        .bind(old.as_uuid())
        .bind(at)
        .bind(successor.id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(|e| store_error(e, "refresh token"))?;
        if marked.rows_affected() == 0 {
            return Ok(false);
        }
        insert_refresh(&mut *tx, successor).await?;
        tx.commit().await.map_err(|e| store_error(e, "refresh token"))?;
        Ok(true)
    }

    async fn refresh_family_is_live(&self, family: TokenFamilyId) -> StoreResult<bool> {
        let (live,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = $1 AND NOT revoked) AS live")
            .bind(family.as_uuid())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| store_error(e, "refresh token"))?;
        Ok(live)
    }

    async fn revoke_refresh_family(&self, family: TokenFamilyId) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked = TRUE WHERE family_id = $1 AND NOT revoked",
        )
        .bind(family.as_uuid())
        .execute(&self.pool)
        .await
        .map_err(|e| store_error(e, "refresh token"))?;
        Ok(done.rows_affected())
    }

    async fn revoke_user_refresh_tokens(
        &self,
        user: UserId,
        keep: Option<TokenFamilyId>,
    ) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked = TRUE
             WHERE user_id = $1 AND NOT revoked AND ($2::uuid IS NULL OR family_id <> $2)",
        )
        .bind(user.as_uuid())
        .bind(keep.map(|f| f.as_uuid()))
        .execute(&self.pool)
        .await
        .map_err(|e| store_error(e, "refresh token"))?;
        Ok(done.rows_affected())
    }

    async fn delete_expired_refresh_tokens(&self, before: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(|e| store_error(e, "refresh token"))?;
        Ok(done.rows_affected())
    }
}

async fn insert_refresh<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    t: &RefreshToken,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at, used_at,
            revoked, replaced_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(t.id.as_uuid())
    .bind(t.user_id.as_uuid())
    .bind(t.family_id.as_uuid())
    .bind(&t.token_hash.as_bytes()[..])
    .bind(t.expires_at)
    .bind(t.used_at)
    .bind(t.revoked)
    .bind(t.replaced_by.map(|r| r.as_uuid()))
    .bind(t.created_at)
    .execute(executor)
    .await
    .map_err(|e| store_error(e, "user"))?;
    Ok(())
}
