//! Moving accounts between deployments (`POST /data/export`, `POST /data/import`, WildDuck's
//! names): users with their addresses, folders, filters, autoreply, application passwords and
//! 2FA, and, beyond WildDuck, their messages, byte for byte with their flags.
//!
//! The file is JSON lines: a header (`{"type": "eider_data_export", "version": 1, ...}`),
//! then per user its `user` record and the records that belong to it, in an order the import
//! can follow (folders before the filters and messages that name them). Ids are kept: a user,
//! its addresses, folders, filters and application passwords have the same ids in the new
//! deployment, so what refers to them (clients, filters, webhooks) still does. Messages get
//! new ids and UIDs there, in the same folders, with the same bytes, arrival time and flags.
//!
//! Secrets move in the clear inside the file: TOTP seeds are opened with this deployment's
//! `EIDER_SECRET_KEY` and sealed again with the importing one's. Password and application
//! password hashes move as they are. Treat the file like the secret key.
//!
//! An import writes each record in its own transaction with the conditions a creation has:
//! a user whose id already exists is counted as `existing` and its records are skipped; a
//! username or address that is taken there makes that record `failed`. Importing the same
//! file twice changes nothing the second time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::addresses::{self, StoredAddress};
use super::asps::{self, Asp};
use super::autoreply::{self, Autoreply};
use super::filters::{self, Filter};
use super::mailboxes::{self, Mailbox};
use super::messages::{self, Message, Upload};
use super::totp::{TotpSeeds, seal_for, unseal_for};
use super::users::{self, User};
use super::{AppState, DomainError, DomainResult, keys, stats};
use crate::id::ObjectId;
use crate::store::{Condition, Cursor, Query, StoreError, Update, Write};

pub const FORMAT: &str = "eider_data_export";
pub const VERSION: u64 = 1;
/// Messages read per page while exporting a folder.
const PAGE: usize = 50;

/// Which users an export takes: the listed ones, those with any of the tags, or (neither
/// given) every user.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub users: Vec<ObjectId>,
    pub tags: Vec<String>,
}

/// One line of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Record {
    #[serde(rename = "eider_data_export")]
    Header {
        version: u64,
        created: DateTime<Utc>,
        users: Vec<ObjectId>,
        tags: Vec<String>,
    },
    User {
        user: Box<User>,
    },
    Address {
        address: StoredAddress,
    },
    Mailbox {
        mailbox: Mailbox,
    },
    Filter {
        filter: Box<Filter>,
    },
    Autoreply {
        autoreply: Autoreply,
    },
    Asp {
        asp: Asp,
    },
    Message {
        message: Box<ExportedMessage>,
    },
}

/// A message as moved: its folder, flags and times, and its bytes (base64).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportedMessage {
    user: ObjectId,
    mailbox: ObjectId,
    idate: DateTime<Utc>,
    seen: bool,
    flagged: bool,
    draft: bool,
    answered: bool,
    deleted: bool,
    forwarded: bool,
    meta_data: Option<String>,
    raw: String,
}

fn line(record: &Record) -> DomainResult<Bytes> {
    let mut text = serde_json::to_vec(record)
        .map_err(|e| DomainError::Internal(anyhow::anyhow!("export record: {e}")))?;
    text.push(b'\n');
    Ok(Bytes::from(text))
}

