//! Gateways, agents and assignments.

use std::collections::HashMap;

use async_trait::async_trait;
use mc_core::*;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStore;
use crate::codec::{RowExt, json, opt_ts, ts};
use crate::error::store_error;

fn gateway_from_row(row: &SqliteRow) -> StoreResult<Gateway> {
    Ok(Gateway {
        id: GatewayId::from_uuid(row.uuid("id")?),
        organization_id: OrgId::from_uuid(row.uuid("organization_id")?),
        name: row.text("name")?,
        url: row.opt_text("url")?,
        workspace_root: row.opt_text("workspace_root")?,
        version: row.opt_text("version")?,
        capabilities: row.json("capabilities")?,
        status: row.parsed("status")?,
        relay_token_hash: row.hash("relay_token_hash")?,
        last_heartbeat_at: row.opt_time("last_heartbeat_at")?,
        connection_info: row.json("connection_info")?,
        auto_registered: row.flag("auto_registered")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn agent_from_row(row: &SqliteRow) -> StoreResult<Agent> {
    Ok(Agent {
        id: AgentId::from_uuid(row.uuid("id")?),
        gateway_id: GatewayId::from_uuid(row.uuid("gateway_id")?),
        agent_key: row.text("agent_key")?,
        name: row.text("name")?,
        status: row.parsed("status")?,
        created_at: row.time("created_at")?,
    })
}

fn assignment_from_row(row: &SqliteRow) -> StoreResult<Assignment> {
    Ok(Assignment {
        user_id: UserId::from_uuid(row.uuid("user_id")?),
        agent_id: AgentId::from_uuid(row.uuid("agent_id")?),
        role: row.parsed("role")?,
        board_name: row.opt_text("board_name")?,
        assigned_by: row.opt_uuid("assigned_by")?.map(UserId::from_uuid),
        assigned_at: row.time("assigned_at")?,
    })
}

async fn fetch_gateway<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    id: GatewayId,
) -> StoreResult<Option<Gateway>> {
    sqlx::query("SELECT * FROM gateways WHERE id = ?1")
        .bind(id.as_uuid())
        .fetch_optional(executor)
        .await
        .map_err(|e| store_error(e, "gateway"))?
        .as_ref()
        .map(gateway_from_row)
        .transpose()
}

/// Inserts a gateway row (alone, or inside a caller's transaction).
pub(crate) async fn insert_gateway<'e, E>(executor: E, g: &Gateway) -> StoreResult<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO gateways (id, organization_id, name, url, workspace_root, version,
            capabilities, status, relay_token_hash, last_heartbeat_at, connection_info,
            auto_registered, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )
    .bind(g.id.as_uuid())
    .bind(g.organization_id.as_uuid())
    .bind(&g.name)
    .bind(&g.url)
    .bind(&g.workspace_root)
    .bind(&g.version)
    .bind(json(&g.capabilities)?)
    .bind(g.status.as_str())
    .bind(&g.relay_token_hash.as_bytes()[..])
    .bind(opt_ts(g.last_heartbeat_at))
    .bind(json(&g.connection_info)?)
    .bind(g.auto_registered)
    .bind(ts(g.created_at))
    .bind(ts(g.updated_at))
    .execute(executor)
    .await
    .map_err(|e| store_error(e, "organization"))?;
    Ok(())
}

#[async_trait]
impl GatewayStore for SqliteStore {
    async fn create_gateway(&self, g: &Gateway) -> StoreResult<()> {
        insert_gateway(&self.writer, g).await
    }

    async fn get_gateway(&self, id: GatewayId) -> StoreResult<Option<Gateway>> {
        fetch_gateway(&self.reader, id).await
    }

