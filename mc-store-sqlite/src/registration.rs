//! Registration tokens: issued by admins, used (atomically) by gateways registering.

use async_trait::async_trait;
use mc_core::*;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStore;
use crate::codec::{RowExt, opt_ts, small, ts};
use crate::error::store_error;

fn registration_from_row(row: &SqliteRow) -> StoreResult<RegistrationToken> {
    Ok(RegistrationToken {
        id: RegistrationTokenId::from_uuid(row.uuid("id")?),
        organization_id: OrgId::from_uuid(row.uuid("organization_id")?),
        token_hash: row.hash("token_hash")?,
        label: row.text("label")?,
        expires_at: row.opt_time("expires_at")?,
        max_uses: row.opt_count("max_uses")?.map(|n| small("max_uses", n)).transpose()?,
        uses: small("uses", row.count("uses")?)?,
        revoked: row.flag("revoked")?,
        created_at: row.time("created_at")?,
    })
}

#[async_trait]
impl RegistrationTokenStore for SqliteStore {
    async fn create_registration_token(&self, t: &RegistrationToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO registration_tokens (id, organization_id, token_hash, label, expires_at,
                max_uses, uses, revoked, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(t.id.as_uuid())
        .bind(t.organization_id.as_uuid())
        .bind(&t.token_hash.as_bytes()[..])
        .bind(&t.label)
        .bind(opt_ts(t.expires_at))
        .bind(t.max_uses.map(i64::from))
        .bind(i64::from(t.uses))
        .bind(t.revoked)
        .bind(ts(t.created_at))
        .execute(&self.writer)
        .await
        .map_err(|e| store_error(e, "organization"))?;
        Ok(())
    }

    async fn get_registration_token(
        &self,
        id: RegistrationTokenId,
    ) -> StoreResult<Option<RegistrationToken>> {
        sqlx::query("SELECT * FROM registration_tokens WHERE id = ?1")
            .bind(id.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| store_error(e, "registration token"))?
            .as_ref()
            .map(registration_from_row)
            .transpose()
    }

    async fn list_registration_tokens(
        &self,
        org: OrgId,
        page: Page,
    ) -> StoreResult<Paged<RegistrationToken>> {
        let rows = sqlx::query(
            "SELECT * FROM registration_tokens
             WHERE organization_id = ?1 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3",
        )
        .bind(org.as_uuid())
        .bind(page.cursor)
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(|e| store_error(e, "registration token"))?;
        let items = rows.iter().map(registration_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Paged::from_rows(items, page, |t| t.id.as_uuid()))
    }

    async fn revoke_registration_token(&self, id: RegistrationTokenId) -> StoreResult<()> {
        let done = sqlx::query("UPDATE registration_tokens SET revoked = 1 WHERE id = ?1")
            .bind(id.as_uuid())
            .execute(&self.writer)
            .await
            .map_err(|e| store_error(e, "registration token"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("registration token"));
        }
        Ok(())
    }

    async fn consume_registration_token(
        &self,
        org: OrgId,
        hash: &SecretHash,
        at: Timestamp,
    ) -> StoreResult<ConsumeOutcome> {
        // Look first on a read connection: a token that does not exist, or cannot be used,
        // never takes the write lock (anyone can send `gw_reg_…` with any organization id).
        let seen = sqlx::query(
            "SELECT * FROM registration_tokens WHERE organization_id = ?1 AND token_hash = ?2",
        )
        .bind(org.as_uuid())
        .bind(&hash.as_bytes()[..])
        .fetch_optional(&self.reader)
        .await
        .map_err(|e| store_error(e, "registration token"))?;
        let Some(seen) = seen else {
            return Ok(ConsumeOutcome::Unknown);
        };
        let seen = registration_from_row(&seen)?;
        let usable = !seen.revoked
            && seen.expires_at.is_none_or(|e| e > at)
            && seen.max_uses.is_none_or(|max| seen.uses < max);
        if !usable {
            return Ok(ConsumeOutcome::refusal_for(&seen, at));
        }
        let mut tx = self.begin_write().await?;
        let consumed = sqlx::query(
            "UPDATE registration_tokens SET uses = uses + 1
             WHERE organization_id = ?1 AND token_hash = ?2 AND revoked = 0
               AND (expires_at IS NULL OR expires_at > ?3)
               AND (max_uses IS NULL OR uses < max_uses)
             RETURNING *",
        )
        .bind(org.as_uuid())
        .bind(&hash.as_bytes()[..])
        .bind(ts(at))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| store_error(e, "registration token"))?;
        if let Some(row) = consumed {
            let token = registration_from_row(&row)?;
            tx.commit().await.map_err(|e| store_error(e, "registration token"))?;
            return Ok(ConsumeOutcome::Consumed(token));
        }
        let row = sqlx::query(
            "SELECT * FROM registration_tokens WHERE organization_id = ?1 AND token_hash = ?2",
        )
        .bind(org.as_uuid())
        .bind(&hash.as_bytes()[..])
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| store_error(e, "registration token"))?;
        let Some(row) = row else {
            return Ok(ConsumeOutcome::Unknown);
        };
        Ok(ConsumeOutcome::refusal_for(&registration_from_row(&row)?, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Anyone can present a `gw_reg_…` token with any organization id: one that does not
    /// exist is answered from a read connection, even while another write holds the lock.
    #[tokio::test]
    async fn unknown_registration_tokens_never_wait_for_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("relay.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let now = chrono::Utc::now();
        let org = Organization { id: OrgId::new(), name: "acme".into(), created_at: now };
        store.create_org(&org).await.unwrap();
        let held = store.begin_write().await.unwrap();
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            store.consume_registration_token(org.id, &SecretHash::of("gw_reg_guess"), now),
        )
        .await
        .expect("answered without waiting for the write lock")
        .unwrap();
        assert_eq!(outcome, ConsumeOutcome::Unknown);
        drop(held);
    }
}
