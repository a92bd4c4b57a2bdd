//! Keeping search's view of messages current ([`StateParts::search_writes`]): the full-text
//! index written right after each change, or one term item per word (`TERM#<user>#<word>`),
//! or nothing here when the stream indexer does it ([`sync`], run by `eider-indexer` on the
//! table's stream).
//!
//! Every hook runs after the message's own transaction committed and is best effort: a
//! failure is logged, the message stays stored and listed, and search checks every page
//! against the table, so a stale index entry can only hide or add a match, never show wrong
//! data. On the local server, `reconcile` repairs the index at start-up; in Lambda, the janitor
//! does when invoked with `reconcileSearch` (docs/deploy.md).

use super::Message;
use std::sync::Arc;

use crate::domain::{AppState, DomainResult, SearchWrites, keys, mailboxes, users};
use crate::id::ObjectId;
use crate::mail::parse::{self, ParsedMessage};
use crate::store::text_index::{IndexChange, IndexedMessage, Relocation, TextIndex};
use crate::store::{Item, Query, Write};
use serde_json::Value;

/// What the full-text index holds of a stored message.
fn indexed(message: &Message, terms: Vec<String>) -> IndexedMessage {
    IndexedMessage {
        user: message.user,
        id: message.id,
        mailbox: message.mailbox,
        thread: message.thread,
        idate: message.idate.timestamp_millis(),
        size: message.size,
        attachments: message.has_attachments,
        deleted: message.deleted,
        terms,
    }
}

/// Who writes search's view of a change made here.
enum Writer<'a> {
    Terms,
    Index(&'a Arc<dyn TextIndex>),
    /// The stream indexer, later.
    Nobody,
}

fn writer(state: &AppState) -> Writer<'_> {
    match (state.search_writes, &state.text_index) {
        (SearchWrites::Inline, Some(index)) => Writer::Index(index),
        (SearchWrites::Stream, _) => Writer::Nobody,
        _ => Writer::Terms,
    }
}

/// Indexes a message just stored, from its parse.
pub(super) async fn index_new(state: &AppState, message: &Message, parsed: &ParsedMessage) {
    match writer(state) {
        Writer::Nobody => {}
        Writer::Index(index) => {
            let doc = indexed(message, parse::index_terms(parsed));
            if let Err(e) = index.put(vec![doc]).await {
                tracing::warn!(error = %e, message = %message.id, "message not indexed");
            }
        }
        Writer::Terms => write_term_items(state, message, true).await,
    }
}

/// Indexes a message again (after a restore from the archive): its source is parsed again
/// for the full-text index.
pub async fn reindex(state: &AppState, message: &Message) {
    match writer(state) {
        Writer::Nobody => {}
        Writer::Index(index) => {
            if let Some(doc) = indexed_from_source(state, message).await
                && let Err(e) = index.put(vec![doc]).await
            {
                tracing::warn!(error = %e, message = %message.id, "message not indexed");
            }
        }
        Writer::Terms => write_term_items(state, message, true).await,
    }
}

/// What the index holds of a stored message, from its source (`None`, logged, when the
/// source can't be read).
async fn indexed_from_source(state: &AppState, message: &Message) -> Option<IndexedMessage> {
    match state.blobs.get(&message.blob).await {
        Ok(Some(raw)) => Some(indexed(message, parse::index_terms(&parse::parse(&raw)))),
        Ok(None) => {
            tracing::warn!(message = %message.id, "no source to index");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, message = %message.id, "message not indexed");
            None
        }
    }
}

/// Forgets messages that are gone (deleted, archived or purged).
pub(crate) async fn unindex(state: &AppState, messages: &[Message]) {
    match writer(state) {
        Writer::Nobody => {}
        Writer::Index(index) => {
            let mut by_user: std::collections::BTreeMap<ObjectId, Vec<ObjectId>> =
                Default::default();
            for m in messages {
                by_user.entry(m.user).or_default().push(m.id);
            }
            for (user, ids) in by_user {
                if let Err(e) = index.remove(&user, ids).await {
                    tracing::warn!(error = %e, "messages not removed from the search index");
                }
            }
        }
        Writer::Terms => {
            for message in messages {
                write_term_items(state, message, false).await;
            }
        }
    }
}

