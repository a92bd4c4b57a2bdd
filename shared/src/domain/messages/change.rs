//! Changing messages: flags, expiry and metadata in place, and moves to another mailbox (a
//! new UID there), each with the mailbox counters and journal events in the same
//! transaction.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{
    MESSAGE_GONE, Message, REVISION, UID_TAKEN, allocate_uids, from_item, mailbox_counters,
    mailbox_gone, reload, retention_expiry,
};
use crate::domain::mailboxes::{self, StoredMailbox};
use crate::domain::webhooks;
use crate::domain::{AppState, DomainError, DomainResult, journal, keys, retry};
use crate::id::ObjectId;
use crate::store::{Item, Key, Query, SortRange, StoreError, Update, Write};

/// A message selector: one UID, a comma list, or a range `a:b` / `a:*`.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    List(Vec<u32>),
    Range(u32, Option<u32>),
}

impl Selector {
    /// WildDuck's syntax: `1`, `1,2,3` (at most 1000, no 0) or `2:4` / `2:*`.
    pub fn parse(text: &str) -> Option<Selector> {
        let text = text.trim();
        if let Some((a, b)) = text.split_once(':') {
            let a: u32 = a.parse().ok()?;
            if b == "*" {
                return Some(Selector::Range(a, None));
            }
            let b: u32 = b.parse().ok()?;
            return Some(Selector::Range(a.min(b), Some(a.max(b))));
        }
        let list: Option<BTreeSet<u32>> = text.split(',').map(|p| p.trim().parse().ok()).collect();
        let list = list?;
        (!list.is_empty() && list.len() <= 1000 && !list.contains(&0))
            .then(|| Selector::List(list.into_iter().collect()))
    }
}

/// The messages a selector names in a mailbox.
async fn select(
    state: &AppState,
    user: &ObjectId,
    mailbox: &ObjectId,
    selector: &Selector,
) -> DomainResult<Vec<Message>> {
    let pk = keys::messages_pk(user, mailbox);
    let items = match selector {
        Selector::List(uids) => {
            let keys: Vec<Key> = uids
                .iter()
                .map(|u| keys::message(user, mailbox, *u))
                .collect();
            let mut items = Vec::new();
            for chunk in keys.chunks(100) {
                items.extend(state.table.get_many(chunk).await?);
            }
            items
        }
        Selector::Range(a, b) => {
            let range = SortRange::Between(
                keys::message_sk(*a),
                keys::message_sk(b.unwrap_or(u32::MAX)),
            );
            let mut items = Vec::new();
            let mut after = None;
            loop {
                let page = state
                    .table
                    .query(
                        &Query::table(pk.clone())
                            .range(range.clone())
                            .limit(500)
                            .start_after(after.take()),
                    )
                    .await?;
                items.extend(page.items);
                match page.next {
                    Some(next) if items.len() < 10_000 => after = Some(next),
                    _ => break,
                }
            }
            items
        }
    };
    let mut messages = items
        .iter()
        .map(from_item)
        .collect::<DomainResult<Vec<_>>>()?;
    messages.sort_by_key(|m| m.uid);
    Ok(messages)
}

/// Flag and expiry changes of `PUT .../messages/{message}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlagChanges {
    pub seen: Option<bool>,
    pub flagged: Option<bool>,
    pub draft: Option<bool>,
    pub deleted: Option<bool>,
    /// `Some(None)` clears the expiry.
    pub expires: Option<Option<DateTime<Utc>>>,
    pub meta_data: Option<String>,
    /// Set when a reply or forward of the message is sent (not taken from requests).
    pub answered: Option<bool>,
    pub forwarded: Option<bool>,
    /// A queue id to add to the message's `outbound` (a forward of it was queued).
    pub outbound: Option<ObjectId>,
}

impl FlagChanges {
    pub fn is_empty(&self) -> bool {
        *self == FlagChanges::default()
    }

    pub fn apply(&self, message: &mut Message) {
        if let Some(v) = self.seen {
            message.seen = v;
        }
        if let Some(v) = self.flagged {
            message.flagged = v;
        }
        if let Some(v) = self.draft {
            message.draft = v;
        }
        if let Some(v) = self.deleted {
            message.deleted = v;
        }
        if let Some(v) = self.expires {
            message.expires = v;
        }
        if let Some(m) = &self.meta_data {
            message.meta_data = Some(m.clone());
        }
        if let Some(v) = self.answered {
            message.answered = v;
        }
        if let Some(v) = self.forwarded {
            message.forwarded = v;
        }
        if let Some(id) = self.outbound
            && !message.outbound.contains(&id)
        {
            message.outbound.push(id);
        }
    }
}

