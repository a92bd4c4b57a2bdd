//! Addresses: a user's email addresses, unique across all users.
//!
//! Items: the address under its user (`USER#<user>` / `ADDR#<id>`, listed globally through
//! gsi1 by address bucket) and an address claim (`ADDRESS#<addrview>`) that makes the
//! normalized address unique and resolves it to its user for login and delivery. The user's
//! main address is `address` on the profile; it can be changed but not deleted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::names;
use super::paging::{PageRequest, PageResult, bucket_names, count_buckets, walk_buckets};
use super::retry::{Attempt, USER_CONTENDED, retry_on_conflict};
use super::users::{self, StoredUser, profile_touch, profile_update};
use super::{AppState, DomainError, DomainResult, keys, stats};
use crate::id::ObjectId;
use crate::store::{
    Condition, Index, Item, Query, SortRange, StoreError, Update, Write, query_all,
};

/// Labels of the conditions on address items (see [`crate::store::Guard`]).
/// The address's claim is taken.
pub const ADDRESS_TAKEN: &str = "address taken";
/// The address item is gone (or, for a new one, its id exists already).
pub const ADDRESS_GONE: &str = "address gone";

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

    /// The claim (failing as [`ADDRESS_TAKEN`]) and the address.
    pub fn create_writes(&self) -> Vec<Write> {
        let claim = Item::new(
            keys::address_claim(&self.addrview),
            json!({ "user": self.user, "id": self.id, "address": self.address }),
        );
        vec![
            Write::put_new(claim, ADDRESS_TAKEN),
            Write::put_new(self.item(), ADDRESS_GONE),
        ]
    }

    pub fn delete_writes(&self) -> Vec<Write> {
        vec![
            Write::delete(keys::address(&self.user, &self.id)),
            Write::delete(keys::address_claim(&self.addrview)),
        ]
    }
}

fn from_item(item: &Item) -> DomainResult<StoredAddress> {
    serde_json::from_value(item.body.clone())
        .map_err(|e| DomainError::corrupt("address", &item.sk, e))
}

fn not_found() -> DomainError {
    DomainError::AddressNotFound("Invalid or unknown address")
}

/// Every address of a user, ordered by address.
pub async fn list_stored(state: &AppState, user: &ObjectId) -> DomainResult<Vec<StoredAddress>> {
    let query = Query::table(keys::user_pk(user))
        .range(SortRange::BeginsWith(keys::ADDRESS_SK_PREFIX.into()))
        .limit(500);
    let mut out = query_all(state.table.as_ref(), query)
        .await?
        .iter()
        .map(from_item)
        .collect::<DomainResult<Vec<_>>>()?;
    out.sort_by(|a, b| a.addrview.cmp(&b.addrview));
    Ok(out)
}

async fn load(state: &AppState, user: &ObjectId, id: &ObjectId) -> DomainResult<StoredAddress> {
    match state.table.get(&keys::address(user, id)).await? {
        Some(item) => from_item(&item),
        None => Err(not_found()),
    }
}

