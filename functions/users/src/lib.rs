//! The users endpoint group: `GET/POST /users`, `GET/PUT/DELETE /users/{user}`,
//! `PUT /users/{user}/logout`. Handlers validate through `eider_shared::http::wire::users`,
//! call `eider_shared::domain::users`, and answer the JSON; the rules live in shared/.

use axum::extract::State;
use axum::{Json, Router};
use eider_shared::domain::users;
use eider_shared::http::extract::UserId;
use eider_shared::http::validate::session_only;
use eider_shared::http::wire::users as wire;
use eider_shared::http::{ApiResult, AppState, Ids, Params, Routes};
use serde_json::{Value, json};

/// Every route of this group: the router is built from it, and template.yaml must list it.
pub fn routes() -> Routes {
    Routes::new()
        .get("/users", list_users)
        .post("/users", create_user)
        .get("/users/{user}", get_user)
        .put("/users/{user}", update_user)
        .delete("/users/{user}", delete_user)
        .put("/users/{user}/logout", logout_user)
}

pub fn router() -> Router<AppState> {
    routes().router()
}

/// `GET /users`: search and list users (spec "Search and list users").
async fn list_users(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (request, view) = wire::list_users(params)?;
    let listing = users::list(&state, &request).await?;
    Ok(Json(wire::list_json(
        &request,
        &view,
        &listing,
        &state.config,
    )))
}

/// `POST /users`: create a user (spec "Add a new user").
async fn create_user(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let input = wire::new_user(params)?;
    let id = users::create(&state, input).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /users/{user}` (spec "Get one user").
async fn get_user(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let stored = users::load(&state, &user).await?;
    Ok(Json(wire::user_json(&stored, &state.config)))
}

/// `PUT /users/{user}` (spec "Update user details").
async fn update_user(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let changes = wire::user_changes(params)?;
    users::update(&state, &user, changes).await?;
    Ok(Json(json!({ "success": true })))
}

/// `DELETE /users/{user}` (spec "Delete user").
async fn delete_user(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = wire::delete_user(params)?;
    let deleted = users::delete(&state, &user, request).await?;
    Ok(Json(wire::deleted_json(&user, &deleted)))
}

/// `PUT /users/{user}/logout` (spec "Log out user from all IMAP sessions").
async fn logout_user(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let reason = wire::logout(params)?;
    users::logout(&state, &user, reason).await?;
    Ok(Json(json!({ "success": true })))
}
