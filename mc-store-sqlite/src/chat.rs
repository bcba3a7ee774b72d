//! Sessions, messages and the activity feed.

use async_trait::async_trait;
use mc_core::*;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStore;
use crate::codec::{RowExt, int, json, opt_ts, ts};
use crate::error::{copy_error, store_error};

fn session_from_row(row: &SqliteRow) -> StoreResult<ChatSession> {
    Ok(ChatSession {
        id: SessionId::from_uuid(row.uuid("id")?),
        user_id: UserId::from_uuid(row.uuid("user_id")?),
        agent_id: AgentId::from_uuid(row.uuid("agent_id")?),
        gateway_id: GatewayId::from_uuid(row.uuid("gateway_id")?),
        session_key: row.text("session_key")?,
        status: row.parsed("status")?,
        last_seq: row.count("last_seq")?,
        last_message_at: row.opt_time("last_message_at")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        origin_client_msg_id: row.opt_uuid("origin_client_msg_id")?,
    })
}

pub(crate) fn message_from_row(row: &SqliteRow) -> StoreResult<Message> {
    Ok(Message {
        id: MessageId::from_uuid(row.uuid("id")?),
        session_id: SessionId::from_uuid(row.uuid("session_id")?),
        seq: row.count("seq")?,
        role: row.parsed("role")?,
        content: row.text("content")?,
        client_msg_id: row.opt_uuid("client_msg_id")?,
        run_id: row.opt_text("run_id")?,
        created_at: row.time("created_at")?,
        delivery: row
            .opt_text("delivery")?
            .map(|d| d.parse())
            .transpose()
            .map_err(|e: UnknownVariant| StoreError::corrupt(format!("column 'delivery': {e}")))?,
    })
}

fn activity_from_row(row: &SqliteRow) -> StoreResult<ActivityEvent> {
    Ok(ActivityEvent {
        id: ActivityId::from_uuid(row.uuid("id")?),
        organization_id: OrgId::from_uuid(row.uuid("organization_id")?),
        kind: row.text("kind")?,
        actor: row.text("actor")?,
        target_type: row.text("target_type")?,
        target_id: row.text("target_id")?,
        metadata: row.json("metadata")?,
        created_at: row.time("created_at")?,
    })
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, s: &ChatSession) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO chat_sessions (id, user_id, agent_id, gateway_id, session_key, status,
                last_seq, last_message_at, created_at, updated_at, origin_client_msg_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .bind(s.id.as_uuid())
        .bind(s.user_id.as_uuid())
        .bind(s.agent_id.as_uuid())
        .bind(s.gateway_id.as_uuid())
        .bind(&s.session_key)
        .bind(s.status.as_str())
        .bind(int(s.last_seq))
        .bind(opt_ts(s.last_message_at))
        .bind(ts(s.created_at))
        .bind(ts(s.updated_at))
        .bind(s.origin_client_msg_id)
        .execute(&self.writer)
        .await
        .map_err(|e| store_error(e, "user, agent or gateway"))?;
        Ok(())
    }

    async fn find_session_by_origin(
        &self,
        user: UserId,
        client_msg_id: uuid::Uuid,
    ) -> StoreResult<Option<ChatSession>> {
        // The writer: a session created a moment ago by a concurrent first message must be seen.
        sqlx::query("SELECT * FROM chat_sessions WHERE user_id = ?1 AND origin_client_msg_id = ?2")
            .bind(user.as_uuid())
            .bind(client_msg_id)
            .fetch_optional(&self.writer)
            .await
            .map_err(|e| store_error(e, "session"))?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn get_session(&self, id: SessionId) -> StoreResult<Option<ChatSession>> {
        sqlx::query("SELECT * FROM chat_sessions WHERE id = ?1")
            .bind(id.as_uuid())
            .fetch_optional(&self.reader)
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
            "SELECT * FROM chat_sessions WHERE user_id = ?1 AND (?2 IS NULL OR id < ?2)
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(user.as_uuid())
        .bind(page.cursor)
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
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
            "UPDATE chat_sessions SET status = ?2, updated_at = ?3 WHERE id = ?1 RETURNING *",
        )
        .bind(id.as_uuid())
        .bind(status.as_str())
        .bind(ts(at))
        .fetch_optional(&self.writer)
        .await
        .map_err(|e| store_error(e, "session"))?
        .as_ref()
        .map(session_from_row)
        .transpose()?
        .ok_or(StoreError::NotFound("session"))
    }
}

