//! The security log (authlog): one item per event under the user, expiring after the
//! configured retention (30 days by default) through the table's TTL, and its listing
//! (`GET /users/{user}/authlog`) with working `action`, `sess` and `ip` filters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::keys;
use crate::config::Config;
use crate::error::ApiResult;
use crate::http::AppState;
use crate::http::paging::{PageRequest, count_partition, walk_partition};
use crate::http::validate::{Session, Str, Validator};
use crate::id::ObjectId;
use crate::store::{Item, Write};

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
        let retention = chrono::Duration::from_std(config.authlog_retention)
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

/// A validated `GET /users/{user}/authlog` request: the spec's exact-match filters `action`,
/// `sess` and `ip` (WildDuck's `filterip` is the same as `ip`), and paging.
#[derive(Debug, Clone)]
pub struct ListAuthlog {
    action: Option<String>,
    sess: Option<String>,
    ip: Option<String>,
    page: PageRequest,
}

impl ListAuthlog {
    pub fn parse(params: Map<String, Value>) -> ApiResult<ListAuthlog> {
        let mut v = Validator::new(params);
        let action = v.string("action", Str::max(100).trim().lowercase());
        let Session { sess, ip } = v.session();
        let filter_ip = v.string("filterip", Str::max(45).trim());
        if filter_ip
            .as_deref()
            .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_err())
        {
            v.error(
                "filterip",
                "\"filterip\" must be a valid ip address without CIDR",
            );
        }
        let page = PageRequest::from_params(&mut v);
        v.deny_unknown();
        v.finish()?;
        Ok(ListAuthlog {
            action,
            sess,
            ip: ip.or(filter_ip).map(|ip| canonical_ip(&ip)),
            page,
        })
    }

    fn matches(&self, item: &Item) -> bool {
        let field = |name: &str| item.body.get(name).and_then(Value::as_str);
        self.action
            .as_deref()
            .is_none_or(|a| field("action") == Some(a))
            && self
                .sess
                .as_deref()
                .is_none_or(|s| field("sess") == Some(s))
            && self
                .ip
                .as_deref()
                .is_none_or(|ip| field("ip").map(canonical_ip).as_deref() == Some(ip))
    }
}

/// One spelling per address (`::FFFF:1.2.3.4` and `::ffff:1.2.3.4` are one IPv6 address).
fn canonical_ip(ip: &str) -> String {
    ip.parse::<std::net::IpAddr>()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| ip.to_string())
}

/// The listing form of an entry: every stored field, with WildDuck's `events` and `last`
/// (Eider stores one entry per event).
fn entry_json(item: &Item) -> Value {
    let mut entry = item.body.clone();
    if let Value::Object(fields) = &mut entry {
        fields.entry("events").or_insert(Value::from(1));
        let created = fields.get("created").cloned().unwrap_or(Value::Null);
        fields.entry("last").or_insert(created);
    }
    entry
}

/// `GET /users/{user}/authlog`: the user's entries, newest first. The walk stays inside the
/// user's partition; a cursor from elsewhere is refused.
pub async fn list(state: &AppState, user: &ObjectId, request: ListAuthlog) -> ApiResult<Value> {
    super::users::load(state, user).await?;
    let pk = keys::user_pk(user);
    let keep = |item: &Item| request.matches(item);
    let table = state.table.as_ref();
    let page = walk_partition(
        table,
        &pk,
        keys::AUTHLOG_SK_PREFIX,
        true,
        &request.page,
        &keep,
    )
    .await?
    .ok_or_else(|| request.page.invalid_cursor())?;
    let total = count_partition(table, &pk, keys::AUTHLOG_SK_PREFIX, &keep).await?;
    let mut body = json!({ "success": true });
    if let Some(action) = &request.action {
        body["action"] = json!(action);
    }
    body["total"] = json!(total);
    if let (Value::Object(out), Value::Object(paging)) =
        (&mut body, page.paging_json(&request.page))
    {
        out.extend(paging);
    }
    body["results"] = Value::Array(page.items.iter().map(entry_json).collect());
    Ok(body)
}
