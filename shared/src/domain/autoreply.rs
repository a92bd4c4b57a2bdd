//! Autoreplies: a user's out-of-office settings (`PUT/GET/DELETE /users/{user}/autoreply`,
//! spec "Autoreplies", spec/wildduck-behaviour.md §2.43–§2.45) and the rules that decide,
//! at delivery, whether a message gets one (RFC 3834; §3 step 8).
//!
//! The settings are one item under the user (`USER#<user>` / `AUTOREPLY`). The profile's
//! `autoreply` flag mirrors `status` and changes in the same transaction as the settings
//! (under the profile's version condition), so delivery can skip the settings read for the
//! many users without an autoreply.
//!
//! A sender gets at most one reply per interval (`EIDER_AUTOREPLY_HOURS`, 4 hours as in
//! WildDuck): the first reply puts `ARSENT#<user>` / `<sha256 of the sender>` with
//! `NotExists` and a TTL of the interval, and a second delivery within it fails that
//! condition.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::retry::{Attempt, USER_CONTENDED, retry_on_conflict};
use super::users::{self, StoredUser, profile_update};
use super::webhooks;
use super::{AppState, DomainError, DomainResult, keys};
use crate::id::ObjectId;
use crate::store::{Condition, Item, StoreError, Write};

/// The stored autoreply of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Autoreply {
    pub id: ObjectId,
    pub user: ObjectId,
    #[serde(default)]
    pub status: bool,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub html: String,
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
}

impl Autoreply {
    /// Whether replies go out at `now`: enabled, and inside start/end when set.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.status
            && self.start.is_none_or(|start| start <= now)
            && self.end.is_none_or(|end| end >= now)
    }

    pub(crate) fn item(&self) -> Item {
        Item::new(
            keys::autoreply(&self.user),
            serde_json::to_value(self).unwrap_or_default(),
        )
    }
}

/// Reads a user's autoreply, if one was ever set.
pub async fn load(state: &AppState, user: &ObjectId) -> DomainResult<Option<Autoreply>> {
    let Some(item) = state.table.get(&keys::autoreply(user)).await? else {
        return Ok(None);
    };
    item.body_as()
        .map(Some)
        .map_err(|e| DomainError::corrupt("autoreply of", user, e))
}

/// A `PUT /users/{user}/autoreply` request; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AutoreplyChanges {
    pub status: Option<bool>,
    pub name: Option<String>,
    pub subject: Option<String>,
    /// The reply's text (WildDuck's `text`, the spec's `message`).
    pub text: Option<String>,
    pub html: Option<String>,
    /// `Some(None)` clears the bound.
    pub start: Option<Option<DateTime<Utc>>>,
    pub end: Option<Option<DateTime<Utc>>>,
}

