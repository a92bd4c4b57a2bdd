//! The messages endpoint group: upload, listing, details, flags and moves, deletion, raw
//! source, attachments, message events, flagged messages, search and the quota recount.
//! Handlers validate through `eider_shared::http::wire::messages`, call
//! `eider_shared::domain::{messages, search, archive}`, and answer; the rules live in shared/.

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Json, Router};
use eider_shared::domain::messages::{self, Download};
use eider_shared::domain::{archive, outgoing, quota_all, search, search_apply};
use eider_shared::http::extract::{
    AttachmentId, MailboxId, MessageSelector, MessageUid, UploadId, UserId,
};
use eider_shared::http::validate::session_only;
use eider_shared::http::wire::messages as wire;
use eider_shared::http::wire::outgoing as outgoing_wire;
use eider_shared::http::{ApiError, ApiResult, AppState, Ids, Params, Routes, spool};
use serde_json::{Value, json};

/// Every route of this group: the router is built from it, and template.yaml must list it.
pub fn routes() -> Routes {
    const MESSAGES: &str = "/users/{user}/mailboxes/{mailbox}/messages";
    const MESSAGE: &str = "/users/{user}/mailboxes/{mailbox}/messages/{message}";
    Routes::new()
        .get(MESSAGES, list_messages)
        .post(MESSAGES, upload_message)
        .put(MESSAGES, update_messages_in_body)
        .delete(MESSAGES, empty_mailbox)
        .get(MESSAGE, get_message)
        .put(MESSAGE, update_messages)
        .delete(MESSAGE, delete_message)
        .get(
            "/users/{user}/mailboxes/{mailbox}/messages/{message}/message.eml",
            get_message_source,
        )
        .get(
            "/users/{user}/mailboxes/{mailbox}/messages/{message}/attachments/{attachment}",
            get_attachment,
        )
        .get(
            "/users/{user}/mailboxes/{mailbox}/messages/{message}/events",
            get_message_events,
        )
        .get("/users/{user}/flagged", list_flagged)
        .get("/users/{user}/search", search_messages)
        .post("/users/{user}/search", apply_to_search)
        .post("/users/{user}/quota/reset", reset_quota)
        .post("/quota/reset", reset_all_quotas)
        .post("/users/{user}/uploads", create_upload)
        .put("/users/{user}/uploads/{upload}", put_upload)
}

pub fn router() -> Router<AppState> {
    routes().router()
}

/// `GET /users/{user}/mailboxes/{mailbox}/messages` (spec "List existing messages").
async fn list_messages(
    State(state): State<AppState>,
    Ids((user, mailbox)): Ids<(UserId, MailboxId)>,
    Params(params): Params,
) -> ApiResult<Response> {
    let (request, meta_data) = wire::list_messages(params)?;
    let listing = messages::list(&state, &user, &mailbox, &request).await?;
    Ok(Json(wire::list_json(&request, meta_data, &listing)).into_response())
}

/// `POST /users/{user}/mailboxes/{mailbox}/messages` (WildDuck's "Upload Message"): `raw`
/// as base64 in JSON, or the message itself as a `message/rfc822` body. An
/// `Idempotency-Key` header makes retries store the message once.
async fn upload_message(
    State(state): State<AppState>,
    Ids((user, mailbox)): Ids<(UserId, MailboxId)>,
    request: Request,
) -> ApiResult<Json<Value>> {
    let key = request
        .headers()
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let is_rfc822 = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("message/rfc822"));
    let (params, raw) = if spool::wanted(&request) {
        // Large bodies go to scratch files instead of memory (see `spool`).
        if is_rfc822 {
            let Params(params) = Params::from_query(request.uri());
            (params, Some(spool::body(&state, request).await?))
        } else {
            spool::upload_params(&state, request).await?
        }
    } else if is_rfc822 {
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
        (params, Some(body))
    } else {
        let Params(params) = Params::from_request(request, &state).await?;
        (params, None)
    };
    if raw.is_none() && outgoing_wire::is_composed(&params) {
        // WildDuck's composed upload: the message is built from fields.
        let (fields, flags, replace) = outgoing_wire::composed_upload(params, &mailbox, key)?;
        let stored =
            outgoing::store_composed(&state, &user, &mailbox, fields, flags, replace).await?;
        return Ok(Json(wire::stored_json(&stored)));
    }
    let upload = wire::upload(params, raw, key)?;
    let stored = messages::store(&state, &user, &mailbox, upload).await?;
    Ok(Json(wire::stored_json(&stored)))
}

