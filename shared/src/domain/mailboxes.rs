//! Mailboxes: the entity, the default set every new user gets, and the mailbox endpoints'
//! rules (list, get, create, rename, delete).
//!
//! A mailbox item holds the folder's description; its counters hold what changes with every
//! message (`uidNext`, `modifyIndex`, `total`, `unseen`, `size`), kept exact in the same
//! transaction as every message change, so listing with counters reads them instead of
//! counting, and a UID is allocated with one atomic counter update. A path claim item makes
//! paths unique per user.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::keys;
use super::mailbox_names::default_mailbox_names;
use super::users::{self, MAILBOX_COUNT};
use super::webhooks;
use super::{AppState, DomainError, DomainResult, journal, retry, unix_now};
use crate::id::ObjectId;
use crate::store::{Condition, Item, Query, SortRange, StoreError, Update, Write, query_all};

/// Counter names on a mailbox item.
pub const UID_NEXT: &str = "uidNext";
pub const MODIFY_INDEX: &str = "modifyIndex";
pub const TOTAL: &str = "total";
pub const UNSEEN: &str = "unseen";
pub const SIZE: &str = "size";

/// WildDuck's limits: mailboxes per user, path depth and segment length.
pub const MAX_MAILBOXES: i64 = 1500;

/// Labels of the conditions on mailbox items (see [`crate::store::Guard`]).
/// The mailbox is gone (deleted meanwhile, or never this user's).
pub const MAILBOX_GONE: &str = "mailbox gone";
/// The path is taken by another mailbox of the user.
pub const PATH_TAKEN: &str = "path taken";
/// The user has as many mailboxes as allowed (or the profile is gone).
const MAILBOX_LIMIT: &str = "mailbox limit";
const MAX_PATH_LEVELS: usize = 128;
const MAX_SEGMENT_CHARS: usize = 512;
/// The longest path text a request may carry (every level at its longest).
pub const MAX_PATH_CHARS: usize = MAX_PATH_LEVELS * (MAX_SEGMENT_CHARS + 1);

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
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub encrypt_messages: bool,
    pub created: DateTime<Utc>,
}

impl Mailbox {
    /// The writes that create this mailbox: the item (UIDs start at 1) and its path claim.
    pub fn create_writes(&self) -> Vec<Write> {
        let body = serde_json::to_value(self).unwrap_or(Value::Null);
        let item = Item::new(keys::mailbox(&self.user, &self.id), body)
            .with_counter(UID_NEXT, 1)
            .with_counter(MODIFY_INDEX, 0);
        let claim = Item::new(
            keys::mailbox_path_claim(&self.user, &self.path),
            serde_json::json!({ "mailbox": self.id }),
        );
        vec![
            Write::put_new(item, PATH_TAKEN),
            Write::put_new(claim, PATH_TAKEN),
        ]
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
            hidden: false,
            encrypt_messages: false,
            created: now,
        })
        .collect()
}

/// A mailbox as read, with its counters.
#[derive(Debug, Clone)]
pub struct StoredMailbox {
    pub mailbox: Mailbox,
    pub uid_next: i64,
    pub modify_index: i64,
    pub total: i64,
    pub unseen: i64,
    pub size: i64,
}

impl StoredMailbox {
    pub fn from_item(item: &Item) -> DomainResult<StoredMailbox> {
        let mailbox: Mailbox = item
            .body_as()
            .map_err(|e| DomainError::corrupt("mailbox", format!("{}/{}", item.pk, item.sk), e))?;
        Ok(StoredMailbox {
            mailbox,
            uid_next: item.counter(UID_NEXT),
            modify_index: item.counter(MODIFY_INDEX),
            total: item.counter(TOTAL).max(0),
            unseen: item.counter(UNSEEN).max(0),
            size: item.counter(SIZE).max(0),
        })
    }

    pub fn is_special(&self, special_use: &str) -> bool {
        self.mailbox.special_use.as_deref() == Some(special_use)
    }

    /// Junk and Trash: left out of flagged listings and default searches.
    pub fn is_junk_or_trash(&self) -> bool {
        self.is_special("\\Junk") || self.is_special("\\Trash")
    }

    /// The last path segment.
    pub fn name(&self) -> &str {
        self.mailbox
            .path
            .rsplit('/')
            .next()
            .unwrap_or(&self.mailbox.path)
    }
}