/// `PUT /users/{user}/autoreply` (spec "Setup Autoreply", §2.43): partial updates; `created`
/// is set to now (whole seconds) on every call, as WildDuck does. Returns the settings' id.
pub async fn update(
    state: &AppState,
    user: &ObjectId,
    changes: AutoreplyChanges,
) -> DomainResult<ObjectId> {
    let now = Utc::now();
    let created = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let changes = &changes;
    let id = retry_on_conflict(USER_CONTENDED, || async move {
        let owner = users::load(state, user).await.map_err(|e| match e {
            DomainError::UserNotFound(_) => DomainError::UserNotFound("Unknown user"),
            e => e,
        })?;
        let mut reply = load(state, user).await?.unwrap_or(Autoreply {
            id: ObjectId::new(),
            user: *user,
            status: false,
            name: String::new(),
            subject: String::new(),
            text: String::new(),
            html: String::new(),
            start: None,
            end: None,
            created,
        });
        if let Some(s) = changes.status {
            reply.status = s;
        }
        for (slot, value) in [
            (&mut reply.name, &changes.name),
            (&mut reply.subject, &changes.subject),
            (&mut reply.text, &changes.text),
            (&mut reply.html, &changes.html),
        ] {
            if let Some(value) = value {
                *slot = value.clone();
            }
        }
        if let Some(start) = changes.start {
            reply.start = start;
        }
        if let Some(end) = changes.end {
            reply.end = end;
        }
        reply.created = created;
        let writes = vec![
            profile_write(&owner, changes.status),
            Write::put(reply.item()),
        ];
        match state.table.transact(writes).await {
            Ok(()) => Ok(Attempt::Done(reply.id)),
            Err(StoreError::ConditionFailed {
                label: users::PROFILE_CHANGED,
            }) => Ok(Attempt::Retry),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    if let Some(status) = changes.status {
        webhooks::publish(state, status_event(user, status)).await;
    }
    Ok(id)
}

/// WildDuck's `autoreply.user.enabled` / `.disabled`.
fn status_event(user: &ObjectId, enabled: bool) -> webhooks::Event {
    let ev = if enabled {
        "autoreply.user.enabled"
    } else {
        "autoreply.user.disabled"
    };
    webhooks::Event::of(ev, user)
}

/// The profile write of a settings change: the `autoreply` flag set to `status` when it
/// changes, otherwise a check that the profile is still as read (it exists, so no settings
/// outlive a deleted user's profile by a race).
fn profile_write(owner: &StoredUser, status: Option<bool>) -> Write {
    match status {
        Some(s) if s != owner.user.autoreply => {
            let mut user = owner.user.clone();
            user.autoreply = s;
            profile_update(owner, &user)
        }
        _ => Write::check(
            keys::user(&owner.user.id),
            Condition::CounterEquals(users::VERSION.into(), owner.version),
            users::PROFILE_CHANGED,
        ),
    }
}

/// `GET /users/{user}/autoreply` (spec "Check Autoreply status", §2.45): the settings, or
/// `None` when none were ever set.
pub async fn get(state: &AppState, user: &ObjectId) -> DomainResult<Option<Autoreply>> {
    let items = state
        .table
        .get_many(&[keys::user(user), keys::autoreply(user)])
        .await?;
    if !items.iter().any(|i| i.key() == keys::user(user)) {
        return Err(DomainError::user_not_found());
    }
    Ok(items
        .iter()
        .find(|i| i.key() == keys::autoreply(user))
        .and_then(|i| i.body_as().ok()))
}

/// `DELETE /users/{user}/autoreply` (spec "Disable Autoreply", §2.44): removes the settings
/// and clears the profile flag.
pub async fn delete(state: &AppState, user: &ObjectId) -> DomainResult<()> {
    retry_on_conflict(USER_CONTENDED, || async move {
        let owner = users::load(state, user).await?;
        let writes = vec![
            profile_write(&owner, Some(false)),
            Write::delete(keys::autoreply(user)),
        ];
        match state.table.transact(writes).await {
            Ok(()) => Ok(Attempt::Done(())),
            Err(StoreError::ConditionFailed {
                label: users::PROFILE_CHANGED,
            }) => Ok(Attempt::Retry),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    webhooks::publish(state, status_event(user, false)).await;
    Ok(())
}

/// The hex SHA-256 of a sender address, lowercased: the key of its "already replied" mark.
pub fn sender_hash(sender: &str) -> String {
    Sha256::digest(sender.trim().to_lowercase().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Claims the one reply `sender` may get from `user` in `interval`; false when it already
/// got one. The mark is put before the reply is sent, so parallel deliveries send one reply.
pub async fn claim_reply(
    state: &AppState,
    user: &ObjectId,
    sender: &str,
    interval: std::time::Duration,
) -> DomainResult<bool> {
    let expires = super::unix_now() + interval.as_secs().max(1) as i64;
    let mark = Item::new(
        keys::autoreply_sent(user, &sender_hash(sender)),
        json!({ "at": Utc::now() }),
    )
    .with_expiry(expires);
    match state
        .table
        .transact(vec![Write::put_new(mark, "sender replied to")])
        .await
    {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Why a message gets no autoreply, or `None` when it may get one (RFC 3834 §2 and WildDuck's
/// checks): a null, mailer-daemon or no-reply sender; an `Auto-Submitted` other than `no`;
/// `Precedence` bulk, list or junk; a mailing list (`List-Id`, `List-Unsubscribe`);
/// `X-Auto-Response-Suppress` with `OOF`, `AutoReply` or `All`.
pub fn suppressed(sender: &str, headers: &[(String, String)]) -> Option<&'static str> {
    let sender = sender.trim().to_lowercase();
    if sender.is_empty() {
        return Some("null sender");
    }
    let local = sender.split('@').next().unwrap_or("");
    if sender.contains("mailer-daemon")
        || local.contains("noreply")
        || local.contains("no-reply")
        || local.contains("no_reply")
    {
        return Some("automated sender");
    }
    for (name, value) in headers {
        let value = value.trim().to_lowercase();
        match name.to_lowercase().as_str() {
            "auto-submitted" if value != "no" => return Some("Auto-Submitted"),
            "precedence" if ["bulk", "list", "junk"].contains(&value.as_str()) => {
                return Some("Precedence");
            }
            "list-id" | "list-unsubscribe" => return Some("mailing list"),
            "x-auto-response-suppress"
                if ["oof", "autoreply", "all"]
                    .iter()
                    .any(|w| value.split(|c: char| !c.is_alphanumeric()).any(|t| t == *w)) =>
            {
                return Some("X-Auto-Response-Suppress");
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rfc_3834_and_wildducks_rules_suppress_replies() {
        assert_eq!(suppressed("", &[]), Some("null sender"));
        assert_eq!(
            suppressed("MAILER-DAEMON@x.org", &[]),
            Some("automated sender")
        );
        assert_eq!(suppressed("no-reply@x.org", &[]), Some("automated sender"));
        assert_eq!(suppressed("noreply@x.org", &[]), Some("automated sender"));
        let auto = h(&[("Auto-Submitted", "auto-replied")]);
        assert_eq!(suppressed("a@x.org", &auto), Some("Auto-Submitted"));
        assert_eq!(suppressed("a@x.org", &h(&[("Auto-Submitted", "No")])), None);
        for p in ["bulk", "List", "junk"] {
            assert_eq!(
                suppressed("a@x.org", &h(&[("Precedence", p)])),
                Some("Precedence")
            );
        }
        assert_eq!(
            suppressed("a@x.org", &h(&[("List-Id", "<dev.x.org>")])),
            Some("mailing list")
        );
        assert_eq!(
            suppressed("a@x.org", &h(&[("X-Auto-Response-Suppress", "DR, OOF")])),
            Some("X-Auto-Response-Suppress")
        );
        assert_eq!(suppressed("alice@x.org", &h(&[("Subject", "hi")])), None);
    }

    #[test]
    fn an_autoreply_is_active_only_inside_its_window() {
        let now = Utc::now();
        let mut r = Autoreply {
            id: ObjectId::new(),
            user: ObjectId::new(),
            status: true,
            name: String::new(),
            subject: String::new(),
            text: String::new(),
            html: String::new(),
            start: None,
            end: None,
            created: now,
        };
        assert!(r.active_at(now));
        r.start = Some(now + chrono::Duration::hours(1));
        assert!(!r.active_at(now));
        r.start = Some(now - chrono::Duration::hours(1));
        r.end = Some(now - chrono::Duration::minutes(1));
        assert!(!r.active_at(now));
        r.end = None;
        r.status = false;
        assert!(!r.active_at(now));
    }
}