/// Records what changed about messages that the index keeps: their folder (`moved_to`) and
/// their `\Deleted` flag (`before` → `after`). Term items need nothing.
pub(super) async fn relocate(
    state: &AppState,
    changes: impl IntoIterator<Item = (&Message, &Message)>,
) {
    let Writer::Index(index) = writer(state) else {
        return;
    };
    let mut by_user: std::collections::BTreeMap<ObjectId, Vec<IndexChange>> = Default::default();
    for (before, after) in changes {
        let relocations = by_user.entry(after.user).or_default();
        if before.mailbox != after.mailbox {
            relocations.push(IndexChange::Relocate(
                after.id,
                Relocation::Mailbox(after.mailbox),
            ));
        }
        if before.deleted != after.deleted {
            relocations.push(IndexChange::Relocate(
                after.id,
                Relocation::Deleted(after.deleted),
            ));
        }
    }
    for (user, relocations) in by_user {
        if relocations.is_empty() {
            continue;
        }
        if let Err(e) = index.apply(&user, relocations).await {
            tracing::warn!(error = %e, "search index not updated");
        }
    }
}

/// Puts (`add`) or deletes a message's term items, in transactions of the largest size; stops
/// at the first failure, logged (a stale term only costs a lookup, a missing one a match).
async fn write_term_items(state: &AppState, message: &Message, add: bool) {
    let (user, id) = (&message.user, &message.id);
    for chunk in message.terms.chunks(crate::store::MAX_TRANSACTION_WRITES) {
        let writes = chunk
            .iter()
            .map(|t| {
                let key = keys::search_term(user, t, id);
                if add {
                    Write::put(Item::new(key, Value::Null))
                } else {
                    Write::delete(key)
                }
            })
            .collect();
        if let Err(e) = state.table.transact(writes).await {
            let what = if add { "indexed" } else { "removed" };
            tracing::warn!(error = %e, message = %id, "search terms not {what}");
            return;
        }
    }
}

/// What [`reconcile`] repaired.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    /// Users looked at.
    pub users: u64,
    pub messages: u64,
    pub added: u64,
    pub removed: u64,
    pub moved: u64,
}

impl Reconciled {
    fn absorb(&mut self, other: Reconciled) {
        self.users += other.users;
        self.messages += other.messages;
        self.added += other.added;
        self.removed += other.removed;
        self.moved += other.moved;
    }
}

/// Makes the full-text index agree with the table for every user ([`reconcile_user`]); the
/// local server runs it at start-up.
pub async fn reconcile(state: &AppState) -> DomainResult<Reconciled> {
    let (report, _) = reconcile_users(state, None, None).await?;
    Ok(report)
}

/// [`reconcile_user`] for each user in id order after `after`, until `deadline` (at least one
/// user, so repeated calls always progress). Also answers, when users are left, the last one
/// done: the `after` of the next call. Nothing to do without a full-text index.
pub async fn reconcile_users(
    state: &AppState,
    after: Option<ObjectId>,
    deadline: Option<std::time::Instant>,
) -> DomainResult<(Reconciled, Option<ObjectId>)> {
    let Some(index) = state.text_index.clone() else {
        return Ok((Reconciled::default(), None));
    };
    let mut ids = users::all_ids(state).await?;
    ids.sort();
    ids.retain(|id| after.is_none_or(|after| *id > after));
    let mut report = Reconciled::default();
    let mut last = None;
    for user in ids {
        let out_of_time = deadline.is_some_and(|d| std::time::Instant::now() >= d);
        if out_of_time && last.is_some() {
            index.settle().await?;
            return Ok((report, last));
        }
        report.absorb(reconcile_user(state, index.as_ref(), &user).await?);
        last = Some(user);
    }
    index.settle().await?;
    Ok((report, None))
}

