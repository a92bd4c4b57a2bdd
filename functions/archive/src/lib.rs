//! The archive endpoint group: deleted messages, restorable for a while. Serves the spec's
//! paths (`/users/{user}/archived...`) and WildDuck's current ones
//! (`/users/{user}/archived/messages...`). Rules live in `eider_shared::domain::archive`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use eider_shared::domain::archive;
use eider_shared::error::ApiResult;
use eider_shared::http::{AppState, Params, PathParam, Validator};
use eider_shared::id::ObjectId;
use serde_json::Value;

/// Every route of this group (method, path), as template.yaml must list them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/users/{user}/archived"),
    ("GET", "/users/{user}/archived/messages"),
    ("GET", "/users/{user}/archived/{message}"),
    ("POST", "/users/{user}/archived/{message}/restore"),
    ("POST", "/users/{user}/archived/messages/{message}/restore"),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/{user}/archived", get(list_archived))
        .route("/users/{user}/archived/messages", get(list_archived))
        .route("/users/{user}/archived/{message}", get(get_archived))
        .route(
            "/users/{user}/archived/{message}/restore",
            post(restore_archived),
        )
        .route(
            "/users/{user}/archived/messages/{message}/restore",
            post(restore_archived),
        )
}

fn ids(user: &str, message: Option<&str>) -> ApiResult<(ObjectId, ObjectId)> {
    let mut v = Validator::new(Default::default());
    let user = v.path_id("user", user);
    let message = message.and_then(|m| v.path_id("message", m));
    v.finish()?;
    Ok((user.unwrap_or_default(), message.unwrap_or_default()))
}

/// `GET /users/{user}/archived` (spec "List archived messages").
async fn list_archived(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _) = ids(&user, None)?;
    Ok(Json(archive::list(&state, &user, params).await?))
}

/// `GET /users/{user}/archived/{message}` (spec "Get archived message details").
async fn get_archived(
    State(state): State<AppState>,
    PathParam((user, message)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, message) = ids(&user, Some(&message))?;
    let mut v = Validator::new(params);
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(Json(archive::get(&state, &user, &message).await?))
}

/// `POST /users/{user}/archived/{message}/restore` (spec "Restore archived message").
async fn restore_archived(
    State(state): State<AppState>,
    PathParam((user, message)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, message) = ids(&user, Some(&message))?;
    Ok(Json(
        archive::restore(&state, &user, &message, params).await?,
    ))
}
