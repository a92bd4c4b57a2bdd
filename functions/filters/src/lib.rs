//! The filters endpoint group: `GET /filters` (every user's), `GET/POST /users/{user}/filters`,
//! `GET/PUT/DELETE /users/{user}/filters/{filter}`. Handlers validate through
//! `eider_shared::http::wire::filters`, call `eider_shared::domain::filters`, and answer; the
//! rules (both request shapes, limits, matching) live in shared/.

use axum::extract::State;
use axum::{Extension, Json, Router};
use eider_shared::domain::filters;
use eider_shared::http::access::Caller;
use eider_shared::http::extract::{FilterId, UserId};
use eider_shared::http::validate::session_only;
use eider_shared::http::wire::filters as wire;
use eider_shared::http::{ApiResult, AppState, Ids, Params, Routes};
use serde_json::{Value, json};

/// Every route of this group: the router is built from it, and template.yaml must list it.
pub fn routes() -> Routes {
    Routes::new()
        .get("/users/{user}/filters", list_filters)
        .post("/users/{user}/filters", create_filter)
        .get("/users/{user}/filters/{filter}", get_filter)
        .put("/users/{user}/filters/{filter}", update_filter)
        .delete("/users/{user}/filters/{filter}", delete_filter)
        .get("/filters", list_all_filters)
}

pub fn router() -> Router<AppState> {
    routes().router()
}

/// `POST /users/{user}/filters` (spec "Create new filter").
async fn create_filter(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let changes = wire::filter_changes(params)?;
    let id = filters::create(&state, &user, changes).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /users/{user}/filters` (spec "List existing filters").
async fn list_filters(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let meta = wire::list_filters(params)?;
    let list = filters::list(&state, &user).await?;
    Ok(Json(wire::list_json(&list, meta)))
}

/// `GET /users/{user}/filters/{filter}` (spec "Get filter details").
async fn get_filter(
    State(state): State<AppState>,
    Ids((user, filter)): Ids<(UserId, FilterId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let found = filters::get(&state, &user, &filter).await?;
    Ok(Json(wire::details_json(&found)))
}

/// `PUT /users/{user}/filters/{filter}` (spec "Update filter details").
async fn update_filter(
    State(state): State<AppState>,
    Ids((user, filter)): Ids<(UserId, FilterId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let changes = wire::filter_changes(params)?;
    filters::update(&state, &user, &filter, changes).await?;
    Ok(Json(json!({ "success": true })))
}

/// `DELETE /users/{user}/filters/{filter}` (spec "Delete a filter").
async fn delete_filter(
    State(state): State<AppState>,
    Ids((user, filter)): Ids<(UserId, FilterId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    filters::delete(&state, &user, &filter).await?;
    Ok(Json(json!({ "success": true })))
}

/// `GET /filters` (WildDuck's): every user's filters in id order, `forward` a part of a
/// target; a user token sees its own only.
async fn list_all_filters(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (forward, meta, page) = wire::list_all(params)?;
    let request = filters::ListAllFilters {
        forward,
        user: caller.user().map(|grant| grant.user),
        page,
    };
    let listing = filters::list_all(&state, &request).await?;
    Ok(Json(wire::list_all_json(&request, &listing, meta)))
}
