//! Mailboxes: the entity and the default set every new user gets.
//!
//! A mailbox item holds the folder's description; its counters hold what changes with every
//! message (`uidNext`, `modifyIndex`, `total`, `unseen`, `size`), so a UID is allocated with one
//! atomic counter update. A path claim item makes paths unique per user.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys;
use super::mailbox_names::default_mailbox_names;
use crate::id::ObjectId;
use crate::store::{Item, Write};

/// Messages in Trash and Junk are kept at most this long (milliseconds), as in WildDuck.
pub const TRASH_JUNK_RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mailbox {
    pub id: ObjectId,
    pub user: ObjectId,
    pub path: String,
    /// `\Sent`, `\Trash`, `\Drafts`, `\Junk`, `\Archive`, or none (INBOX and user folders).
    pub special_use: Option<String>,
    /// Unix seconds at creation (IMAP UIDVALIDITY).
    pub uid_validity: i64,
    pub subscribed: bool,
    /// Milliseconds messages are kept; 0 keeps them forever.
    pub retention: u64,
    pub created: DateTime<Utc>,
}

impl Mailbox {
    /// The writes that create this mailbox: the item (UIDs start at 1) and its path claim.
    pub fn create_writes(&self) -> Vec<Write> {
        let body = serde_json::to_value(self).unwrap_or(Value::Null);
        let item = Item::new(keys::mailbox(&self.user, &self.id), body)
            .with_counter("uidNext", 1)
            .with_counter("modifyIndex", 0);
        let claim = Item::new(
            keys::mailbox_path_claim(&self.user, &self.path),
            serde_json::json!({ "mailbox": self.id }),
        );
        vec![Write::put_new(item), Write::put_new(claim)]
    }
}

/// Custom names for the special folders (POST /users `mailboxes`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomNames {
    pub sent: Option<String>,
    pub trash: Option<String>,
    pub drafts: Option<String>,
    pub junk: Option<String>,
}

/// The default mailboxes of a new user: INBOX, Sent Mail, Trash, Drafts, Junk and Archive,
/// named for `language` unless `custom` names them. Trash and Junk keep messages at most
/// 30 days; the others use the user's retention.
pub fn default_mailboxes(
    user: &ObjectId,
    language: Option<&str>,
    custom: &CustomNames,
    user_retention_ms: u64,
) -> Vec<Mailbox> {
    let names = default_mailbox_names(language);
    let now = Utc::now();
    let capped = if user_retention_ms > 0 {
        user_retention_ms.min(TRASH_JUNK_RETENTION_MS)
    } else {
        TRASH_JUNK_RETENTION_MS
    };
    let pick = |custom: &Option<String>, default: &str| custom.clone().unwrap_or(default.into());
    let specs = [
        ("INBOX".to_string(), None, user_retention_ms),
        (
            pick(&custom.sent, names.sent),
            Some("\\Sent"),
            user_retention_ms,
        ),
        (pick(&custom.trash, names.trash), Some("\\Trash"), capped),
        (
            pick(&custom.drafts, names.drafts),
            Some("\\Drafts"),
            user_retention_ms,
        ),
        (pick(&custom.junk, names.junk), Some("\\Junk"), capped),
        (
            names.archive.to_string(),
            Some("\\Archive"),
            user_retention_ms,
        ),
    ];
    specs
        .into_iter()
        .map(|(path, special_use, retention)| Mailbox {
            id: ObjectId::new(),
            user: *user,
            path,
            special_use: special_use.map(str::to_string),
            uid_validity: now.timestamp(),
            subscribed: true,
            retention,
            created: now,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_six_localized_folders_with_capped_trash_and_junk() {
        let user = ObjectId::new();
        let boxes = default_mailboxes(&user, Some("et"), &CustomNames::default(), 0);
        let paths: Vec<&str> = boxes.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths[0], "INBOX");
        assert_eq!(paths.len(), 6);
        assert_eq!(boxes[2].special_use.as_deref(), Some("\\Trash"));
        assert_eq!(boxes[2].retention, TRASH_JUNK_RETENTION_MS);
        assert_eq!(boxes[1].retention, 0);
        let custom = CustomNames {
            sent: Some("Outbox".into()),
            ..Default::default()
        };
        let boxes = default_mailboxes(&user, None, &custom, 1000);
        assert_eq!(boxes[1].path, "Outbox");
        assert_eq!(boxes[4].retention, 1000);
    }
}
