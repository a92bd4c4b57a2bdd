//! The autoreply endpoint group: `PUT/GET/DELETE /users/{user}/autoreply`. Handlers validate
//! the path id and call `eider_shared::domain::autoreply`; the rules (partial updates, the
//! profile's `autoreply` flag kept in step) live in shared/.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use eider_shared::domain::autoreply;
use eider_shared::error::ApiResult;
use eider_shared::http::{AppState, Params, PathParam, Validator};
use eider_shared::id::ObjectId;
use serde_json::{Value, json};

/// Every route of this group (method, path), as template.yaml must list them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/users/{user}/autoreply"),
    ("PUT", "/users/{user}/autoreply"),
    ("DELETE", "/users/{user}/autoreply"),
];

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/users/{user}/autoreply",
        get(get_autoreply)
            .put(update_autoreply)
            .delete(delete_autoreply),
    )
}

fn user_id(raw: &str) -> ApiResult<ObjectId> {
    let mut v = Validator::new(Default::default());
    let id = v.path_id("user", raw);
    v.finish()?;
    Ok(id.unwrap_or_default())
}

/// `PUT /users/{user}/autoreply` (spec "Setup Autoreply").
async fn update_autoreply(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let user = user_id(&user)?;
    let id = autoreply::update(&state, &user, params).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /users/{user}/autoreply` (spec "Check Autoreply status").
async fn get_autoreply(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let user = user_id(&user)?;
    Ok(Json(autoreply::get(&state, &user, params).await?))
}

/// `DELETE /users/{user}/autoreply` (spec "Disable Autoreply").
async fn delete_autoreply(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let user = user_id(&user)?;
    autoreply::delete(&state, &user, params).await?;
    Ok(Json(json!({ "success": true })))
}