/// Applies one delivery update inside a transaction (only forward: see `DeliveryUpdate`).
pub(crate) async fn set_delivery_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    update: &DeliveryUpdate,
) -> StoreResult<bool> {
    let changed = sqlx::query(
        "UPDATE messages SET delivery = ?3
         WHERE session_id = ?1 AND seq = ?2 AND (CASE delivery
             WHEN 'stored' THEN 0 WHEN 'sent' THEN 1 WHEN 'started' THEN 2
             WHEN 'failed' THEN 3 WHEN 'answered' THEN 4 END) < ?4",
    )
    .bind(update.session_id.as_uuid())
    .bind(int(update.seq))
    .bind(update.state.as_str())
    .bind(i64::from(update.state.rank()))
    .execute(&mut **tx)
    .await
    .map_err(|e| store_error(e, "message"))?;
    Ok(changed.rows_affected() > 0)
}

/// Appends one message inside a write transaction: insert with the next seq (a missing session
/// fails the NOT NULL on `seq`; a repeated client id or run reply fails its UNIQUE, and gives
/// back the stored copy), then bump the session.
async fn append_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    m: &NewMessage,
) -> StoreResult<Appended> {
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO messages (id, session_id, seq, role, content, client_msg_id, run_id, created_at,
            delivery)
         VALUES (?1, ?2, (SELECT last_seq + 1 FROM chat_sessions WHERE id = ?2), ?3, ?4, ?5, ?6, ?7,
            ?8)
         RETURNING seq",
    )
    .bind(m.id.as_uuid())
    .bind(m.session_id.as_uuid())
    .bind(m.role.as_str())
    .bind(&m.content)
    .bind(m.client_msg_id)
    .bind(&m.run_id)
    .bind(ts(m.created_at))
    .bind(m.initial_delivery().map(|d| d.as_str()))
    .fetch_one(&mut **tx)
    .await;
    let seq = match inserted {
        Ok(seq) => seq,
        Err(sqlx::Error::Database(db)) if db.kind() == sqlx::error::ErrorKind::NotNullViolation => {
            return Err(StoreError::NotFound("session"));
        }
        Err(e) => match store_error(e, "session") {
            StoreError::Conflict(ConflictKind::ClientMessageId) => {
                let row = sqlx::query(
                    "SELECT * FROM messages WHERE session_id = ?1 AND client_msg_id = ?2",
                )
                .bind(m.session_id.as_uuid())
                .bind(m.client_msg_id)
                .fetch_one(&mut **tx)
                .await
                .map_err(|e| store_error(e, "message"))?;
                return Ok(Appended::Existing(message_from_row(&row)?));
            }
            StoreError::Conflict(ConflictKind::RunReply) => {
                let row = sqlx::query(
                    "SELECT * FROM messages WHERE run_id = ?1 AND session_id = ?2 AND role = 'agent'",
                )
                .bind(&m.run_id)
                .bind(m.session_id.as_uuid())
                .fetch_one(&mut **tx)
                .await
                .map_err(|e| store_error(e, "message"))?;
                return Ok(Appended::Existing(message_from_row(&row)?));
            }
            other => return Err(other),
        },
    };
    sqlx::query("UPDATE chat_sessions SET last_seq = ?2, last_message_at = ?3 WHERE id = ?1")
        .bind(m.session_id.as_uuid())
        .bind(seq)
        .bind(ts(m.created_at))
        .execute(&mut **tx)
        .await
        .map_err(|e| store_error(e, "session"))?;
    Ok(Appended::New(m.stored_at(u64::try_from(seq).unwrap_or_default())))
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn append_message(&self, m: &NewMessage) -> StoreResult<Appended> {
        if let Some(thread) = &self.messages {
            let mut results = thread.write_batch(vec![m.clone()], Vec::new()).await;
            return results.pop().unwrap_or(Err(StoreError::NotFound("session")));
        }
        let mut tx = self.begin_write().await?;
        let appended = append_in(&mut tx, m).await?;
        tx.commit().await.map_err(|e| store_error(e, "session"))?;
        Ok(appended)
    }

    async fn write_batch(
        &self,
        messages: &[NewMessage],
        deliveries: &[DeliveryUpdate],
    ) -> Vec<StoreResult<Appended>> {
        if let Some(thread) = &self.messages {
            return thread.write_batch(messages.to_vec(), deliveries.to_vec()).await;
        }
        if messages.len() + deliveries.len() > 1 {
            // A few statements for the whole batch; if that fails as a whole, roll back and
            // take the one-by-one path below.
            if let Ok(mut tx) = self.begin_write().await {
                match crate::batch::write_batch(&mut tx, messages, deliveries).await {
                    Ok(results) => match tx.commit().await {
                        Ok(()) => return results,
                        Err(e) => {
                            tracing::warn!(error = %e, "batched write failed to commit; retrying one by one")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "batched write failed; retrying one by one");
                        let _ = tx.rollback().await;
                    }
                }
            }
        }
        // One write transaction for the whole batch (group commit); each message is still
        // all-or-nothing on its own, since a failed statement changes nothing.
        let mut tx = match self.begin_write().await {
            Ok(tx) => tx,
            Err(e) => return messages.iter().map(|_| Err(copy_error(&e))).collect(),
        };
        let mut results = Vec::with_capacity(messages.len());
        for m in messages {
            results.push(append_in(&mut tx, m).await);
        }
        for update in deliveries {
            if let Err(err) = set_delivery_in(&mut tx, update).await {
                tracing::warn!(error = %err, "cannot record a delivery state");
            }
        }
        if let Err(e) = tx.commit().await {
            let e = store_error(e, "session");
            return messages.iter().map(|_| Err(copy_error(&e))).collect();
        }
        results
    }

    async fn set_delivery(&self, update: DeliveryUpdate) -> StoreResult<bool> {
        if let Some(thread) = &self.messages {
            return thread.set_delivery(update).await;
        }
        let mut tx = self.begin_write().await?;
        let changed = set_delivery_in(&mut tx, &update).await?;
        tx.commit().await.map_err(|e| store_error(e, "message"))?;
        Ok(changed)
    }

    async fn pending_deliveries(
        &self,
        gateway: Option<GatewayId>,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<PendingDelivery>> {
        let rows = sqlx::query(PENDING_DELIVERIES)
            .bind(gateway.map(|g| g.as_uuid()))
            .bind(after.map(|m| m.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
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
            "SELECT * FROM messages WHERE session_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
        )
        .bind(session.as_uuid())
        .bind(before_seq.map_or(i64::MAX, int))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
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
             WHERE m.client_msg_id = ?1 AND s.user_id = ?2 ORDER BY m.rowid LIMIT 1",
        )
        .bind(client_msg_id)
        .bind(user.as_uuid())
        .fetch_optional(&self.reader)
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
            "SELECT * FROM messages WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .bind(session.as_uuid())
        .bind(int(after_seq))
        .bind(i64::from(limit.clamp(1, MAX_PAGE_LIMIT)))
        .fetch_all(&self.reader)
        .await
        .map_err(|e| store_error(e, "session"))?;
        rows.iter().map(message_from_row).collect()
    }
}

