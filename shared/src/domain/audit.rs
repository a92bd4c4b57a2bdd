//! Audits (WildDuck's `/audit`): a window of one user's mail kept for export, whatever the
//! user does with it afterwards.
//!
//! `POST /audit` names the user, the window (`start`, `end`, each optional) and when the audit
//! ends (`expires`). The messages the user already has (in any folder, and in the archive)
//! whose arrival time falls in the window are copied by the janitor, a page at a time; every
//! message stored for the user while the window is open is copied as it is stored. A copy is
//! the message's bytes as stored (own blob, `audit/<audit>/<message>`) and an entry naming its
//! folder, so deleting or moving the original changes nothing. When `expires` passes the
//! janitor removes the copies and marks the audit deleted (`GET /audit/{id}` still answers).
//! `GET /audit/{id}/export.mbox` gives the copies as an mbox (mboxrd), oldest first, as
//! WildDuck's export: `X-Export-Mailbox` and `X-Export-Draft` headers added, line ends LF.
//!
//! Items: the audit (`AUDIT#<id>` / `AUDIT`, on the janitor's schedule while it has work: the
//! copy at once, the removal at `expires`), its entries (`AUDIT#<id>` / `MSG#<idate ms>#<id>`)
//! and, in the user's partition, `AUDIT#<id>` with the window, which a message store reads to
//! know whether to copy.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::mailboxes::{self, StoredMailbox};
use super::messages::Message;
use super::{AppState, DomainError, DomainResult, keys, unix_now, users};
use crate::id::ObjectId;
use crate::store::{Condition, Cursor, Item, Key, Query, SortRange, StoreError, Update, Write};

/// Messages looked at per janitor step (copy or removal).
pub const STEP: usize = 50;
/// The count of copies, a counter on the audit item.
const AUDITED: &str = "audited";
/// Labels of conditions.
const ALREADY_COPIED: &str = "already copied";
const AUDIT_GONE: &str = "audit gone";
/// How long a removed audit's record stays readable.
const DELETED_KEPT_SECONDS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    pub id: ObjectId,
    pub user: ObjectId,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub expires: DateTime<Utc>,
    pub notes: Option<String>,
    /// `meta`, as given (a JSON object).
    pub meta: Option<Value>,
    pub created: DateTime<Utc>,
    pub deleted: bool,
    pub deleted_time: Option<DateTime<Utc>>,
    /// The copy of the messages the user had: `queued`, `copying`, `imported`.
    pub status: String,
    pub copied: u64,
    pub failed: u64,
    /// Where the copy is: the folder (by position in id order; the archive after the last)
    /// and the position in it.
    #[serde(default)]
    progress: Progress,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Progress {
    folder: usize,
    after: Option<Cursor>,
}

/// An audit as read, with the count of its copies.
pub struct AuditView {
    pub audit: Audit,
    pub audited: u64,
    pub last_audited: Option<DateTime<Utc>>,
}

/// One copied message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub message: ObjectId,
    pub mailbox: Option<ObjectId>,
    pub mailbox_path: Option<String>,
    pub idate: DateTime<Utc>,
    pub size: u64,
    pub draft: bool,
    /// The envelope sender, for the mbox `From ` line.
    pub from: Option<String>,
    pub blob: String,
    pub captured: DateTime<Utc>,
}

impl Audit {
    fn key(&self) -> Key {
        keys::audit(&self.id)
    }

    /// Whether a message that arrived at `idate` belongs to the window.
    pub fn covers(&self, idate: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| idate >= s) && self.end.is_none_or(|e| idate <= e)
    }

    /// The new audit item, on the janitor's schedule now.
    fn new_item(&self) -> Item {
        Item::new(self.key(), serde_json::to_value(self).unwrap_or_default())
            .with_gsi1(keys::audit_task_entry(unix_now(), &self.id))
    }

    /// The audit written back (its count of copies kept), on the janitor's schedule at `due`
    /// (unix seconds), or off it.
    fn save(&self, due: Option<i64>) -> Write {
        let expires = self
            .deleted_time
            .map(|deleted| deleted.timestamp() + DELETED_KEPT_SECONDS);
        Write::Update {
            key: self.key(),
            update: Update {
                body: Some(serde_json::to_value(self).unwrap_or_default()),
                gsi1: Some(due.map(|due| keys::audit_task_entry(due, &self.id))),
                expires_at: Some(expires),
                ..Default::default()
            },
            guard: Some(Condition::Exists.labeled(AUDIT_GONE)),
        }
    }

    fn pointer(&self) -> Item {
        Item::new(
            keys::user_audit(&self.user, &self.id),
            json!({ "start": self.start, "end": self.end, "expires": self.expires }),
        )
        .with_expiry(self.expires.timestamp() + 24 * 3600)
    }
}

