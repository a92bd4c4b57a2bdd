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
use super::paging::{PageRequest, PageResult, bucket_names, bucketed_page, walk_buckets};
use super::retry::{Attempt, USER_CONTENDED, retry_on_conflict};
use super::users::{self, StoredUser, profile_touch, profile_update};
use super::webhooks;
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
    item.body_as()
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

/// Who owns an address, for login: the exact normalized address, else the same local part
/// on the domain an alias domain stands for (WildDuck's resolver without wildcards).
pub async fn resolve(
    state: &AppState,
    address: &str,
) -> DomainResult<Option<(ObjectId, ObjectId)>> {
    Ok(match lookup(state, address, false).await? {
        Some(Resolved::User { user, id }) => Some((user, id)),
        _ => None,
    })
}

/// What an address resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// One of a user's addresses.
    User { user: ObjectId, id: ObjectId },
    /// A forwarded address (its id).
    Forwarded { id: ObjectId },
}

/// WildDuck's resolver order (delivery and `/addresses/resolve` ask for wildcards, login
/// does not): the exact normalized address (`+label` dropped); the same local part on the
/// domain an alias domain stands for; with `wildcards`, the longest of `*@domain`,
/// `*suffix@domain`, `prefix*@domain` on the address's domain, then on the alias's target;
/// then `local@*`.
pub async fn lookup(
    state: &AppState,
    address: &str,
    wildcards: bool,
) -> DomainResult<Option<Resolved>> {
    let Ok(normalized) = names::normalize_address(address, true) else {
        return Ok(None);
    };
    if let Some(found) = claim(state, &normalized.addrview).await? {
        return Ok(Some(found));
    }
    let Some((local, domain)) = normalized.addrview.rsplit_once('@') else {
        return Ok(None);
    };
    let target = super::domain_aliases::target_of(state, domain)
        .await?
        .map(|alias| alias.domain);
    if let Some(target) = &target
        && let Some(found) = claim(state, &format!("{local}@{target}")).await?
    {
        return Ok(Some(found));
    }
    if !wildcards {
        return Ok(None);
    }
    // Every candidate in one batch read, best first: the original domain's before the
    // alias target's, a longer fixed part before a shorter one, `local@*` last.
    let mut candidates = wildcard_patterns(local, domain);
    if let Some(target) = &target {
        candidates.extend(wildcard_patterns(local, target));
    }
    candidates.push(format!("{local}@*"));
    let keys: Vec<_> = candidates.iter().map(|c| keys::address_claim(c)).collect();
    let found = state.table.get_many(&keys).await?;
    for key in &keys {
        if let Some(item) = found.iter().find(|i| i.pk == key.pk && i.sk == key.sk)
            && let Some(resolved) = from_claim(item)
        {
            return Ok(Some(resolved));
        }
    }
    Ok(None)
}

/// The wildcard views that could match `local@domain`, longest fixed part first: for each
/// length from 32 down to 1, `*<last n>@domain` then `<first n>*@domain`; then `*@domain`.
fn wildcard_patterns(local: &str, domain: &str) -> Vec<String> {
    let chars: Vec<char> = local.chars().collect();
    let mut out = Vec::new();
    for n in (1..=chars.len().min(32)).rev() {
        let suffix: String = chars[chars.len() - n..].iter().collect();
        let prefix: String = chars[..n].iter().collect();
        out.push(format!("*{suffix}@{domain}"));
        out.push(format!("{prefix}*@{domain}"));
    }
    out.push(format!("*@{domain}"));
    out
}

async fn claim(state: &AppState, addrview: &str) -> DomainResult<Option<Resolved>> {
    Ok(state
        .table
        .get(&keys::address_claim(addrview))
        .await?
        .as_ref()
        .and_then(from_claim))
}

/// A claim names a user's address (`user`, `id`) or a forwarded address (`forwarded`).
fn from_claim(item: &Item) -> Option<Resolved> {
    if let Some(id) = item.body.get("forwarded") {
        return Some(Resolved::Forwarded {
            id: serde_json::from_value(id.clone()).ok()?,
        });
    }
    Some(Resolved::User {
        user: serde_json::from_value(item.body["user"].clone()).ok()?,
        id: serde_json::from_value(item.body["id"].clone()).ok()?,
    })
}

/// What `GET /addresses/resolve/{address}` looks for.
pub enum ResolveBy {
    /// An address, through the resolver (wildcards only when asked for).
    Address { address: String, wildcards: bool },
    /// A wildcard address as stored (`*@example.com`).
    Wildcard(String),
    /// An address's id.
    Id(ObjectId),
}

/// What `GET /addresses/resolve/{address}` found.
pub enum FoundAddress {
    User(StoredAddress),
    Forwarded(Box<super::forwarded::ForwardedStatus>),
}

