//! Reading messages: listing a mailbox, details, the raw source and attachments (inline,
//! streamed, or by presigned URL), a message's events, and lookups by message id.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::change::apply_flags;
use super::{FlagChanges, Message, from_item, message_not_found};
use crate::domain::mailboxes;
use crate::domain::paging::{PageRequest, PageResult, walk_partition};
use crate::domain::{AppState, DomainError, DomainResult, keys};
use crate::id::ObjectId;
use crate::mail::parse::{self, AttachmentInfo};
use crate::store::{Item, Key, Query};

/// Reads one message, or `MessageNotFound`.
pub async fn load(
    state: &AppState,
    user: &ObjectId,
    mailbox: &ObjectId,
    uid: u32,
) -> DomainResult<Message> {
    // One read for both: a deleted user's messages are gone for the API at once.
    let profile = keys::user(user);
    let items = state
        .table
        .get_many(&[profile.clone(), keys::message(user, mailbox, uid)])
        .await?;
    if !items
        .iter()
        .any(|i| i.pk == profile.pk && i.sk == profile.sk)
    {
        return Err(DomainError::user_not_found());
    }
    let item = items
        .iter()
        .find(|i| i.pk != profile.pk)
        .ok_or_else(message_not_found)?;
    from_item(item)
}

/// A `GET /users/{user}/mailboxes/{mailbox}/messages` request.
#[derive(Debug, Clone)]
pub struct ListMessages {
    pub unseen_only: bool,
    /// Oldest first (by UID); newest first otherwise.
    pub ascending: bool,
    pub page: PageRequest,
}

/// A page of a mailbox's messages.
pub struct MessageListing {
    /// How many the mailbox holds (unseen ones only, for an unseen listing).
    pub total: i64,
    pub special_use: Option<String>,
    pub page: PageResult<Message>,
}

/// `GET /users/{user}/mailboxes/{mailbox}/messages`.
pub async fn list(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    request: &ListMessages,
) -> DomainResult<MessageListing> {
    let mailbox = mailboxes::load(state, user, mailbox_id).await?;
    let unseen = |item: &Item| item.body["seen"] != Value::Bool(true);
    let keep: Option<&(dyn Fn(&Item) -> bool + Sync)> = request.unseen_only.then_some(&unseen);
    let pk = keys::messages_pk(user, mailbox_id);
    let page = walk_partition(
        state.table.as_ref(),
        &pk,
        "",
        !request.ascending,
        &request.page,
        keep,
    )
    .await?;
    let total = if request.unseen_only {
        mailbox.unseen
    } else {
        mailbox.total
    };
    Ok(MessageListing {
        total,
        special_use: mailbox.mailbox.special_use,
        page: page.decode(from_item)?,
    })
}

/// A message with its text and HTML, parsed from the stored source (`GET .../messages/{message}`
/// and archived messages).
pub struct Details {
    pub message: Message,
    pub text: String,
    pub html: Vec<String>,
}

/// Reads the stored source of `message` for its [`Details`].
pub async fn details(state: &AppState, message: Message) -> DomainResult<Details> {
    let raw = state.blobs.get(&message.blob).await?.unwrap_or_default();
    let parsed = parse::parse_for_display(&raw);
    Ok(Details {
        message,
        text: parsed.text,
        html: parsed.html,
    })
}

/// `GET /users/{user}/mailboxes/{mailbox}/messages/{message}`; `mark_seen` sets \Seen.
pub async fn get(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
    mark_seen: bool,
) -> DomainResult<Details> {
    let mut message = load(state, user, mailbox_id, uid).await?;
    if mark_seen && !message.seen {
        let changes = FlagChanges {
            seen: Some(true),
            ..Default::default()
        };
        let mailbox = mailboxes::load(state, user, mailbox_id).await?;
        apply_flags(state, &mailbox, vec![message.clone()], &changes).await?;
        message.seen = true;
    }
    details(state, message).await
}

/// How a large body is answered.
#[derive(Debug)]
pub enum Download {
    /// The bytes themselves.
    Bytes(bytes::Bytes),
    /// Stream the blob in ranges (large, and the store can't presign: the local server).
    Stream { blob: String, size: u64 },
    /// Redirect to a short-lived presigned URL (large, on S3: Lambda answers at most 6 MB).
    Redirect(String),
}

/// How long a presigned download or upload URL stays valid.
pub const PRESIGNED_FOR: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Bodies above this are streamed in ranges rather than read whole.
const STREAM_ABOVE: u64 = 1024 * 1024;

