//! The crate's error, and how PostgreSQL errors become [`StoreError`]s.

use mc_core::{ConflictKind, StoreError};
use sqlx::error::ErrorKind;

/// Why a [`PgStore`](crate::PgStore) could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection URL could not be parsed.
    #[error("invalid PostgreSQL URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    /// The schema migrations failed (for example, the database was migrated by a newer version).
    #[error("cannot migrate the PostgreSQL database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Maps a driver error to a [`StoreError`]. `missing` names what a foreign-key failure or an
/// absent row means in the caller's context (e.g. `"organization"`).
pub(crate) fn store_error(err: sqlx::Error, missing: &'static str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => {
                StoreError::Conflict(conflict_kind(db.constraint().unwrap_or_default()))
            }
            ErrorKind::ForeignKeyViolation => StoreError::NotFound(missing),
            _ if is_transient(db.code().as_deref()) => {
                StoreError::unavailable("PostgreSQL is unavailable or overloaded", err)
            }
            _ => StoreError::backend("PostgreSQL query failed", err),
        },
        sqlx::Error::RowNotFound => StoreError::NotFound(missing),
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::unavailable("PostgreSQL unreachable", err),
        _ => StoreError::backend("PostgreSQL query failed", err),
    }
}

/// SQLSTATEs worth retrying: connection exceptions (08…), shutdown (57P…), too many
/// connections, serialization failures and deadlocks.
fn is_transient(code: Option<&str>) -> bool {
    code.is_some_and(|c| {
        c.starts_with("08") || c.starts_with("57P") || matches!(c, "53300" | "40001" | "40P01")
    })
}

fn conflict_kind(constraint: &str) -> ConflictKind {
    match constraint {
        "organizations_name_key" => ConflictKind::OrganizationName,
        "users_org_username_key" => ConflictKind::Username,
        "gateways_org_name_key" => ConflictKind::GatewayName,
        "agents_gateway_key_key" => ConflictKind::AgentKey,
        "assignments_pair_key" => ConflictKind::Assignment,
        "messages_session_client_msg_key" => ConflictKind::ClientMessageId,
        "messages_run_reply_key" => ConflictKind::RunReply,
        "chat_sessions_origin_key" => ConflictKind::SessionOrigin,
        c if c.ends_with("token_hash_key") => ConflictKind::TokenHash,
        _ => ConflictKind::DuplicateId,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_map_to_kinds() {
        assert_eq!(conflict_kind("users_org_username_key"), ConflictKind::Username);
        assert_eq!(conflict_kind("refresh_tokens_token_hash_key"), ConflictKind::TokenHash);
        assert_eq!(conflict_kind("users_pkey"), ConflictKind::DuplicateId);
    }

    #[test]
    fn transient_states_are_recognised() {
        assert!(is_transient(Some("08006")));
        assert!(is_transient(Some("57P01")));
        assert!(is_transient(Some("40001")));
        assert!(!is_transient(Some("23505")));
        assert!(!is_transient(None));
    }
}
