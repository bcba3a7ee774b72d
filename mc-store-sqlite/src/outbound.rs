//! Gateways the relay dials, and instance-wide settings.

use async_trait::async_trait;
use mc_core::*;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStore;
use crate::codec::{RowExt, ts};
use crate::error::store_error;
use crate::registry::insert_gateway;

fn link_from_row(row: &SqliteRow) -> StoreResult<OutboundLink> {
    Ok(OutboundLink {
        gateway_id: GatewayId::from_uuid(row.uuid("gateway_id")?),
        url: row.text("url")?,
        token: row.opt_text("token")?,
        device_token: row.opt_text("device_token")?,
        pairing_request_id: row.opt_text("pairing_request_id")?,
        last_error: row.opt_text("last_error")?,
        updated_at: row.time("updated_at")?,
    })
}

#[async_trait]
impl OutboundStore for SqliteStore {
    async fn create_outbound_gateway(
        &self,
        gateway: &Gateway,
        link: &OutboundLink,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        insert_gateway(&mut *tx, gateway).await?;
        sqlx::query(
            "INSERT INTO outbound_links (gateway_id, url, token, device_token,
                pairing_request_id, last_error, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(gateway.id.as_uuid())
        .bind(&link.url)
        .bind(&link.token)
        .bind(&link.device_token)
        .bind(&link.pairing_request_id)
        .bind(&link.last_error)
        .bind(ts(link.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| store_error(e, "gateway"))?;
        tx.commit().await.map_err(|e| store_error(e, "gateway"))
    }

    async fn get_outbound_link(&self, gateway: GatewayId) -> StoreResult<Option<OutboundLink>> {
        sqlx::query("SELECT * FROM outbound_links WHERE gateway_id = ?1")
            .bind(gateway.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| store_error(e, "gateway"))?
            .as_ref()
            .map(link_from_row)
            .transpose()
    }

    async fn list_outbound_links(&self) -> StoreResult<Vec<OutboundLink>> {
        sqlx::query("SELECT * FROM outbound_links ORDER BY gateway_id")
            .fetch_all(&self.reader)
            .await
            .map_err(|e| store_error(e, "gateway"))?
            .iter()
            .map(link_from_row)
            .collect()
    }

    async fn count_outbound_gateways(&self, org: OrgId) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbound_links o JOIN gateways g ON g.id = o.gateway_id
             WHERE g.organization_id = ?1",
        )
        .bind(org.as_uuid())
        .fetch_one(&self.reader)
        .await
        .map_err(|e| store_error(e, "gateway"))?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn set_outbound_device_token(
        &self,
        gateway: GatewayId,
        device_token: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE outbound_links SET device_token = ?2, updated_at = ?3 WHERE gateway_id = ?1",
        )
        .bind(gateway.as_uuid())
        .bind(device_token)
        .bind(ts(at))
        .execute(&self.writer)
        .await
        .map_err(|e| store_error(e, "gateway"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("outbound gateway"));
        }
        Ok(())
    }

    async fn set_outbound_state(
        &self,
        gateway: GatewayId,
        pairing_request_id: Option<&str>,
        last_error: Option<&str>,
        at: Timestamp,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE outbound_links SET pairing_request_id = ?2, last_error = ?3, updated_at = ?4
             WHERE gateway_id = ?1",
        )
        .bind(gateway.as_uuid())
        .bind(pairing_request_id)
        .bind(last_error)
        .bind(ts(at))
        .execute(&self.writer)
        .await
        .map_err(|e| store_error(e, "gateway"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("outbound gateway"));
        }
        Ok(())
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> StoreResult<String> {
        sqlx::query(
            "INSERT INTO relay_settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = value RETURNING value",
        )
        .bind(key)
        .bind(value)
        .fetch_one(&self.writer)
        .await
        .map_err(|e| store_error(e, "setting"))?
        .text("value")
    }
}
