//! Messages: upload, listing, details, flags, moves, deletion into the archive, raw source
//! and attachments.
//!
//! A message is stored once: its raw source as a blob (`messages/<user>/<id>.eml`), its
//! metadata as an item in its mailbox's partition (`MSGS#<user>#<mailbox>` / UID). The UID
//! comes from the mailbox's `uidNext` counter (one atomic update, strictly increasing, never
//! reused). The message, the mailbox counters, the user's `storageUsed` (with the quota as
//! the write's condition), the pointer from the message id to its place, thread references
//! and the journal event are written in ONE transaction, so a message is either fully
//! visible and counted or not there at all.
//!
//! * this module: the [`Message`] entity and what every operation shares;
//! * [`upload`]: storing a new message (the one transaction), staged uploads;
//! * [`threads`]: which thread a new message joins;
//! * [`read`]: listing, details, sources and attachments, events, lookups by id;
//! * [`change`]: flags, expiry and moves;
//! * [`remove`]: deletion into the archive, draining a deleted mailbox.

pub mod change;
pub mod indexing;
pub mod read;
pub mod remove;
pub mod threads;
pub mod upload;

#[cfg(test)]
pub(crate) mod tests;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use change::{FlagChanges, MessageUpdate, Selector, Updated, update};
pub use indexing::{Reconciled, reconcile, reindex};
pub use read::{
    Details, Download, ListMessages, MessageListing, PRESIGNED_FOR, attachment,
    attachment_download, details, events, get, list, load, raw_source, resolve_ids, safe_filename,
};
pub use remove::{
    Archived, ClearTask, Emptied, delete, drain_deleted_mailbox, empty_mailbox, empty_step,
    remove_messages, schedule_empty,
};
pub(crate) use threads::thread_ref_keys;
pub(crate) use upload::PENDING_DOOMED;
pub use upload::{
    Envelope, PENDING_BLOB_SECONDS, StagedUpload, Stored, Upload, allowed_storage, create_upload,
    put_upload, store,
};

use super::mailboxes::{self, MODIFY_INDEX, SIZE, StoredMailbox, TOTAL, UID_NEXT, UNSEEN};
use super::{AppState, DomainError, DomainResult, keys};
use crate::id::ObjectId;
use crate::mail::parse::{Address, AttachmentInfo};
use crate::store::{Condition, Item, Key, StoreError, Update, Write};
use crate::time::iso;

/// Largest message accepted (WildDuck's 64 MiB).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Labels of the conditions on message items (see [`crate::store::Guard`]).
/// The message is gone (moved or deleted meanwhile).
pub const MESSAGE_GONE: &str = "message gone";
/// The counter every change of a message item adds 1 to: a write computed from a read is
/// conditioned on it (the message is as it was read), so counters derived from the read
/// (unseen, sizes) can't drift under concurrent changes.
pub const REVISION: &str = "rev";
/// The UID (or the message id) is in use already.
pub const UID_TAKEN: &str = "uid taken";
/// The message would take the user over the quota.
pub(crate) const OVER_QUOTA: &str = "over quota";
/// The idempotency key was used by an earlier upload.
const ALREADY_STORED: &str = "already stored";
/// The pending-blob marker of an upload: committed, or doomed by the janitor.
pub const UPLOAD_SETTLED: &str = "upload settled";

