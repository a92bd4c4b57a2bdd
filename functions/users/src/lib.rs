//! The users endpoint group: `GET/POST /users`, `GET/PUT/DELETE /users/{user}`,
//! `PUT /users/{user}/logout`. Handlers parse and validate, call `eider_shared::domain::users`,
//! and shape the JSON; the rules live in shared/.

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use eider_shared::domain::users::{self, DeleteUser, ListUsers, NewUser, UserChanges};
use eider_shared::error::ApiResult;
use eider_shared::http::{AppState, Params, PathParam, Validator};
use eider_shared::id::ObjectId;
use serde_json::{Value, json};

/// Every route of this group (method, path), as template.yaml must list them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/users"),
    ("POST", "/users"),
    ("GET", "/users/{user}"),
    ("PUT", "/users/{user}"),
    ("DELETE", "/users/{user}"),
    ("PUT", "/users/{user}/logout"),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{user}",
            get(get_user).put(update_user).delete(delete_user),
        )
        .route("/users/{user}/logout", put(logout_user))
}

/// Validates the `{user}` path parameter.
fn user_id(raw: &str) -> ApiResult<ObjectId> {
    let mut v = Validator::new(Default::default());
    let id = v.path_id("user", raw);
    v.finish()?;
    Ok(id.unwrap_or_default())
}

/// `GET /users`: search and list users (spec "Search and list users").
async fn list_users(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = ListUsers::parse(params)?;
    Ok(Json(users::list(&state, request).await?))
}

/// `POST /users`: create a user (spec "Add a new user").
async fn create_user(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let input = NewUser::parse(params)?;
    let id = users::create(&state, input).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /users/{user}` (spec "Get one user").
async fn get_user(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let id = user_id(&user)?;
    let mut v = Validator::new(params);
    v.session();
    v.deny_unknown();
    v.finish()?;
    let stored = users::load(&state, &id).await?;
    Ok(Json(users::user_json(&stored, &state.config)))
}

/// `PUT /users/{user}` (spec "Update user details").
async fn update_user(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let id = user_id(&user)?;
    let changes = UserChanges::parse(params)?;
    users::update(&state, &id, changes).await?;
    Ok(Json(json!({ "success": true })))
}

/// `DELETE /users/{user}` (spec "Delete user").
async fn delete_user(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let id = user_id(&user)?;
    let request = DeleteUser::parse(params)?;
    let deleted = users::delete(&state, &id, request).await?;
    Ok(Json(json!({
        "success": true,
        "code": "TaskScheduled",
        "user": id,
        "addresses": { "deleted": deleted.addresses },
        "deleteAfter": deleted.purge_after,
        "task": deleted.task,
    })))
}

/// `PUT /users/{user}/logout` (spec "Log out user from all IMAP sessions").
async fn logout_user(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let id = user_id(&user)?;
    users::logout(&state, &id, params).await?;
    Ok(Json(json!({ "success": true })))
}