fn from_item(item: &Item) -> DomainResult<Audit> {
    item.body_as()
        .map_err(|e| DomainError::corrupt("audit", &item.pk, e))
}

/// What `POST /audit` takes.
pub struct NewAudit {
    pub user: ObjectId,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub expires: DateTime<Utc>,
    pub notes: Option<String>,
    pub meta: Option<Value>,
}

/// `POST /audit`: the audit is open at once; the copy of what the user has is queued.
pub async fn create(state: &AppState, new: NewAudit) -> DomainResult<ObjectId> {
    users::load(state, &new.user).await?;
    if new.expires <= Utc::now() {
        return Err(DomainError::invalid(
            "expires",
            "\"expires\" must be in the future",
        ));
    }
    let audit = Audit {
        id: ObjectId::new(),
        user: new.user,
        start: new.start,
        end: new.end,
        expires: new.expires,
        notes: new.notes,
        meta: new.meta,
        created: Utc::now(),
        deleted: false,
        deleted_time: None,
        status: "queued".into(),
        copied: 0,
        failed: 0,
        progress: Progress::default(),
    };
    state
        .table
        .transact(vec![
            Write::put_new(audit.new_item(), AUDIT_GONE),
            Write::put(audit.pointer()),
        ])
        .await?;
    tracing::info!(audit = %audit.id, user = %audit.user, "audit started");
    Ok(audit.id)
}

/// `GET /audit/{audit}`.
pub async fn get(state: &AppState, id: &ObjectId) -> DomainResult<AuditView> {
    let item = state
        .table
        .get(&keys::audit(id))
        .await?
        .ok_or(DomainError::AuditNotFound)?;
    let audit = from_item(&item)?;
    let last = state
        .table
        .query(
            &Query::table(keys::audit(id).pk)
                .range(SortRange::BeginsWith(keys::AUDIT_ENTRY_PREFIX.into()))
                .backwards()
                .limit(1),
        )
        .await?;
    let last_audited = last
        .items
        .first()
        .and_then(|i| i.body_as::<Entry>().ok())
        .map(|e| e.captured);
    Ok(AuditView {
        audited: item.counter(AUDITED).max(0) as u64,
        audit,
        last_audited,
    })
}