fn not_found() -> DomainError {
    DomainError::MailboxNotFound("This mailbox does not exist")
}

/// Reads one mailbox of `user`, or `NoSuchMailbox` (also for another user's mailbox id: the
/// key includes the user).
pub async fn load(state: &AppState, user: &ObjectId, id: &ObjectId) -> DomainResult<StoredMailbox> {
    // One read for both: a deleted user's mailboxes linger until the janitor purges them, but
    // are gone for the API at once.
    let items = state
        .table
        .get_many(&[keys::user(user), keys::mailbox(user, id)])
        .await?;
    if !items.iter().any(|i| i.sk == "PROFILE") {
        return Err(DomainError::user_not_found());
    }
    let item = items
        .iter()
        .find(|i| i.sk != "PROFILE")
        .ok_or_else(not_found)?;
    StoredMailbox::from_item(item)
}

/// Every mailbox of a user (one query; a user has at most 1500).
pub async fn load_all(state: &AppState, user: &ObjectId) -> DomainResult<Vec<StoredMailbox>> {
    let query = Query::table(keys::user_pk(user))
        .range(SortRange::BeginsWith(keys::MAILBOX_SK_PREFIX.into()))
        .limit(1000);
    query_all(state.table.as_ref(), query)
        .await?
        .iter()
        .map(StoredMailbox::from_item)
        .collect()
}

/// The user's INBOX.
pub async fn inbox(state: &AppState, user: &ObjectId) -> DomainResult<StoredMailbox> {
    load_all(state, user)
        .await?
        .into_iter()
        .find(|m| m.mailbox.path == "INBOX")
        .ok_or_else(not_found)
}

/// The user's mailbox with `special_use` (`\Sent`, `\Drafts`, ...), else INBOX.
pub async fn special_or_inbox(
    state: &AppState,
    user: &ObjectId,
    special_use: &str,
) -> DomainResult<StoredMailbox> {
    let all = load_all(state, user).await?;
    let special = all.iter().position(|m| m.is_special(special_use));
    let inbox = all.iter().position(|m| m.mailbox.path == "INBOX");
    match special.or(inbox) {
        Some(i) => Ok(all.into_iter().nth(i).expect("index from position")),
        None => Err(not_found()),
    }
}

/// WildDuck's order: INBOX, its children, subscribed before unsubscribed, then by path.
fn listing_order(a: &StoredMailbox, b: &StoredMailbox) -> Ordering {
    let rank = |m: &StoredMailbox| {
        let path = &m.mailbox.path;
        if path == "INBOX" {
            0
        } else if path.starts_with("INBOX/") {
            1
        } else if m.mailbox.subscribed {
            2
        } else {
            3
        }
    };
    rank(a).cmp(&rank(b)).then_with(|| {
        a.mailbox
            .path
            .to_lowercase()
            .cmp(&b.mailbox.path.to_lowercase())
    })
}

/// `GET /users/{user}/mailboxes`: in WildDuck's order; hidden ones only with
/// `show_hidden`, and only INBOX and special-use ones with `special_only`.
pub async fn list(
    state: &AppState,
    user: &ObjectId,
    special_only: bool,
    show_hidden: bool,
) -> DomainResult<Vec<StoredMailbox>> {
    users::load(state, user).await?;
    let mut boxes = load_all(state, user).await?;
    boxes.retain(|m| show_hidden || !m.mailbox.hidden);
    if special_only {
        boxes.retain(|m| m.mailbox.path == "INBOX" || m.mailbox.special_use.is_some());
    }
    boxes.sort_by(listing_order);
    Ok(boxes)
}

/// A mailbox as a request names it.
pub enum MailboxRef {
    Id(ObjectId),
    /// A path, valid by [`check_path`].
    Path(String),
}

/// `GET /users/{user}/mailboxes/{mailbox}`, or by path (`resolve`).
pub async fn get(
    state: &AppState,
    user: &ObjectId,
    which: &MailboxRef,
) -> DomainResult<StoredMailbox> {
    users::load(state, user).await?;
    match which {
        MailboxRef::Id(id) => load(state, user, id).await,
        MailboxRef::Path(path) => {
            let path = normalize_path(path);
            let claim = state
                .table
                .get(&keys::mailbox_path_claim(user, &path))
                .await?;
            let id: ObjectId = claim
                .and_then(|c| serde_json::from_value(c.body["mailbox"].clone()).ok())
                .ok_or_else(not_found)?;
            load(state, user, &id).await
        }
    }
}

