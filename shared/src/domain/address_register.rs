//! The address register (WildDuck's `/users/{user}/addressregister`): the correspondents a
//! user has written to and heard from, for autocompletion. Kept up to date as messages are
//! stored: the To, Cc and Bcc of a message in `\Sent`, the From of one stored anywhere else
//! but Junk and Drafts; never from mailing lists or automatic mail, never `no-reply`
//! addresses. An entry the user disabled stays disabled and is no longer refreshed.
//!
//! Items: `USER#<user>` / `AREG#<addrview>` (one per address, upserted).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::mailboxes::StoredMailbox;
use super::{AppState, DomainResult, keys, names};
use crate::id::ObjectId;
use crate::mail::parse::{Address, ParsedMessage};
use crate::store::{Item, Query, SortRange, Write, query_all};

/// Addresses taken from one message at most.
const MAX_PER_MESSAGE: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Correspondent {
    pub id: ObjectId,
    #[serde(default)]
    pub name: String,
    pub address: String,
    pub updated: DateTime<Utc>,
    #[serde(default)]
    pub disabled: bool,
}

fn from_item(item: &Item) -> Option<Correspondent> {
    item.body_as().ok()
}

/// The correspondents of a message just stored in `mailbox`, as WildDuck picks them.
fn correspondents<'a>(parsed: &'a ParsedMessage, mailbox: &StoredMailbox) -> Vec<&'a Address> {
    if mailbox.is_special("\\Junk") || mailbox.is_special("\\Drafts") {
        return Vec::new();
    }
    let automatic = parsed.headers.iter().any(|(name, _)| {
        ["list-id", "auto-submitted", "x-auto-response-suppress"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
    });
    if automatic {
        return Vec::new();
    }
    let all: Vec<&Address> = if mailbox.is_special("\\Sent") {
        parsed
            .to
            .iter()
            .chain(&parsed.cc)
            .chain(&parsed.bcc)
            .collect()
    } else {
        parsed.from.iter().collect()
    };
    all.into_iter()
        .filter(|a| !a.address.is_empty() && !is_no_reply(&a.address))
        .take(MAX_PER_MESSAGE)
        .collect()
}

/// WildDuck's `no-?reply` test on the address.
fn is_no_reply(address: &str) -> bool {
    let lower = address.to_lowercase();
    lower.contains("noreply") || lower.contains("no-reply")
}

/// Records the correspondents of a message just stored. Best effort: a failure is logged and
/// the message stays stored.
pub async fn record(
    state: &AppState,
    user: &ObjectId,
    mailbox: &StoredMailbox,
    parsed: &ParsedMessage,
) {
    let found = correspondents(parsed, mailbox);
    if found.is_empty() {
        return;
    }
    if let Err(e) = upsert(state, user, &found).await {
        tracing::warn!(user = %user, error = %e, "address register not updated");
    }
}

async fn upsert(state: &AppState, user: &ObjectId, found: &[&Address]) -> DomainResult<()> {
    let mut seen = Vec::new();
    let entries: Vec<(String, &Address)> = found
        .iter()
        .filter_map(|a| {
            let view = names::normalize_address(&a.address, false).ok()?.addrview;
            (!seen.contains(&view)).then(|| {
                seen.push(view.clone());
                (view, *a)
            })
        })
        .collect();
    let keys: Vec<_> = entries
        .iter()
        .map(|(view, _)| keys::address_register(user, view))
        .collect();
    let existing = state.table.get_many(&keys).await?;
    let now = Utc::now();
    let mut writes = Vec::new();
    for ((_, address), key) in entries.iter().zip(&keys) {
        let old = existing.iter().find(|i| i.sk == key.sk).and_then(from_item);
        if old.as_ref().is_some_and(|o| o.disabled) {
            continue;
        }
        let entry = Correspondent {
            id: old.as_ref().map(|o| o.id).unwrap_or_else(ObjectId::new),
            name: if address.name.is_empty() {
                old.map(|o| o.name).unwrap_or_default()
            } else {
                address.name.clone()
            },
            address: address.address.clone(),
            updated: now,
            disabled: false,
        };
        writes.push(Write::put(Item::new(
            key.clone(),
            serde_json::to_value(&entry).unwrap_or_default(),
        )));
    }
    for chunk in writes.chunks(crate::store::MAX_TRANSACTION_WRITES) {
        state.table.transact(chunk.to_vec()).await?;
    }
    Ok(())
}

async fn all(state: &AppState, user: &ObjectId) -> DomainResult<Vec<(Item, Correspondent)>> {
    let items = query_all(
        state.table.as_ref(),
        Query::table(keys::user_pk(user))
            .range(SortRange::BeginsWith(
                keys::ADDRESS_REGISTER_SK_PREFIX.into(),
            ))
            .limit(500),
    )
    .await?;
    Ok(items
        .into_iter()
        .filter_map(|item| from_item(&item).map(|c| (item, c)))
        .collect())
}

/// `GET /users/{user}/addressregister`: enabled entries whose address contains `query` or
/// whose name starts with it (any case), the most recently seen first.
pub async fn search(
    state: &AppState,
    user: &ObjectId,
    query: &str,
    limit: usize,
) -> DomainResult<Vec<Correspondent>> {
    super::users::load(state, user).await?;
    let lower = query.to_lowercase();
    let mut found: Vec<Correspondent> = all(state, user)
        .await?
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| {
            !c.disabled && (c.address.contains(query) || c.name.to_lowercase().starts_with(&lower))
        })
        .collect();
    found.sort_by_key(|c| std::cmp::Reverse(c.updated));
    found.truncate(limit);
    Ok(found)
}

/// `PUT /users/{user}/addressregister/{id}`: disables (or enables) an entry and sets its name;
/// whether such an entry exists.
pub async fn update(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    disabled: bool,
    name: Option<String>,
) -> DomainResult<bool> {
    let Some((item, mut entry)) = all(state, user)
        .await?
        .into_iter()
        .find(|(_, c)| c.id == *id)
    else {
        return Ok(false);
    };
    entry.disabled = disabled;
    if let Some(name) = name {
        entry.name = name;
    }
    state
        .table
        .transact(vec![Write::put(Item::new(
            item.key(),
            serde_json::to_value(&entry).unwrap_or_default(),
        ))])
        .await?;
    Ok(true)
}