    async fn find_gateway_by_name(&self, org: OrgId, name: &str) -> StoreResult<Option<Gateway>> {
        sqlx::query("SELECT * FROM gateways WHERE organization_id = ?1 AND name = ?2")
            .bind(org.as_uuid())
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| store_error(e, "gateway"))?
            .as_ref()
            .map(gateway_from_row)
            .transpose()
    }

    async fn update_gateway(&self, g: &Gateway) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE gateways SET name = ?2, url = ?3, workspace_root = ?4, version = ?5,
                capabilities = ?6, status = ?7, relay_token_hash = ?8, last_heartbeat_at = ?9,
                connection_info = ?10, auto_registered = ?11, created_at = ?12, updated_at = ?13
             WHERE id = ?1",
        )
        .bind(g.id.as_uuid())
        .bind(&g.name)
        .bind(&g.url)
        .bind(&g.workspace_root)
        .bind(&g.version)
        .bind(json(&g.capabilities)?)
        .bind(g.status.as_str())
        .bind(&g.relay_token_hash.as_bytes()[..])
        .bind(opt_ts(g.last_heartbeat_at))
        .bind(json(&g.connection_info)?)
        .bind(g.auto_registered)
        .bind(ts(g.created_at))
        .bind(ts(g.updated_at))
        .execute(&self.writer)
        .await
        .map_err(|e| store_error(e, "gateway"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("gateway"));
        }
        Ok(())
    }

    async fn list_gateways(
        &self,
        org: OrgId,
        status: Option<GatewayStatus>,
        page: Page,
    ) -> StoreResult<Paged<Gateway>> {
        let rows = sqlx::query(
            "SELECT * FROM gateways
             WHERE organization_id = ?1 AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR id > ?3)
             ORDER BY id LIMIT ?4",
        )
        .bind(org.as_uuid())
        .bind(status.map(|s| s.as_str()))
        .bind(page.cursor)
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(|e| store_error(e, "gateway"))?;
        let items = rows.iter().map(gateway_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Paged::from_rows(items, page, |g| g.id.as_uuid()))
    }

    async fn count_gateways_by_status(&self) -> StoreResult<Vec<(GatewayStatus, u64)>> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM gateways GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(|e| store_error(e, "gateway"))?;
        rows.iter().map(|row| Ok((row.parsed("status")?, row.count("n")?))).collect()
    }

    async fn delete_gateway(&self, id: GatewayId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM gateways WHERE id = ?1")
            .bind(id.as_uuid())
            .execute(&self.writer)
            .await
            .map_err(|e| store_error(e, "gateway"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("gateway"));
        }
        Ok(())
    }

    async fn touch_gateway(
        &self,
        id: GatewayId,
        at: Timestamp,
        info: Option<&ConnectionInfo>,
    ) -> StoreResult<Gateway> {
        let info = info.map(json).transpose()?;
        sqlx::query(
            "UPDATE gateways SET last_heartbeat_at = ?2,
                connection_info = COALESCE(?3, connection_info)
             WHERE id = ?1 RETURNING *",
        )
        .bind(id.as_uuid())
        .bind(ts(at))
        .bind(info)
        .fetch_optional(&self.writer)
        .await
        .map_err(|e| store_error(e, "gateway"))?
        .as_ref()
        .map(gateway_from_row)
        .transpose()?
        .ok_or(StoreError::NotFound("gateway"))
    }

    async fn set_gateway_status(
        &self,
        id: GatewayId,
        status: GatewayStatus,
        at: Timestamp,
    ) -> StoreResult<StatusChange> {
        let mut tx = self.begin_write().await?;
        let current = fetch_gateway(&mut *tx, id).await?.ok_or(StoreError::NotFound("gateway"))?;
        if current.status == status {
            return Ok(StatusChange { previous: status, gateway: current });
        }
        let row = sqlx::query(
            "UPDATE gateways SET status = ?2, updated_at = ?3 WHERE id = ?1 RETURNING *",
        )
        .bind(id.as_uuid())
        .bind(status.as_str())
        .bind(ts(at))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| store_error(e, "gateway"))?;
        let gateway = gateway_from_row(&row)?;
        tx.commit().await.map_err(|e| store_error(e, "gateway"))?;
        Ok(StatusChange { previous: current.status, gateway })
    }

    async fn mark_stale_gateways_offline(
        &self,
        cutoff: Timestamp,
        at: Timestamp,
    ) -> StoreResult<Vec<StatusChange>> {
        let mut tx = self.begin_write().await?;
        let stale = sqlx::query(
            "SELECT id, status FROM gateways
             WHERE status IN ('online', 'error') AND COALESCE(last_heartbeat_at, updated_at) < ?1",
        )
        .bind(ts(cutoff))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| store_error(e, "gateway"))?;
        if stale.is_empty() {
            return Ok(vec![]);
        }
        let mut previous = HashMap::with_capacity(stale.len());
        for row in &stale {
            previous.insert(row.uuid("id")?, row.parsed::<GatewayStatus>("status")?);
        }
        let rows = sqlx::query(
            "UPDATE gateways SET status = 'offline', updated_at = ?2
             WHERE status IN ('online', 'error') AND COALESCE(last_heartbeat_at, updated_at) < ?1
             RETURNING *",
        )
        .bind(ts(cutoff))
        .bind(ts(at))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| store_error(e, "gateway"))?;
        tx.commit().await.map_err(|e| store_error(e, "gateway"))?;
        rows.iter()
            .map(|row| {
                let gateway = gateway_from_row(row)?;
                let previous =
                    previous.get(&gateway.id.as_uuid()).copied().unwrap_or(GatewayStatus::Online);
                Ok(StatusChange { previous, gateway })
            })
            .collect()
    }
}

