//! The archive endpoint group: deleted messages, restorable for a while. Serves the spec's
//! paths (`/users/{user}/archived...`) and WildDuck's current ones
//! (`/users/{user}/archived/messages...`). Handlers validate through
//! `eider_shared::http::wire::messages`, call `eider_shared::domain::archive`, and answer; the
//! rules live in shared/.

use axum::extract::State;
use axum::{Json, Router};
use eider_shared::domain::archive;
use eider_shared::http::extract::{ArchivedId, UserId};
use eider_shared::http::validate::session_only;
use eider_shared::http::wire::messages as wire;
use eider_shared::http::{ApiResult, AppState, Ids, Params, Routes};
use serde_json::{Value, json};

/// Every route of this group: the router is built from it, and template.yaml must list it.
pub fn routes() -> Routes {
    Routes::new()
        .get("/users/{user}/archived", list_archived)
        .get("/users/{user}/archived/messages", list_archived)
        .post("/users/{user}/archived/restore", restore_range)
        .get("/users/{user}/archived/{message}", get_archived)
        .post("/users/{user}/archived/{message}/restore", restore_archived)
        .post(
            "/users/{user}/archived/messages/{message}/restore",
            restore_archived,
        )
}

pub fn router() -> Router<AppState> {
    routes().router()
}

/// `GET /users/{user}/archived` (spec "List archived messages").
async fn list_archived(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (ascending, page) = wire::ordered_page(params)?;
    let listing = archive::list(&state, &user, ascending, &page).await?;
    Ok(Json(wire::archive_json(&page, &listing)))
}

/// `GET /users/{user}/archived/{message}` (spec "Get archived message details").
async fn get_archived(
    State(state): State<AppState>,
    Ids((user, message)): Ids<(UserId, ArchivedId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let (archived, details) = archive::get(&state, &user, &message).await?;
    Ok(Json(wire::archived_json(&archived, details)))
}

/// `POST /users/{user}/archived/{message}/restore` (spec "Restore archived message").
async fn restore_archived(
    State(state): State<AppState>,
    Ids((user, message)): Ids<(UserId, ArchivedId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let target = wire::restore(params)?;
    let restored = archive::restore(&state, &user, &message, target).await?;
    Ok(Json(wire::restored_json(&restored)))
}

/// `POST /users/{user}/archived/restore` (WildDuck's): restores every message deleted between
/// `start` and `end`, as a background task.
async fn restore_range(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (start, end) = wire::restore_range(params)?;
    let task = archive::start_range_restore(&state, &user, start, end).await?;
    Ok(Json(json!({ "success": true, "task": task })))
}
