//! The mailboxes endpoint group: `GET/POST /users/{user}/mailboxes`,
//! `GET/PUT/DELETE /users/{user}/mailboxes/{mailbox}`. Handlers validate through
//! `eider_shared::http::wire::mailboxes`, call `eider_shared::domain::mailboxes`, and answer
//! the JSON; the rules live in shared/.

use axum::extract::State;
use axum::{Json, Router};
use eider_shared::domain::mailboxes;
use eider_shared::http::extract::{MailboxId, UserId};
use eider_shared::http::validate::session_only;
use eider_shared::http::wire::mailboxes as wire;
use eider_shared::http::{ApiResult, AppState, Ids, Params, PathParam, Routes};
use serde_json::{Value, json};

/// Every route of this group: the router is built from it, and template.yaml must list it.
pub fn routes() -> Routes {
    Routes::new()
        .get("/users/{user}/mailboxes", list_mailboxes)
        .post("/users/{user}/mailboxes", create_mailbox)
        .get("/users/{user}/mailboxes/{mailbox}", get_mailbox)
        .put("/users/{user}/mailboxes/{mailbox}", update_mailbox)
        .delete("/users/{user}/mailboxes/{mailbox}", delete_mailbox)
}

pub fn router() -> Router<AppState> {
    routes().router()
}

/// `GET /users/{user}/mailboxes` (spec "List existing mailboxes").
async fn list_mailboxes(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = wire::list_mailboxes(params)?;
    let boxes = mailboxes::list(&state, &user, request.special_only, request.show_hidden).await?;
    Ok(Json(wire::list_json(&boxes, &request)))
}

/// `POST /users/{user}/mailboxes` (spec "Create new mailbox").
async fn create_mailbox(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let input = wire::new_mailbox(params)?;
    let id = mailboxes::create(&state, &user, input).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /users/{user}/mailboxes/{mailbox}` (spec "Get one mailbox"); `{mailbox}` may be
/// `resolve` with a `path` parameter.
async fn get_mailbox(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    PathParam((_, mailbox)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let which = wire::mailbox_ref(&mailbox, params)?;
    let stored = mailboxes::get(&state, &user, &which).await?;
    let mut body = wire::mailbox_json(&stored, true, false);
    body["success"] = json!(true);
    Ok(Json(body))
}

/// `PUT /users/{user}/mailboxes/{mailbox}` (spec "Update mailbox details").
async fn update_mailbox(
    State(state): State<AppState>,
    Ids((user, mailbox)): Ids<(UserId, MailboxId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let changes = wire::mailbox_changes(params)?;
    mailboxes::update(&state, &user, &mailbox, changes).await?;
    Ok(Json(json!({ "success": true })))
}

/// `DELETE /users/{user}/mailboxes/{mailbox}` (spec "Delete a mailbox").
async fn delete_mailbox(
    State(state): State<AppState>,
    Ids((user, mailbox)): Ids<(UserId, MailboxId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    mailboxes::delete(&state, &user, &mailbox).await?;
    Ok(Json(json!({ "success": true })))
}
