//! The users endpoint group: `GET/POST /users`, `GET/PUT/DELETE /users/{user}`,
//! `PUT /users/{user}/logout`, `GET /users/resolve/{username}`. Handlers validate through `eider_shared::http::wire::users`,
//! call `eider_shared::domain::users`, and answer the JSON; the rules live in shared/.

use axum::extract::{Path, State};
use axum::{Extension, Json, Router};
use eider_shared::domain::{audit, data_export, health, outgoing, settings, users, webhooks};
use eider_shared::http::access::Caller;
use eider_shared::http::extract::{AuditId, UserId, WebhookId};
use eider_shared::http::validate::session_only;
use eider_shared::http::wire::users as wire;
use eider_shared::http::{ApiResult, AppState, Ids, Params, Routes, download};
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
        .get("/users/resolve/{username}", resolve_user)
        .get("/health", health)
        .get("/openapi.json", api_document)
        .get("/users/{user}/restore", restorable_user)
        .post("/users/{user}/restore", restore_user)
        .get("/settings", list_settings)
        .get("/settings/{key}", get_setting)
        .post("/settings/{key}", set_setting)
        .get("/webhooks", list_webhooks)
        .post("/webhooks", create_webhook)
        .get("/webhooks/{webhook}", get_webhook)
        .delete("/webhooks/{webhook}", delete_webhook)
        .post("/audit", create_audit)
        .get("/audit/{audit}", get_audit)
        .get("/audit/{audit}/export.mbox", export_audit)
        .post("/data/export", export_data)
        .post("/data/import", import_data)
}

pub fn router() -> Router<AppState> {
    routes().router()
}

/// `GET /users`: search and list users (spec "Search and list users").
/// A user token lists only its own user.
async fn list_users(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (request, view) = wire::list_users(params)?;
    let listing = match caller.user() {
        None => users::list(&state, &request).await?,
        Some(grant) => users::list_own(&state, &request, &grant.user).await?,
    };
    let mut body = wire::list_json(&request, &view, &listing, &state.config);
    if caller.user().is_some()
        && let Some(results) = body["results"].as_array_mut()
    {
        for entry in results {
            *entry = wire::owner_view(entry.take());
        }
    }
    Ok(Json(body))
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
    Extension(caller): Extension<Caller>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let stored = users::load(&state, &user).await?;
    let mut body = wire::user_json(&stored, &state.config);
    let (used, renews_in) = outgoing::recipients_used(&state, &user).await?;
    body["limits"]["recipients"]["used"] = json!(used);
    body["limits"]["recipients"]["ttl"] = if used > 0 {
        json!(renews_in)
    } else {
        json!(false)
    };
    Ok(Json(match caller {
        Caller::Root => body,
        Caller::User(_) => wire::owner_view(body),
    }))
}

/// `PUT /users/{user}` (spec "Update user details").
/// A user token changes only what WildDuck's `user` role may, and keeps working after its own
/// password change.
async fn update_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let changes = wire::user_changes(params, caller.user().is_some())?;
    users::update(&state, &user, changes, caller.user()).await?;
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

/// `GET /users/resolve/{username}` (WildDuck's): the id of a username (dots and case
/// ignored; an address-shaped username is looked up as a username, never as an address).
async fn resolve_user(
    State(state): State<AppState>,
    Path(username): Path<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let username = wire::resolve_request(&username, params)?;
    let id = users::resolve_username(&state, &username).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// The API document (OpenAPI 3.1) generated from the routes, as shipped in the repository
/// (a test keeps the copy equal to what the code generates).
pub const API_DOCUMENT: &str = include_str!("../../../docs/openapi.json");

/// `GET /openapi.json`: the API document. Any valid token may ask.
async fn api_document() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        API_DOCUMENT,
    )
        .into_response()
}

/// `GET /health` (WildDuck's): 200 when the table and the blob store can be read and
/// written, else 500 with what failed. Any valid token may ask.
async fn health(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let version = env!("CARGO_PKG_VERSION");
    match health::check(&state).await {
        Ok(()) => Json(json!({ "success": true, "version": version })).into_response(),
        Err(failed) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "success": false, "version": version, "message": failed.message() })),
        )
            .into_response(),
    }
}

/// `GET /users/{user}/restore` (WildDuck's): a deleted user's account as a restore would
/// bring it back, until its purge starts.
async fn restorable_user(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let deleted = users::restorable(&state, &user).await?;
    Ok(Json(wire::restorable_json(&user, &deleted)))
}

