//! Request extractors whose rejections are [`ApiError`]s that say what is wrong.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use mc_core::auth::Principal;
use mc_core::{Services, TokenFamilyId};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body: `Content-Type: application/json`, within the size limit, well-formed, of the
/// right shape (unknown fields refused by the target type). Errors name the offending field.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    "the request body is too large",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    format!("cannot read the body: {rejection}"),
                )
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON document into `T`, with errors that name the field at fault.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let not_json = |e: serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            format!("the body is not valid JSON: {e}"),
        )
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if !inner.is_data() {
            return not_json(inner);
        }
        let (field, message) = if path == "." {
            (None, inner.to_string())
        } else {
            (Some(path.clone()), format!("{path}: {inner}"))
        };
        ApiError {
            field,
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "UNPROCESSABLE", message)
        }
    })?;
    de.end().map_err(not_json)?;
    Ok(value)
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthenticated("missing Authorization: Bearer <access token>"))?;
    let value =
        value.to_str().map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        ApiError::unauthenticated("malformed Authorization header; expected Bearer <token>")
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthenticated("expected Authorization: Bearer <token>"));
    }
    Ok(token.trim())
}

/// The authenticated caller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub(crate) principal: Principal,
    /// The refresh family the access token was issued with (built-in tokens only).
    pub(crate) family: Option<TokenFamilyId>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    Services: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let services = Services::from_ref(state);
        let token = bearer(parts)?;
        let (principal, family) = services.authenticate(token).await?;
        Ok(Caller { principal, family })
    }
}

/// An authenticated caller with the admin role.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admin(pub(crate) Principal);

impl<S: Send + Sync> FromRequestParts<S> for Admin
where
    Services: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.principal.is_admin() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "this needs the admin role",
            ));
        }
        Ok(Admin(caller.principal))
    }
}

/// The caller if a bearer token was sent, else nobody; a bad token is still an error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaybeCaller(pub(crate) Option<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeCaller
where
    Services: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(MaybeCaller(None));
        }
        Ok(MaybeCaller(Some(Caller::from_request_parts(parts, state).await?.principal)))
    }
}

/// The query string of a listing: `limit`, `cursor` and any filters the route allows.
#[derive(Debug, Clone)]
pub(crate) struct ListQuery(HashMap<String, String>);

/// Default and largest page size of HTTP listings.
pub(crate) const PAGE_LIMITS: (u32, u32) = (50, 200);

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(map) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("bad query string: {}", e.body_text()),
            )
        })?;
        Ok(ListQuery(map))
    }
}

impl ListQuery {
    /// The page asked for; any parameter other than `limit`, `cursor` and `filters` is an error.
    pub(crate) fn page(&self, filters: &[&str]) -> Result<mc_core::Page, ApiError> {
        if let Some(unknown) = self
            .0
            .keys()
            .find(|k| !matches!(k.as_str(), "limit" | "cursor") && !filters.contains(&k.as_str()))
        {
            return Err(ApiError::bad_field(unknown.clone(), "is not a parameter of this listing"));
        }
        let (default, max) = PAGE_LIMITS;
        let limit = match self.0.get("limit") {
            None => default,
            Some(text) => {
                text.parse::<u32>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                    ApiError::bad_field("limit", format!("must be an integer from 1 to {max}"))
                })?
            }
        };
        let cursor =
            match self.0.get("cursor").map(String::as_str) {
                None | Some("") => None,
                Some(text) => Some(text.parse::<uuid::Uuid>().map_err(|_| {
                    ApiError::bad_field("cursor", "is not a cursor this API returned")
                })?),
            };
        Ok(mc_core::Page { cursor, limit })
    }

    /// A filter parameter parsed as `T`, if present.
    pub(crate) fn filter<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        self.0
            .get(name)
            .map(|v| v.parse::<T>().map_err(|e| ApiError::bad_field(name, e.to_string())))
            .transpose()
    }
}

/// Parses an id from the path, naming it on failure.
pub(crate) fn path_id<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| ApiError::bad_field(name, "is not a valid id"))
}
