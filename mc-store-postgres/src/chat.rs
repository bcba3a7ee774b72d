//! Sessions, messages and the activity feed.

use async_trait::async_trait;
use mc_core::*;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

use crate::PgStore;
use crate::codec::{RowExt, int};
use crate::error::store_error;

fn session_from_row(row: &PgRow) -> StoreResult<ChatSession> {
    Ok(ChatSession {
        id: SessionId::from_uuid(row.col("id")?),
        user_id: UserId::from_uuid(row.col("user_id")?),
        agent_id: AgentId::from_uuid(row.col("agent_id")?),
        gateway_id: GatewayId::from_uuid(row.col("gateway_id")?),
        session_key: row.col("session_key")?,
        status: row.parsed("status")?,
        last_seq: row.count("last_seq")?,
        last_message_at: row.col("last_message_at")?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
        origin_client_msg_id: row.col("origin_client_msg_id")?,
    })
}

pub(crate) fn message_from_row(row: &PgRow) -> StoreResult<Message> {
    Ok(Message {
        id: MessageId::from_uuid(row.col("id")?),
        session_id: SessionId::from_uuid(row.col("session_id")?),
        seq: row.count("seq")?,
        role: row.parsed("role")?,
        content: row.col("content")?,
        client_msg_id: row.col("client_msg_id")?,
        run_id: row.col("run_id")?,
        created_at: row.col("created_at")?,
        delivery: row
            .col::<Option<String>>("delivery")?
            .map(|d| d.parse())
            .transpose()
            .map_err(|e: UnknownVariant| StoreError::corrupt(format!("column 'delivery': {e}")))?,
    })
}

/// Applies one delivery update (only forward: see `DeliveryUpdate`).
pub(crate) async fn set_delivery_in<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    update: &DeliveryUpdate,
) -> StoreResult<bool> {
    let changed = sqlx::query(
        "UPDATE messages SET delivery = $3
         WHERE session_id = $1 AND seq = $2 AND (CASE delivery
             WHEN 'stored' THEN 0 WHEN 'sent' THEN 1 WHEN 'started' THEN 2
             WHEN 'failed' THEN 3 WHEN 'answered' THEN 4 END) < $4",
    )
    .bind(update.session_id.as_uuid())
    .bind(int(update.seq))
    .bind(update.state.as_str())
    .bind(i32::from(update.state.rank()))
    .execute(executor)
    .await
    .map_err(|e| store_error(e, "message"))?;
    Ok(changed.rows_affected() > 0)
}

fn activity_from_row(row: &PgRow) -> StoreResult<ActivityEvent> {
    Ok(ActivityEvent {
        id: ActivityId::from_uuid(row.col("id")?),
        organization_id: OrgId::from_uuid(row.col("organization_id")?),
        kind: row.col("kind")?,
        actor: row.col("actor")?,
        target_type: row.col("target_type")?,
        target_id: row.col("target_id")?,
        metadata: row.json("metadata")?,
        created_at: row.col("created_at")?,
    })
}

