//! Domain access lists (WildDuck's `/domainaccess`): per user tag, sender domains to allow
//! (never junk) or block (always junk). At delivery, for users carrying the tag, the sender's
//! domain decides spam before the filters and the spam level, and that decision is final.
//!
//! Items: the entry under its tag (`DOMAINACCESS#<tag>` / `<domain>`: one entry per tag and
//! domain, so `block` on an allowed domain flips the same entry) and an id pointer
//! (`DOMAINACCESSID#<id>`) for `DELETE /domainaccess/{id}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AppState, DomainError, DomainResult, keys};
use crate::id::ObjectId;
use crate::store::{Item, Query, Write, query_all};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Allow,
    Block,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Allow => "allow",
            Access::Block => "block",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainAccess {
    pub id: ObjectId,
    /// Lowercase.
    pub tag: String,
    /// Lowercase Unicode.
    pub domain: String,
    pub action: Access,
    pub created: DateTime<Utc>,
}

fn from_item(item: &Item) -> DomainResult<DomainAccess> {
    item.body_as()
        .map_err(|e| DomainError::corrupt("domain access entry", &item.sk, e))
}

fn normalize_domain(domain: &str) -> DomainResult<String> {
    super::names::normalize_domain(domain)
        .ok_or_else(|| DomainError::invalid("domain", "\"domain\" must be a valid domain name"))
}

/// `POST /domainaccess/{tag}/{allow|block}`: sets the tag's rule for a domain; an existing
/// entry keeps its id.
pub async fn set(
    state: &AppState,
    tag: &str,
    domain: &str,
    action: Access,
) -> DomainResult<ObjectId> {
    let tag = tag.trim().to_lowercase();
    let domain = normalize_domain(domain)?;
    let key = keys::domain_access(&tag, &domain);
    let existing = state.table.get(&key).await?;
    let entry = match existing.as_ref().map(from_item).transpose()? {
        Some(existing) => DomainAccess { action, ..existing },
        None => DomainAccess {
            id: ObjectId::new(),
            tag,
            domain,
            action,
            created: Utc::now(),
        },
    };
    let body = serde_json::to_value(&entry).unwrap_or_default();
    state
        .table
        .transact(vec![
            Write::put(Item::new(key, body)),
            Write::put(Item::new(
                keys::domain_access_id(&entry.id),
                json!({ "tag": entry.tag, "domain": entry.domain }),
            )),
        ])
        .await?;
    Ok(entry.id)
}

/// `GET /domainaccess/{tag}/{allow|block}`: the tag's entries with that action, by domain.
pub async fn list(state: &AppState, tag: &str, action: Access) -> DomainResult<Vec<DomainAccess>> {
    let tag = tag.trim().to_lowercase();
    let items = query_all(
        state.table.as_ref(),
        Query::table(keys::domain_access_pk(&tag)).limit(500),
    )
    .await?;
    let mut entries = items
        .iter()
        .map(from_item)
        .collect::<DomainResult<Vec<_>>>()?;
    entries.retain(|e| e.action == action);
    entries.sort_by(|a, b| a.domain.cmp(&b.domain));
    Ok(entries)
}

/// `DELETE /domainaccess/{id}`.
pub async fn delete(state: &AppState, id: &ObjectId) -> DomainResult<()> {
    let missing = || DomainError::DomainAccessNotFound;
    let pointer = state
        .table
        .get(&keys::domain_access_id(id))
        .await?
        .ok_or_else(missing)?;
    let tag = pointer.body["tag"].as_str().unwrap_or_default();
    let domain = pointer.body["domain"].as_str().unwrap_or_default();
    state
        .table
        .transact(vec![
            Write::delete(keys::domain_access(tag, domain)),
            Write::delete(keys::domain_access_id(id)),
        ])
        .await?;
    Ok(())
}

/// The verdict for mail from `sender_domain` to a user with `tags`: a block on any of the
/// tags wins over an allow; `None` when no tag has a rule for the domain (subdomains do not
/// match). One batch read.
pub async fn verdict(
    state: &AppState,
    tags: &[String],
    sender_domain: &str,
) -> DomainResult<Option<Access>> {
    if tags.is_empty() {
        return Ok(None);
    }
    let Some(domain) = super::names::normalize_domain(sender_domain) else {
        return Ok(None);
    };
    let keys: Vec<_> = tags
        .iter()
        .map(|t| keys::domain_access(&t.trim().to_lowercase(), &domain))
        .collect();
    let found = state.table.get_many(&keys).await?;
    let actions: Vec<Access> = found
        .iter()
        .filter_map(|item| from_item(item).ok())
        .map(|e| e.action)
        .collect();
    Ok(if actions.contains(&Access::Block) {
        Some(Access::Block)
    } else if actions.contains(&Access::Allow) {
        Some(Access::Allow)
    } else {
        None
    })
}