/// A `PUT .../messages/{message}` request: something to change (a move, or flags).
pub struct MessageUpdate {
    pub selector: Selector,
    pub move_to: Option<ObjectId>,
    pub changes: FlagChanges,
}

/// Messages changed per transaction (each takes its item, a journal event and room for the
/// counters).
pub(super) const BATCH: usize = 40;

/// Applies flag changes to messages of one mailbox: item, mailbox counters (unseen) and a
/// FETCH journal event per message, in transactions of [`BATCH`]. Each item is written only
/// if it is still as it was read (its revision): a batch that lost to a concurrent change is
/// read again and retried, so the unseen counter never drifts.
pub(super) async fn apply_flags(
    state: &AppState,
    mailbox: &StoredMailbox,
    messages: Vec<Message>,
    changes: &FlagChanges,
) -> DomainResult<usize> {
    let mut updated = 0;
    for chunk in messages.chunks(BATCH) {
        let mut pending = chunk.to_vec();
        let mut attempt = 0;
        while !pending.is_empty() {
            if try_flags(state, mailbox, &pending, changes).await? {
                updated += pending.len();
                break;
            }
            attempt += 1;
            if attempt >= CHANGE_ATTEMPTS {
                return Err(DomainError::Contended(CONTENDED));
            }
            retry::pause(attempt).await;
            pending = reload(state, &pending).await?;
        }
    }
    Ok(updated)
}

/// Attempts at a batch change before it gives up as contended.
const CHANGE_ATTEMPTS: usize = 16;
const CONTENDED: &str = "The messages were changed concurrently, try again";

