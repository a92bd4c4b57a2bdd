//! The addresses endpoint group: `GET /addresses`, `GET/POST /users/{user}/addresses`,
//! `GET/PUT/DELETE /users/{user}/addresses/{address}`. Handlers validate through
//! `eider_shared::http::wire::addresses`, call `eider_shared::domain::addresses`, and answer
//! the JSON; the rules live in shared/.

use axum::extract::State;
use axum::{Json, Router};
use eider_shared::domain::addresses;
use eider_shared::http::extract::{AddressId, UserId};
use eider_shared::http::validate::session_only;
use eider_shared::http::wire::addresses as wire;
use eider_shared::http::{ApiResult, AppState, Ids, Params, Routes};
use serde_json::{Value, json};

/// Every route of this group: the router is built from it, and template.yaml must list it.
pub fn routes() -> Routes {
    Routes::new()
        .get("/addresses", list_all_addresses)
        .get("/users/{user}/addresses", list_user_addresses)
        .post("/users/{user}/addresses", create_address)
        .get("/users/{user}/addresses/{address}", get_address)
        .put("/users/{user}/addresses/{address}", update_address)
        .delete("/users/{user}/addresses/{address}", delete_address)
}

pub fn router() -> Router<AppState> {
    routes().router()
}

/// `GET /addresses` (spec "Search and list addresses").
async fn list_all_addresses(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (request, fields) = wire::list_addresses(params)?;
    let listing = addresses::list_all(&state, &request).await?;
    Ok(Json(wire::list_json(&request, &fields, &listing)))
}

/// `GET /users/{user}/addresses` (spec "List user addresses").
async fn list_user_addresses(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let fields = wire::list_for_user(params)?;
    let list = addresses::list_for_user(&state, &user).await?;
    Ok(Json(wire::user_list_json(&list, &fields)))
}

/// `POST /users/{user}/addresses` (spec "Add a new address").
async fn create_address(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let input = wire::new_address(params)?;
    let id = addresses::create(&state, &user, input).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /users/{user}/addresses/{address}` (spec "Get one address").
async fn get_address(
    State(state): State<AppState>,
    Ids((user, address)): Ids<(UserId, AddressId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let owned = addresses::get(&state, &user, &address).await?;
    Ok(Json(wire::address_json(&owned)))
}

/// `PUT /users/{user}/addresses/{address}` (spec "Update address details").
async fn update_address(
    State(state): State<AppState>,
    Ids((user, address)): Ids<(UserId, AddressId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let changes = wire::address_changes(params)?;
    addresses::update(&state, &user, &address, changes).await?;
    Ok(Json(json!({ "success": true })))
}

/// `DELETE /users/{user}/addresses/{address}` (spec "Delete an alias address").
async fn delete_address(
    State(state): State<AppState>,
    Ids((user, address)): Ids<(UserId, AddressId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    addresses::delete(&state, &user, &address).await?;
    Ok(Json(json!({ "success": true })))
}
