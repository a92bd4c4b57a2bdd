//! The auth endpoint group: `POST/DELETE /authenticate`, `GET /authenticated`,
//! `POST /preauth`, `GET /users/{user}/authlog[/{event}]`, the
//! application-specific passwords (`/users/{user}/asps...`), TOTP 2FA
//! (`/users/{user}/2fa...`) and `POST /users/{user}/password/reset`. Handlers validate
//! through `eider_shared::http::wire::{auth, authlog}`, call
//! `eider_shared::domain::{auth, authlog, asps, totp}`, and answer the JSON; the rules live in
//! shared/.

use axum::extract::State;
use axum::{Extension, Json, Router};
use eider_shared::domain::{asps, auth, authlog, tokens, totp};
use eider_shared::http::access::Caller;
use eider_shared::http::extract::{AspId, EventId, UserId};
use eider_shared::http::validate::session_only;
use eider_shared::http::wire::{auth as wire, authlog as authlog_wire};
use eider_shared::http::{ApiResult, AppState, Ids, Params, Routes};
use serde_json::{Value, json};

/// Every route of this group: the router is built from it, and template.yaml must list it.
pub fn routes() -> Routes {
    Routes::new()
        .post("/authenticate", authenticate)
        .delete("/authenticate", end_token)
        .get("/authenticated", authenticated)
        .post("/preauth", preauth)
        .get("/users/{user}/authlog", list_authlog)
        .get("/users/{user}/authlog/{event}", get_authlog_event)
        .get("/users/{user}/asps", list_asps)
        .post("/users/{user}/asps", create_asp)
        .get("/users/{user}/asps/{asp}", get_asp)
        .delete("/users/{user}/asps/{asp}", delete_asp)
        .post("/users/{user}/2fa/totp/setup", setup_totp)
        .post("/users/{user}/2fa/totp/enable", enable_totp)
        .post("/users/{user}/2fa/totp/check", check_totp)
        .delete("/users/{user}/2fa/totp", disable_totp)
        .delete("/users/{user}/2fa", disable_2fa)
        .post("/users/{user}/password/reset", reset_password)
}

pub fn router() -> Router<AppState> {
    routes().router()
}

fn success() -> Json<Value> {
    Json(json!({ "success": true }))
}

/// `POST /authenticate` (spec "Authenticate an user").
async fn authenticate(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = wire::auth_request(params)?;
    let authenticated = auth::authenticate(&state, request).await?;
    Ok(Json(wire::authenticated_json(&authenticated)))
}

/// `DELETE /authenticate` (WildDuck's): ends the calling user token; nothing for the root
/// token.
async fn end_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    if let Some(grant) = caller.user() {
        tokens::revoke(&state, &grant.token_hash).await?;
    }
    Ok(success())
}

/// `GET /authenticated` (WildDuck's): whether the calling token is valid; an invalid one never
/// gets here (the access layer answers 403).
async fn authenticated(Params(params): Params) -> ApiResult<Json<Value>> {
    session_only(params)?;
    Ok(success())
}

/// `POST /preauth` (WildDuck's): checks that a user may log in, without a password.
async fn preauth(State(state): State<AppState>, Params(params): Params) -> ApiResult<Json<Value>> {
    let (username, scope, _session) = wire::preauth_request(params)?;
    let found = auth::preauth(&state, &username, &scope).await?;
    Ok(Json(wire::preauthenticated_json(&found)))
}

/// `GET /users/{user}/authlog/{event}` (WildDuck's): one security log entry.
async fn get_authlog_event(
    State(state): State<AppState>,
    Ids((user, event)): Ids<(UserId, EventId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let entry = authlog::get(&state, &user, &event).await?;
    Ok(Json(authlog_wire::event_json(&entry)))
}

/// `GET /users/{user}/authlog` (spec "List the authentication log").
async fn list_authlog(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = authlog_wire::list_authlog(params)?;
    let listing = authlog::list(&state, &user, &request).await?;
    Ok(Json(authlog_wire::list_json(&request, &listing)))
}

/// `GET /users/{user}/asps` (spec "List existing passwords").
async fn list_asps(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let show_all = wire::list_asps(params)?;
    let list = asps::list(&state, &user, show_all).await?;
    Ok(Json(wire::asps_json(&list)))
}

/// `POST /users/{user}/asps` (spec "Add a new Application Specific Password").
async fn create_asp(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let input = wire::new_asp(params)?;
    let created = asps::create(&state, &user, input).await?;
    Ok(Json(wire::created_asp_json(&created)))
}

/// `GET /users/{user}/asps/{asp}` (WildDuck's; not in the spec).
async fn get_asp(
    State(state): State<AppState>,
    Ids((user, asp)): Ids<(UserId, AspId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let found = asps::get(&state, &user, &asp).await?;
    let mut body = wire::asp_json(&found);
    body["success"] = json!(true);
    Ok(Json(body))
}

/// `DELETE /users/{user}/asps/{asp}` (spec "Delete an Application Specific Password").
async fn delete_asp(
    State(state): State<AppState>,
    Ids((user, asp)): Ids<(UserId, AspId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let session = session_only(params)?;
    asps::delete(&state, &user, &asp, &session).await?;
    Ok(success())
}

/// `POST /users/{user}/2fa/totp/setup` (spec "Setup 2FA").
async fn setup_totp(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (issuer, label, fresh) = wire::totp_setup(params)?;
    let setup = totp::setup(&state, &user, issuer, label, fresh).await?;
    Ok(Json(wire::setup_json(&setup)))
}

/// `POST /users/{user}/2fa/totp/enable` (spec "Verify 2FA").
async fn enable_totp(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (token, session) = wire::totp_token(params)?;
    totp::enable(&state, &user, &token, &session, caller.user()).await?;
    Ok(success())
}

/// `POST /users/{user}/2fa/totp/check` (spec "Check 2FA").
async fn check_totp(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (code, nonce, session) = wire::totp_check(params)?;
    let token = totp::check(&state, &user, &code, nonce.as_deref(), &session).await?;
    Ok(Json(match token {
        Some(token) => json!({ "success": true, "token": token }),
        None => json!({ "success": true }),
    }))
}

/// `DELETE /users/{user}/2fa/totp` (spec "Disable TOTP").
async fn disable_totp(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let session = session_only(params)?;
    totp::disable(&state, &user, &session).await?;
    Ok(success())
}

/// `DELETE /users/{user}/2fa` (spec "Disable 2FA").
async fn disable_2fa(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let session = session_only(params)?;
    totp::disable_all(&state, &user, &session).await?;
    Ok(success())
}

/// `POST /users/{user}/password/reset` (spec "Reset user password").
async fn reset_password(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (valid_after, session) = wire::reset_request(params)?;
    let reset = auth::reset_password(&state, &user, valid_after, &session).await?;
    Ok(Json(wire::reset_json(&reset)))
}
