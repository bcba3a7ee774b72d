//! `/api/v1/auth/*`: thin handlers over [`mc_core::auth::AuthService`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mc_core::auth::{NewAccount, OrgSelector, PasswordChange, ProfileUpdate, Registered, SignedIn};
use mc_core::protocol::AssignmentInfo;
use mc_core::{Role, Services};
use serde::{Deserialize, Deserializer};

use super::error::ApiError;
use super::extract::{ApiJson, Caller, MaybeCaller};
use super::views::{TokenView, UserView};

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    organization: Option<String>,
    /// The H5 app's name for the organization (its id).
    organization_id: Option<String>,
    username: String,
    password: String,
    email: Option<String>,
    phone: Option<String>,
    display_name: Option<String>,
    role: Option<Role>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    organization: Option<String>,
    /// The H5 app's name for the organization (its id).
    organization_id: Option<String>,
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshBody {
    refresh_token: String,
}

// Bodies holding passwords or tokens show them redacted, so no log line can leak them.
impl std::fmt::Debug for RegisterBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterBody")
            .field("organization", &self.organization)
            .field("organization_id", &self.organization_id)
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("organization", &self.organization)
            .field("organization_id", &self.organization_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RefreshBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshBody").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for UpdateMeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateMeBody")
            .field("display_name", &self.display_name)
            .field("email", &self.email)
            .field("phone", &self.phone)
            .field("avatar_url", &self.avatar_url)
            .field("changes_password", &self.password.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateMeBody {
    #[serde(default, deserialize_with = "double_option")]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    avatar_url: Option<Option<String>>,
    password: Option<String>,
    current_password: Option<String>,
}

fn signed_in(s: SignedIn) -> TokenView {
    TokenView {
        user: Some(s.user.into()),
        access_token: s.access_token,
        refresh_token: s.refresh_token,
        token_type: "Bearer",
        expires_in: s.expires_in,
    }
}

/// The organization a body names: `organization` (an id or a name) or the H5 app's
/// `organization_id` (an id); both may be given only if they agree.
fn organization_of(
    organization: Option<&str>,
    organization_id: Option<&str>,
) -> Result<Option<OrgSelector>, ApiError> {
    let by_id = match organization_id {
        None => None,
        Some(text) => Some(OrgSelector::Id(text.trim().parse().map_err(|_| {
            ApiError::bad_field("organization_id", "must be an organization id (a UUID)")
        })?)),
    };
    match (selector(organization)?, by_id) {
        (Some(named), Some(id)) if named == id => Ok(Some(id)),
        (Some(_), Some(_)) => Err(ApiError::bad_field(
            "organization_id",
            "names another organization than organization",
        )),
        (named, id) => Ok(id.or(named)),
    }
}

fn selector(text: Option<&str>) -> Result<Option<OrgSelector>, ApiError> {
    match text {
        None => Ok(None),
        Some(t) if t.trim().is_empty() || t.len() > 128 => Err(ApiError::bad_field(
            "organization",
            "must be an organization id or name of 1–128 characters",
        )),
        Some(t) => Ok(Some(OrgSelector::parse(t))),
    }
}

pub(crate) async fn register(
    State(services): State<Services>,
    MaybeCaller(caller): MaybeCaller,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, ApiError> {
    let account = NewAccount {
        organization: organization_of(
            body.organization.as_deref(),
            body.organization_id.as_deref(),
        )?,
        username: body.username,
        password: body.password,
        email: body.email,
        phone: body.phone,
        display_name: body.display_name,
        role: body.role,
    };
    Ok(match services.auth().register(account, caller.as_ref()).await? {
        Registered::Created(user) => {
            (StatusCode::CREATED, Json(UserView::from(user))).into_response()
        }
        Registered::SignedIn(s) => (StatusCode::CREATED, Json(signed_in(s))).into_response(),
    })
}

pub(crate) async fn login(
    State(services): State<Services>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<TokenView>, ApiError> {
    let org = organization_of(body.organization.as_deref(), body.organization_id.as_deref())?;
    let session = services.auth().login(org.as_ref(), &body.username, &body.password).await?;
    Ok(Json(signed_in(session)))
}

pub(crate) async fn refresh(
    State(services): State<Services>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<TokenView>, ApiError> {
    let r = services.auth().refresh(&body.refresh_token).await?;
    Ok(Json(TokenView {
        user: None,
        access_token: r.access_token,
        refresh_token: r.refresh_token,
        token_type: "Bearer",
        expires_in: r.expires_in,
    }))
}

pub(crate) async fn logout(
    State(services): State<Services>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<StatusCode, ApiError> {
    services.auth().logout(&body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn me(
    State(services): State<Services>,
    caller: Caller,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(services.auth().me(&caller.principal).await?.into()))
}

/// The caller's agents, as the socket's `auth_ok` lists them: for pages and apps that want
/// them before (or without) a socket.
pub(crate) async fn my_agents(
    State(services): State<Services>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = caller.principal.user_id;
    let assigned =
        services.store().list_user_assignments(user).await.map_err(mc_core::Error::from)?;
    Ok(Json(serde_json::json!({ "agents": AssignmentInfo::list(&assigned) })))
}

pub(crate) async fn update_me(
    State(services): State<Services>,
    caller: Caller,
    ApiJson(body): ApiJson<UpdateMeBody>,
) -> Result<Json<UserView>, ApiError> {
    let password = match (body.password, body.current_password) {
        (Some(new), Some(current)) => Some(PasswordChange { current, new }),
        (Some(_), None) => {
            return Err(ApiError::bad_field(
                "current_password",
                "is required to change the password",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::bad_field("password", "is required with current_password"));
        }
        (None, None) => None,
    };
    let update = ProfileUpdate {
        display_name: body.display_name,
        email: body.email,
        phone: body.phone,
        avatar_url: body.avatar_url,
        password,
    };
    let nothing = update.display_name.is_none()
        && update.email.is_none()
        && update.phone.is_none()
        && update.avatar_url.is_none()
        && update.password.is_none();
    if nothing {
        return Err(ApiError::bad_field(
            "body",
            "give at least one of display_name, email, phone, avatar_url, password",
        ));
    }
    let user = services.auth().update_me(&caller.principal, caller.family, update).await?;
    Ok(Json(user.into()))
}
