//! Addresses on the wire: `GET /addresses` and `/users/{user}/addresses...` requests validated
//! into the domain's commands, and addresses answered in WildDuck's shape.

use serde_json::{Map, Value, json};

use super::users::parsed_object;
use crate::domain::addresses::{
    AddressChanges, AddressListing, FoundAddress, ListAddresses, ListedAddress, NewAddress,
    OwnedAddress, ResolveBy, StoredAddress,
};
use crate::domain::names::normalize_alias;
use crate::domain::users::MAX_LIST_ITEMS;
use crate::http::error::{ApiError, ApiResult};
use crate::http::paging::{add_paging, page_request};
use crate::http::validate::{MAX_DATA_BYTES, Str, Validator};
use crate::id::ObjectId;
use crate::time::iso;

/// Which optional fields a listing answers with.
pub struct DataFields {
    pub meta_data: bool,
    pub internal_data: bool,
}

/// Validates `GET /users/{user}/addresses` (strict).
pub fn list_for_user(params: Map<String, Value>) -> ApiResult<DataFields> {
    let mut v = Validator::new(params);
    let meta_data = v.boolean("metaData").unwrap_or(false);
    let internal_data = v.boolean("internalData").unwrap_or(false);
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(DataFields {
        meta_data,
        internal_data,
    })
}

/// Validates `POST /users/{user}/addresses` (strict).
pub fn new_address(params: Map<String, Value>) -> ApiResult<NewAddress> {
    let mut v = Validator::new(params);
    let raw = v.required_string("address", Str::max(255).trim());
    let name = v.string("name", Str::max(128).trim());
    let main = v.boolean("main").unwrap_or(false);
    let allow_wildcard = v.boolean("allowWildcard").unwrap_or(false);
    let tags = v
        .bounded_list("tags", 128, MAX_LIST_ITEMS)
        .unwrap_or_default();
    let meta_data = v.json_object("metaData", MAX_DATA_BYTES);
    let internal_data = v.json_object("internalData", MAX_DATA_BYTES);
    v.session();
    let normalized = raw.as_deref().map(|a| normalize_alias(a, allow_wildcard));
    if let Some(Err(e)) = &normalized {
        v.error("address", e.message("address"));
    }
    if main
        && normalized
            .as_ref()
            .is_some_and(|n| n.as_ref().is_ok_and(|a| a.wildcard))
    {
        v.error("main", "Main address can not contain *");
    }
    v.deny_unknown();
    v.finish()?;
    let Some(Ok(address)) = normalized else {
        return Err(ApiError::invalid_field(
            "address",
            "\"address\" is required",
        ));
    };
    Ok(NewAddress {
        address,
        name,
        main,
        tags,
        meta_data,
        internal_data,
    })
}

/// Validates `PUT /users/{user}/addresses/{address}` (strict).
pub fn address_changes(params: Map<String, Value>) -> ApiResult<AddressChanges> {
    let mut v = Validator::new(params);
    let name = v.string("name", Str::max(128).trim().allow_empty());
    let rename = v.string("address", Str::max(255).trim());
    let main = v.boolean("main");
    let tags = v.bounded_list("tags", 128, MAX_LIST_ITEMS);
    let meta_data = v.json_object("metaData", MAX_DATA_BYTES);
    let internal_data = v.json_object("internalData", MAX_DATA_BYTES);
    v.session();
    if main == Some(false) {
        v.error("main", "Cannot unset main status");
    }
    v.deny_unknown();
    v.finish()?;
    Ok(AddressChanges {
        name: name.map(|n| Some(n).filter(|n| !n.is_empty())),
        rename,
        make_main: main == Some(true),
        tags,
        meta_data,
        internal_data,
        rename_wildcard: false,
    })
}