/// One attempt at a batch of flag changes: false when some message changed meanwhile.
async fn try_flags(
    state: &AppState,
    mailbox: &StoredMailbox,
    messages: &[Message],
    changes: &FlagChanges,
) -> DomainResult<bool> {
    let user = mailbox.mailbox.user;
    let seq = journal::reserve(state.table.as_ref(), &user, messages.len()).await?;
    let mut writes = Vec::new();
    let mut unseen_delta = 0;
    let mut after = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let mut changed = message.clone();
        changes.apply(&mut changed);
        unseen_delta += i64::from(!changed.seen) - i64::from(!message.seen);
        let mut item = changed.item(mailbox);
        let update = Update {
            body: Some(item.body.take()),
            gsi1: Some(item.gsi1.take()),
            gsi2: Some(item.gsi2.take()),
            ..Default::default()
        }
        .add(REVISION, 1);
        writes.push(Write::Update {
            key: message.key(),
            update,
            guard: Some(message.unchanged().labeled(MESSAGE_GONE)),
        });
        writes.push(journal::event_write(
            &state.config,
            &user,
            seq + i as i64,
            changed.fetch_event(changed.seen != message.seen),
        ));
        after.push(changed);
    }
    writes.push(mailbox_counters(mailbox, 0, unseen_delta, 0));
    match journal::commit(
        state.table.as_ref(),
        &state.config,
        &user,
        seq,
        messages.len(),
        writes,
    )
    .await
    {
        Ok(()) => {
            super::indexing::relocate(state, messages.iter().zip(&after)).await;
            webhooks::publish_all(state, after.iter().map(webhooks::message_flags).collect()).await;
            Ok(true)
        }
        Err(StoreError::ConditionFailed {
            label: mailboxes::MAILBOX_GONE,
        }) => Err(mailbox_gone()),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Moves messages to another mailbox: each gets a new UID there; counters of both mailboxes
/// and the journal (EXPUNGE in the source, EXISTS in the target) change in the same
/// transaction. Returns `(old uid, new uid)` pairs.
async fn move_messages(
    state: &AppState,
    source: &StoredMailbox,
    target: &StoredMailbox,
    messages: Vec<Message>,
    changes: &FlagChanges,
) -> DomainResult<Vec<(u32, u32)>> {
    let mut moved = Vec::new();
    for chunk in messages.chunks(BATCH / 2) {
        let mut pending = chunk.to_vec();
        let mut attempt = 0;
        while !pending.is_empty() {
            if let Some(pairs) = try_move(state, source, target, &pending, changes).await? {
                moved.extend(pairs);
                break;
            }
            attempt += 1;
            if attempt >= CHANGE_ATTEMPTS {
                return Err(DomainError::Contended(CONTENDED));
            }
            retry::pause(attempt).await;
            pending = reload(state, &pending).await?;
        }
    }
    Ok(moved)
}

/// One attempt at moving a batch: `None` when some message changed or went meanwhile.
async fn try_move(
    state: &AppState,
    source: &StoredMailbox,
    target: &StoredMailbox,
    chunk: &[Message],
    changes: &FlagChanges,
) -> DomainResult<Option<Vec<(u32, u32)>>> {
    let user = source.mailbox.user;
    let now = Utc::now();
    let mut moved = Vec::new();
    let mut after = Vec::with_capacity(chunk.len());
    // Independent counters, asked for together (see `upload::commit_new_message`).
    let (first_uid, seq) = tokio::join!(
        allocate_uids(state, target, chunk.len()),
        journal::reserve(state.table.as_ref(), &user, chunk.len() * 2),
    );
    let (first_uid, seq) = (first_uid?, seq?);
    let mut writes = Vec::new();
    let (mut src, mut dst) = ((0, 0, 0), (0, 0, 0));
    for (i, message) in chunk.iter().enumerate() {
        let mut next = message.clone();
        changes.apply(&mut next);
        next.mailbox = target.mailbox.id;
        next.uid = first_uid + i as u32;
        if changes.expires.is_none() {
            next.expires = retention_expiry(target, now);
        }
        let (t, u, s) = message.counts();
        src = (src.0 - t, src.1 - u, src.2 - s);
        let (t, u, s) = next.counts();
        dst = (dst.0 + t, dst.1 + u, dst.2 + s);
        writes.push(Write::delete(message.key()).when(message.unchanged(), MESSAGE_GONE));
        next.revision = 0;
        writes.push(Write::put_new(next.item(target), UID_TAKEN));
        writes.push(Write::put(Item::new(
            keys::message_pointer(&user, &next.id),
            json!({ "mailbox": target.mailbox.id, "uid": next.uid }),
        )));
        let base = seq + 2 * i as i64;
        writes.push(journal::event_write(
            &state.config,
            &user,
            base,
            message.expunge_event(),
        ));
        writes.push(journal::event_write(
            &state.config,
            &user,
            base + 1,
            next.exists_event(),
        ));
        moved.push((message.uid, next.uid));
        after.push(next);
    }
    writes.push(mailbox_counters(source, src.0, src.1, src.2));
    writes.push(mailbox_counters(target, dst.0, dst.1, dst.2));
    match journal::commit(
        state.table.as_ref(),
        &state.config,
        &user,
        seq,
        chunk.len() * 2,
        writes,
    )
    .await
    {
        Ok(()) => {
            super::indexing::relocate(state, chunk.iter().zip(&after)).await;
            let mut events: Vec<webhooks::Event> = chunk
                .iter()
                .zip(&after)
                .map(|(before, now)| webhooks::message_moved(before, now))
                .collect();
            events.extend(webhooks::marked(source, target, &after));
            webhooks::publish_all(state, events).await;
        }
        Err(StoreError::ConditionFailed {
            label: mailboxes::MAILBOX_GONE,
        }) => return Err(mailbox_gone()),
        // Some message changed or vanished meanwhile: this batch moved nothing.
        Err(StoreError::ConditionFailed { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    Ok(Some(moved))
}

/// What `PUT .../messages/{message}` did.
pub enum Updated {
    /// Flags changed on this many messages.
    Flags(usize),
    /// Moved to `mailbox`: `(old UID, new UID)` of each message.
    Moved {
        mailbox: ObjectId,
        uids: Vec<(u32, u32)>,
    },
}

/// `PUT /users/{user}/mailboxes/{mailbox}/messages/{message}`.
pub async fn update(
    state: &AppState,
    user: &ObjectId,
    mailbox_id: &ObjectId,
    request: MessageUpdate,
) -> DomainResult<Updated> {
    if request.move_to.is_none() && request.changes.is_empty() {
        return Err(DomainError::NoUpdates("Nothing was changed"));
    }
    let source = mailboxes::load(state, user, mailbox_id).await?;
    let messages = select(state, user, mailbox_id, &request.selector).await?;
    let not_moved =
        || DomainError::MessageNotFound("Could not move message, check if message exists");
    if let Some(target_id) = request.move_to {
        let target = mailboxes::load(state, user, &target_id).await?;
        if messages.is_empty() {
            return Err(not_moved());
        }
        if target_id == *mailbox_id {
            let updated = apply_flags(state, &source, messages, &request.changes).await?;
            return Ok(Updated::Flags(updated));
        }
        let moved = move_messages(state, &source, &target, messages, &request.changes).await?;
        if moved.is_empty() {
            return Err(not_moved());
        }
        return Ok(Updated::Moved {
            mailbox: target_id,
            uids: moved,
        });
    }
    let no_match = || DomainError::MessageNotFound("No message matched query");
    if messages.is_empty() {
        return Err(no_match());
    }
    let updated = apply_flags(state, &source, messages, &request.changes).await?;
    if updated == 0 {
        return Err(no_match());
    }
    Ok(Updated::Flags(updated))
}
