//! `/api/v1/users/*`: admin handlers over [`mc_core::admin::AdminService`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mc_core::admin::{AssignAgent, UserAdminUpdate};
use mc_core::{AgentId, AssignmentRole, Role, Services, UserId, UserStatus};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Admin, ApiJson, ListQuery, path_id};
use super::views::{AssignmentView, UserPage, UserView};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUserBody {
    status: Option<UserStatus>,
    role: Option<Role>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssignBody {
    agent_id: String,
    role: Option<AssignmentRole>,
    board_name: Option<String>,
}

pub(crate) async fn list_users(
    State(services): State<Services>,
    Admin(admin): Admin,
    query: ListQuery,
) -> Result<Json<UserPage>, ApiError> {
    let page = query.page(&[])?;
    Ok(Json(services.admin().list_users(&admin, page).await?.into()))
}

pub(crate) async fn get_user(
    State(services): State<Services>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let id: UserId = path_id("user id", &id)?;
    Ok(Json(services.admin().user(&admin, id).await?.into()))
}

pub(crate) async fn update_user(
    State(services): State<Services>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUserBody>,
) -> Result<Json<UserView>, ApiError> {
    let id: UserId = path_id("user id", &id)?;
    let update = UserAdminUpdate { status: body.status, role: body.role };
    Ok(Json(services.admin().update_user(&admin, id, update).await?.into()))
}

pub(crate) async fn assign(
    State(services): State<Services>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<(StatusCode, Json<AssignmentView>), ApiError> {
    let user: UserId = path_id("user id", &id)?;
    let agent_id: AgentId =
        body.agent_id.parse().map_err(|_| ApiError::bad_field("agent_id", "is not a valid id"))?;
    let request = AssignAgent {
        agent_id,
        role: body.role.unwrap_or(AssignmentRole::User),
        board_name: body.board_name,
    };
    let assignment = services.admin().assign(&admin, user, request).await?;
    Ok((StatusCode::CREATED, Json(assignment.into())))
}

pub(crate) async fn unassign(
    State(services): State<Services>,
    Admin(admin): Admin,
    Path((id, agent)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user: UserId = path_id("user id", &id)?;
    let agent: AgentId = path_id("agent id", &agent)?;
    services.admin().unassign(&admin, user, agent).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_sessions(
    State(services): State<Services>,
    Admin(admin): Admin,
    query: ListQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let page = query.page(&["user_id"])?;
    let user: UserId = query
        .filter::<String>("user_id")?
        .ok_or_else(|| ApiError::bad_field("user_id", "is required"))
        .and_then(|text| path_id("user_id", &text))?;
    let sessions = services.admin().user_sessions(&admin, user, page).await?;
    Ok(Json(super::views::page_json("sessions", sessions, super::views::SessionView::from)))
}

pub(crate) async fn session_messages(
    State(services): State<Services>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    query: ListQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session: mc_core::SessionId = path_id("session id", &id)?;
    let page = query.page(&["before_seq"])?;
    let before = query.filter::<u64>("before_seq")?;
    let found = services.admin().session_messages(&admin, session, before, page.limit).await?;
    let messages: Vec<super::views::MessageView> =
        found.messages.into_iter().map(Into::into).collect();
    Ok(Json(
        serde_json::json!({ "session_id": session, "messages": messages, "has_more": found.has_more }),
    ))
}
