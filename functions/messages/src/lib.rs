//! The messages endpoint group: upload, listing, details, flags and moves, deletion, raw
//! source, attachments, message events, flagged messages, search and the quota recount.
//! Rules live in `eider_shared::domain::{messages, search, archive}`.

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use eider_shared::domain::messages::{self, Download, MessageUpdate, Upload};
use eider_shared::domain::{archive, search};
use eider_shared::error::{ApiError, ApiResult};
use eider_shared::http::{AppState, Params, PathParam, Validator};
use eider_shared::id::ObjectId;
use serde_json::{Value, json};

/// Every route of this group (method, path), as template.yaml must list them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/users/{user}/mailboxes/{mailbox}/messages"),
    ("POST", "/users/{user}/mailboxes/{mailbox}/messages"),
    (
        "GET",
        "/users/{user}/mailboxes/{mailbox}/messages/{message}",
    ),
    (
        "PUT",
        "/users/{user}/mailboxes/{mailbox}/messages/{message}",
    ),
    (
        "DELETE",
        "/users/{user}/mailboxes/{mailbox}/messages/{message}",
    ),
    (
        "GET",
        "/users/{user}/mailboxes/{mailbox}/messages/{message}/message.eml",
    ),
    (
        "GET",
        "/users/{user}/mailboxes/{mailbox}/messages/{message}/attachments/{attachment}",
    ),
    (
        "GET",
        "/users/{user}/mailboxes/{mailbox}/messages/{message}/events",
    ),
    ("GET", "/users/{user}/flagged"),
    ("GET", "/users/{user}/search"),
    ("POST", "/users/{user}/quota/reset"),
    ("POST", "/users/{user}/uploads"),
    ("PUT", "/users/{user}/uploads/{upload}"),
];

pub fn router() -> Router<AppState> {
    let message = "/users/{user}/mailboxes/{mailbox}/messages/{message}";
    Router::new()
        .route(
            "/users/{user}/mailboxes/{mailbox}/messages",
            get(list_messages).post(upload_message),
        )
        .route(
            message,
            get(get_message).put(update_messages).delete(delete_message),
        )
        .route(&format!("{message}/message.eml"), get(get_message_source))
        .route(
            &format!("{message}/attachments/{{attachment}}"),
            get(get_attachment),
        )
        .route(&format!("{message}/events"), get(get_message_events))
        .route("/users/{user}/flagged", get(list_flagged))
        .route("/users/{user}/search", get(search_messages))
        .route("/users/{user}/quota/reset", post(reset_quota))
        .route("/users/{user}/uploads", post(create_upload))
        .route("/users/{user}/uploads/{upload}", put(put_upload))
}

/// Validates `{user}`, `{mailbox}` and a single `{message}` UID.
fn ids(
    user: &str,
    mailbox: Option<&str>,
    message: Option<&str>,
) -> ApiResult<(ObjectId, ObjectId, u32)> {
    let mut v = Validator::new(Default::default());
    let user = v.path_id("user", user);
    let mailbox = mailbox.and_then(|m| v.path_id("mailbox", m));
    let uid = message.and_then(|m| match m.parse::<u32>() {
        Ok(uid) if uid >= 1 => Some(uid),
        _ => {
            v.error(
                "message",
                "\"message\" must be a number greater than or equal to 1",
            );
            None
        }
    });
    v.finish()?;
    Ok((
        user.unwrap_or_default(),
        mailbox.unwrap_or_default(),
        uid.unwrap_or_default(),
    ))
}

/// `GET /users/{user}/mailboxes/{mailbox}/messages` (spec "List existing messages").
async fn list_messages(
    State(state): State<AppState>,
    PathParam((user, mailbox)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, mailbox, _) = ids(&user, Some(&mailbox), None)?;
    Ok(Json(messages::list(&state, &user, &mailbox, params).await?))
}

/// `POST /users/{user}/mailboxes/{mailbox}/messages` (WildDuck's "Upload Message"): `raw`
/// as base64 in JSON, or the message itself as a `message/rfc822` body. An
/// `Idempotency-Key` header makes retries store the message once.
async fn upload_message(
    State(state): State<AppState>,
    PathParam((user, mailbox)): PathParam<(String, String)>,
    request: Request,
) -> ApiResult<Json<Value>> {
    let (user, mailbox, _) = ids(&user, Some(&mailbox), None)?;
    let key = request
        .headers()
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let is_rfc822 = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("message/rfc822"));
    let (params, raw) = if is_rfc822 {
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
    } else {
        let Params(params) = Params::from_request(request, &state).await?;
        (params, None)
    };
    let upload = Upload::parse(params, raw, key)?;
    let stored = messages::store(&state, &user, &mailbox, upload).await?;
    Ok(Json(json!({
        "success": true,
        "message": { "id": stored.uid, "mailbox": stored.mailbox, "size": stored.size },
    })))
}

