//! The addresses endpoint group: `GET /addresses`, `GET /addresses/resolve/{address}`,
//! `GET/POST /users/{user}/addresses`, `GET/PUT/DELETE /users/{user}/addresses/{address}`,
//! the domain aliases (`/domainaliases...`), forwarded addresses (`/addresses/forwarded...`)
//! domain access lists (`/domainaccess...`) and DKIM keys (`/dkim...`). Handlers validate through
//! `eider_shared::http::wire::{addresses, domain_aliases}`, call the domain, and answer the
//! JSON; the rules live in shared/.

use axum::extract::State;
use axum::{Json, Router};
use eider_shared::domain::domain_access::{self, Access};
use eider_shared::domain::{
    address_register, addresses, dkim, domain_aliases, domain_rename, forwarded,
};
use eider_shared::http::extract::{AddressId, DkimId, DomainAccessId, DomainAliasId, UserId};
use eider_shared::http::validate::session_only;
use eider_shared::http::wire::addresses as wire;
use eider_shared::http::wire::dkim as dkim_wire;
use eider_shared::http::wire::domain_access as access_wire;
use eider_shared::http::wire::domain_aliases as alias_wire;
use eider_shared::http::wire::forwarded as forwarded_wire;
use eider_shared::http::{ApiResult, AppState, Ids, Params, PathParam, Routes};
use serde_json::{Value, json};