/// The raw source of a message (`message.eml`), exactly as stored.
pub async fn raw_source(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
) -> DomainResult<Download> {
    let message = load(state, user, mailbox_id, uid).await?;
    if message.size > state.config.inline_limit
        && let Some(url) = state
            .blobs
            .presign_get(&message.blob, PRESIGNED_FOR, "message/rfc822", None)
            .await?
    {
        return Ok(Download::Redirect(url));
    }
    if message.size > STREAM_ABOVE {
        return Ok(Download::Stream {
            blob: message.blob,
            size: message.size,
        });
    }
    let raw = state.blobs.get(&message.blob).await?.ok_or_else(|| {
        DomainError::Internal(anyhow::anyhow!(
            "blob {} of a listed message is missing",
            message.blob
        ))
    })?;
    Ok(Download::Bytes(raw))
}

/// One attachment for download. Large ones on S3 are written decoded under `cache/` (expired
/// by the bucket's lifecycle rule) and answered with a presigned URL.
pub async fn attachment_download(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
    wanted: &str,
) -> DomainResult<(AttachmentInfo, Download)> {
    let (info, bytes) = attachment(state, user, mailbox_id, uid, wanted).await?;
    if bytes.len() as u64 > state.config.inline_limit {
        let message = load(state, user, mailbox_id, uid).await?;
        let key = format!("cache/{user}/{}/{}", message.id, info.id);
        let disposition = format!("attachment; filename=\"{}\"", safe_filename(&info.filename));
        let url = state
            .blobs
            .presign_get(&key, PRESIGNED_FOR, &info.content_type, Some(&disposition))
            .await?;
        if let Some(url) = url {
            state.blobs.put(&key, bytes.into()).await?;
            return Ok((info, Download::Redirect(url)));
        }
    }
    Ok((info, Download::Bytes(bytes.into())))
}

/// A file name safe inside a quoted header parameter.
pub fn safe_filename(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect()
}

/// One attachment, decoded from its byte range of the stored source.
pub async fn attachment(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
    attachment: &str,
) -> DomainResult<(AttachmentInfo, Vec<u8>)> {
    let message = load(state, user, mailbox_id, uid).await?;
    let wanted = attachment.to_ascii_uppercase();
    let info = message
        .attachments
        .iter()
        .find(|a| a.id == wanted)
        .cloned()
        .ok_or(DomainError::AttachmentNotFound)?;
    let encoded = state
        .blobs
        .get_range(&message.blob, info.body_start..info.body_end)
        .await?
        .ok_or_else(|| {
            DomainError::Internal(anyhow::anyhow!("blob {} is missing", message.blob))
        })?;
    let decoded = parse::decode_body(&encoded, &info.transfer_encoding);
    Ok((info, decoded))
}

/// One event of a message's timeline (`STORE`, `FORWARD`, `AUTOREPLY` ...): its id and the
/// fields recorded.
pub struct MessageEvent {
    pub id: String,
    pub fields: Map<String, Value>,
}

/// `GET .../messages/{message}/events`: the message's id and timeline, oldest first.
pub async fn events(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    uid: u32,
) -> DomainResult<(ObjectId, Vec<MessageEvent>)> {
    let message = load(state, user, mailbox_id, uid).await?;
    let page = state
        .table
        .query(&Query::table(keys::message_events_pk(user, &message.id)).limit(250))
        .await?;
    let events = page
        .items
        .into_iter()
        .map(|item| MessageEvent {
            id: item.sk,
            fields: match item.body.into_value() {
                Value::Object(fields) => fields,
                _ => Map::new(),
            },
        })
        .collect();
    Ok((message.id, events))
}

/// Resolves message ids to the messages themselves (pointer, then item), dropping any that
/// are gone.
pub async fn resolve_ids(
    state: &AppState,
    user: &ObjectId,
    ids: &[ObjectId],
) -> DomainResult<Vec<Message>> {
    let pointers: Vec<Key> = ids
        .iter()
        .map(|id| keys::message_pointer(user, id))
        .collect();
    let mut places = BTreeMap::new();
    for chunk in pointers.chunks(100) {
        for item in state.table.get_many(chunk).await? {
            let mailbox: Option<ObjectId> =
                serde_json::from_value(item.body["mailbox"].clone()).ok();
            let uid = item.body["uid"].as_u64();
            if let (Some(mailbox), Some(uid)) = (mailbox, uid) {
                places.insert(item.sk.clone(), keys::message(user, &mailbox, uid as u32));
            }
        }
    }
    let keys: Vec<Key> = ids
        .iter()
        .filter_map(|id| places.get(&id.to_string()).cloned())
        .collect();
    let mut found = BTreeMap::new();
    for chunk in keys.chunks(100) {
        for item in state.table.get_many(chunk).await? {
            let message = from_item(&item)?;
            found.insert(message.id, message);
        }
    }
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}
