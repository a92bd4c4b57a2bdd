//! The auth endpoint group: `POST /authenticate`, `GET /users/{user}/authlog`, the
//! application-specific passwords (`/users/{user}/asps...`), TOTP 2FA (`/users/{user}/2fa...`)
//! and `POST /users/{user}/password/reset`. Handlers parse and validate, call
//! `eider_shared::domain::{auth, authlog, asps, totp}`, and shape the JSON; the rules live in
//! shared/.

use axum::extract::State;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use eider_shared::domain::authlog::{self, ListAuthlog};
use eider_shared::domain::{asps, auth, totp};
use eider_shared::error::ApiResult;
use eider_shared::http::{AppState, Params, PathParam, Validator};
use eider_shared::id::ObjectId;
use serde_json::{Value, json};

/// Every route of this group (method, path), as template.yaml must list them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/authenticate"),
    ("GET", "/users/{user}/authlog"),
    ("GET", "/users/{user}/asps"),
    ("POST", "/users/{user}/asps"),
    ("GET", "/users/{user}/asps/{asp}"),
    ("DELETE", "/users/{user}/asps/{asp}"),
    ("POST", "/users/{user}/2fa/totp/setup"),
    ("POST", "/users/{user}/2fa/totp/enable"),
    ("POST", "/users/{user}/2fa/totp/check"),
    ("DELETE", "/users/{user}/2fa/totp"),
    ("DELETE", "/users/{user}/2fa"),
    ("POST", "/users/{user}/password/reset"),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/authenticate", post(authenticate))
        .route("/users/{user}/authlog", get(list_authlog))
        .route("/users/{user}/asps", get(list_asps).post(create_asp))
        .route("/users/{user}/asps/{asp}", get(get_asp).delete(delete_asp))
        .route("/users/{user}/2fa/totp/setup", post(setup_totp))
        .route("/users/{user}/2fa/totp/enable", post(enable_totp))
        .route("/users/{user}/2fa/totp/check", post(check_totp))
        .route("/users/{user}/2fa/totp", delete(disable_totp))
        .route("/users/{user}/2fa", delete(disable_2fa))
        .route("/users/{user}/password/reset", post(reset_password))
}

/// Validates object-id path parameters, reporting every bad one.
fn ids<const N: usize>(raw: [(&str, &str); N]) -> ApiResult<[ObjectId; N]> {
    let mut v = Validator::new(Default::default());
    let parsed = raw.map(|(field, value)| v.path_id(field, value).unwrap_or_default());
    v.finish()?;
    Ok(parsed)
}

fn success() -> Json<Value> {
    Json(json!({ "success": true }))
}

/// `POST /authenticate` (spec "Authenticate an user").
async fn authenticate(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = auth::AuthRequest::parse(params)?;
    Ok(Json(auth::authenticate(&state, request).await?))
}

/// `GET /users/{user}/authlog` (spec "List the authentication log").
async fn list_authlog(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let [id] = ids([("user", &user)])?;
    let request = ListAuthlog::parse(params)?;
    Ok(Json(authlog::list(&state, &id, request).await?))
}

/// `GET /users/{user}/asps` (spec "List existing passwords").
async fn list_asps(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let [id] = ids([("user", &user)])?;
    Ok(Json(asps::list(&state, &id, params).await?))
}

/// `POST /users/{user}/asps` (spec "Add a new Application Specific Password").
async fn create_asp(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let [id] = ids([("user", &user)])?;
    let created = asps::create(&state, &id, params).await?;
    let mut body = json!({
        "success": true,
        "id": created.id,
        "password": created.password,
    });
    if let Some(profile) = created.mobileconfig {
        body["name"] = json!(profile.name);
        body["address"] = json!(profile.address);
        body["mobileconfig"] = json!(profile.base64);
    }
    Ok(Json(body))
}

/// `GET /users/{user}/asps/{asp}` (WildDuck's; not in the spec).
async fn get_asp(
    State(state): State<AppState>,
    PathParam((user, asp)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let [user, asp] = ids([("user", &user), ("asp", &asp)])?;
    Ok(Json(asps::get(&state, &user, &asp, params).await?))
}

/// `DELETE /users/{user}/asps/{asp}` (spec "Delete an Application Specific Password").
async fn delete_asp(
    State(state): State<AppState>,
    PathParam((user, asp)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let [user, asp] = ids([("user", &user), ("asp", &asp)])?;
    asps::delete(&state, &user, &asp, params).await?;
    Ok(success())
}

/// `POST /users/{user}/2fa/totp/setup` (spec "Setup 2FA").
async fn setup_totp(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let [id] = ids([("user", &user)])?;
    Ok(Json(totp::setup(&state, &id, params).await?))
}

/// `POST /users/{user}/2fa/totp/enable` (spec "Verify 2FA").
async fn enable_totp(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let [id] = ids([("user", &user)])?;
    totp::enable(&state, &id, params).await?;
    Ok(success())
}

/// `POST /users/{user}/2fa/totp/check` (spec "Check 2FA").
async fn check_totp(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let [id] = ids([("user", &user)])?;
    totp::check(&state, &id, params).await?;
    Ok(success())
}

/// `DELETE /users/{user}/2fa/totp` (spec "Disable TOTP").
async fn disable_totp(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let [id] = ids([("user", &user)])?;
    totp::disable(&state, &id, params).await?;
    Ok(success())
}

/// `DELETE /users/{user}/2fa` (spec "Disable 2FA").
async fn disable_2fa(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let [id] = ids([("user", &user)])?;
    totp::disable_all(&state, &id, params).await?;
    Ok(success())
}

/// `POST /users/{user}/password/reset` (spec "Reset user password").
async fn reset_password(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let [id] = ids([("user", &user)])?;
    let reset = auth::reset_password(&state, &id, params).await?;
    Ok(Json(json!({
        "success": true,
        "password": reset.password,
        "validAfter": reset.valid_after,
    })))
}