/// Checks WildDuck's path rules: no empty segment (`//`), no trailing `/`, at most 128 levels
/// of at most 512 characters.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.contains("//") || path.ends_with('/') {
        return Err(format!(
            "\"path\" with value {path:?} matches the inverted pattern: /\\/{{2,}}|\\/$/"
        ));
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > MAX_PATH_LEVELS {
        return Err("The mailbox path cannot be more than 128 levels deep".into());
    }
    if segments
        .iter()
        .any(|s| s.chars().count() > MAX_SEGMENT_CHARS)
    {
        return Err("Any part of the mailbox path cannot be longer than 512 chars long".into());
    }
    if path.chars().any(char::is_control) {
        return Err("\"path\" must not contain control characters".into());
    }
    Ok(())
}

/// One leading and one trailing `/` removed; a first segment `inbox` in any case is `INBOX`.
pub fn normalize_path(path: &str) -> String {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    match path.split_once('/') {
        Some((first, rest)) if first.eq_ignore_ascii_case("INBOX") => format!("INBOX/{rest}"),
        None if path.eq_ignore_ascii_case("INBOX") => "INBOX".into(),
        _ => path.to_string(),
    }
}

fn exists_error() -> DomainError {
    DomainError::MailboxExists("Mailbox creation failed with code MailboxAlreadyExists")
}

/// A `POST /users/{user}/mailboxes` request.
pub struct NewMailbox {
    /// Normalized ([`normalize_path`]) and valid ([`check_path`]).
    pub path: String,
    pub hidden: bool,
    /// Milliseconds; the user's default when `None` or 0.
    pub retention: Option<u64>,
    pub encrypt_messages: bool,
}

