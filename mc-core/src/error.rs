//! The error of `mc-core`'s services: what went wrong, in terms a transport can turn into a
//! status code and a message a user can act on.

use std::time::Duration;

use crate::store::StoreError;

/// Why a token was refused. The variants match the socket protocol's `auth_error` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRejection {
    /// Not a token this relay issued: bad shape, bad signature, wrong algorithm, issuer,
    /// audience or type, unknown key, revoked.
    Invalid,
    /// A genuine token whose lifetime has passed.
    Expired,
}

/// An error from a `mc-core` service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field of the request is invalid; nothing was changed.
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field, as the client named it.
        field: String,
        /// Why, e.g. "must be 3–64 characters".
        message: String,
    },
    /// The username or password is wrong (deliberately not saying which).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The presented token is not acceptable.
    #[error("{}", match .0 {
        TokenRejection::Invalid => "invalid token",
        TokenRejection::Expired => "token expired",
    })]
    Token(TokenRejection),
    /// A gateway's registration token was not accepted; the string says why.
    #[error("registration token refused: {0}")]
    RegistrationRefused(&'static str),
    /// A gateway's id and relay token do not match a registered gateway.
    #[error("unknown gateway or wrong relay token")]
    GatewayUnauthorized,
    /// The account is suspended or deleted.
    #[error("this account is suspended")]
    Suspended,
    /// Too many failed sign-ins; retry after the given time.
    #[error("too many failed sign-ins; try again in {} s", .retry_after.as_secs().max(1))]
    LockedOut {
        /// How long until a sign-in is accepted again.
        retry_after: Duration,
    },
    /// The caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The thing does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The change conflicts with existing data.
    #[error("{0}")]
    Conflict(String),
    /// A gateway URL is well formed but points where the relay does not dial (a link-local
    /// address, or outside the ranges outbound gateways may be dialled in).
    #[error("url: {0}")]
    AddressRefused(String),
    /// Invalid configuration, found when building a service.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The bus between instances (Redis) cannot be reached; retry in a moment.
    #[error("the relay's instances cannot reach each other right now: {0}")]
    Bus(String),
    /// A bug or an unexpected failure; details are in the logs.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Invalid`](Self::Invalid) error for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => Error::NotFound(what),
            StoreError::Conflict(kind) => Error::Conflict(kind.to_string()),
            other => Error::Store(other),
        }
    }
}

/// Result of a `mc-core` service call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
