//! The mailboxes endpoint group: `GET/POST /users/{user}/mailboxes`,
//! `GET/PUT/DELETE /users/{user}/mailboxes/{mailbox}`. Rules live in
//! `eider_shared::domain::mailboxes`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use eider_shared::domain::mailboxes;
use eider_shared::error::ApiResult;
use eider_shared::http::{AppState, Params, PathParam, Validator};
use eider_shared::id::ObjectId;
use serde_json::{Value, json};

/// Every route of this group (method, path), as template.yaml must list them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/users/{user}/mailboxes"),
    ("POST", "/users/{user}/mailboxes"),
    ("GET", "/users/{user}/mailboxes/{mailbox}"),
    ("PUT", "/users/{user}/mailboxes/{mailbox}"),
    ("DELETE", "/users/{user}/mailboxes/{mailbox}"),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/users/{user}/mailboxes",
            get(list_mailboxes).post(create_mailbox),
        )
        .route(
            "/users/{user}/mailboxes/{mailbox}",
            get(get_mailbox).put(update_mailbox).delete(delete_mailbox),
        )
}

/// Validates `{user}` and, when given, `{mailbox}`.
fn ids(user: &str, mailbox: Option<&str>) -> ApiResult<(ObjectId, ObjectId)> {
    let mut v = Validator::new(Default::default());
    let user = v.path_id("user", user);
    let mailbox = mailbox.and_then(|m| v.path_id("mailbox", m));
    v.finish()?;
    Ok((user.unwrap_or_default(), mailbox.unwrap_or_default()))
}

/// `GET /users/{user}/mailboxes` (spec "List existing mailboxes").
async fn list_mailboxes(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _) = ids(&user, None)?;
    Ok(Json(mailboxes::list(&state, &user, params).await?))
}

/// `POST /users/{user}/mailboxes` (spec "Add a new mailbox").
async fn create_mailbox(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _) = ids(&user, None)?;
    let id = mailboxes::create(&state, &user, params).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /users/{user}/mailboxes/{mailbox}` (spec "Get one mailbox"); `{mailbox}` may be
/// `resolve` with a `path` parameter.
async fn get_mailbox(
    State(state): State<AppState>,
    PathParam((user, mailbox)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _) = ids(&user, None)?;
    Ok(Json(mailboxes::get(&state, &user, &mailbox, params).await?))
}

/// `PUT /users/{user}/mailboxes/{mailbox}` (spec "Update mailbox details").
async fn update_mailbox(
    State(state): State<AppState>,
    PathParam((user, mailbox)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, mailbox) = ids(&user, Some(&mailbox))?;
    mailboxes::update(&state, &user, &mailbox, params).await?;
    Ok(Json(json!({ "success": true })))
}

/// `DELETE /users/{user}/mailboxes/{mailbox}` (spec "Delete a mailbox").
async fn delete_mailbox(
    State(state): State<AppState>,
    PathParam((user, mailbox)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, mailbox) = ids(&user, Some(&mailbox))?;
    mailboxes::delete(&state, &user, &mailbox, params).await?;
    Ok(Json(json!({ "success": true })))
}