#[async_trait]
impl ActivityStore for SqliteStore {
    async fn record_activity(&self, e: &ActivityEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO activity_events (id, organization_id, kind, actor, target_type, target_id,
                metadata, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(e.id.as_uuid())
        .bind(e.organization_id.as_uuid())
        .bind(&e.kind)
        .bind(&e.actor)
        .bind(&e.target_type)
        .bind(&e.target_id)
        .bind(json(&e.metadata)?)
        .bind(ts(e.created_at))
        .execute(&self.writer)
        .await
        .map_err(|e| store_error(e, "organization"))?;
        Ok(())
    }

    async fn list_activity(&self, org: OrgId, page: Page) -> StoreResult<Paged<ActivityEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM activity_events WHERE organization_id = ?1 AND (?2 IS NULL OR id < ?2)
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(org.as_uuid())
        .bind(page.cursor)
        .bind(page.fetch_limit())
        .fetch_all(&self.reader)
        .await
        .map_err(|e| store_error(e, "activity"))?;
        let items = rows.iter().map(activity_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(Paged::from_rows(items, page, |e| e.id.as_uuid()))
    }
}

/// Messages still on their way, in id order (UUID v7 blobs compare by time), after `?2`.
/// Its delivery predicate is the partial index `messages_pending`'s word for word (migration
/// 0005), which is how SQLite knows the index holds every row it wants.
const PENDING_DELIVERIES: &str = "SELECT m.* FROM messages m
    JOIN chat_sessions s ON s.id = m.session_id
    WHERE (m.delivery = 'stored' OR m.delivery = 'sent' OR m.delivery = 'started')
      AND (?1 IS NULL OR s.gateway_id = ?1)
      AND (?2 IS NULL OR m.id > ?2)
    ORDER BY m.id LIMIT ?3";

#[cfg(test)]
mod tests {
    use super::*;

    /// Pending deliveries are found through their small index, not by reading every message.
    #[tokio::test]
    async fn pending_deliveries_are_read_through_their_index() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {PENDING_DELIVERIES}")))
                .bind(None::<uuid::Uuid>)
                .bind(None::<uuid::Uuid>)
                .bind(10_i64)
                .fetch_all(&store.writer)
                .await
                .unwrap();
        let steps: Vec<&str> = plan.iter().map(|(_, _, _, step)| step.as_str()).collect();
        assert!(steps.iter().any(|s| s.contains("USING INDEX messages_pending")), "{steps:?}");
    }
}
