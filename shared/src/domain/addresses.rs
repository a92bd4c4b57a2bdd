//! Addresses: a user's email addresses, unique across all users.
//!
//! Items: the address under its user (`USER#<user>` / `ADDR#<id>`, listed globally through
//! gsi1 by address bucket) and an address claim (`ADDRESS#<addrview>`) that makes the
//! normalized address unique and resolves it to its user for login and delivery. The user's
//! main address is `address` on the profile; it can be changed but not deleted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::names::{self, normalize_alias};
use super::users::{self, MAX_LIST_ITEMS, StoredUser, profile_touch, profile_update};
use super::{keys, stats};
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::paging::{PageRequest, bucket_names, count_buckets, walk_buckets};
use crate::http::validate::{MAX_DATA_BYTES, Str, Validator, session_only};
use crate::id::ObjectId;
use crate::store::{
    Condition, Index, Item, Query, SortRange, StoreError, Update, Write, query_all,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredAddress {
    pub id: ObjectId,
    pub user: ObjectId,
    pub address: String,
    pub addrview: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub meta_data: Option<String>,
    #[serde(default)]
    pub internal_data: Option<String>,
    #[serde(default)]
    pub wildcard: bool,
    pub created: DateTime<Utc>,
}

impl StoredAddress {
    pub fn new(
        user: ObjectId,
        address: &names::Address,
        name: Option<String>,
        tags: Vec<String>,
    ) -> Self {
        StoredAddress {
            id: ObjectId::new(),
            user,
            address: address.address.clone(),
            addrview: address.addrview.clone(),
            name,
            tags,
            meta_data: None,
            internal_data: None,
            wildcard: address.wildcard,
            created: Utc::now(),
        }
    }

    fn item(&self) -> Item {
        Item::new(
            keys::address(&self.user, &self.id),
            serde_json::to_value(self).unwrap_or_default(),
        )
        .with_gsi1(keys::addresses_listing(&self.addrview))
    }

    /// The claim first (a failed claim is the address being taken), then the address.
    pub fn create_writes(&self) -> Vec<Write> {
        let claim = Item::new(
            keys::address_claim(&self.addrview),
            json!({ "user": self.user, "id": self.id, "address": self.address }),
        );
        vec![Write::put_new(claim), Write::put_new(self.item())]
    }

    pub fn delete_writes(&self) -> Vec<Write> {
        vec![
            Write::delete(keys::address(&self.user, &self.id)),
            Write::delete(keys::address_claim(&self.addrview)),
        ]
    }

    fn json(&self, main: bool, with_meta: bool) -> Value {
        let mut out = json!({
            "id": self.id,
            "name": self.name.clone().map(Value::String).unwrap_or(Value::Bool(false)),
            "address": self.address,
            "main": main,
            "tags": self.tags,
            "created": self.created,
        });
        if with_meta {
            out["metaData"] = object(&self.meta_data);
            if self.internal_data.is_some() {
                out["internalData"] = object(&self.internal_data);
            }
        }
        out
    }
}

fn object(text: &Option<String>) -> Value {
    text.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| Value::Object(Map::new()))
}

fn from_item(item: &Item) -> ApiResult<StoredAddress> {
    serde_json::from_value(item.body.clone())
        .map_err(|e| ApiError::internal(anyhow::anyhow!("corrupt address {}: {e}", item.sk)))
}

/// Every address of a user, ordered by address.
pub async fn list_stored(state: &AppState, user: &ObjectId) -> ApiResult<Vec<StoredAddress>> {
    let query = Query::table(keys::user_pk(user))
        .range(SortRange::BeginsWith(keys::ADDRESS_SK_PREFIX.into()))
        .limit(500);
    let mut out = query_all(state.table.as_ref(), query)
        .await?
        .iter()
        .map(from_item)
        .collect::<ApiResult<Vec<_>>>()?;
    out.sort_by(|a, b| a.addrview.cmp(&b.addrview));
    Ok(out)
}