/// `GET /addresses/resolve/{address}`: the user address or forwarded address found.
pub async fn resolve_for_api(state: &AppState, by: &ResolveBy) -> DomainResult<FoundAddress> {
    let resolved = match by {
        ResolveBy::Address { address, wildcards } => lookup(state, address, *wildcards).await?,
        ResolveBy::Wildcard(address) => match names::normalize_alias(address, true) {
            Ok(normalized) => claim(state, &normalized.addrview).await?,
            Err(_) => None,
        },
        ResolveBy::Id(id) => {
            if let Some(found) = find_by_id(state, id).await? {
                return Ok(FoundAddress::User(found));
            }
            match super::forwarded::load(state, id).await {
                Ok(_) => Some(Resolved::Forwarded { id: *id }),
                Err(DomainError::AddressNotFound(_)) => None,
                Err(e) => return Err(e),
            }
        }
    };
    match resolved {
        Some(Resolved::User { user, id }) => Ok(FoundAddress::User(load(state, &user, &id).await?)),
        Some(Resolved::Forwarded { id }) => Ok(FoundAddress::Forwarded(Box::new(
            super::forwarded::get(state, &id).await?,
        ))),
        None => Err(not_found()),
    }
}

/// An address by its id alone. Address items live under their user, so this reads the
/// address listing until it is found: its cost grows with the number of addresses (the
/// resolver by address is one read).
async fn find_by_id(state: &AppState, id: &ObjectId) -> DomainResult<Option<StoredAddress>> {
    let buckets = bucket_names(keys::ADDRS_BUCKET_PREFIX);
    let keep = |item: &Item| from_item(item).is_ok_and(|a| a.id == *id);
    let request = PageRequest {
        limit: 1,
        direction: super::paging::Direction::First,
        page: 1,
    };
    let page = walk_buckets(
        state.table.as_ref(),
        Index::Gsi1,
        &buckets,
        &request,
        Some(&keep),
    )
    .await?;
    page.items.first().map(from_item).transpose()
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
    .await?;
    let event = webhooks::Event::of("address.user.created", user)
        .with("address", address.id)
        .with("value", &address.address);
    webhooks::publish(state, event).await;
    Ok(address.id)
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
    /// A wildcard address may be renamed (to another wildcard): only a domain rename does.
    pub rename_wildcard: bool,
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
            let wildcard_kept = changes.rename_wildcard && current.wildcard && raw.contains('*');
            if !wildcard_kept && (current.wildcard || raw.contains('*')) {
                return Err(DomainError::ChangeNotAllowed(
                    "Can not change special address",
                ));
            }
            let normalized = names::normalize_alias(raw, wildcard_kept)
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
    let value = retry_on_conflict(USER_CONTENDED, || async move {
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
            Ok(()) => Ok(Attempt::Done(address.address)),
            Err(StoreError::ConditionFailed {
                label: ADDRESS_GONE,
            }) => Err(not_found()),
            Err(StoreError::ConditionFailed { .. }) => Ok(Attempt::Retry),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    let event = webhooks::Event::of("address.user.deleted", user)
        .with("address", id)
        .with("value", value);
    webhooks::publish(state, event).await;
    Ok(())
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

    fn matches(&self, listed: &ListedAddress) -> bool {
        let (address, tags) = match listed {
            ListedAddress::User(a) => (&a.address, &a.tags),
            ListedAddress::Forwarded(f) => (&f.address, &f.tags),
        };
        let tags: Vec<String> = tags.iter().map(|t| t.to_lowercase()).collect();
        self.query.as_deref().is_none_or(|q| address.contains(q))
            && (self.tags.is_empty() || self.tags.iter().any(|t| tags.contains(t)))
            && self.required_tags.iter().all(|t| tags.contains(t))
    }
}

/// An address as `GET /addresses` lists it: a user's, or a forwarded one.
pub enum ListedAddress {
    User(StoredAddress),
    Forwarded(super::forwarded::ForwardedAddress),
}

pub(crate) fn listed_from_item(item: &Item) -> DomainResult<ListedAddress> {
    if item.pk.starts_with(keys::FORWARDED_PK_PREFIX) {
        return super::forwarded::from_item(item).map(ListedAddress::Forwarded);
    }
    from_item(item).map(ListedAddress::User)
}

/// A page of addresses, and how many match in all.
pub struct AddressListing {
    pub total: u64,
    pub page: PageResult<ListedAddress>,
}

/// `GET /addresses`: every address in address order, partial match on `query`.
pub async fn list_all(state: &AppState, request: &ListAddresses) -> DomainResult<AddressListing> {
    let buckets = bucket_names(keys::ADDRS_BUCKET_PREFIX);
    let keep = |item: &Item| listed_from_item(item).is_ok_and(|a| request.matches(&a));
    let population = stats::total(state.table.as_ref(), stats::ADDRESSES).await?;
    let (total, page) = bucketed_page(
        state.table.as_ref(),
        &buckets,
        &request.page,
        request.is_filtered().then_some(&keep),
        population,
    )
    .await?;
    Ok(AddressListing {
        total,
        page: page.decode(listed_from_item)?,
    })
}