/// Validates `GET /addresses` (unknown parameters are allowed, as in WildDuck).
pub fn list_addresses(params: Map<String, Value>) -> ApiResult<(ListAddresses, DataFields)> {
    let mut v = Validator::new(params);
    let query = v.string("query", Str::max(255).trim().lowercase());
    let lower = |v: &mut Validator, f: &str| -> Vec<String> {
        v.string_list(f, 1024)
            .unwrap_or_default()
            .iter()
            .map(|t| t.to_lowercase())
            .collect()
    };
    let required_tags = lower(&mut v, "requiredTags");
    let tags = lower(&mut v, "tags")
        .into_iter()
        .filter(|t| !required_tags.contains(t))
        .collect();
    let meta_data = v.boolean("metaData").unwrap_or(false);
    let internal_data = v.boolean("internalData").unwrap_or(false);
    let page = page_request(&mut v);
    v.finish()?;
    Ok((
        ListAddresses {
            query,
            tags,
            required_tags,
            page,
        },
        DataFields {
            meta_data,
            internal_data,
        },
    ))
}

fn name_json(a: &StoredAddress) -> Value {
    a.name
        .clone()
        .map(Value::String)
        .unwrap_or(Value::Bool(false))
}

/// An address of a user, with `metaData` when `with_meta` (and `internalData` when stored).
fn owned_json(owned: &OwnedAddress, with_meta: bool) -> Value {
    let a = &owned.address;
    let mut out = json!({
        "id": a.id,
        "name": name_json(a),
        "address": a.address,
        "main": owned.main,
        "tags": a.tags,
        "created": iso(&a.created),
    });
    if with_meta {
        out["metaData"] = parsed_object(&a.meta_data);
        if a.internal_data.is_some() {
            out["internalData"] = parsed_object(&a.internal_data);
        }
    }
    out
}

/// `GET /users/{user}/addresses`.
pub fn user_list_json(addresses: &[OwnedAddress], fields: &DataFields) -> Value {
    let results: Vec<Value> = addresses
        .iter()
        .map(|owned| {
            let mut entry = owned_json(owned, fields.meta_data);
            if fields.internal_data {
                entry["internalData"] = parsed_object(&owned.address.internal_data);
            }
            entry
        })
        .collect();
    json!({ "success": true, "results": results })
}

/// `GET /users/{user}/addresses/{address}`.
pub fn address_json(owned: &OwnedAddress) -> Value {
    let mut body = owned_json(owned, owned.address.meta_data.is_some());
    body["success"] = json!(true);
    body
}

/// `GET /addresses`.
pub fn list_json(request: &ListAddresses, fields: &DataFields, listing: &AddressListing) -> Value {
    let results: Vec<Value> = listing
        .page
        .items
        .iter()
        .map(|listed| {
            let (mut entry, meta_data, internal_data) = match listed {
                ListedAddress::User(a) => (
                    json!({
                        "id": a.id,
                        "name": name_json(a),
                        "address": a.address,
                        "user": a.user,
                        "forwarded": false,
                        "forwardedDisabled": false,
                        "tags": a.tags,
                    }),
                    &a.meta_data,
                    &a.internal_data,
                ),
                // WildDuck's forwarded entries: no user, their targets.
                ListedAddress::Forwarded(f) => (
                    json!({
                        "id": f.id,
                        "name": f.name,
                        "address": f.address,
                        "forwarded": true,
                        "forwardedDisabled": f.forwarded_disabled,
                        "targets": f.targets.iter().map(|t| t.value.clone()).collect::<Vec<_>>(),
                        "tags": f.tags,
                    }),
                    &f.meta_data,
                    &f.internal_data,
                ),
            };
            if fields.meta_data {
                entry["metaData"] = parsed_object(meta_data);
            }
            if fields.internal_data {
                entry["internalData"] = parsed_object(internal_data);
            }
            entry
        })
        .collect();
    let mut body = json!({ "success": true });
    if let Some(q) = &request.query {
        body["query"] = json!(q);
    }
    body["total"] = json!(listing.total);
    add_paging(&mut body, &listing.page, &request.page);
    body["results"] = Value::Array(results);
    body
}

/// A validated `GET /addresses/resolve/{address}`.
pub struct ResolveRequest {
    pub by: ResolveBy,
    pub fields: DataFields,
}