async fn load(state: &AppState, user: &ObjectId, id: &ObjectId) -> ApiResult<StoredAddress> {
    let item = state.table.get(&keys::address(user, id)).await?;
    match item {
        Some(item) => from_item(&item),
        None => Err(ApiError::not_found(
            "AddressNotFound",
            "Invalid or unknown address",
        )),
    }
}

/// Who owns an address (exact normalized match), for login and delivery.
pub async fn resolve(state: &AppState, address: &str) -> ApiResult<Option<(ObjectId, ObjectId)>> {
    let Ok(normalized) = names::normalize_address(address, true) else {
        return Ok(None);
    };
    let claim = state
        .table
        .get(&keys::address_claim(&normalized.addrview))
        .await?;
    Ok(claim.and_then(|c| {
        let user = serde_json::from_value(c.body["user"].clone()).ok()?;
        let id = serde_json::from_value(c.body["id"].clone()).ok()?;
        Some((user, id))
    }))
}

/// `GET /users/{user}/addresses`.
pub async fn list_for_user(
    state: &AppState,
    user: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<Value> {
    let mut v = Validator::new(params);
    let meta = v.boolean("metaData").unwrap_or(false);
    let internal = v.boolean("internalData").unwrap_or(false);
    v.session();
    v.deny_unknown();
    v.finish()?;
    let owner = users::load(state, user).await?;
    let results: Vec<Value> = list_stored(state, user)
        .await?
        .iter()
        .map(|a| {
            let mut entry = a.json(is_main(&owner, a), meta);
            if internal {
                entry["internalData"] = object(&a.internal_data);
            }
            entry
        })
        .collect();
    Ok(json!({ "success": true, "results": results }))
}

fn is_main(owner: &StoredUser, address: &StoredAddress) -> bool {
    owner.user.address.as_deref() == Some(address.address.as_str())
}

/// `GET /users/{user}/addresses/{address}`.
pub async fn get(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<Value> {
    session_only(params)?;
    let owner = users::load(state, user).await?;
    let address = load(state, user, id).await?;
    let mut body = address.json(is_main(&owner, &address), address.meta_data.is_some());
    body["success"] = json!(true);
    Ok(body)
}

/// `POST /users/{user}/addresses`: adds an alias; it becomes the main address when `main` is
/// set or the user has none yet.
pub async fn create(
    state: &AppState,
    user: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<ObjectId> {
    let mut v = Validator::new(params);
    let raw = v.required_string("address", Str::max(255).trim());
    let name = v.string("name", Str::max(128).trim());
    let main = v.boolean("main").unwrap_or(false);
    let allow_wildcard = v.boolean("allowWildcard").unwrap_or(false);
    let tags = v
        .bounded_list("tags", 128, MAX_LIST_ITEMS)
        .unwrap_or_default();
    let meta = v.json_object("metaData", MAX_DATA_BYTES);
    let internal = v.json_object("internalData", MAX_DATA_BYTES);
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
    let Some(Ok(normalized)) = normalized else {
        return Err(ApiError::invalid_field(
            "address",
            "\"address\" is required",
        ));
    };
    let mut address = StoredAddress::new(*user, &normalized, name, tags);
    address.meta_data = meta;
    address.internal_data = internal;

    for _ in 0..8 {
        let owner = users::load(state, user).await?;
        let mut writes = address.create_writes();
        if main || owner.user.address.is_none() {
            let mut changed = owner.user.clone();
            changed.address = Some(address.address.clone());
            writes.push(profile_update(&owner, &changed));
        } else {
            writes.push(profile_touch(&owner));
        }
        writes.push(stats::change(&[(stats::ADDRESSES, 1)]));
        match state.table.transact(writes).await {
            Ok(()) => return Ok(address.id),
            Err(StoreError::ConditionFailed { index: 0 }) => {
                return Err(ApiError::conflict(
                    "AddressExistsError",
                    "This email address already exists",
                ));
            }
            // The profile changed (or vanished) meanwhile: read it again.
            Err(StoreError::ConditionFailed { index: 2 }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        "LockFail",
        "The user was changed concurrently, try again",
    ))
}

/// `PUT /users/{user}/addresses/{address}`: name, tags, data, renaming, and making it main.
pub async fn update(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<()> {
    let mut v = Validator::new(params);
    let name = v.string("name", Str::max(128).trim().allow_empty());
    let rename = v.string("address", Str::max(255).trim());
    let main = v.boolean("main");
    let tags = v.bounded_list("tags", 128, MAX_LIST_ITEMS);
    let meta = v.json_object("metaData", MAX_DATA_BYTES);
    let internal = v.json_object("internalData", MAX_DATA_BYTES);
    v.session();
    if main == Some(false) {
        v.error("main", "Cannot unset main status");
    }
    v.deny_unknown();
    v.finish()?;

    for _ in 0..8 {
        let owner = users::load(state, user).await?;
        let current = load(state, user, id).await?;
        let was_main = is_main(&owner, &current);
        let mut next = current.clone();
        if let Some(name) = &name {
            next.name = Some(name.clone()).filter(|n| !n.is_empty());
        }
        if let Some(tags) = &tags {
            next.tags = tags.clone();
        }
        if meta.is_some() {
            next.meta_data = meta.clone();
        }
        if internal.is_some() {
            next.internal_data = internal.clone();
        }
        let mut writes = Vec::new();
        if let Some(raw) = &rename {
            let normalized = if current.wildcard || raw.contains('*') {
                return Err(ApiError::bad_request(
                    "ChangeNotAllowed",
                    "Can not change special address",
                ));
            } else {
                names::normalize_address(raw, false)
                    .map_err(|e| ApiError::invalid_field("address", e.message("address")))?
            };
            if normalized.addrview != current.addrview {
                next.address = normalized.address.clone();
                next.addrview = normalized.addrview.clone();
                writes.push(Write::put_new(Item::new(
                    keys::address_claim(&next.addrview),
                    json!({ "user": user, "id": id, "address": next.address }),
                )));
                writes.push(Write::delete(keys::address_claim(&current.addrview)));
            } else {
                next.address = normalized.address;
            }
        }
        let claims_written = !writes.is_empty();
        if main == Some(true) && current.wildcard {
            return Err(ApiError::bad_request(
                "WildcardNotPermitted",
                "Can not set wildcard address as default",
            ));
        }
        writes.push(Write::Update {
            key: keys::address(user, id),
            update: Update {
                body: Some(serde_json::to_value(&next).unwrap_or_default()),
                gsi1: Some(Some(keys::addresses_listing(&next.addrview))),
                ..Default::default()
            },
            condition: Some(Condition::Exists),
        });
        if main == Some(true) || (was_main && next.address != current.address) {
            let mut changed = owner.user.clone();
            changed.address = Some(next.address.clone());
            writes.push(profile_update(&owner, &changed));
        } else {
            writes.push(profile_touch(&owner));
        }
        let profile_index = writes.len() - 1;
        match state.table.transact(writes).await {
            Ok(()) => return Ok(()),
            Err(StoreError::ConditionFailed { index: 0 }) if claims_written => {
                return Err(ApiError::conflict(
                    "AddressExistsError",
                    "Address already exists",
                ));
            }
            Err(StoreError::ConditionFailed { index }) if index == profile_index => continue,
            Err(StoreError::ConditionFailed { .. }) => {
                return Err(ApiError::not_found(
                    "AddressNotFound",
                    "Invalid or unknown address",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        "LockFail",
        "The user was changed concurrently, try again",
    ))
}

/// `DELETE /users/{user}/addresses/{address}`: the main address can't be deleted.
pub async fn delete(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<()> {
    session_only(params)?;
    for _ in 0..8 {
        let owner = users::load(state, user).await?;
        let address = load(state, user, id).await?;
        if is_main(&owner, &address) {
            return Err(ApiError::bad_request(
                "NotPermitted",
                "Can not delete main address",
            ));
        }
        let mut writes = address.delete_writes();
        // The main address must not become this one while we delete it.
        writes.push(profile_touch(&owner));
        writes.push(stats::change(&[(stats::ADDRESSES, -1)]));
        if let Write::Delete { condition, .. } = &mut writes[0] {
            *condition = Some(Condition::Exists);
        }
        match state.table.transact(writes).await {
            Ok(()) => return Ok(()),
            Err(StoreError::ConditionFailed { index: 0 }) => {
                return Err(ApiError::not_found(
                    "AddressNotFound",
                    "Invalid or unknown address",
                ));
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        "LockFail",
        "The user was changed concurrently, try again",
    ))
}

/// A validated `GET /addresses` request.
pub struct ListAddresses {
    query: Option<String>,
    tags: Vec<String>,
    required_tags: Vec<String>,
    meta_data: bool,
    internal_data: bool,
    page: PageRequest,
}

impl ListAddresses {
    /// Unknown parameters are allowed, as in WildDuck.
    pub fn parse(params: Map<String, Value>) -> ApiResult<ListAddresses> {
        let mut v = Validator::new(params);
        // Stored addresses are lowercase, so the query is too (WildDuck's uppercase queries
        // silently find nothing).
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
        let page = PageRequest::from_params(&mut v);
        v.finish()?;
        Ok(ListAddresses {
            query,
            tags,
            required_tags,
            meta_data,
            internal_data,
            page,
        })
    }

    fn matches(&self, address: &StoredAddress) -> bool {
        let tags: Vec<String> = address.tags.iter().map(|t| t.to_lowercase()).collect();
        self.query
            .as_deref()
            .is_none_or(|q| address.address.contains(q))
            && (self.tags.is_empty() || self.tags.iter().any(|t| tags.contains(t)))
            && self.required_tags.iter().all(|t| tags.contains(t))
    }
}

/// `GET /addresses`: every address in address order, partial match on `query`.
pub async fn list_all(state: &AppState, request: ListAddresses) -> ApiResult<Value> {
    let buckets = bucket_names(keys::ADDRS_BUCKET_PREFIX);
    let keep = |item: &Item| from_item(item).is_ok_and(|a| request.matches(&a));
    let page = walk_buckets(
        state.table.as_ref(),
        Index::Gsi1,
        &buckets,
        &request.page,
        &keep,
    )
    .await?
    .ok_or_else(|| request.page.invalid_cursor())?;
    let filtered =
        request.query.is_some() || !request.tags.is_empty() || !request.required_tags.is_empty();
    let total = if filtered {
        count_buckets(state.table.as_ref(), Index::Gsi1, &buckets, &keep).await?
    } else {
        stats::total(state.table.as_ref(), stats::ADDRESSES).await?
    };
    let mut results = Vec::new();
    for item in &page.items {
        let a = from_item(item)?;
        let mut entry = json!({
            "id": a.id,
            "name": a.name.clone().map(Value::String).unwrap_or(Value::Bool(false)),
            "address": a.address,
            "user": a.user,
            "forwarded": false,
            "forwardedDisabled": false,
            "tags": a.tags,
        });
        if request.meta_data {
            entry["metaData"] = object(&a.meta_data);
        }
        if request.internal_data {
            entry["internalData"] = object(&a.internal_data);
        }
        results.push(entry);
    }
    let mut body = json!({ "success": true });
    if let Some(q) = &request.query {
        body["query"] = json!(q);
    }
    body["total"] = json!(total);
    if let (Value::Object(out), Value::Object(paging)) =
        (&mut body, page.paging_json(&request.page))
    {
        out.extend(paging);
    }
    body["results"] = Value::Array(results);
    Ok(body)
}