/// The stored metadata of a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Stable object id: the archive id, the search index value, the blob name.
    pub id: ObjectId,
    pub user: ObjectId,
    pub mailbox: ObjectId,
    pub uid: u32,
    pub thread: ObjectId,
    #[serde(default)]
    pub from: Option<Address>,
    #[serde(default)]
    pub to: Vec<Address>,
    #[serde(default)]
    pub cc: Vec<Address>,
    #[serde(default)]
    pub bcc: Vec<Address>,
    #[serde(default)]
    pub reply_to: Vec<Address>,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub message_id: String,
    /// The Date header, or the delivery time when it is missing or invalid.
    pub date: DateTime<Utc>,
    /// When the message was stored (internal date).
    pub idate: DateTime<Utc>,
    #[serde(default)]
    pub intro: String,
    pub size: u64,
    #[serde(default)]
    pub seen: bool,
    #[serde(default)]
    pub flagged: bool,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub answered: bool,
    #[serde(default)]
    pub forwarded: bool,
    #[serde(default)]
    pub attachments: Vec<AttachmentInfo>,
    #[serde(default)]
    pub has_attachments: bool,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub list_id: Option<String>,
    #[serde(default)]
    pub list_unsubscribe: Option<String>,
    #[serde(default)]
    pub encrypted: bool,
    /// When the message is to be removed (mailbox retention or `expires`).
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
    /// Blob key of the raw source.
    pub blob: String,
    /// Search terms indexed for this message (to remove them with it).
    #[serde(default)]
    pub terms: Vec<String>,
    /// JSON text of an object.
    #[serde(default)]
    pub meta_data: Option<String>,
    /// Where the message came from: `API`, `LMTP`, `SES`.
    #[serde(default)]
    pub source: String,
    /// The SMTP envelope it was delivered with (none for uploads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Envelope>,
    /// Queue ids of the submissions that sent it (WildDuck's `outbound`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<ObjectId>,
    /// What a composed draft needs to be sent later: the message it answers or forwards, the
    /// SMTP envelope it was composed with, the storage files it attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_info: Option<DraftInfo>,
    /// The item's [`REVISION`] when it was read (not stored in the body).
    #[serde(skip)]
    pub revision: i64,
}

/// What a reply or forward refers to (WildDuck's `reference`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub mailbox: ObjectId,
    pub uid: u32,
    pub action: ReferenceAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReferenceAction {
    Reply,
    ReplyAll,
    Forward,
}

impl ReferenceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ReferenceAction::Reply => "reply",
            ReferenceAction::ReplyAll => "replyAll",
            ReferenceAction::Forward => "forward",
        }
    }
}

/// A composed message's sending details, kept with the stored copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DraftInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// MAIL FROM and RCPT TO, when the composer gave or derived them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope_from: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envelope_to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ObjectId>,
}

impl Message {
    /// IMAP flags of the message.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        for (on, flag) in [
            (self.seen, "\\Seen"),
            (self.flagged, "\\Flagged"),
            (self.draft, "\\Draft"),
            (self.deleted, "\\Deleted"),
            (self.answered, "\\Answered"),
            (self.forwarded, "$Forwarded"),
        ] {
            if on {
                flags.push(flag);
            }
        }
        flags
    }

    pub(crate) fn key(&self) -> Key {
        keys::message(&self.user, &self.mailbox, self.uid)
    }

    /// Bounds what the item keeps so that it fits DynamoDB's 400 KB with room to spare: file
    /// names cut to 255 characters, then fewer attachments listed (the first ones), then the
    /// address lists and the subject shortened. The message itself is stored whole; only what
    /// the listing shows of it is cut (WildDuck caps its stored MIME tree the same way).
    pub(crate) fn fit_item(&mut self) {
        const BUDGET: usize = 300 * 1024;
        let size = |m: &Message| serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
        if size(self) <= BUDGET {
            return;
        }
        for a in &mut self.attachments {
            if a.filename.chars().count() > 255 {
                a.filename = a.filename.chars().take(255).collect();
            }
        }
        while size(self) > BUDGET && self.attachments.len() > 10 {
            let keep = self.attachments.len() / 2;
            self.attachments.truncate(keep);
        }
        for list in [
            &mut self.to,
            &mut self.cc,
            &mut self.bcc,
            &mut self.reply_to,
        ] {
            if list.len() > 100 {
                list.truncate(100);
            }
        }
        if self.subject.chars().count() > 2048 {
            self.subject = self.subject.chars().take(2048).collect();
        }
        while size(self) > BUDGET && self.references.len() > 10 {
            let keep = self.references.len() / 2;
            self.references.drain(..keep);
        }
        if size(self) > BUDGET {
            self.intro.truncate(self.intro.floor_char_boundary(128));
            self.meta_data = None;
        }
    }

    /// The condition that the item is still as it was read.
    pub(crate) fn unchanged(&self) -> Condition {
        Condition::CounterEquals(REVISION.into(), self.revision)
    }

    /// The item of this message in `mailbox`: listed as flagged unless deleted or in
    /// Junk/Trash; scheduled for purge when it expires.
    pub fn item(&self, mailbox: &StoredMailbox) -> Item {
        let mut item = Item::new(self.key(), serde_json::to_value(self).unwrap_or_default());
        if self.flagged && !self.deleted && !mailbox.is_junk_or_trash() {
            item.gsi1 = Some(keys::flagged_listing(&self.user, &self.id));
        }
        if let Some(expires) = self.expires {
            item.gsi2 = Some(keys::purge_entry(expires.timestamp(), &self.key()));
        }
        item
    }

    /// `(total, unseen, size)` this message adds to its mailbox's counters.
    pub(crate) fn counts(&self) -> (i64, i64, i64) {
        (1, i64::from(!self.seen), self.size as i64)
    }

    /// The journal event of this message appearing in its mailbox.
    pub(crate) fn exists_event(&self) -> Value {
        json!({
            "command": "EXISTS",
            "uid": self.uid,
            "message": self.id,
            "idate": iso(&self.idate),
            "thread": self.thread,
            "mailbox": self.mailbox,
            "unseen": !self.seen,
        })
    }

    pub(crate) fn expunge_event(&self) -> Value {
        json!({
            "command": "EXPUNGE",
            "uid": self.uid,
            "message": self.id,
            "thread": self.thread,
            "mailbox": self.mailbox,
            "unseen": !self.seen,
        })
    }

    /// The journal event of this message's flags changing; `unseen_changed` tells whether
    /// \Seen did (the stream then sends the mailbox's counters; clients never see the field).
    pub(crate) fn fetch_event(&self, unseen_changed: bool) -> Value {
        json!({
            "command": "FETCH",
            "uid": self.uid,
            "flags": self.flags(),
            "thread": self.thread,
            "message": self.id,
            "mailbox": self.mailbox,
            "unseenChange": unseen_changed,
        })
    }
}