/// Validates `GET /addresses/resolve/{address}`: an address (with `allowWildcard`, wildcard
/// addresses match it), a wildcard address, or a 24-hex id; `metaData`, `internalData`.
pub fn resolve_request(address: &str, params: Map<String, Value>) -> ApiResult<ResolveRequest> {
    let mut v = Validator::new(params);
    let wildcards = v.boolean("allowWildcard").unwrap_or(false);
    let meta_data = v.boolean("metaData").unwrap_or(false);
    let internal_data = v.boolean("internalData").unwrap_or(false);
    v.session();
    v.deny_unknown();
    let address = address.trim();
    let by = if address.contains('*') {
        ResolveBy::Wildcard(address.to_string())
    } else if address.contains('@') {
        ResolveBy::Address {
            address: address.to_string(),
            wildcards,
        }
    } else {
        match address.parse::<ObjectId>() {
            Ok(id) => ResolveBy::Id(id),
            Err(_) => {
                v.error(
                    "address",
                    "\"address\" must be an email address or an address id",
                );
                ResolveBy::Wildcard(String::new())
            }
        }
    };
    v.finish()?;
    Ok(ResolveRequest {
        by,
        fields: DataFields {
            meta_data,
            internal_data,
        },
    })
}

/// WildDuck's answer: for a user address no `name`; for a forwarded one its targets,
/// limits and autoreply, without `forwardedDisabled`.
pub fn resolved_json(found: &FoundAddress, request: &ResolveRequest) -> Value {
    let address = match found {
        FoundAddress::User(address) => address,
        FoundAddress::Forwarded(forwarded) => {
            let mut body = super::forwarded::forwarded_json(forwarded, false, false);
            let a = &forwarded.address;
            if request.fields.meta_data {
                body["metaData"] = parsed_object(&a.meta_data);
            }
            if request.fields.internal_data {
                body["internalData"] = parsed_object(&a.internal_data);
            }
            return body;
        }
    };
    let mut body = json!({
        "success": true,
        "id": address.id,
        "address": address.address,
        "user": address.user,
        "tags": address.tags,
        "created": iso(&address.created),
    });
    if request.fields.meta_data {
        body["metaData"] = parsed_object(&address.meta_data);
    }
    if request.fields.internal_data {
        body["internalData"] = parsed_object(&address.internal_data);
    }
    body
}

/// Validates `PUT /addresses/renameDomain` (strict): `oldDomain`, `newDomain`.
pub fn rename_domain(params: Map<String, Value>) -> ApiResult<(String, String)> {
    let mut v = Validator::new(params);
    let old = v.required_string("oldDomain", Str::max(255).trim());
    let new = v.required_string("newDomain", Str::max(255).trim());
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok((old.unwrap_or_default(), new.unwrap_or_default()))
}

/// Validates `GET /users/{user}/addressregister`: `query` (required), `limit` (1 to 250).
pub fn register_search(params: Map<String, Value>) -> ApiResult<(String, usize)> {
    let mut v = Validator::new(params);
    let query = v.required_string("query", Str::max(255));
    let limit = v.integer("limit", 1, 250).unwrap_or(20) as usize;
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok((query.unwrap_or_default(), limit))
}

/// Validates `PUT /users/{user}/addressregister/{address}`: `disabled` (required), `name`.
pub fn register_update(params: Map<String, Value>) -> ApiResult<(bool, Option<String>)> {
    let mut v = Validator::new(params);
    let disabled = v.boolean("disabled");
    let name = v.string("name", Str::max(255).trim().allow_empty());
    v.session();
    if disabled.is_none() && !v.has_error("disabled") {
        v.error("disabled", "\"disabled\" is required");
    }
    v.deny_unknown();
    v.finish()?;
    Ok((disabled.unwrap_or(false), name))
}

pub fn register_json(found: &[crate::domain::address_register::Correspondent]) -> Value {
    json!({
        "success": true,
        "results": found
            .iter()
            .map(|c| {
                let mut entry = json!({ "id": c.id, "address": c.address });
                if !c.name.is_empty() {
                    entry["name"] = json!(c.name);
                }
                entry
            })
            .collect::<Vec<_>>(),
    })
}