/// `GET .../messages/{message}` (spec "Get message details").
async fn get_message(
    State(state): State<AppState>,
    PathParam((user, mailbox, message)): PathParam<(String, String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, mailbox, uid) = ids(&user, Some(&mailbox), Some(&message))?;
    Ok(Json(
        messages::get(&state, &user, &mailbox, uid, params).await?,
    ))
}

/// `PUT .../messages/{message}` (spec "Update message details"): one UID, a list `1,2,3` or a
/// range `1:5` / `1:*`; flags, expiry, and `moveTo`.
async fn update_messages(
    State(state): State<AppState>,
    PathParam((user, mailbox, message)): PathParam<(String, String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, mailbox, _) = ids(&user, Some(&mailbox), None)?;
    let request = MessageUpdate::parse(&message, params)?;
    Ok(Json(
        messages::update(&state, &user, &mailbox, request).await?,
    ))
}

/// `DELETE .../messages/{message}` (spec "Delete a message"): into the archive.
async fn delete_message(
    State(state): State<AppState>,
    PathParam((user, mailbox, message)): PathParam<(String, String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, mailbox, uid) = ids(&user, Some(&mailbox), Some(&message))?;
    let mut v = Validator::new(params);
    v.session();
    v.deny_unknown();
    v.finish()?;
    messages::delete(&state, &user, &mailbox, uid).await?;
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
    PathParam((user, mailbox, message)): PathParam<(String, String, String)>,
) -> ApiResult<Response> {
    let (user, mailbox, uid) = ids(&user, Some(&mailbox), Some(&message))?;
    let download = messages::raw_source(&state, &user, &mailbox, uid).await?;
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
    PathParam((user, mailbox, message, attachment)): PathParam<(String, String, String, String)>,
) -> ApiResult<Response> {
    let (user, mailbox, uid) = ids(&user, Some(&mailbox), Some(&message))?;
    let valid = attachment.len() > 3
        && attachment[..3].eq_ignore_ascii_case("ATT")
        && attachment[3..].bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return Err(ApiError::invalid_field(
            "attachment",
            format!(
                "\"attachment\" with value {attachment:?} fails to match the required pattern: /^ATT\\d+$/i"
            ),
        ));
    }
    let (info, download) =
        messages::attachment_download(&state, &user, &mailbox, uid, &attachment).await?;
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
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _, _) = ids(&user, None, None)?;
    let mut v = Validator::new(params);
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(Json(messages::create_upload(&state, &user).await?))
}

/// `PUT /users/{user}/uploads/{upload}`: the raw message of a staged upload.
async fn put_upload(
    State(state): State<AppState>,
    PathParam((user, upload)): PathParam<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let mut v = Validator::new(Default::default());
    let user = v.path_id("user", &user);
    let upload = v.path_id("upload", &upload);
    v.finish()?;
    let (user, upload) = (user.unwrap_or_default(), upload.unwrap_or_default());
    messages::put_upload(&state, &user, &upload, body).await?;
    Ok(Json(json!({ "success": true, "id": upload })))
}

/// `GET .../messages/{message}/events` (spec "Get message events").
async fn get_message_events(
    State(state): State<AppState>,
    PathParam((user, mailbox, message)): PathParam<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (user, mailbox, uid) = ids(&user, Some(&mailbox), Some(&message))?;
    Ok(Json(messages::events(&state, &user, &mailbox, uid).await?))
}

/// `GET /users/{user}/flagged` (spec "List flagged messages").
async fn list_flagged(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _, _) = ids(&user, None, None)?;
    Ok(Json(search::flagged(&state, &user, params).await?))
}

/// `GET /users/{user}/search` (spec "Search for messages").
async fn search_messages(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _, _) = ids(&user, None, None)?;
    Ok(Json(search::search(&state, &user, params).await?))
}

/// `POST /users/{user}/quota/reset` (spec "Recalculate user quota").
async fn reset_quota(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _, _) = ids(&user, None, None)?;
    Ok(Json(archive::reset_quota(&state, &user, params).await?))
}