/// Who owns an address (exact normalized match), for login and delivery.
pub async fn resolve(
    state: &AppState,
    address: &str,
) -> DomainResult<Option<(ObjectId, ObjectId)>> {
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

/// An address as its owner sees it: whether it is the main one.
pub struct OwnedAddress {
    pub address: StoredAddress,
    pub main: bool,
}

fn is_main(owner: &StoredUser, address: &StoredAddress) -> bool {
    owner.user.address.as_deref() == Some(address.address.as_str())
}

/// `GET /users/{user}/addresses`.
pub async fn list_for_user(state: &AppState, user: &ObjectId) -> DomainResult<Vec<OwnedAddress>> {
    let owner = users::load(state, user).await?;
    Ok(list_stored(state, user)
        .await?
        .into_iter()
        .map(|address| OwnedAddress {
            main: is_main(&owner, &address),
            address,
        })
        .collect())
}

/// `GET /users/{user}/addresses/{address}`.
pub async fn get(state: &AppState, user: &ObjectId, id: &ObjectId) -> DomainResult<OwnedAddress> {
    let owner = users::load(state, user).await?;
    let address = load(state, user, id).await?;
    Ok(OwnedAddress {
        main: is_main(&owner, &address),
        address,
    })
}

/// A `POST /users/{user}/addresses` request.
#[derive(Debug, Clone)]
pub struct NewAddress {
    /// Normalized (a wildcard only when allowed).
    pub address: names::Address,
    pub name: Option<String>,
    pub main: bool,
    pub tags: Vec<String>,
    pub meta_data: Option<String>,
    pub internal_data: Option<String>,
}

/// `POST /users/{user}/addresses`: adds an alias; it becomes the main address when `main` is
/// set or the user has none yet.
pub async fn create(
    state: &AppState,
    user: &ObjectId,
    input: NewAddress,
) -> DomainResult<ObjectId> {
    let mut address = StoredAddress::new(*user, &input.address, input.name, input.tags);
    address.meta_data = input.meta_data;
    address.internal_data = input.internal_data;
    let (address, main) = (&address, input.main);
    retry_on_conflict(USER_CONTENDED, || async move {
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
            Ok(()) => Ok(Attempt::Done(address.id)),
            Err(StoreError::ConditionFailed {
                label: ADDRESS_TAKEN,
            }) => Err(DomainError::AddressExists {
                message: "This email address already exists",
                username: None,
            }),
            // The profile changed (or vanished) meanwhile: read it again.
            Err(StoreError::ConditionFailed {
                label: users::PROFILE_CHANGED,
            }) => Ok(Attempt::Retry),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// A `PUT /users/{user}/addresses/{address}` request; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AddressChanges {
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    /// The new address, as given (checked against the stored one here).
    pub rename: Option<String>,
    /// Only `true`: an address can't give up being the main one.
    pub make_main: bool,
    pub tags: Option<Vec<String>>,
    pub meta_data: Option<String>,
    pub internal_data: Option<String>,
}

/// `PUT /users/{user}/addresses/{address}`: name, tags, data, renaming, and making it main.
pub async fn update(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    changes: AddressChanges,
) -> DomainResult<()> {
    let changes = &changes;
    retry_on_conflict(USER_CONTENDED, || async move {
        let owner = users::load(state, user).await?;
        let current = load(state, user, id).await?;
        let was_main = is_main(&owner, &current);
        let mut next = current.clone();
        if let Some(name) = &changes.name {
            next.name = name.clone();
        }
        if let Some(tags) = &changes.tags {
            next.tags = tags.clone();
        }
        if changes.meta_data.is_some() {
            next.meta_data = changes.meta_data.clone();
        }
        if changes.internal_data.is_some() {
            next.internal_data = changes.internal_data.clone();
        }
        let mut writes = Vec::new();
        if let Some(raw) = &changes.rename {
            if current.wildcard || raw.contains('*') {
                return Err(DomainError::ChangeNotAllowed(
                    "Can not change special address",
                ));
            }
            let normalized = names::normalize_address(raw, false)
                .map_err(|e| DomainError::invalid("address", e.message("address")))?;
            if normalized.addrview != current.addrview {
                next.address = normalized.address.clone();
                next.addrview = normalized.addrview.clone();
                writes.push(Write::put_new(
                    Item::new(
                        keys::address_claim(&next.addrview),
                        json!({ "user": user, "id": id, "address": next.address }),
                    ),
                    ADDRESS_TAKEN,
                ));
                writes.push(Write::delete(keys::address_claim(&current.addrview)));
            } else {
                next.address = normalized.address;
            }
        }
        if changes.make_main && current.wildcard {
            return Err(DomainError::WildcardNotPermitted);
        }
        writes.push(Write::Update {
            key: keys::address(user, id),
            update: Update {
                body: Some(serde_json::to_value(&next).unwrap_or_default()),
                gsi1: Some(Some(keys::addresses_listing(&next.addrview))),
                ..Default::default()
            },
            guard: Some(Condition::Exists.labeled(ADDRESS_GONE)),
        });
        if changes.make_main || (was_main && next.address != current.address) {
            let mut changed = owner.user.clone();
            changed.address = Some(next.address.clone());
            writes.push(profile_update(&owner, &changed));
        } else {
            writes.push(profile_touch(&owner));
        }
        match state.table.transact(writes).await {
            Ok(()) => Ok(Attempt::Done(())),
            Err(StoreError::ConditionFailed {
                label: ADDRESS_TAKEN,
            }) => Err(DomainError::AddressExists {
                message: "Address already exists",
                username: None,
            }),
            Err(StoreError::ConditionFailed {
                label: users::PROFILE_CHANGED,
            }) => Ok(Attempt::Retry),
            Err(StoreError::ConditionFailed { .. }) => Err(not_found()),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// `DELETE /users/{user}/addresses/{address}`: the main address can't be deleted.
pub async fn delete(state: &AppState, user: &ObjectId, id: &ObjectId) -> DomainResult<()> {
    retry_on_conflict(USER_CONTENDED, || async move {
        let owner = users::load(state, user).await?;
        let address = load(state, user, id).await?;
        if is_main(&owner, &address) {
            return Err(DomainError::NotPermitted("Can not delete main address"));
        }
        let mut writes = address.delete_writes();
        writes[0] = Write::delete(keys::address(user, id)).when(Condition::Exists, ADDRESS_GONE);
        // The main address must not become this one while we delete it.
        writes.push(profile_touch(&owner));
        writes.push(stats::change(&[(stats::ADDRESSES, -1)]));
        match state.table.transact(writes).await {
            Ok(()) => Ok(Attempt::Done(())),
            Err(StoreError::ConditionFailed {
                label: ADDRESS_GONE,
            }) => Err(not_found()),
            Err(StoreError::ConditionFailed { .. }) => Ok(Attempt::Retry),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// A `GET /addresses` request.
#[derive(Debug, Clone)]
pub struct ListAddresses {
    /// Lowercase: stored addresses are (WildDuck's uppercase queries silently find nothing).
    pub query: Option<String>,
    /// Lowercase, none of `required_tags`.
    pub tags: Vec<String>,
    pub required_tags: Vec<String>,
    pub page: PageRequest,
}

impl ListAddresses {
    fn is_filtered(&self) -> bool {
        self.query.is_some() || !self.tags.is_empty() || !self.required_tags.is_empty()
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

/// A page of addresses, and how many match in all.
pub struct AddressListing {
    pub total: u64,
    pub page: PageResult<StoredAddress>,
}

/// `GET /addresses`: every address in address order, partial match on `query`.
pub async fn list_all(state: &AppState, request: &ListAddresses) -> DomainResult<AddressListing> {
    let buckets = bucket_names(keys::ADDRS_BUCKET_PREFIX);
    let keep = |item: &Item| from_item(item).is_ok_and(|a| request.matches(&a));
    let page = walk_buckets(
        state.table.as_ref(),
        Index::Gsi1,
        &buckets,
        &request.page,
        &keep,
    )
    .await?;
    let total = if request.is_filtered() {
        count_buckets(state.table.as_ref(), Index::Gsi1, &buckets, &keep).await?
    } else {
        stats::total(state.table.as_ref(), stats::ADDRESSES).await?
    };
    Ok(AddressListing {
        total,
        page: page.decode(from_item)?,
    })
}