async fn insert_agent<'e>(executor: impl sqlx::SqliteExecutor<'e>, a: &Agent) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO agents (id, gateway_id, agent_key, name, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(a.id.as_uuid())
    .bind(a.gateway_id.as_uuid())
    .bind(&a.agent_key)
    .bind(&a.name)
    .bind(a.status.as_str())
    .bind(ts(a.created_at))
    .execute(executor)
    .await
    .map_err(|e| store_error(e, "gateway"))?;
    Ok(())
}

async fn gateway_agents<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    gateway: GatewayId,
) -> StoreResult<Vec<Agent>> {
    let rows = sqlx::query("SELECT * FROM agents WHERE gateway_id = ?1 ORDER BY id")
        .bind(gateway.as_uuid())
        .fetch_all(executor)
        .await
        .map_err(|e| store_error(e, "agent"))?;
    rows.iter().map(agent_from_row).collect()
}

#[async_trait]
impl AgentStore for SqliteStore {
    async fn create_agent(&self, agent: &Agent) -> StoreResult<()> {
        insert_agent(&self.writer, agent).await
    }

    async fn get_agent(&self, id: AgentId) -> StoreResult<Option<Agent>> {
        sqlx::query("SELECT * FROM agents WHERE id = ?1")
            .bind(id.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| store_error(e, "agent"))?
            .as_ref()
            .map(agent_from_row)
            .transpose()
    }

    async fn sync_agents(
        &self,
        gateway: GatewayId,
        reports: &[AgentReport],
        at: Timestamp,
    ) -> StoreResult<AgentSync> {
        let mut tx = self.begin_write().await?;
        if fetch_gateway(&mut *tx, gateway).await?.is_none() {
            return Err(StoreError::NotFound("gateway"));
        }
        let existing = gateway_agents(&mut *tx, gateway).await?;
        let plan = plan_agent_sync(gateway, &existing, reports, at);
        for agent in &plan.insert {
            insert_agent(&mut *tx, agent).await?;
        }
        for (id, name, status) in &plan.update {
            sqlx::query("UPDATE agents SET name = ?2, status = ?3 WHERE id = ?1")
                .bind(id.as_uuid())
                .bind(name)
                .bind(status.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| store_error(e, "agent"))?;
        }
        let agents = gateway_agents(&mut *tx, gateway).await?;
        tx.commit().await.map_err(|e| store_error(e, "agent"))?;
        Ok(AgentSync { agents, ..plan.outcome })
    }

