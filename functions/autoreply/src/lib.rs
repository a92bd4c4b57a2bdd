//! The autoreply endpoint group: `PUT/GET/DELETE /users/{user}/autoreply`. Handlers validate
//! through `eider_shared::http::wire::autoreply`, call `eider_shared::domain::autoreply`, and
//! answer the JSON; the rules (and the delivery-time RFC 3834 checks) live in shared/.

use axum::extract::State;
use axum::{Json, Router};
use eider_shared::domain::autoreply;
use eider_shared::http::extract::UserId;
use eider_shared::http::validate::session_only;
use eider_shared::http::wire::autoreply as wire;
use eider_shared::http::{ApiResult, AppState, Ids, Params, Routes};
use serde_json::{Value, json};

/// Every route of this group: the router is built from it, and template.yaml must list it.
pub fn routes() -> Routes {
    Routes::new()
        .put("/users/{user}/autoreply", update_autoreply)
        .get("/users/{user}/autoreply", get_autoreply)
        .delete("/users/{user}/autoreply", delete_autoreply)
}

pub fn router() -> Router<AppState> {
    routes().router()
}

/// `PUT /users/{user}/autoreply` (spec "Setup Autoreply").
async fn update_autoreply(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let changes = wire::autoreply_changes(params)?;
    let id = autoreply::update(&state, &user, changes).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /users/{user}/autoreply` (spec "Check Autoreply status").
async fn get_autoreply(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let reply = autoreply::get(&state, &user).await?;
    Ok(Json(wire::autoreply_json(reply.as_ref())))
}

/// `DELETE /users/{user}/autoreply` (spec "Disable Autoreply").
async fn delete_autoreply(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    autoreply::delete(&state, &user).await?;
    Ok(Json(json!({ "success": true })))
}