/// The session's message with idempotency key `key`, if stored.
async fn message_by_key<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    session: SessionId,
    key: &IdempotencyKey,
) -> StoreResult<Option<Message>> {
    let query = match key {
        IdempotencyKey::Client(client_id) => {
            sqlx::query("SELECT * FROM messages WHERE session_id = $1 AND client_msg_id = $2")
                .bind(session.as_uuid())
                .bind(*client_id)
        }
        IdempotencyKey::Reply(run) => sqlx::query(
            "SELECT * FROM messages WHERE session_id = $1 AND run_id = $2 AND role = 'agent'",
        )
        .bind(session.as_uuid())
        .bind(run.as_str()),
    };
    query
        .fetch_optional(executor)
        .await
        .map_err(|e| store_error(e, "session"))?
        .as_ref()
        .map(message_from_row)
        .transpose()
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, s: &ChatSession) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO chat_sessions (id, user_id, agent_id, gateway_id, session_key, status,
                last_seq, last_message_at, created_at, updated_at, origin_client_msg_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(s.id.as_uuid())
        .bind(s.user_id.as_uuid())
        .bind(s.agent_id.as_uuid())
        .bind(s.gateway_id.as_uuid())
        .bind(&s.session_key)
        .bind(s.status.as_str())
        .bind(int(s.last_seq))
        .bind(s.last_message_at)
        .bind(s.created_at)
        .bind(s.updated_at)
        .bind(s.origin_client_msg_id)
        .execute(&self.pool)
        .await
        .map_err(|e| store_error(e, "user, agent or gateway"))?;
        Ok(())
    }

    async fn find_session_by_origin(
        &self,
        user: UserId,
        client_msg_id: uuid::Uuid,
    ) -> StoreResult<Option<ChatSession>> {
        sqlx::query("SELECT * FROM chat_sessions WHERE user_id = $1 AND origin_client_msg_id = $2")
            .bind(user.as_uuid())
            .bind(client_msg_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, "session"))?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn get_session(&self, id: SessionId) -> StoreResult<Option<ChatSession>> {
        sqlx::query("SELECT * FROM chat_sessions WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error(e, "session"))?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn list_user_sessions(
        &self,
        user: UserId,
        page: Page,
    ) -> StoreResult<Paged<ChatSession>> {
        let rows = sqlx::query(
            "SELECT * FROM chat_sessions WHERE user_id = $1 AND ($2::uuid IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(user.as_uuid())
        .bind(page.cursor)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(e, "session"))?;
        let items = rows.iter().map(session_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Paged::from_rows(items, page, |s| s.id.as_uuid()))
    }

    async fn set_session_status(
        &self,
        id: SessionId,
        status: SessionStatus,
        at: Timestamp,
    ) -> StoreResult<ChatSession> {
        sqlx::query(
            "UPDATE chat_sessions SET status = $2, updated_at = $3 WHERE id = $1 RETURNING *",
        )
        .bind(id.as_uuid())
        .bind(status.as_str())
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error(e, "session"))?
        .as_ref()
        .map(session_from_row)
        .transpose()?
        .ok_or(StoreError::NotFound("session"))
    }
}

#[async_trait]
impl MessageStore for PgStore {
    fn write_lanes(&self) -> usize {
        self.write_lanes
    }

    async fn append_message(&self, m: &NewMessage) -> StoreResult<Appended> {
        let mut tx = self.begin().await?;
        // Bumping the session's seq takes its row lock first, so appends to one session run one
        // at a time; the duplicate check after it then sees every committed earlier append.
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE chat_sessions SET last_seq = last_seq + 1, last_message_at = $2
             WHERE id = $1 RETURNING last_seq",
        )
        .bind(m.session_id.as_uuid())
        .bind(m.created_at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| store_error(e, "session"))?;
        let seq = seq.ok_or(StoreError::NotFound("session"))?;
        if let Some(key) = m.idempotency_key()
            && let Some(existing) = message_by_key(&mut *tx, m.session_id, &key).await?
        {
            // Dropping the transaction rolls the seq bump back.
            return Ok(Appended::Existing(existing));
        }
        sqlx::query(
            "INSERT INTO messages (id, session_id, seq, role, content, client_msg_id, run_id,
                created_at, delivery)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(m.id.as_uuid())
        .bind(m.session_id.as_uuid())
        .bind(seq)
        .bind(m.role.as_str())
        .bind(&m.content)
        .bind(m.client_msg_id)
        .bind(&m.run_id)
        .bind(m.created_at)
        .bind(m.initial_delivery().map(|d| d.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(|e| store_error(e, "session"))?;
        tx.commit().await.map_err(|e| store_error(e, "session"))?;
        Ok(Appended::New(m.stored_at(u64::try_from(seq).unwrap_or_default())))
    }

    async fn write_batch(
        &self,
        messages: &[NewMessage],
        deliveries: &[DeliveryUpdate],
    ) -> Vec<StoreResult<Appended>> {
        // One round trip whatever the batch holds, a single message included.
        if !messages.is_empty() || !deliveries.is_empty() {
            match crate::batch::write_batch(&self.pool, messages, deliveries).await {
                Ok(results) => return results,
                Err(e) => {
                    tracing::warn!(error = %e, "batched write failed; writing one by one");
                }
            }
        }
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            results.push(self.append_message(message).await);
        }
        for update in deliveries {
            if let Err(err) = set_delivery_in(&self.pool, update).await {
                tracing::warn!(error = %err, "cannot record a delivery state");
            }
        }
        results
    }

