//! The submit endpoint group (WildDuck's): `POST /users/{user}/submit` (compose and send),
//! `POST .../messages/{message}/submit` (send a draft), `POST .../messages/{message}/forward`,
//! `DELETE /users/{user}/outbound/{queueId}` (cancel a scheduled send), and the storage files
//! drafts attach (`/users/{user}/storage`). Handlers validate through
//! `eider_shared::http::wire::outgoing`, call `eider_shared::domain::{outgoing, storage}`, and
//! answer; the rules live in shared/.

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use eider_shared::domain::{outgoing, storage};
use eider_shared::http::extract::{FileId, MailboxId, MessageUid, QueueId, UserId};
use eider_shared::http::validate::session_only;
use eider_shared::http::wire::outgoing as wire;
use eider_shared::http::{ApiError, ApiResult, AppState, Ids, Params, Routes};
use serde_json::{Value, json};

/// Every route of this group: the router is built from it, and template.yaml must list it.
pub fn routes() -> Routes {
    Routes::new()
        .post("/users/{user}/submit", submit)
        .post(
            "/users/{user}/mailboxes/{mailbox}/messages/{message}/submit",
            submit_draft,
        )
        .post(
            "/users/{user}/mailboxes/{mailbox}/messages/{message}/forward",
            forward,
        )
        .delete("/users/{user}/outbound/{queueId}", cancel)
        .post("/users/{user}/storage", upload_file)
        .get("/users/{user}/storage", list_files)
        .get("/users/{user}/storage/{file}", get_file)
        .delete("/users/{user}/storage/{file}", delete_file)
}

pub fn router() -> Router<AppState> {
    routes().router()
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `POST /users/{user}/submit`: composes a message, stores the copy (Sent, or Drafts for a
/// draft) and sends it (now, or at `sendTime`).
async fn submit(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    headers: HeaderMap,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = wire::submission(params, idempotency_key(&headers))?;
    let submitted = outgoing::submit(&state, &user, request).await?;
    Ok(Json(wire::submitted_json(&submitted)))
}

/// `POST .../messages/{message}/submit`: sends a stored draft.
async fn submit_draft(
    State(state): State<AppState>,
    Ids((user, mailbox, uid)): Ids<(UserId, MailboxId, MessageUid)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (delete_files, send_time) = wire::draft_submit(params)?;
    let sent =
        outgoing::submit_draft(&state, &user, &mailbox, uid.0, delete_files, send_time).await?;
    Ok(Json(wire::sent_draft_json(&sent)))
}

/// `POST .../messages/{message}/forward`: the stored message to other addresses.
async fn forward(
    State(state): State<AppState>,
    Ids((user, mailbox, uid)): Ids<(UserId, MailboxId, MessageUid)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let addresses = wire::forward_request(params)?;
    let forwarded = outgoing::forward(&state, &user, &mailbox, uid.0, addresses).await?;
    Ok(Json(wire::forwarded_json(&forwarded)))
}

/// `DELETE /users/{user}/outbound/{queueId}`: cancels a queued mail that has not gone yet.
async fn cancel(
    State(state): State<AppState>,
    Ids((user, queue)): Ids<(UserId, QueueId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let cancelled = outgoing::cancel(&state, &user, &queue).await?;
    Ok(Json(wire::cancelled_json(&queue, &cancelled)))
}

/// `POST /users/{user}/storage`: a JSON body (`content` as text, base64 or a Buffer), or the
/// file itself as the body with the other fields in the query.
async fn upload_file(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    request: Request,
) -> ApiResult<Json<Value>> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| {
            let t = t.to_ascii_lowercase();
            t.starts_with("application/json") || t.starts_with("application/x-www-form-urlencoded")
        });
    let (params, body) = if is_json {
        let Params(params) = Params::from_request(request, &state).await?;
        (params, None)
    } else {
        let Params(params) = Params::from_query(request.uri());
        let body = axum::body::Bytes::from_request(request, &state)
            .await
            .map_err(|e| {
                ApiError::new(
                    e.status(),
                    "InvalidContent",
                    "Request body could not be read",
                )
            })?;
        (params, Some(body.to_vec()))
    };
    let file = wire::new_file(params, body)?;
    let id = storage::upload(&state, &user, file).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /users/{user}/storage`: files by name.
async fn list_files(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (query, page) = wire::list_files(params)?;
    let listing = storage::list(&state, &user, query.as_deref(), &page).await?;
    Ok(Json(wire::files_json(query.as_deref(), &page, &listing)))
}

/// `GET /users/{user}/storage/{file}`: the file's bytes with its content type.
async fn get_file(
    State(state): State<AppState>,
    Ids((user, file)): Ids<(UserId, FileId)>,
    Params(params): Params,
) -> Result<Response, ApiError> {
    if let Some(key) = params.keys().next() {
        return Err(ApiError::invalid_field(
            key,
            format!("\"{key}\" is not allowed"),
        ));
    }
    let (file, bytes) = storage::get(&state, &user, &file).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, file.content_type)],
        Body::from(bytes),
    )
        .into_response())
}

/// `DELETE /users/{user}/storage/{file}`.
async fn delete_file(
    State(state): State<AppState>,
    Ids((user, file)): Ids<(UserId, FileId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    storage::delete(&state, &user, &file).await?;
    Ok(Json(json!({ "success": true })))
}
