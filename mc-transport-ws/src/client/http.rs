//! The HTTP half of the SDK: sign-in, registration, refresh and logout (`/api/v1/auth/*`).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::types::{ClientError, Tokens};

/// How long an HTTP call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `/api/v1/auth/*` of one relay.
#[derive(Clone)]
pub(crate) struct HttpApi {
    client: reqwest::Client,
    base: String,
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    refresh_token: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorInner,
}

#[derive(Deserialize, Default)]
struct ErrorInner {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl HttpApi {
    /// The API of the relay at `base` (`https://host[:port][/prefix]`).
    pub(crate) fn new(base: String, tls: rustls::ClientConfig) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ClientError::InvalidInput(format!("cannot set up HTTP: {e}")))?;
        Ok(Self { client, base })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Option<Value>, ClientError> {
        let response = self
            .client
            .post(format!("{}/api/v1{path}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    ClientError::Timeout
                } else {
                    ClientError::Network(e.to_string())
                }
            })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| ClientError::Network(e.to_string()))?;
        if status.is_success() {
            return Ok(serde_json::from_str(&text).ok());
        }
        let ErrorBody { error } = serde_json::from_str(&text).unwrap_or_default();
        Err(match (status.as_u16(), error.code.as_str()) {
            (401, "INVALID_CREDENTIALS") => ClientError::InvalidCredentials,
            (401, _) => ClientError::Unauthenticated(error.message),
            (403, _) => ClientError::Forbidden(error.message),
            (429, _) => ClientError::Relay {
                code: mc_core::protocol::ErrorCode::RateLimited,
                message: error.message,
                retry_after_ms: None,
            },
            (status, _) => ClientError::Http { status, code: error.code, message: error.message },
        })
    }

    fn tokens(body: Option<Value>) -> Result<Tokens, ClientError> {
        let body: TokenBody = body
            .and_then(|b| serde_json::from_value(b).ok())
            .ok_or_else(|| ClientError::Protocol("no tokens in the answer".into()))?;
        Ok(Tokens { access: body.access_token, refresh: body.refresh_token })
    }

    /// Signs in; an empty organization means the server's only one.
    pub(crate) async fn sign_in(
        &self,
        organization: &str,
        username: &str,
        password: &str,
    ) -> Result<Tokens, ClientError> {
        let mut body = json!({ "username": username, "password": password });
        if !organization.trim().is_empty() {
            body["organization"] = json!(organization.trim());
        }
        Self::tokens(self.post("/auth/login", body).await?)
    }

    /// Creates an account; the relay signs the new user in when it allows self-registration.
    pub(crate) async fn register(
        &self,
        organization: &str,
        username: &str,
        password: &str,
    ) -> Result<Option<Tokens>, ClientError> {
        let mut body = json!({ "username": username, "password": password });
        if !organization.trim().is_empty() {
            body["organization"] = json!(organization.trim());
        }
        let answer = self.post("/auth/register", body).await?;
        Ok(Self::tokens(answer).ok())
    }

    /// Trades the refresh token for new tokens (the old refresh token stops working).
    pub(crate) async fn refresh(&self, refresh: &str) -> Result<Tokens, ClientError> {
        Self::tokens(self.post("/auth/refresh", json!({ "refresh_token": refresh })).await?)
    }

    /// Ends the refresh token's family (its access tokens stop working too).
    pub(crate) async fn logout(&self, refresh: &str) -> Result<(), ClientError> {
        self.post("/auth/logout", json!({ "refresh_token": refresh })).await.map(drop)
    }
}