    async fn set_delivery(&self, update: DeliveryUpdate) -> StoreResult<bool> {
        set_delivery_in(&self.pool, &update).await
    }

    async fn pending_deliveries(
        &self,
        gateway: Option<GatewayId>,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<PendingDelivery>> {
        let rows = sqlx::query(
            "SELECT m.* FROM messages m JOIN chat_sessions s ON s.id = m.session_id
             WHERE m.delivery IN ('stored', 'sent', 'started')
               AND ($1::uuid IS NULL OR s.gateway_id = $1)
               AND ($2::uuid IS NULL OR m.id > $2)
             ORDER BY m.id LIMIT $3",
        )
        .bind(gateway.map(|g| g.as_uuid()))
        .bind(after.map(|m| m.as_uuid()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(e, "message"))?;
        let messages = rows.iter().map(message_from_row).collect::<StoreResult<Vec<_>>>()?;
        PendingDelivery::with_sessions(messages, self).await
    }

    async fn list_messages(
        &self,
        session: SessionId,
        before_seq: Option<u64>,
        limit: u32,
    ) -> StoreResult<MessagePage> {
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        let rows = sqlx::query(
            "SELECT * FROM messages WHERE session_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(session.as_uuid())
        .bind(before_seq.map_or(i64::MAX, int))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(e, "session"))?;
        let has_more = rows.len() > limit as usize;
        let mut messages = rows
            .iter()
            .take(limit as usize)
            .map(message_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        messages.reverse();
        Ok(MessagePage { messages, has_more })
    }

    async fn find_user_message(
        &self,
        user: UserId,
        client_msg_id: uuid::Uuid,
    ) -> StoreResult<Option<Message>> {
        sqlx::query(
            "SELECT m.* FROM messages m JOIN chat_sessions s ON s.id = m.session_id
             WHERE m.client_msg_id = $1 AND s.user_id = $2 ORDER BY m.id LIMIT 1",
        )
        .bind(client_msg_id)
        .bind(user.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error(e, "message"))?
        .as_ref()
        .map(message_from_row)
        .transpose()
    }

    async fn messages_after(
        &self,
        session: SessionId,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT * FROM messages WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(session.as_uuid())
        .bind(int(after_seq))
        .bind(i64::from(limit.clamp(1, MAX_PAGE_LIMIT)))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(e, "session"))?;
        rows.iter().map(message_from_row).collect()
    }
}

#[async_trait]
impl ActivityStore for PgStore {
    async fn record_activity(&self, e: &ActivityEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO activity_events (id, organization_id, kind, actor, target_type, target_id,
                metadata, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(e.id.as_uuid())
        .bind(e.organization_id.as_uuid())
        .bind(&e.kind)
        .bind(&e.actor)
        .bind(&e.target_type)
        .bind(&e.target_id)
        .bind(Json(&e.metadata))
        .bind(e.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| store_error(e, "organization"))?;
        Ok(())
    }

    async fn list_activity(&self, org: OrgId, page: Page) -> StoreResult<Paged<ActivityEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM activity_events
             WHERE organization_id = $1 AND ($2::uuid IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(org.as_uuid())
        .bind(page.cursor)
        .bind(page.fetch_limit())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| store_error(e, "activity"))?;
        let items = rows.iter().map(activity_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Paged::from_rows(items, page, |e| e.id.as_uuid()))
    }
}