/// `GET .../messages/{message}` (spec "Get message details").
async fn get_message(
    State(state): State<AppState>,
    Ids((user, mailbox, uid)): Ids<(UserId, MailboxId, MessageUid)>,
    Params(params): Params,
) -> ApiResult<Response> {
    let mark_seen = wire::get_message(params)?;
    let details = messages::get(&state, &user, &mailbox, uid.0, mark_seen).await?;
    Ok(Json(wire::MessageDetails::new(&details).answer()).into_response())
}

/// `PUT .../messages/{message}` (spec "Update message details"): one UID, a list `1,2,3` or a
/// range `1:5` / `1:*`; flags, expiry, and `moveTo`.
async fn update_messages(
    State(state): State<AppState>,
    Ids((user, mailbox, selector)): Ids<(UserId, MailboxId, MessageSelector)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = wire::message_update(&selector.0, params)?;
    let updated = messages::update(&state, &user, &mailbox, request).await?;
    Ok(Json(wire::updated_json(&updated)))
}

/// `PUT .../messages` (WildDuck's form of the above, which its web client uses): the same
/// update with `message` in the body.
async fn update_messages_in_body(
    State(state): State<AppState>,
    Ids((user, mailbox)): Ids<(UserId, MailboxId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = wire::bulk_message_update(params)?;
    let updated = messages::update(&state, &user, &mailbox, request).await?;
    Ok(Json(wire::updated_json(&updated)))
}

/// Messages one synchronous `DELETE .../messages` removes before leaving the rest to a
/// background task (a request must end well within Lambda's timeout).
const EMPTY_IN_REQUEST: usize = 1000;

/// `DELETE .../messages` (WildDuck's): empties a folder into the archive (not drafts, not
/// with `skipArchive`); with `async=true` in the background.
async fn empty_mailbox(
    State(state): State<AppState>,
    Ids((user, mailbox)): Ids<(UserId, MailboxId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (background, skip_archive) = wire::empty_request(params)?;
    if background {
        let (task, existing) =
            messages::schedule_empty(&state, &user, &mailbox, skip_archive).await?;
        return Ok(Json(
            json!({ "success": true, "existing": existing, "scheduled": task }),
        ));
    }
    let emptied =
        messages::empty_mailbox(&state, &user, &mailbox, skip_archive, EMPTY_IN_REQUEST).await?;
    let mut body = json!({ "success": true, "deleted": emptied.deleted, "errors": emptied.errors });
    if !emptied.done {
        let (task, _) = messages::schedule_empty(&state, &user, &mailbox, skip_archive).await?;
        body["scheduled"] = json!(task);
    }
    Ok(Json(body))
}

/// `POST /users/{user}/search` (WildDuck's): an action on every match, in the background.
async fn apply_to_search(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (query, action) = wire::search_action(params)?;
    let task = search_apply::start(&state, &user, query, action).await?;
    Ok(Json(
        json!({ "success": true, "existing": false, "scheduled": task }),
    ))
}

/// `DELETE .../messages/{message}` (spec "Delete a message"): into the archive.
async fn delete_message(
    State(state): State<AppState>,
    Ids((user, mailbox, uid)): Ids<(UserId, MailboxId, MessageUid)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    messages::delete(&state, &user, &mailbox, uid.0).await?;
    Ok(Json(json!({ "success": true })))
}

/// Answers a download: bytes, a ranged stream of the blob, or a redirect to a presigned URL
/// (Lambda answers at most 6 MB).
fn download_response(
    state: &AppState,
    download: Download,
    headers: Vec<(header::HeaderName, HeaderValue)>,
) -> Response {
    let body = match download {
        Download::Redirect(url) => return Redirect::temporary(&url).into_response(),
        Download::Bytes(bytes) => Body::from(bytes),
        Download::Stream { blob, size } => {
            Body::from_stream(blob_chunks(state.clone(), blob, size))
        }
    };
    let mut response = body.into_response();
    response.headers_mut().extend(headers);
    response
}

/// The blob in 1 MiB ranges, read as the client takes them.
fn blob_chunks(
    state: AppState,
    blob: String,
    size: u64,
) -> impl futures::Stream<Item = Result<axum::body::Bytes, std::io::Error>> {
    const CHUNK: u64 = 1024 * 1024;
    futures::stream::try_unfold(0u64, move |offset| {
        let (state, blob) = (state.clone(), blob.clone());
        async move {
            if offset >= size {
                return Ok(None);
            }
            let end = (offset + CHUNK).min(size);
            match state.blobs.get_range(&blob, offset..end).await {
                Ok(Some(bytes)) if !bytes.is_empty() => Ok(Some((bytes, end))),
                Ok(_) => Err(std::io::Error::other("message source ended early")),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            }
        }
    })
}

/// `GET .../messages/{message}/message.eml` (spec "Get message source"): the stored bytes.
async fn get_message_source(
    State(state): State<AppState>,
    Ids((user, mailbox, uid)): Ids<(UserId, MailboxId, MessageUid)>,
) -> ApiResult<Response> {
    let download = messages::raw_source(&state, &user, &mailbox, uid.0).await?;
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("message/rfc822"),
    );
    Ok(download_response(&state, download, vec![content_type]))
}

/// `GET .../messages/{message}/attachments/{attachment}` (spec "Get message attachment"):
/// the decoded bytes with the part's content type and file name.
async fn get_attachment(
    State(state): State<AppState>,
    Ids((user, mailbox, uid, attachment)): Ids<(UserId, MailboxId, MessageUid, AttachmentId)>,
) -> ApiResult<Response> {
    let (info, download) =
        messages::attachment_download(&state, &user, &mailbox, uid.0, &attachment.0).await?;
    let content_type = HeaderValue::from_str(&info.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let filename = messages::safe_filename(&info.filename);
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let headers = vec![
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_DISPOSITION, disposition),
    ];
    Ok(download_response(&state, download, headers))
}

/// `POST /users/{user}/uploads`: where to put a large message before storing it (a presigned
/// S3 URL in the cloud, `PUT /users/{user}/uploads/{id}` locally).
async fn create_upload(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let upload = messages::create_upload(&state, &user).await?;
    Ok(Json(wire::staged_upload_json(&upload)))
}

/// `PUT /users/{user}/uploads/{upload}`: the raw message of a staged upload.
async fn put_upload(
    State(state): State<AppState>,
    Ids((user, upload)): Ids<(UserId, UploadId)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    messages::put_upload(&state, &user, &upload, body).await?;
    Ok(Json(json!({ "success": true, "id": upload.0 })))
}

/// `GET .../messages/{message}/events` (spec "Get message events").
async fn get_message_events(
    State(state): State<AppState>,
    Ids((user, mailbox, uid)): Ids<(UserId, MailboxId, MessageUid)>,
) -> ApiResult<Json<Value>> {
    let (id, events) = messages::events(&state, &user, &mailbox, uid.0).await?;
    Ok(Json(wire::events_json(&id, &events)))
}

/// `GET /users/{user}/flagged` (spec "List flagged messages").
async fn list_flagged(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (ascending, page) = wire::ordered_page(params)?;
    let result = search::flagged(&state, &user, ascending, &page).await?;
    Ok(Json(wire::search_json(&page, &result, None)))
}

/// `GET /users/{user}/search` (spec "Search for messages").
async fn search_messages(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (query, ascending, page) = wire::search(params)?;
    let result = search::search(&state, &user, query.clone(), ascending, &page).await?;
    Ok(Json(wire::search_json(&page, &result, Some(&query))))
}

/// `POST /users/{user}/quota/reset` (spec "Recalculate user quota").
/// `POST /quota/reset` (WildDuck's): every user's quota recounted in the background.
async fn reset_all_quotas(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let task = quota_all::start(&state).await?;
    Ok(Json(json!({ "success": true, "task": task })))
}

async fn reset_quota(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let recount = archive::reset_quota(&state, &user).await?;
    Ok(Json(wire::recount_json(&recount)))
}
