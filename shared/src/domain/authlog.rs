//! The security log (authlog): one item per event under the user, expiring after the
//! configured retention (30 days by default) through the table's TTL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::keys;
use crate::config::Config;
use crate::http::validate::Session;
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