    async fn list_gateway_agents(&self, gateway: GatewayId) -> StoreResult<Vec<Agent>> {
        gateway_agents(&self.reader, gateway).await
    }

    async fn list_agents(&self, org: OrgId, page: Page) -> StoreResult<Paged<Agent>> {
        let rows = sqlx::query(
            "SELECT a.* FROM agents a JOIN gateways g ON g.id = a.gateway_id
             WHERE g.organization_id = ?1 AND (?2 IS NULL OR a.id > ?2)
             ORDER BY a.id LIMIT ?3",
        )
        .bind(org.as_uuid())
        .bind(page.cursor)
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(|e| store_error(e, "agent"))?;
        let items = rows.iter().map(agent_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Paged::from_rows(items, page, |a| a.id.as_uuid()))
    }
}

#[async_trait]
impl AssignmentStore for SqliteStore {
    async fn create_assignment(&self, a: &Assignment) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO assignments (user_id, agent_id, role, board_name, assigned_by, assigned_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(a.user_id.as_uuid())
        .bind(a.agent_id.as_uuid())
        .bind(a.role.as_str())
        .bind(&a.board_name)
        .bind(a.assigned_by.map(|u| u.as_uuid()))
        .bind(ts(a.assigned_at))
        .execute(&self.writer)
        .await
        .map_err(|e| store_error(e, "user or agent"))?;
        Ok(())
    }

    async fn get_assignment(
        &self,
        user: UserId,
        agent: AgentId,
    ) -> StoreResult<Option<Assignment>> {
        sqlx::query("SELECT * FROM assignments WHERE user_id = ?1 AND agent_id = ?2")
            .bind(user.as_uuid())
            .bind(agent.as_uuid())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| store_error(e, "assignment"))?
            .as_ref()
            .map(assignment_from_row)
            .transpose()
    }

    async fn delete_assignment(&self, user: UserId, agent: AgentId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM assignments WHERE user_id = ?1 AND agent_id = ?2")
            .bind(user.as_uuid())
            .bind(agent.as_uuid())
            .execute(&self.writer)
            .await
            .map_err(|e| store_error(e, "assignment"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("assignment"));
        }
        Ok(())
    }

    async fn list_user_assignments(&self, user: UserId) -> StoreResult<Vec<AssignedAgent>> {
        let rows = sqlx::query(
            "SELECT s.user_id, s.agent_id, s.role, s.board_name, s.assigned_by, s.assigned_at,
                a.id, a.gateway_id, a.agent_key, a.name, a.status, a.created_at,
                g.status AS gateway_status
             FROM assignments s
             JOIN agents a ON a.id = s.agent_id
             JOIN gateways g ON g.id = a.gateway_id
             WHERE s.user_id = ?1 ORDER BY a.id",
        )
        .bind(user.as_uuid())
        .fetch_all(&self.reader)
        .await
        .map_err(|e| store_error(e, "assignment"))?;
        rows.iter()
            .map(|row| {
                Ok(AssignedAgent {
                    assignment: assignment_from_row(row)?,
                    agent: agent_from_row(row)?,
                    gateway_status: row.parsed("gateway_status")?,
                })
            })
            .collect()
    }

    async fn list_gateway_assignments(&self, gateway: GatewayId) -> StoreResult<Vec<Assignment>> {
        let rows = sqlx::query(
            "SELECT s.* FROM assignments s JOIN agents a ON a.id = s.agent_id
             WHERE a.gateway_id = ?1 ORDER BY s.agent_id, s.user_id",
        )
        .bind(gateway.as_uuid())
        .fetch_all(&self.reader)
        .await
        .map_err(|e| store_error(e, "assignment"))?;
        rows.iter().map(assignment_from_row).collect()
    }
}
