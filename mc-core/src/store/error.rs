//! The one error type every store returns.

/// Boxed error from a database driver, kept as the `source` of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which uniqueness rule a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConflictKind {
    /// An organization with that name exists.
    OrganizationName,
    /// A user with that username exists in the organization.
    Username,
    /// A gateway with that name exists in the organization.
    GatewayName,
    /// The gateway already has an agent with that key.
    AgentKey,
    /// The user is already assigned to that agent.
    Assignment,
    /// The session already has a message with that client message id.
    ClientMessageId,
    /// The session already has the agent's reply of that run.
    RunReply,
    /// The user already has a session started by that client message id.
    SessionOrigin,
    /// A token with that hash exists.
    TokenHash,
    /// A record with that id exists.
    DuplicateId,
}

impl std::fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConflictKind::OrganizationName => "an organization with this name already exists",
            ConflictKind::Username => {
                "a user with this username already exists in the organization"
            }
            ConflictKind::GatewayName => {
                "a gateway with this name already exists in the organization"
            }
            ConflictKind::AgentKey => "the gateway already has an agent with this key",
            ConflictKind::Assignment => "the user is already assigned to this agent",
            ConflictKind::ClientMessageId => {
                "the session already has a message with this client message id"
            }
            ConflictKind::RunReply => "the session already has the agent's reply of this run",
            ConflictKind::SessionOrigin => {
                "the user already has a session started by this client message id"
            }
            ConflictKind::TokenHash => "a token with this value already exists",
            ConflictKind::DuplicateId => "a record with this id already exists",
        })
    }
}

/// What went wrong in a store, in terms portable across databases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule was broken; nothing was written.
    #[error("conflict: {0}")]
    Conflict(ConflictKind),
    /// The record (or one it refers to) does not exist; the string names what was looked for.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The database could not be reached or is overloaded; retrying later may succeed.
    #[error("store unavailable: {message}")]
    Unavailable {
        /// What failed, for operators.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
    /// Any other database failure (a bug, corrupt data, a failed migration).
    #[error("store error: {message}")]
    Backend {
        /// What failed, for operators.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
}

impl StoreError {
    /// An [`Unavailable`](Self::Unavailable) error wrapping a driver error.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable { message: message.into(), source: Some(source.into()) }
    }

    /// A [`Backend`](Self::Backend) error wrapping a driver error.
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Backend { message: message.into(), source: Some(source.into()) }
    }

    /// A [`Backend`](Self::Backend) error for data that cannot be decoded (e.g. an unknown status).
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::Backend { message: message.into(), source: None }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;
