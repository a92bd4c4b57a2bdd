//! Domain aliases (WildDuck's `/domainaliases`): `alias.example` standing for `example.com`,
//! so `anyone@alias.example` reaches `anyone@example.com` at delivery, login and in address
//! lookups (after an exact miss, one level only; addresses are never stored under an alias).
//!
//! Items, all in one partition (`DOMAINALIASES`): the alias itself under `ALIAS#<alias>`,
//! which makes it unique, is listed in alias order and is what a lookup reads; and
//! `ID#<id>` pointing to it, for the id-based routes. Both are written and removed together.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::names;
use super::paging::{PageRequest, PageResult, page_and_total};
use super::webhooks;
use super::{AppState, DomainError, DomainResult, keys};
use crate::id::ObjectId;
use crate::store::{Item, Write};

/// Labels of the conditions on alias items.
const ALIAS_TAKEN: &str = "alias taken";
const ALIAS_GONE: &str = "alias gone";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainAlias {
    pub id: ObjectId,
    pub alias: String,
    pub domain: String,
    pub created: DateTime<Utc>,
}

fn from_item(item: &Item) -> DomainResult<DomainAlias> {
    item.body_as()
        .map_err(|e| DomainError::corrupt("domain alias", &item.sk, e))
}

/// A domain as aliases and lookups keep it: lowercase Unicode; `None` when it is no host name.
pub fn normalize(domain: &str) -> Option<String> {
    names::normalize_domain(domain)
}

/// `POST /domainaliases`: `alias` stands for `domain` from now on.
pub async fn create(state: &AppState, alias: &str, domain: &str) -> DomainResult<ObjectId> {
    let alias = normalize(alias)
        .ok_or_else(|| DomainError::invalid("alias", "\"alias\" must be a valid domain name"))?;
    let domain = normalize(domain)
        .ok_or_else(|| DomainError::invalid("domain", "\"domain\" must be a valid domain name"))?;
    if alias == domain {
        return Err(DomainError::invalid(
            "alias",
            "\"alias\" must differ from \"domain\"",
        ));
    }
    let record = DomainAlias {
        id: ObjectId::new(),
        alias,
        domain,
        created: Utc::now(),
    };
    let body = serde_json::to_value(&record).unwrap_or_default();
    let writes = vec![
        Write::put_new(
            Item::new(keys::domain_alias(&record.alias), body),
            ALIAS_TAKEN,
        ),
        Write::put_new(
            Item::new(
                keys::domain_alias_id(&record.id),
                json!({ "alias": record.alias }),
            ),
            ALIAS_GONE,
        ),
    ];
    match state.table.transact(writes).await {
        Ok(()) => {
            webhooks::publish(state, alias_event("domainalias.created", &record)).await;
            Ok(record.id)
        }
        Err(crate::store::StoreError::ConditionFailed { label: ALIAS_TAKEN }) => {
            Err(DomainError::AliasExists)
        }
        Err(e) => Err(e.into()),
    }
}

/// The alias `alias` (a normalized domain) stands for, if any: one read.
pub async fn target_of(state: &AppState, alias: &str) -> DomainResult<Option<DomainAlias>> {
    state
        .table
        .get(&keys::domain_alias(alias))
        .await?
        .map(|item| from_item(&item))
        .transpose()
}

/// `GET /domainaliases/resolve/{alias}`.
pub async fn resolve(state: &AppState, alias: &str) -> DomainResult<DomainAlias> {
    let missing = || DomainError::AliasNotFound("This alias does not exist");
    let alias = normalize(alias).ok_or_else(missing)?;
    target_of(state, &alias).await?.ok_or_else(missing)
}

/// `GET /domainaliases/{alias}` by id.
pub async fn get(state: &AppState, id: &ObjectId) -> DomainResult<DomainAlias> {
    load(state, id)
        .await?
        .ok_or(DomainError::AliasNotFound("Invalid or unknown alias"))
}

async fn load(state: &AppState, id: &ObjectId) -> DomainResult<Option<DomainAlias>> {
    let Some(pointer) = state.table.get(&keys::domain_alias_id(id)).await? else {
        return Ok(None);
    };
    let alias = pointer.body["alias"].as_str().unwrap_or_default();
    Ok(target_of(state, alias)
        .await?
        .filter(|record| record.id == *id))
}

/// `DELETE /domainaliases/{alias}` by id: later lookups no longer follow it.
pub async fn delete(state: &AppState, id: &ObjectId) -> DomainResult<DomainAlias> {
    let record = load(state, id).await?.ok_or(DomainError::AliasNotFound(
        "Invalid or unknown email alias identifier",
    ))?;
    state
        .table
        .transact(vec![
            Write::delete(keys::domain_alias(&record.alias)),
            Write::delete(keys::domain_alias_id(&record.id)),
        ])
        .await?;
    webhooks::publish(state, alias_event("domainalias.deleted", &record)).await;
    Ok(record)
}

/// WildDuck's `domainalias.*` events: `{domainalias, alias, domain}`.
fn alias_event(ev: &'static str, record: &DomainAlias) -> webhooks::Event {
    webhooks::Event::new(ev)
        .with("domainalias", record.id)
        .with("alias", &record.alias)
        .with("domain", &record.domain)
}

/// A `GET /domainaliases` request: `query` is a substring of the alias or the domain.
pub struct ListAliases {
    pub query: Option<String>,
    pub page: PageRequest,
}

pub struct AliasListing {
    pub total: u64,
    pub page: PageResult<DomainAlias>,
}

/// `GET /domainaliases`: in alias order.
pub async fn list(state: &AppState, request: &ListAliases) -> DomainResult<AliasListing> {
    let keep = |item: &Item| {
        from_item(item).is_ok_and(|a| {
            request
                .query
                .as_deref()
                .is_none_or(|q| a.alias.contains(q) || a.domain.contains(q))
        })
    };
    let (total, page) = page_and_total(
        state.table.as_ref(),
        keys::DOMAIN_ALIASES_PK,
        keys::DOMAIN_ALIAS_SK_PREFIX,
        &request.page,
        &keep,
        from_item,
    )
    .await?;
    Ok(AliasListing { total, page })
}

/// Points every alias of `old` at `new` (`PUT /addresses/renameDomain`); how many changed.
pub async fn retarget(state: &AppState, old: &str, new: &str) -> DomainResult<u64> {
    let items = crate::store::query_all(
        state.table.as_ref(),
        crate::store::Query::table(keys::DOMAIN_ALIASES_PK)
            .range(crate::store::SortRange::BeginsWith(
                keys::DOMAIN_ALIAS_SK_PREFIX.into(),
            ))
            .limit(500),
    )
    .await?;
    let mut changed = 0;
    for item in &items {
        let mut alias = from_item(item)?;
        if alias.domain != old {
            continue;
        }
        alias.domain = new.to_string();
        state
            .table
            .transact(vec![Write::put(Item::new(
                keys::domain_alias(&alias.alias),
                serde_json::to_value(&alias).unwrap_or_default(),
            ))])
            .await?;
        changed += 1;
    }
    Ok(changed)
}