/// Every route of this group: the router is built from it, and template.yaml must list it.
pub fn routes() -> Routes {
    Routes::new()
        .get("/addresses", list_all_addresses)
        .get("/addresses/resolve/{address}", resolve_address)
        .put("/addresses/renameDomain", rename_domain)
        .post("/addresses/forwarded", create_forwarded)
        .get("/addresses/forwarded/{address}", get_forwarded)
        .put("/addresses/forwarded/{address}", update_forwarded)
        .delete("/addresses/forwarded/{address}", delete_forwarded)
        .get("/users/{user}/addresses", list_user_addresses)
        .post("/users/{user}/addresses", create_address)
        .get("/users/{user}/addresses/{address}", get_address)
        .put("/users/{user}/addresses/{address}", update_address)
        .delete("/users/{user}/addresses/{address}", delete_address)
        .get("/users/{user}/addressregister", search_address_register)
        .put(
            "/users/{user}/addressregister/{address}",
            update_address_register,
        )
        .get("/domainaliases", list_domain_aliases)
        .post("/domainaliases", create_domain_alias)
        .get("/domainaliases/resolve/{alias}", resolve_domain_alias)
        .get("/domainaliases/{alias}", get_domain_alias)
        .delete("/domainaliases/{alias}", delete_domain_alias)
        .post("/domainaccess/{tag}/allow", allow_domain)
        .post("/domainaccess/{tag}/block", block_domain)
        .get("/domainaccess/{tag}/allow", list_allowed_domains)
        .get("/domainaccess/{tag}/block", list_blocked_domains)
        .delete("/domainaccess/{domain}", delete_domain_access)
        .get("/dkim", list_dkim_keys)
        .post("/dkim", set_dkim_key)
        .get("/dkim/resolve/{domain}", resolve_dkim_key)
        .get("/dkim/{dkim}", get_dkim_key)
        .delete("/dkim/{dkim}", delete_dkim_key)
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

/// `GET /addresses/resolve/{address}` (WildDuck's): an address (through the resolver, with
/// wildcards when `allowWildcard`), a wildcard address as stored, or an address id.
async fn resolve_address(
    State(state): State<AppState>,
    PathParam(address): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = wire::resolve_request(&address, params)?;
    let found = addresses::resolve_for_api(&state, &request.by).await?;
    Ok(Json(wire::resolved_json(&found, &request)))
}

/// `GET /domainaliases` (WildDuck's): in alias order, `query` a substring of either domain.
async fn list_domain_aliases(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = alias_wire::list(params)?;
    let listing = domain_aliases::list(&state, &request).await?;
    Ok(Json(alias_wire::list_json(&request, &listing)))
}

/// `POST /domainaliases` (WildDuck's).
async fn create_domain_alias(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (alias, domain) = alias_wire::create(params)?;
    let id = domain_aliases::create(&state, &alias, &domain).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /domainaliases/resolve/{alias}` (WildDuck's): the id of an alias domain.
async fn resolve_domain_alias(
    State(state): State<AppState>,
    PathParam(alias): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let found = domain_aliases::resolve(&state, &alias).await?;
    Ok(Json(json!({ "success": true, "id": found.id })))
}

/// `GET /domainaliases/{alias}` (WildDuck's), by id.
async fn get_domain_alias(
    State(state): State<AppState>,
    Ids(id): Ids<DomainAliasId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let alias = domain_aliases::get(&state, &id).await?;
    Ok(Json(alias_wire::alias_json(&alias)))
}

/// `DELETE /domainaliases/{alias}` (WildDuck's), by id.
async fn delete_domain_alias(
    State(state): State<AppState>,
    Ids(id): Ids<DomainAliasId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    domain_aliases::delete(&state, &id).await?;
    Ok(Json(json!({ "success": true })))
}

/// `POST /addresses/forwarded` (WildDuck's): an address whose mail goes on to its targets.
async fn create_forwarded(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let input = forwarded_wire::create(params)?;
    let id = forwarded::create(&state, input).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /addresses/forwarded/{address}` (WildDuck's), by id: with today's forwards count.
async fn get_forwarded(
    State(state): State<AppState>,
    Ids(id): Ids<AddressId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let found = forwarded::get(&state, &id).await?;
    Ok(Json(forwarded_wire::forwarded_json(&found, true, true)))
}

/// `PUT /addresses/forwarded/{address}` (WildDuck's).
async fn update_forwarded(
    State(state): State<AppState>,
    Ids(id): Ids<AddressId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let changes = forwarded_wire::changes(params)?;
    forwarded::update(&state, &id, changes).await?;
    Ok(Json(json!({ "success": true })))
}

/// `DELETE /addresses/forwarded/{address}` (WildDuck's).
async fn delete_forwarded(
    State(state): State<AppState>,
    Ids(id): Ids<AddressId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    forwarded::delete(&state, &id).await?;
    Ok(Json(json!({ "success": true })))
}

/// `POST /domainaccess/{tag}/allow` (WildDuck's): mail from the domain is never junk for
/// users with the tag.
async fn allow_domain(
    state: State<AppState>,
    PathParam(tag): PathParam<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    set_domain_access(state, &tag, params, Access::Allow).await
}

/// `POST /domainaccess/{tag}/block` (WildDuck's): mail from the domain is always junk for
/// users with the tag.
async fn block_domain(
    state: State<AppState>,
    PathParam(tag): PathParam<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    set_domain_access(state, &tag, params, Access::Block).await
}

async fn set_domain_access(
    State(state): State<AppState>,
    tag: &str,
    Params(params): Params,
    action: Access,
) -> ApiResult<Json<Value>> {
    let tag = access_wire::tag(tag)?;
    let domain = access_wire::domain(params)?;
    let id = domain_access::set(&state, &tag, &domain, action).await?;
    Ok(Json(json!({ "success": true, "id": id })))
}

/// `GET /domainaccess/{tag}/allow` (WildDuck's).
async fn list_allowed_domains(
    state: State<AppState>,
    PathParam(tag): PathParam<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    list_domain_access(state, &tag, params, Access::Allow).await
}

/// `GET /domainaccess/{tag}/block` (WildDuck's).
async fn list_blocked_domains(
    state: State<AppState>,
    PathParam(tag): PathParam<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    list_domain_access(state, &tag, params, Access::Block).await
}

async fn list_domain_access(
    State(state): State<AppState>,
    tag: &str,
    Params(params): Params,
    action: Access,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let tag = access_wire::tag(tag)?;
    let entries = domain_access::list(&state, &tag, action).await?;
    Ok(Json(access_wire::list_json(&entries)))
}

/// `DELETE /domainaccess/{domain}` (WildDuck's): `{domain}` is the entry's id.
async fn delete_domain_access(
    State(state): State<AppState>,
    Ids(id): Ids<DomainAccessId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    domain_access::delete(&state, &id).await?;
    Ok(Json(json!({ "success": true, "deleted": id.0 })))
}

/// `GET /dkim` (WildDuck's): in domain order, `query` a part of the domain.
async fn list_dkim_keys(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let request = dkim_wire::list(params)?;
    let listing = dkim::list(&state, &request).await?;
    Ok(Json(dkim_wire::list_json(&request, &listing)))
}

/// `POST /dkim` (WildDuck's): generates or imports the domain's key; answers the DNS record.
async fn set_dkim_key(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let input = dkim_wire::create(params)?;
    let key = dkim::set(&state, input).await?;
    let mut body = dkim_wire::key_json(&key);
    if let Some(map) = body.as_object_mut() {
        map.remove("created");
    }
    Ok(Json(body))
}

/// `GET /dkim/resolve/{domain}` (WildDuck's): the id of a domain's key.
async fn resolve_dkim_key(
    State(state): State<AppState>,
    PathParam(domain): PathParam<String>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let key = dkim::resolve(&state, &domain).await?;
    Ok(Json(json!({ "success": true, "id": key.id })))
}

/// `GET /dkim/{dkim}` (WildDuck's).
async fn get_dkim_key(
    State(state): State<AppState>,
    Ids(id): Ids<DkimId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    let key = dkim::get(&state, &id).await?;
    Ok(Json(dkim_wire::key_json(&key)))
}

/// `DELETE /dkim/{dkim}` (WildDuck's).
async fn delete_dkim_key(
    State(state): State<AppState>,
    Ids(id): Ids<DkimId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    session_only(params)?;
    dkim::delete(&state, &id).await?;
    Ok(Json(json!({ "success": true })))
}

/// `PUT /addresses/renameDomain` (WildDuck's): every address on a domain moves to another,
/// with main addresses, the domain's DKIM key and the aliases pointing to it.
async fn rename_domain(
    State(state): State<AppState>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (old, new) = wire::rename_domain(params)?;
    let renamed = domain_rename::rename(&state, &old, &new).await?;
    Ok(Json(json!({
        "success": true,
        "modifiedAddresses": renamed.addresses,
        "modifiedUsers": renamed.users,
        "modifiedDkim": renamed.dkim,
        "modifiedAliases": renamed.aliases,
        "skippedAddresses": renamed.skipped,
    })))
}

/// `GET /users/{user}/addressregister` (WildDuck's): correspondents for autocompletion.
async fn search_address_register(
    State(state): State<AppState>,
    Ids(user): Ids<UserId>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (query, limit) = wire::register_search(params)?;
    let found = address_register::search(&state, &user, &query, limit).await?;
    Ok(Json(wire::register_json(&found)))
}

/// `PUT /users/{user}/addressregister/{address}` (WildDuck's): disable or rename an entry;
/// an unknown one answers `success: false` (with 200, as WildDuck).
async fn update_address_register(
    State(state): State<AppState>,
    Ids((user, entry)): Ids<(UserId, AddressId)>,
    Params(params): Params,
) -> ApiResult<Json<Value>> {
    let (disabled, name) = wire::register_update(params)?;
    let matched = address_register::update(&state, &user, &entry, disabled, name).await?;
    Ok(Json(json!({ "success": matched })))
}