/// Makes `user`'s part of the index agree with the table, folder by folder: adds what it
/// misses (a crash between a message's commit and its indexing, records the stream indexer
/// gave up on, an index folder removed to be rebuilt), forgets what is gone, fixes folders.
/// Reads every message pointer and each folder's ids from the index; parses only the sources
/// of messages to add. Writes the index itself, whoever writes it otherwise (in Lambda the
/// stream indexer: the bucket index's commits are safe from any number of writers).
pub async fn reconcile_user(
    state: &AppState,
    index: &dyn TextIndex,
    user: &ObjectId,
) -> DomainResult<Reconciled> {
    let mut report = Reconciled {
        users: 1,
        ..Default::default()
    };
    // Where the table says each message is.
    let mut places = std::collections::BTreeMap::new();
    let mut after = None;
    loop {
        let q = Query::table(keys::message_pointers_pk(user))
            .limit(1000)
            .start_after(after.take());
        let batch = state.table.query(&q).await?;
        for item in &batch.items {
            let mailbox: Option<ObjectId> =
                serde_json::from_value(item.body["mailbox"].clone()).ok();
            if let (Ok(id), Some(mailbox)) = (item.sk.parse::<ObjectId>(), mailbox) {
                places.insert(id, mailbox);
            }
        }
        match batch.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    report.messages = places.len() as u64;
    // Where the index says they are.
    let mut indexed_in = std::collections::BTreeMap::new();
    for mailbox in mailboxes::load_all(state, user).await? {
        for id in index.ids_in(user, &mailbox.mailbox.id).await? {
            indexed_in.insert(id, mailbox.mailbox.id);
        }
    }
    let mut missing = Vec::new();
    let mut moved = Vec::new();
    for (id, mailbox) in &places {
        match indexed_in.remove(id) {
            None => missing.push(*id),
            Some(m) if m != *mailbox => moved.push((*id, Relocation::Mailbox(*mailbox))),
            Some(_) => {}
        }
    }
    // Left in `indexed_in`: indexed but no longer in the table.
    let gone: Vec<ObjectId> = indexed_in.into_keys().collect();
    report.removed = gone.len() as u64;
    report.moved = moved.len() as u64;
    index.remove(user, gone).await?;
    index.relocate(user, moved).await?;
    // One commit per hundred messages added.
    for chunk in missing.chunks(100) {
        let mut docs = Vec::with_capacity(chunk.len());
        for message in super::resolve_ids(state, user, chunk).await? {
            if let Some(doc) = indexed_from_source(state, &message).await {
                docs.push(doc);
            }
        }
        report.added += docs.len() as u64;
        if !docs.is_empty() {
            index.put(docs).await?;
        }
    }
    Ok(report)
}

/// What [`sync`] changed in the index.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    pub added: u64,
    pub removed: u64,
    pub moved: u64,
}

/// Brings the index in line with the table for `user`'s messages `ids` (the ones a batch of
/// the table's stream touched), in one commit: a message the table no longer has is
/// forgotten, one the index lacks is indexed from its source, one whose folder or `\Deleted`
/// flag differs is relocated. It reads what is true now rather than replaying the records, so
/// records out of order (a move is a delete and an insert, possibly in different shards),
/// repeated or retried give the same index.
pub async fn sync(
    state: &AppState,
    index: &dyn TextIndex,
    user: &ObjectId,
    ids: &[ObjectId],
) -> DomainResult<Synced> {
    let mut report = Synced::default();
    let mut stored = std::collections::HashMap::new();
    for chunk in ids.chunks(100) {
        for message in super::resolve_ids(state, user, chunk).await? {
            stored.insert(message.id, message);
        }
    }
    let placed = index.placements(user, ids).await?;
    let mut changes = Vec::new();
    for id in ids {
        match (stored.get(id), placed.get(id)) {
            (None, Some(_)) => {
                changes.push(IndexChange::Remove(*id));
                report.removed += 1;
            }
            (None, None) => {}
            (Some(message), None) => {
                if let Some(doc) = indexed_from_source(state, message).await {
                    changes.push(IndexChange::Put(doc));
                    report.added += 1;
                }
            }
            (Some(message), Some(place)) => {
                if place.mailbox != message.mailbox {
                    changes.push(IndexChange::Relocate(
                        *id,
                        Relocation::Mailbox(message.mailbox),
                    ));
                }
                if place.deleted != message.deleted {
                    changes.push(IndexChange::Relocate(
                        *id,
                        Relocation::Deleted(message.deleted),
                    ));
                }
                if place.mailbox != message.mailbox || place.deleted != message.deleted {
                    report.moved += 1;
                }
            }
        }
    }
    index.apply(user, changes).await?;
    Ok(report)
}
