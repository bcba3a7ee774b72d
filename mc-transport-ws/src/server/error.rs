//! Rendering errors as `{"error": {"code", "message", "field"?}}` with the right status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mc_core::{Error, StoreError, TokenRejection};
use serde::Serialize;

/// An HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// A stable machine-readable code, e.g. `BAD_REQUEST`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The request field at fault, if one is.
    pub field: Option<String>,
    /// For 429: seconds until a retry may succeed.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, retry_after: None }
    }

    /// 400 for a bad request field.
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        Self { field: Some(field), ..Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message) }
    }

    /// 401 for a missing or unusable bearer token.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid { field, message } => Self {
                field: Some(field.clone()),
                ..Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", format!("{field}: {message}"))
            },
            Error::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_CREDENTIALS",
                "invalid username or password",
            ),
            Error::Token(TokenRejection::Expired) => Self::new(
                StatusCode::UNAUTHORIZED,
                "TOKEN_EXPIRED",
                "the token has expired; refresh it",
            ),
            Error::Token(_) => Self::unauthenticated("invalid token"),
            Error::RegistrationRefused(why) => Self::new(
                StatusCode::UNAUTHORIZED,
                "REGISTRATION_REFUSED",
                format!("registration token refused: {why}"),
            ),
            Error::GatewayUnauthorized => {
                Self::unauthenticated("unknown gateway or wrong relay token")
            }
            Error::Suspended => {
                Self::new(StatusCode::FORBIDDEN, "SUSPENDED", "this account is suspended")
            }
            Error::LockedOut { retry_after } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let secs = secs.max(1);
                Self {
                    retry_after: Some(secs),
                    ..Self::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "RATE_LIMITED",
                        format!("too many failed sign-ins; try again in {secs} s"),
                    )
                }
            }
            Error::Forbidden(message) => Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message),
            Error::NotFound(what) => {
                Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("{what} not found"))
            }
            Error::Conflict(message) => Self::new(StatusCode::CONFLICT, "CONFLICT", message),
            Error::AddressRefused(message) => Self {
                field: Some("url".into()),
                ..Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ADDRESS_REFUSED",
                    format!("url: {message}"),
                )
            },
            Error::Bus(err) => {
                tracing::warn!(error = %err, "bus unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "temporarily unavailable; retry shortly",
                )
            }
            Error::Store(err @ StoreError::Unavailable { .. }) => {
                tracing::warn!(error = %err, "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "temporarily unavailable; retry shortly",
                )
            }
            other => {
                tracing::error!(error = %other, "request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner { code: self.code, message: &self.message, field: self.field.as_deref() },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED && self.code != "INVALID_CREDENTIALS" {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