/// `POST /users/{user}/mailboxes`: parents need not exist.
pub async fn create(
    state: &AppState,
    user: &ObjectId,
    input: NewMailbox,
) -> DomainResult<ObjectId> {
    let NewMailbox {
        path,
        hidden,
        retention,
        encrypt_messages: encrypt,
    } = input;
    let owner = users::load(state, user).await?;
    let now = Utc::now();
    let mailbox = Mailbox {
        id: ObjectId::new(),
        user: *user,
        path: path.clone(),
        special_use: None,
        uid_validity: now.timestamp(),
        subscribed: true,
        retention: retention.filter(|r| *r > 0).unwrap_or(owner.user.retention),
        hidden,
        encrypt_messages: encrypt,
        created: now,
    };
    let seq = journal::reserve(state.table.as_ref(), user, 1).await?;
    let mut writes = mailbox.create_writes();
    writes.push(Write::Update {
        key: keys::user(user),
        update: Update::default().add(MAILBOX_COUNT, 1),
        guard: Some(
            Condition::CounterAtMost(MAILBOX_COUNT.into(), MAX_MAILBOXES - 1)
                .labeled(MAILBOX_LIMIT),
        ),
    });
    writes.push(journal::event_write(
        &state.config,
        user,
        seq,
        json!({"command": "CREATE", "mailbox": mailbox.id, "path": path, "name": path}),
    ));
    match journal::commit(state.table.as_ref(), &state.config, user, seq, 1, writes).await {
        Ok(()) => {
            let event = webhooks::Event::of("mailbox.created", user)
                .with("mailbox", mailbox.id)
                .with("path", &path);
            webhooks::publish(state, event).await;
            Ok(mailbox.id)
        }
        Err(StoreError::ConditionFailed { label: PATH_TAKEN }) => Err(exists_error()),
        Err(StoreError::ConditionFailed {
            label: MAILBOX_LIMIT,
        }) => Err(DomainError::MailboxMethodNotAllowed(
            "Mailbox creation failed with code ReachedMailboxCountLimit. Max mailboxes count reached.",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Writes that move a mailbox to `new_path` (body, old claim out, new claim in).
fn rename_writes(stored: &StoredMailbox, new_path: &str) -> Vec<Write> {
    let m = &stored.mailbox;
    let mut renamed = m.clone();
    renamed.path = new_path.to_string();
    vec![
        Write::Update {
            key: keys::mailbox(&m.user, &m.id),
            update: Update::body(serde_json::to_value(&renamed).unwrap_or_default())
                .add(MODIFY_INDEX, 1),
            guard: Some(Condition::Exists.labeled(MAILBOX_GONE)),
        },
        Write::delete(keys::mailbox_path_claim(&m.user, &m.path)),
        Write::put_new(
            Item::new(
                keys::mailbox_path_claim(&m.user, new_path),
                json!({ "mailbox": m.id }),
            ),
            PATH_TAKEN,
        ),
    ]
}

/// `PUT /users/{user}/mailboxes/{mailbox}`: rename (children follow), retention,
/// subscription, hidden, encryption.
/// A `PUT /users/{user}/mailboxes/{mailbox}` request; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct MailboxChanges {
    /// Valid by [`check_path`].
    pub path: Option<String>,
    pub retention: Option<u64>,
    pub subscribed: Option<bool>,
    pub encrypt_messages: Option<bool>,
    pub hidden: Option<bool>,
}

pub async fn update(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    changes: MailboxChanges,
) -> DomainResult<()> {
    let MailboxChanges {
        path,
        retention,
        subscribed,
        encrypt_messages: encrypt,
        hidden,
    } = changes;
    if path.is_none()
        && retention.is_none()
        && subscribed.is_none()
        && encrypt.is_none()
        && hidden.is_none()
    {
        return Err(DomainError::NoUpdates("Nothing was changed"));
    }
    let update_failed =
        || DomainError::MailboxNotFound("Mailbox update failed with code NoSuchMailbox");
    let current = match load(state, user, id).await {
        Err(DomainError::MailboxNotFound(_)) => return Err(update_failed()),
        other => other?,
    };
    let mut changed = current.mailbox.clone();
    if let Some(r) = retention {
        changed.retention = r;
    }
    if let Some(s) = subscribed {
        changed.subscribed = s;
    }
    if let Some(e) = encrypt {
        changed.encrypt_messages = e;
    }
    if let Some(h) = hidden {
        changed.hidden = h;
    }
    let new_path = path
        .map(|p| normalize_path(&p))
        .filter(|p| *p != current.mailbox.path);
    let Some(new_path) = new_path else {
        let write = Write::Update {
            key: keys::mailbox(user, id),
            update: Update::body(serde_json::to_value(&changed).unwrap_or_default()),
            guard: Some(Condition::Exists.labeled(MAILBOX_GONE)),
        };
        return match state.table.transact(vec![write]).await {
            Err(StoreError::ConditionFailed { .. }) => Err(update_failed()),
            other => other.map_err(Into::into),
        };
    };
    let disallowed = || {
        DomainError::MailboxMethodNotAllowed(
            "Mailbox update failed with code DisallowedMailboxMethod",
        )
    };
    if current.mailbox.path == "INBOX" || current.mailbox.hidden || new_path == "INBOX" {
        return Err(disallowed());
    }
    if new_path.starts_with(&format!("{}/", current.mailbox.path)) {
        // A folder can't move inside itself.
        return Err(disallowed());
    }
    // The mailbox itself first (with its other changes), then its children, each as one
    // transaction with their journal events.
    let old_prefix = format!("{}/", current.mailbox.path);
    let children: Vec<StoredMailbox> = load_all(state, user)
        .await?
        .into_iter()
        .filter(|m| m.mailbox.path.starts_with(&old_prefix))
        .collect();
    let mut first = current.clone();
    first.mailbox = changed;
    let mut moves = vec![(first, new_path.clone())];
    for child in children {
        let suffix = &child.mailbox.path[old_prefix.len()..];
        let target = format!("{new_path}/{suffix}");
        moves.push((child, target));
    }
    for (n, chunk) in moves.chunks(20).enumerate() {
        let seq = journal::reserve(state.table.as_ref(), user, chunk.len()).await?;
        let mut writes = Vec::new();
        for (i, (stored, target)) in chunk.iter().enumerate() {
            writes.extend(rename_writes(stored, target));
            writes.push(journal::event_write(
                &state.config,
                user,
                seq + i as i64,
                json!({"command": "RENAME", "mailbox": stored.mailbox.id, "path": target}),
            ));
        }
        match journal::commit(
            state.table.as_ref(),
            &state.config,
            user,
            seq,
            chunk.len(),
            writes,
        )
        .await
        {
            Ok(()) => {}
            Err(StoreError::ConditionFailed { label: PATH_TAKEN }) => {
                return Err(DomainError::MailboxExists(
                    "Mailbox rename failed with code MailboxAlreadyExists",
                ));
            }
            Err(StoreError::ConditionFailed { .. }) if n == 0 => return Err(not_found()),
            Err(e) => return Err(e.into()),
        }
    }
    let event = webhooks::Event::of("mailbox.renamed", user)
        .with("mailbox", id)
        .with("previous", &current.mailbox.path)
        .with("current", &new_path);
    webhooks::publish(state, event).await;
    Ok(())
}

/// `DELETE /users/{user}/mailboxes/{mailbox}`: user folders only; the mailbox disappears at
/// once and its messages go to the archive (now, as far as the request's budget allows, and
/// by the janitor for the rest). Child folders stay.
pub async fn delete(state: &AppState, user: &ObjectId, id: &ObjectId) -> DomainResult<()> {
    let no_such_mailbox =
        || DomainError::MailboxNotFound("Mailbox deletion failed with code NoSuchMailbox");
    let deleted = retry::retry_on_conflict(
        "The mailbox was changed concurrently, try again",
        || async {
            let current = load(state, user, id).await.map_err(|_| no_such_mailbox())?;
            match try_delete(state, user, &current).await? {
                true => Ok(retry::Attempt::Done(current.mailbox.path)),
                false => Ok(retry::Attempt::Retry),
            }
        },
    )
    .await
    .map(|path| {
        webhooks::Event::of("mailbox.deleted", user)
            .with("mailbox", id)
            .with("path", path)
    })?;
    webhooks::publish(state, deleted).await;
    // Archive what fits in this request; the janitor finishes larger folders, and what this
    // one could not do (the mailbox is deleted either way).
    if let Err(e) = super::messages::drain_deleted_mailbox(state, user, id, 500).await {
        tracing::warn!(%user, mailbox = %id, error = %e, "deleted mailbox not drained now; the janitor will");
    }
    Ok(())
}

/// One attempt at deleting a mailbox as it was read: its messages' size leaves the user's
/// quota at once (they go to the archive, which does not count), so the drain that archives
/// them later changes no quota. False when messages came or went meanwhile.
async fn try_delete(
    state: &AppState,
    user: &ObjectId,
    current: &StoredMailbox,
) -> DomainResult<bool> {
    let no_such_mailbox =
        || DomainError::MailboxNotFound("Mailbox deletion failed with code NoSuchMailbox");
    let m = &current.mailbox;
    let id = &m.id;
    if m.path == "INBOX" || m.special_use.is_some() || m.hidden {
        return Err(DomainError::MailboxMethodNotAllowed(
            "Mailbox deletion failed with code DisallowedMailboxMethod",
        ));
    }
    let now = unix_now();
    let task = Item::new(
        keys::deleted_mailbox(user, id),
        json!({ "user": user, "mailbox": m }),
    )
    .with_gsi1(keys::mailbox_task(now, user, id));
    let seq = journal::reserve(state.table.as_ref(), user, 1).await?;
    let writes = vec![
        Write::delete(keys::mailbox(user, id)).when(
            Condition::CounterEquals(SIZE.into(), current.size),
            MAILBOX_GONE,
        ),
        Write::delete(keys::mailbox_path_claim(user, &m.path)),
        Write::Update {
            key: keys::user(user),
            update: Update::default()
                .add(MAILBOX_COUNT, -1)
                .add(users::STORAGE_USED, -current.size),
            // A deleted user's mailboxes wait for the janitor; never recreate the profile.
            guard: Some(Condition::Exists.labeled(users::USER_GONE)),
        },
        Write::put(task),
        journal::event_write(
            &state.config,
            user,
            seq,
            json!({"command": "DELETE", "mailbox": id}),
        ),
    ];
    match journal::commit(state.table.as_ref(), &state.config, user, seq, 1, writes).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed {
            label: users::USER_GONE,
        }) => Err(DomainError::user_not_found()),
        // Gone, or its size changed: read it again (gone is answered then).
        Err(StoreError::ConditionFailed { .. }) => {
            if state.table.get(&keys::mailbox(user, id)).await?.is_none() {
                return Err(no_such_mailbox());
            }
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
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
