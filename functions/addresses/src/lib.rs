//! The addresses endpoint group: `GET /addresses`, `GET/POST /users/{user}/addresses`,
//! `GET/PUT/DELETE /users/{user}/addresses/{address}`. Rules live in
//! `eider_shared::domain::addresses`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use eider_shared::domain::addresses::{self, ListAddresses};
use eider_shared::error::ApiResult;
use eider_shared::http::{AppState, Params, PathParam, Validator};
use eider_shared::id::ObjectId;
use serde_json::{Value, json};

/// Every route of this group (method, path), as template.yaml must list them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/addresses"),
    ("GET", "/users/{user}/addresses"),
    ("POST", "/users/{user}/addresses"),
    ("GET", "/users/{user}/addresses/{address}"),
    ("PUT", "/users/{user}/addresses/{address}"),
    ("DELETE", "/users/{user}/addresses/{address}"),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/addresses", get(list_all_addresses))
        .route(
            "/users/{user}/addresses",
            get(list_user_addresses).post(create_address),
        )
        .route(
            "/users/{user}/addresses/{address}",
            get(get_address).put(update_address).delete(delete_address),
        )
}

/// Validates `{user}` and, when given, `{address}` path parameters.
fn ids(user: &str, address: Option<&str>) -> ApiResult<(ObjectId, ObjectId)> {
    let mut v = Validator::new(Default::default());
    let user = v.path_id("user", user);
    let address = address.and_then(|a| v.path_id("address", a));
    v.finish()?;
    Ok((user.unwrap_or_default(), address.unwrap_or_default()))
}

/// `GET /addresses` (spec "Search and list addresses").
async fn list_all_addresses(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = ListAddresses::parse(params)?;
    Ok(Json(addresses::list_all(&state, request).await?))
}

/// `GET /users/{user}/addresses` (spec "List user addresses").
async fn list_user_addresses(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _) = ids(&user, None)?;
    Ok(Json(addresses::list_for_user(&state, &user, params).await?))
}

/// `POST /users/{user}/addresses` (spec "Add a new address").
async fn create_address(
    State(state): State<AppState>,
    PathParam(user): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, _) = ids(&user, None)?;
    let id = addresses::create(&state, &user, params).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /users/{user}/addresses/{address}` (spec "Get one address").
async fn get_address(
    State(state): State<AppState>,
    PathParam((user, address)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, address) = ids(&user, Some(&address))?;
    Ok(Json(addresses::get(&state, &user, &address, params).await?))
}

/// `PUT /users/{user}/addresses/{address}` (spec "Update address details").
async fn update_address(
    State(state): State<AppState>,
    PathParam((user, address)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, address) = ids(&user, Some(&address))?;
    addresses::update(&state, &user, &address, params).await?;
    Ok(Json(json!({ "success": true })))
}

/// `DELETE /users/{user}/addresses/{address}` (spec "Delete an alias address").
async fn delete_address(
    State(state): State<AppState>,
    PathParam((user, address)): PathParam<(String, String)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (user, address) = ids(&user, Some(&address))?;
    addresses::delete(&state, &user, &address, params).await?;
    Ok(Json(json!({ "success": true })))
}
