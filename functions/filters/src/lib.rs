//! The filters endpoint group: `GET/POST /users/{user}/filters`,
//! `GET/PUT/DELETE /users/{user}/filters/{filter}`. Handlers validate the path ids, call
//! `eider_shared::domain::filters` and shape the JSON; the rules (both request shapes, limits,
//! matching) live in shared/.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use eider_shared::domain::filters;
use eider_shared::error::ApiResult;
use eider_shared::http::{AppState, Params, PathParam, Validator};
use eider_shared::id::ObjectId;
use serde_json::{Value, json};

/// Every route of this group (method, path), as template.yaml must list them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/users/{user}/filters"),
    ("POST", "/users/{user}/filters"),
    ("GET", "/users/{user}/filters/{filter}"),
    ("PUT", "/users/{user}/filters/{filter}"),
    ("DELETE", "/users/{user}/filters/{filter}"),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/users/{user}/filters",
            get(list_filters).post(create_filter),
        )
        .route(
            "/users/{user}/filters/{filter}",
            get(get_filter).put(update_filter).delete(delete_filter),
        )
}

/// Validates `{user}` and, when given, `{filter}`.
fn ids(user: &str, filter: Option<&str>) -> ApiResult<(ObjectId, ObjectId)> {
    let mut v = Validator::new(Default::default());
    let user = v.path_id("user", user);
    let filter = filter.and_then(|f| v.path_id("filter", f));
    v.finish()?;
    Ok((user.unwrap_or_default(), filter.unwrap_or_default()))
}

/// `POST /users/{user}/filters` (spec "Create new filter").
async fn create_filter(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _) = ids(&user, None)?;
    let id = filters::create(&state, &user, params).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /users/{user}/filters` (spec "List existing filters").
async fn list_filters(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _) = ids(&user, None)?;
    Ok(Json(filters::list(&state, &user, params).await?))
}

/// `GET /users/{user}/filters/{filter}` (spec "Get filter details").
async fn get_filter(
    State(state): State<AppState>,
    PathParam((user, filter)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, filter) = ids(&user, Some(&filter))?;
    Ok(Json(filters::get(&state, &user, &filter, params).await?))
}

/// `PUT /users/{user}/filters/{filter}` (spec "Update filter details").
async fn update_filter(
    State(state): State<AppState>,
    PathParam((user, filter)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, filter) = ids(&user, Some(&filter))?;
    filters::update(&state, &user, &filter, params).await?;
    Ok(Json(json!({ "success": true })))
}

/// `DELETE /users/{user}/filters/{filter}` (spec "Delete a filter").
async fn delete_filter(
    State(state): State<AppState>,
    PathParam((user, filter)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, filter) = ids(&user, Some(&filter))?;
    filters::delete(&state, &user, &filter, params).await?;
    Ok(Json(json!({ "success": true })))
}
