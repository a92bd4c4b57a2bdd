//! The security log (authlog): one item per event under the user, expiring after the
//! configured retention (30 days by default) through the table's TTL, and its listing
//! (`GET /users/{user}/authlog`) with working `action`, `sess` and `ip` filters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::paging::{PageRequest, PageResult, count_partition, walk_partition};
use super::{AppState, DomainError, DomainResult, keys};
use crate::config::Config;
use crate::id::ObjectId;
use crate::store::{Item, Write};

/// Where a call came from, for the security log (`sess` and `ip` parameters).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Session {
    pub sess: Option<String>,
    pub ip: Option<String>,
}

/// One stored security event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthlogEntry {
    pub id: ObjectId,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sess: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    /// Action-specific fields (`protocol`, `target`, `asp`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AuthlogEntry {
    pub fn new(action: &str, result: Option<&str>, session: &Session, config: &Config) -> Self {
        let created = Utc::now();
        let retention = chrono::Duration::from_std(config.authlog_retention())
            .unwrap_or(chrono::Duration::days(30));
        AuthlogEntry {
            id: ObjectId::new(),
            action: action.to_string(),
            result: result.map(str::to_string),
            sess: session.sess.clone(),
            ip: session.ip.clone(),
            created,
            expires: created + retention,
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The write that stores this entry for `user`.
    pub fn write(&self, user: &ObjectId) -> Write {
        let body = serde_json::to_value(self).unwrap_or(Value::Null);
        Write::put(
            Item::new(keys::authlog(user, &self.id), body).with_expiry(self.expires.timestamp()),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Listing

/// A `GET /users/{user}/authlog` request: the spec's exact-match filters `action`, `sess` and
/// `ip` (WildDuck's `filterip` is the same as `ip`), and paging.
#[derive(Debug, Clone)]
pub struct ListAuthlog {
    /// Lowercase.
    pub action: Option<String>,
    pub sess: Option<String>,
    /// A valid IP address.
    pub ip: Option<String>,
    pub page: PageRequest,
}

impl ListAuthlog {
    fn matches(&self, item: &Item, ip: Option<&str>) -> bool {
        let field = |name: &str| item.body.get(name).and_then(Value::as_str);
        self.action
            .as_deref()
            .is_none_or(|a| field("action") == Some(a))
            && self
                .sess
                .as_deref()
                .is_none_or(|s| field("sess") == Some(s))
            && ip.is_none_or(|ip| field("ip").map(canonical_ip).as_deref() == Some(ip))
    }
}

/// One spelling per address (`::FFFF:1.2.3.4` and `::ffff:1.2.3.4` are one IPv6 address).
fn canonical_ip(ip: &str) -> String {
    ip.parse::<std::net::IpAddr>()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| ip.to_string())
}

/// A page of security events, and how many match in all.
pub struct AuthlogListing {
    pub total: u64,
    pub page: PageResult<AuthlogEntry>,
}

/// `GET /users/{user}/authlog`: the user's entries, newest first. The walk stays inside the
/// user's partition; a cursor from elsewhere is refused.
pub async fn list(
    state: &AppState,
    user: &ObjectId,
    request: &ListAuthlog,
) -> DomainResult<AuthlogListing> {
    super::users::load(state, user).await?;
    let pk = keys::user_pk(user);
    let ip = request.ip.as_deref().map(canonical_ip);
    let keep = |item: &Item| request.matches(item, ip.as_deref());
    let table = state.table.as_ref();
    let page = walk_partition(
        table,
        &pk,
        keys::AUTHLOG_SK_PREFIX,
        true,
        &request.page,
        Some(&keep),
    )
    .await?;
    let total = count_partition(table, &pk, keys::AUTHLOG_SK_PREFIX, &keep).await?;
    let page = page.decode(|item| {
        item.body_as()
            .map_err(|e| DomainError::corrupt("authlog entry", &item.sk, e))
    })?;
    Ok(AuthlogListing { total, page })
}

/// `GET /users/{user}/authlog/{event}`: one entry of the user's log.
pub async fn get(
    state: &AppState,
    user: &ObjectId,
    event: &ObjectId,
) -> DomainResult<AuthlogEntry> {
    super::users::load(state, user).await?;
    let item = state
        .table
        .get(&keys::authlog(user, event))
        .await?
        .ok_or(DomainError::EventNotFound)?;
    item.body_as()
        .map_err(|e| DomainError::corrupt("authlog entry", &item.sk, e))
}