/// The ids of the users `selection` names, in id order.
pub async fn selected(state: &AppState, selection: &Selection) -> DomainResult<Vec<ObjectId>> {
    if !selection.users.is_empty() {
        let mut ids = selection.users.clone();
        ids.sort();
        ids.dedup();
        return Ok(ids);
    }
    let mut ids = users::all_ids(state).await?;
    ids.sort();
    if selection.tags.is_empty() {
        return Ok(ids);
    }
    let mut tagged = Vec::new();
    for id in ids {
        match users::load(state, &id).await {
            Ok(stored) if stored.user.tags.iter().any(|t| selection.tags.contains(t)) => {
                tagged.push(id)
            }
            Ok(_) | Err(DomainError::UserNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(tagged)
}

/// The export of `users` as JSON lines: the header, then each user's records (a chunk per
/// user). A user gone meanwhile is left out.
pub fn export(
    state: AppState,
    selection: Selection,
    users: Vec<ObjectId>,
) -> impl futures::Stream<Item = DomainResult<Bytes>> + Send + 'static {
    let header = Record::Header {
        version: VERSION,
        created: Utc::now(),
        users: selection.users,
        tags: selection.tags,
    };
    futures::stream::try_unfold(
        (Some(header), users.into_iter()),
        move |(header, mut rest)| {
            let state = state.clone();
            async move {
                if let Some(header) = header {
                    return Ok(Some((line(&header)?, (None, rest))));
                }
                for id in rest.by_ref() {
                    let lines = export_user(&state, &id).await?;
                    if !lines.is_empty() {
                        return Ok(Some((Bytes::from(lines.concat()), (None, rest))));
                    }
                }
                Ok(None)
            }
        },
    )
}

/// One user's lines (its messages included; held for one user at a time).
async fn export_user(state: &AppState, id: &ObjectId) -> DomainResult<Vec<Bytes>> {
    let stored = match users::load(state, id).await {
        Ok(stored) => stored,
        Err(DomainError::UserNotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut user = stored.user;
    // Seeds in the clear (the plain stored form), sealed again by the import.
    let key = state.config.secret_key.as_ref();
    user.totp = TotpSeeds {
        seed: reopen(user.totp.seed.as_deref(), id, key, None)?,
        pending: reopen(user.totp.pending.as_deref(), id, key, None)?,
        pending_created: user.totp.pending_created,
    };
    let mut out = vec![line(&Record::User {
        user: Box::new(user),
    })?];
    for address in addresses::list_stored(state, id).await? {
        out.push(line(&Record::Address { address })?);
    }
    let folders = mailboxes::load_all(state, id).await?;
    for folder in &folders {
        out.push(line(&Record::Mailbox {
            mailbox: folder.mailbox.clone(),
        })?);
    }
    for filter in filters::load_all(state, id).await? {
        out.push(line(&Record::Filter {
            filter: Box::new(filter),
        })?);
    }
    if let Some(autoreply) = autoreply::load(state, id).await? {
        out.push(line(&Record::Autoreply { autoreply })?);
    }
    for asp in asps::list_stored(state, id).await? {
        out.push(line(&Record::Asp { asp })?);
    }
    for folder in &folders {
        let pk = keys::messages_pk(id, &folder.mailbox.id);
        let mut after: Option<Cursor> = None;
        loop {
            let page = state
                .table
                .query(
                    &Query::table(pk.clone())
                        .limit(PAGE)
                        .start_after(after.take()),
                )
                .await?;
            for item in &page.items {
                let message = messages::from_item(item)?;
                let Some(raw) = state.blobs.get(&message.blob).await? else {
                    tracing::error!(message = %message.id, blob = %message.blob, "message without its bytes left out of the export");
                    continue;
                };
                out.push(line(&Record::Message {
                    message: Box::new(exported(&message, &raw)),
                })?);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    Ok(out)
}

fn exported(message: &Message, raw: &[u8]) -> ExportedMessage {
    ExportedMessage {
        user: message.user,
        mailbox: message.mailbox,
        idate: message.idate,
        seen: message.seen,
        flagged: message.flagged,
        draft: message.draft,
        answered: message.answered,
        deleted: message.deleted,
        forwarded: message.forwarded,
        meta_data: message.meta_data.clone(),
        raw: STANDARD.encode(raw),
    }
}

/// A sealed seed opened with `from` and sealed again with `to` (`None`: the plain form).
fn reopen(
    stored: Option<&str>,
    user: &ObjectId,
    from: Option<&crate::config::SecretKey>,
    to: Option<&crate::config::SecretKey>,
) -> DomainResult<Option<String>> {
    let Some(stored) = stored else {
        return Ok(None);
    };
    let aad = super::totp::aad(user);
    let raw = unseal_for(stored, &aad, from)?;
    Ok(Some(seal_for(&raw, &aad, to)?))
}

/// What an import did, WildDuck's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Imported {
    /// Records read (the header included).
    pub entries: u64,
    pub imported: u64,
    pub failed: u64,
    /// Records of users that already exist here (and the user records themselves).
    pub existing: u64,
}

/// `POST /data/import`: the lines of an export, in order.
pub async fn import(state: &AppState, body: &[u8]) -> DomainResult<Imported> {
    let invalid = || DomainError::invalid("data", "Invalid data file");
    let mut lines = body
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    let header: Record = lines
        .next()
        .and_then(|l| serde_json::from_slice(l).ok())
        .ok_or_else(invalid)?;
    let Record::Header { version, .. } = header else {
        return Err(invalid());
    };
    if version > VERSION {
        return Err(DomainError::invalid(
            "data",
            format!("Export version {version} is newer than this server reads ({VERSION})"),
        ));
    }
    let mut result = Imported {
        entries: 1,
        ..Imported::default()
    };
    // Users whose records are skipped: they existed here, or could not be created.
    let mut skipped: std::collections::HashSet<ObjectId> = Default::default();
    for text in lines {
        result.entries += 1;
        let record: Record = match serde_json::from_slice(text) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(error = %e, line = result.entries, "import record unreadable");
                result.failed += 1;
                continue;
            }
        };
        let owner = owner_of(&record);
        if owner.is_some_and(|o| skipped.contains(&o)) {
            result.existing += 1;
            continue;
        }
        match import_record(state, record).await {
            Ok(Outcome::Imported) => result.imported += 1,
            Ok(Outcome::Existing) => {
                result.existing += 1;
                skipped.extend(owner);
            }
            Ok(Outcome::Failed(why)) => {
                tracing::warn!(line = result.entries, why, "import record refused");
                result.failed += 1;
                if let Some(user_record) = owner.filter(|_| why == USER_REFUSED) {
                    skipped.insert(user_record);
                }
            }
            Err(e) => return Err(e),
        }
    }
    tracing::info!(?result, "import done");
    Ok(result)
}

const USER_REFUSED: &str = "the username is taken here";

enum Outcome {
    Imported,
    Existing,
    Failed(&'static str),
}

fn owner_of(record: &Record) -> Option<ObjectId> {
    Some(match record {
        Record::Header { .. } => return None,
        Record::User { user } => user.id,
        Record::Address { address } => address.user,
        Record::Mailbox { mailbox } => mailbox.user,
        Record::Filter { filter } => filter.user,
        Record::Autoreply { autoreply } => autoreply.user,
        Record::Asp { asp } => asp.user,
        Record::Message { message } => message.user,
    })
}

/// Labels of the conditions of import writes.
const TAKEN: &str = "taken";

async fn import_record(state: &AppState, record: Record) -> DomainResult<Outcome> {
    let writes = match record {
        Record::Header { .. } => return Ok(Outcome::Failed("a second header")),
        Record::User { mut user } => {
            if state.table.get(&keys::user(&user.id)).await?.is_some() {
                return Ok(Outcome::Existing);
            }
            let key = state.config.secret_key.as_ref();
            user.totp = TotpSeeds {
                seed: reopen(user.totp.seed.as_deref(), &user.id, None, key)?,
                pending: reopen(user.totp.pending.as_deref(), &user.id, None, key)?,
                pending_created: user.totp.pending_created,
            };
            let writes = users::import_writes(&user);
            return match state.table.transact(writes).await {
                Ok(()) => Ok(Outcome::Imported),
                Err(StoreError::ConditionFailed { .. }) => Ok(Outcome::Failed(USER_REFUSED)),
                Err(e) => Err(e.into()),
            };
        }
        Record::Address { address } => {
            let mut writes = address.create_writes();
            writes.push(stats::change(&[(stats::ADDRESSES, 1)]));
            writes
        }
        Record::Mailbox { mut mailbox } => {
            // UIDs start again at 1 here: a new UID validity tells IMAP-minded clients so
            // (WildDuck's import does the same).
            mailbox.uid_validity = Utc::now().timestamp();
            let mut writes = mailbox.create_writes();
            writes.push(Write::Update {
                key: keys::user(&mailbox.user),
                update: Update::default().add(users::MAILBOX_COUNT, 1),
                guard: Some(Condition::Exists.labeled(TAKEN)),
            });
            writes
        }
        Record::Filter { filter } => filters::import_writes(&filter),
        Record::Autoreply { autoreply } => vec![Write::put(autoreply.item())],
        Record::Asp { asp } => vec![Write::put_new(asp.item(), TAKEN)],
        Record::Message { message } => return import_message(state, *message).await,
    };
    match state.table.transact(writes).await {
        Ok(()) => Ok(Outcome::Imported),
        Err(StoreError::ConditionFailed { .. }) => Ok(Outcome::Failed("already taken here")),
        Err(e) => Err(e.into()),
    }
}

async fn import_message(state: &AppState, message: ExportedMessage) -> DomainResult<Outcome> {
    let Ok(raw) = STANDARD.decode(message.raw.as_bytes()) else {
        return Ok(Outcome::Failed("message bytes are not base64"));
    };
    let upload = Upload {
        raw: Bytes::from(raw),
        seen: message.seen,
        flagged: message.flagged,
        draft: message.draft,
        answered: message.answered,
        forwarded: message.forwarded,
        deleted: message.deleted,
        date: Some(message.idate),
        meta_data: message.meta_data,
        source: "IMPORT",
        ..Upload::default()
    };
    match messages::store(state, &message.user, &message.mailbox, upload).await {
        Ok(_) => Ok(Outcome::Imported),
        Err(
            DomainError::MailboxNotFound(_)
            | DomainError::UserNotFound(_)
            | DomainError::OverQuota
            | DomainError::UserDisabled
            | DomainError::Invalid { .. },
        ) => Ok(Outcome::Failed("message refused")),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn records_are_tagged_lines() {
        let header = Record::Header {
            version: 1,
            created: Utc::now(),
            users: vec![],
            tags: vec!["a".into()],
        };
        let text = String::from_utf8(line(&header).unwrap().to_vec()).unwrap();
        assert!(
            text.starts_with("{\"type\":\"eider_data_export\""),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["tags"], json!(["a"]));
    }
}