pub fn from_item(item: &Item) -> DomainResult<Message> {
    let mut message: Message = item
        .body_as()
        .map_err(|e| DomainError::corrupt("message", format!("{}/{}", item.pk, item.sk), e))?;
    message.revision = item.counter(REVISION);
    Ok(message)
}

/// Reads `messages` again (those still in their mailbox, with their current state), by UID.
pub(crate) async fn reload(state: &AppState, messages: &[Message]) -> DomainResult<Vec<Message>> {
    let keys: Vec<Key> = messages.iter().map(Message::key).collect();
    let mut fresh = Vec::new();
    for chunk in keys.chunks(100) {
        for item in state.table.get_many(chunk).await? {
            fresh.push(from_item(&item)?);
        }
    }
    fresh.sort_by_key(|m| m.uid);
    Ok(fresh)
}

/// A mailbox deleted while its messages were being changed (its counters' guard failed):
/// retrying cannot help.
fn mailbox_gone() -> DomainError {
    DomainError::MailboxNotFound("This mailbox does not exist")
}

fn message_not_found() -> DomainError {
    DomainError::MessageNotFound("This message does not exist")
}

/// The write that changes a mailbox's counters by a message delta (and bumps its modifyIndex).
fn mailbox_counters(mailbox: &StoredMailbox, total: i64, unseen: i64, size: i64) -> Write {
    Write::Update {
        key: keys::mailbox(&mailbox.mailbox.user, &mailbox.mailbox.id),
        update: Update::default()
            .add(TOTAL, total)
            .add(UNSEEN, unseen)
            .add(SIZE, size)
            .add(MODIFY_INDEX, 1),
        guard: Some(Condition::Exists.labeled(mailboxes::MAILBOX_GONE)),
    }
}

/// When a message added to `mailbox` now expires by the mailbox's retention.
pub(crate) fn retention_expiry(
    mailbox: &StoredMailbox,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let ms = mailbox.mailbox.retention;
    if ms == 0 {
        return None;
    }
    crate::time::after_millis(now, ms)
}

/// Allocates `count` UIDs in a mailbox; returns the first. UIDs are never reused, even when
/// the write that was to use them fails.
pub(crate) async fn allocate_uids(
    state: &AppState,
    mailbox: &StoredMailbox,
    count: usize,
) -> DomainResult<u32> {
    let item = state
        .table
        .update(
            &keys::mailbox(&mailbox.mailbox.user, &mailbox.mailbox.id),
            Update::default().add(UID_NEXT, count as i64),
            Some(Condition::Exists.labeled(mailboxes::MAILBOX_GONE)),
        )
        .await
        .map_err(|e| match e {
            StoreError::ConditionFailed { .. } => mailbox_gone(),
            other => other.into(),
        })?;
    Ok((item.counter(UID_NEXT) - count as i64) as u32)
}