/// `POST /users/{user}/restore` (WildDuck's): cancels the purge and brings the account back.
async fn restore_user(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let session = wire::session_request(params)?;
    let restored = users::restore(&state, &user, &session).await?;
    Ok(Json(wire::restored_json(&user, &restored)))
}

/// `GET /settings` (WildDuck's): every setting Eider has, with its default and whether it was
/// changed.
async fn list_settings(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let filter = eider_shared::http::wire::settings::list(params)?;
    let found = settings::list(&state, filter.as_deref()).await?;
    Ok(Json(eider_shared::http::wire::settings::list_json(
        filter.as_deref(),
        &found,
    )))
}

/// `GET /settings/{key}` (WildDuck's): the value in force; an unknown key answers
/// `success: false` with status 200, as WildDuck does.
async fn get_setting(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(match settings::get(&state, &key).await? {
        Some(value) => json!({ "success": true, "key": key, "value": value }),
        None => json!({ "success": false, "key": key, "error": "Key was not found" }),
    }))
}

/// `POST /settings/{key}` (WildDuck's): changes a default for every function, at once here
/// and within 30 s elsewhere.
async fn set_setting(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let value = eider_shared::http::wire::settings::value(params)?;
    settings::set(&state, &key, &value).await?;
    Ok(Json(json!({ "success": true, "key": key })))
}

/// `GET /webhooks` (WildDuck's): in creation order; a user token sees only its own user's.
async fn list_webhooks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let mut request = eider_shared::http::wire::webhooks::list(params)?;
    if let Some(grant) = caller.user() {
        request.user = Some(grant.user);
    }
    let listing = webhooks::list(&state, &request).await?;
    Ok(Json(eider_shared::http::wire::webhooks::list_json(
        &request, &listing,
    )))
}

/// `POST /webhooks` (WildDuck's), answering also the signing secret, this once.
async fn create_webhook(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let new = eider_shared::http::wire::webhooks::create(params)?;
    let (hook, secret) = webhooks::create(&state, new).await?;
    Ok(Json(
        json!({ "success": true, "id": hook.id, "secret": secret }),
    ))
}

/// `GET /webhooks/{webhook}` (Eider's): the webhook and how its deliveries go.
async fn get_webhook(
    State(state): State<AppState>,
    Ids(id): Ids<WebhookId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let hook = webhooks::get(&state, &id).await?;
    Ok(Json(eider_shared::http::wire::webhooks::webhook_json(
        &hook,
    )))
}

/// `DELETE /webhooks/{webhook}` (WildDuck's).
async fn delete_webhook(
    State(state): State<AppState>,
    Ids(id): Ids<WebhookId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    webhooks::delete(&state, &id).await?;
    Ok(Json(json!({ "success": true })))
}

/// `POST /audit` (WildDuck's): the user's mail in the window is kept from now on.
async fn create_audit(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let new = eider_shared::http::wire::audit::create(params)?;
    let id = audit::create(&state, new).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /audit/{audit}` (WildDuck's).
async fn get_audit(
    State(state): State<AppState>,
    Ids(id): Ids<AuditId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let view = audit::get(&state, &id).await?;
    Ok(Json(eider_shared::http::wire::audit::audit_json(&view)))
}

/// `GET /audit/{audit}/export.mbox` (WildDuck's): streamed, or a link in Lambda.
async fn export_audit(
    State(state): State<AppState>,
    Ids(id): Ids<AuditId>,
    Params(params): Params,
) -> ApiResult<axum::response::Response> {
    session_only(params)?;
    let id = *id;
    audit::get(&state, &id).await?;
    let key = format!(
        "exports/audit-{id}-{}.mbox",
        eider_shared::id::ObjectId::new()
    );
    let chunks = audit::export(state.clone(), id);
    download::file(
        &state,
        &key,
        "application/octet-stream",
        "export.mbox",
        chunks,
    )
    .await
}

/// `POST /data/export` (WildDuck's, with the messages too): JSON lines, streamed, or a link
/// in Lambda.
async fn export_data(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<axum::response::Response> {
    let selection = eider_shared::http::wire::data_export::export(params)?;
    let users = data_export::selected(&state, &selection).await?;
    let key = format!("exports/{}.jsonl", eider_shared::id::ObjectId::new());
    let chunks = data_export::export(state.clone(), selection, users);
    download::file(&state, &key, "application/x-ndjson", "export.jsonl", chunks).await
}

/// `POST /data/import` (WildDuck's): the body is an export file.
async fn import_data(State(state): State<AppState>, body: bytes::Bytes) -> ApiResult<Json<Value>> {
    let imported = data_export::import(&state, &body).await?;
    Ok(Json(eider_shared::http::wire::data_export::imported_json(
        &imported,
    )))
}
