//! The crate's error, and how SQLite errors become [`StoreError`]s.

use mc_core::{ConflictKind, StoreError};
use sqlx::error::ErrorKind;

/// Why a [`SqliteStore`](crate::SqliteStore) could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database URL could not be parsed.
    #[error("invalid SQLite database URL '{url}': {source}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What was wrong with it.
        #[source]
        source: sqlx::Error,
    },
    /// The database file could not be opened or created.
    #[error("cannot open SQLite database '{url}': {source}")]
    Open {
        /// The URL as given.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema migrations failed (for example, the file was written by a newer version).
    #[error("cannot migrate SQLite database '{url}': {source}")]
    Migrate {
        /// The URL as given.
        url: String,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The message writer's connection could not be opened on the database file.
    #[error("cannot open the SQLite message writer: {0}")]
    Writer(String),
}

/// A copy of a batch-wide error, for each message of the batch.
pub(crate) fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict(kind) => StoreError::Conflict(*kind),
        StoreError::NotFound(what) => StoreError::NotFound(what),
        StoreError::Unavailable { message, .. } => {
            StoreError::Unavailable { message: message.clone(), source: None }
        }
        other => StoreError::corrupt(other.to_string()),
    }
}

/// Maps a driver error to a [`StoreError`]. `missing` names what a foreign-key failure or an
/// absent row means in the caller's context (e.g. `"organization"`).
pub(crate) fn store_error(err: sqlx::Error, missing: &'static str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => StoreError::Conflict(conflict_kind(db.message())),
            ErrorKind::ForeignKeyViolation => StoreError::NotFound(missing),
            _ if is_busy(db.code().as_deref()) => {
                StoreError::unavailable("SQLite database is busy", err)
            }
            _ => StoreError::backend("SQLite query failed", err),
        },
        sqlx::Error::RowNotFound => StoreError::NotFound(missing),
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => StoreError::unavailable("SQLite database unreachable", err),
        _ => StoreError::backend("SQLite query failed", err),
    }
}

/// SQLITE_BUSY (5) and SQLITE_LOCKED (6), including their extended codes.
fn is_busy(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

/// SQLite names the columns of the broken constraint: `UNIQUE constraint failed: users.organization_id, users.username`.
fn conflict_kind(message: &str) -> ConflictKind {
    let columns = message.rsplit("failed: ").next().unwrap_or(message);
    match columns {
        "organizations.name" => ConflictKind::OrganizationName,
        "users.organization_id, users.username" => ConflictKind::Username,
        "gateways.organization_id, gateways.name" => ConflictKind::GatewayName,
        "agents.gateway_id, agents.agent_key" => ConflictKind::AgentKey,
        "assignments.user_id, assignments.agent_id" => ConflictKind::Assignment,
        "messages.client_msg_id, messages.session_id" => ConflictKind::ClientMessageId,
        "messages.run_id, messages.session_id" => ConflictKind::RunReply,
        "chat_sessions.user_id, chat_sessions.origin_client_msg_id" => ConflictKind::SessionOrigin,
        c if c.ends_with(".token_hash") => ConflictKind::TokenHash,
        _ => ConflictKind::DuplicateId,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_messages_map_to_kinds() {
        let kind = conflict_kind("UNIQUE constraint failed: users.organization_id, users.username");
        assert_eq!(kind, ConflictKind::Username);
        let kind = conflict_kind("UNIQUE constraint failed: refresh_tokens.token_hash");
        assert_eq!(kind, ConflictKind::TokenHash);
        let kind = conflict_kind("UNIQUE constraint failed: users.id");
        assert_eq!(kind, ConflictKind::DuplicateId);
    }

    #[test]
    fn busy_codes_are_recognised() {
        assert!(is_busy(Some("5")));
        assert!(is_busy(Some("517")));
        assert!(is_busy(Some("6")));
        assert!(!is_busy(Some("19")));
        assert!(!is_busy(None));
    }
}