/// Copies `message` (its bytes `raw`, else read from its blob) into the audit, once.
async fn copy(
    state: &AppState,
    audit: &ObjectId,
    message: &Message,
    mailbox_path: Option<&str>,
    raw: Option<Bytes>,
) -> DomainResult<bool> {
    let key = keys::audit_entry(audit, message.idate.timestamp_millis(), &message.id);
    if state.table.get(&key).await?.is_some() {
        return Ok(false);
    }
    let raw = match raw {
        Some(raw) => raw,
        None => match state.blobs.get(&message.blob).await? {
            Some(raw) => raw,
            // Removed meanwhile: nothing to keep.
            None => return Ok(false),
        },
    };
    let blob = keys::audit_blob(audit, &message.id);
    state.blobs.put(&blob, raw).await?;
    let entry = Entry {
        message: message.id,
        mailbox: mailbox_path.map(|_| message.mailbox),
        mailbox_path: mailbox_path.map(str::to_string),
        idate: message.idate,
        size: message.size,
        draft: message.draft,
        from: message
            .envelope
            .as_ref()
            .map(|e| e.from.clone())
            .filter(|f| !f.is_empty())
            .or_else(|| message.from.as_ref().map(|a| a.address.clone())),
        blob,
        captured: Utc::now(),
    };
    let writes = vec![
        Write::put_new(
            Item::new(key, serde_json::to_value(&entry).unwrap_or_default()),
            ALREADY_COPIED,
        ),
        Write::Update {
            key: keys::audit(audit),
            update: Update::default().add(AUDITED, 1),
            guard: Some(Condition::Exists.labeled(AUDIT_GONE)),
        },
    ];
    match state.table.transact(writes).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// After a message was stored for `message.user`: copied into each of the user's audits whose
/// window is open now. One read of the user's audit pointers; a failure is logged (the
/// message stays stored).
pub async fn on_stored(state: &AppState, message: &Message, mailbox: &StoredMailbox, raw: &Bytes) {
    let result: DomainResult<()> = async {
        let pointers = state
            .table
            .query(
                &Query::table(keys::user_pk(&message.user))
                    .range(SortRange::BeginsWith(keys::USER_AUDIT_PREFIX.into()))
                    .limit(100),
            )
            .await?;
        let now = Utc::now();
        for pointer in &pointers.items {
            let window = |field: &str| {
                pointer.body[field]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
            };
            let open = window("start").is_none_or(|s| now >= s)
                && window("end").is_none_or(|e| now <= e)
                && window("expires").is_some_and(|x| now < x);
            let Some(audit) = pointer.sk.strip_prefix(keys::USER_AUDIT_PREFIX) else {
                continue;
            };
            if open && let Ok(audit) = audit.parse::<ObjectId>() {
                copy(
                    state,
                    &audit,
                    message,
                    Some(&mailbox.mailbox.path),
                    Some(raw.clone()),
                )
                .await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(user = %message.user, message = %message.id, error = %e, "message not copied into its audit");
    }
}

/// One janitor step of the audit at `key`: a page of the copy, or of the removal once the
/// audit expired by `now`. Whether the audit needs no more steps now.
pub async fn step(state: &AppState, key: &Key, now: DateTime<Utc>) -> DomainResult<bool> {
    let Some(item) = state.table.get(key).await? else {
        return Ok(true);
    };
    let mut audit = from_item(&item)?;
    if audit.deleted {
        return Ok(true);
    }
    if audit.expires <= now {
        return remove_step(state, audit, now).await;
    }
    if audit.status == "imported" {
        return Ok(true);
    }
    audit.status = "copying".into();
    let folders = mailboxes::load_all(state, &audit.user)
        .await
        .unwrap_or_default();
    let (pk, path) = match folders.get(audit.progress.folder) {
        Some(folder) => (
            keys::messages_pk(&audit.user, &folder.mailbox.id),
            Some(folder.mailbox.path.clone()),
        ),
        None if audit.progress.folder == folders.len() => (keys::archive_pk(&audit.user), None),
        None => {
            audit.status = "imported".into();
            tracing::info!(audit = %audit.id, copied = audit.copied, failed = audit.failed, "audit copy done");
            // Next due at the end: the removal.
            let save = audit.save(Some(audit.expires.timestamp()));
            state.table.transact(vec![save]).await?;
            return Ok(true);
        }
    };
    let page = state
        .table
        .query(
            &Query::table(pk)
                .limit(STEP)
                .start_after(audit.progress.after.take()),
        )
        .await?;
    for item in &page.items {
        // Archived messages are kept as `{message, archived, purgeAt}`.
        let body = item.body.get("message").unwrap_or(&item.body);
        let Ok(message) = serde_json::from_value::<Message>(body.clone()) else {
            continue;
        };
        if !audit.covers(message.idate) {
            continue;
        }
        // An archived message names the folder it was deleted from, if that still exists.
        let path = path.clone().or_else(|| {
            folders
                .iter()
                .find(|f| f.mailbox.id == message.mailbox)
                .map(|f| f.mailbox.path.clone())
        });
        match copy(state, &audit.id, &message, path.as_deref(), None).await {
            Ok(true) => audit.copied += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(audit = %audit.id, message = %message.id, error = %e, "message not copied into the audit");
                audit.failed += 1;
            }
        }
    }
    match page.next {
        Some(next) => audit.progress.after = Some(next),
        None => {
            audit.progress.folder += 1;
            audit.progress.after = None;
        }
    }
    // Progress saved after each page: a crash repeats at most this page (copies are once).
    state
        .table
        .transact(vec![audit.save(Some(unix_now()))])
        .await?;
    Ok(false)
}

/// A page of the removal of an expired audit's copies; the audit is marked deleted after.
async fn remove_step(state: &AppState, mut audit: Audit, now: DateTime<Utc>) -> DomainResult<bool> {
    let page = state
        .table
        .query(
            &Query::table(audit.key().pk)
                .range(SortRange::BeginsWith(keys::AUDIT_ENTRY_PREFIX.into()))
                .limit(STEP),
        )
        .await?;
    if page.items.is_empty() {
        audit.deleted = true;
        audit.deleted_time = Some(now);
        state
            .table
            .transact(vec![
                audit.save(None),
                Write::delete(keys::user_audit(&audit.user, &audit.id)),
            ])
            .await?;
        tracing::info!(audit = %audit.id, "audit expired; its copies are removed");
        return Ok(true);
    }
    for item in &page.items {
        if let Some(blob) = item.body["blob"].as_str() {
            state.blobs.delete(blob).await?;
        }
    }
    let deletes: Vec<Write> = page.items.iter().map(|i| Write::delete(i.key())).collect();
    for chunk in deletes.chunks(25) {
        state.table.transact(chunk.to_vec()).await?;
    }
    Ok(false)
}

/// A page of an audit's copies, oldest first, and where the next page starts.
pub async fn entries(
    state: &AppState,
    id: &ObjectId,
    after: Option<Cursor>,
) -> DomainResult<(Vec<Entry>, Option<Cursor>)> {
    let page = state
        .table
        .query(
            &Query::table(keys::audit(id).pk)
                .range(SortRange::BeginsWith(keys::AUDIT_ENTRY_PREFIX.into()))
                .limit(100)
                .start_after(after),
        )
        .await?;
    let entries = page
        .items
        .iter()
        .map(|i| {
            i.body_as()
                .map_err(|e| DomainError::corrupt("audit entry", &i.sk, e))
        })
        .collect::<DomainResult<_>>()?;
    Ok((entries, page.next))
}

/// The audit's copies as an mbox, a page of messages per chunk, oldest first. A copy whose
/// bytes are gone (never, unless the store lost them) is left out and logged.
pub fn export(
    state: AppState,
    id: ObjectId,
) -> impl futures::Stream<Item = DomainResult<Bytes>> + Send + 'static {
    futures::stream::try_unfold(Some(None), move |position: Option<Option<Cursor>>| {
        let state = state.clone();
        async move {
            let Some(after) = position else {
                return Ok(None);
            };
            let (page, next) = entries(&state, &id, after).await?;
            let mut chunk = Vec::new();
            for entry in &page {
                match state.blobs.get(&entry.blob).await? {
                    Some(raw) => chunk.extend(mbox_message(entry, &raw)),
                    None => {
                        tracing::error!(audit = %id, message = %entry.message, "audited copy missing")
                    }
                }
            }
            Ok(Some((Bytes::from(chunk), next.map(Some))))
        }
    })
}

/// One message in mboxrd form, as WildDuck's export writes it: the `From ` line, the
/// `X-Export-Mailbox` / `X-Export-Draft` headers first (any the message had removed, with the
/// mbox status headers), LF line ends, and `>` added before each line that starts with `>*From `.
pub fn mbox_message(entry: &Entry, raw: &[u8]) -> Vec<u8> {
    let date = entry.idate.format("%a %b %e %H:%M:%S %Y");
    let sender = entry
        .from
        .as_deref()
        .filter(|f| !f.is_empty() && !f.contains(char::is_whitespace))
        .unwrap_or("MAILER-DAEMON");
    let mut out = format!("From {sender} {date}\n").into_bytes();
    if let Some(path) = &entry.mailbox_path {
        out.extend_from_slice(format!("X-Export-Mailbox: {path}\n").as_bytes());
    }
    if entry.draft {
        out.extend_from_slice(b"X-Export-Draft: Yes\n");
    }
    let text = raw
        .strip_suffix(b"\r\n")
        .or(raw.strip_suffix(b"\n"))
        .unwrap_or(raw);
    let mut in_header = true;
    let mut skipping = false;
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_header {
            if line.is_empty() {
                in_header = false;
            } else if line[0] == b' ' || line[0] == b'\t' {
                if skipping {
                    continue;
                }
            } else {
                let name = line.split(|b| *b == b':').next().unwrap_or_default();
                skipping = [
                    "x-export-mailbox",
                    "x-export-draft",
                    "content-length",
                    "x-status",
                    "status",
                    "x-gm-thrid",
                    "x-gmail-labels",
                ]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h.as_bytes()));
                if skipping {
                    continue;
                }
            }
        }
        let quoted = line
            .iter()
            .position(|b| *b != b'>')
            .is_some_and(|n| line[n..].starts_with(b"From "));
        if quoted {
            out.push(b'>');
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: Option<&str>, draft: bool) -> Entry {
        Entry {
            message: ObjectId::new(),
            mailbox: None,
            mailbox_path: path.map(str::to_string),
            idate: DateTime::parse_from_rfc3339("2024-03-05T09:08:07Z")
                .unwrap()
                .into(),
            size: 0,
            draft,
            from: Some("sender@example.com".into()),
            blob: String::new(),
            captured: Utc::now(),
        }
    }

    #[test]
    fn messages_are_written_as_mboxrd_with_the_export_headers() {
        let raw = b"Status: RO\r\nSubject: Hi\r\nX-Export-Mailbox: forged\r\n  continued\r\n\r\nFrom here\r\n>From there\r\nplain\r\n";
        let out = String::from_utf8(mbox_message(&entry(Some("INBOX/Work"), true), raw)).unwrap();
        assert_eq!(
            out,
            "From sender@example.com Tue Mar  5 09:08:07 2024\nX-Export-Mailbox: INBOX/Work\nX-Export-Draft: Yes\nSubject: Hi\n\n>From here\n>>From there\nplain\n\n"
        );
        let bare = String::from_utf8(mbox_message(&entry(None, false), b"A: b\n\nx")).unwrap();
        assert_eq!(
            bare,
            "From sender@example.com Tue Mar  5 09:08:07 2024\nA: b\n\nx\n\n"
        );
    }
}
