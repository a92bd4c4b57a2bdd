//! The text index port: which of a user's messages contain which words.
//!
//! The table stays the truth for everything a message is (its folder, flags, counters); the
//! index only answers "which messages match these words", newest first, and how many. Search
//! then reads the page's messages from the table and checks them again, so a page is always
//! exact even while the index catches up.
//!
//! What a message is indexed with is immutable (its words, date, size, thread, attachments)
//! except its folder and its `\Deleted` flag, which the index keeps because search excludes
//! Junk, Trash and deleted messages and `total` must be counted without reading the table.
//!
//! Backends: [`super::tantivy_index`] (one Tantivy index in the data folder, the local
//! server) and [`super::blob_text_index`] (one Tantivy index per user in the blob store, the
//! Lambda functions and `eider-local` on DynamoDB + S3). Where no index is configured
//! (`EIDER_SEARCH_INDEX=terms`), search walks the term items of the table instead (see
//! `domain::search`).

use async_trait::async_trait;

use super::StoreResult;
use crate::id::ObjectId;

/// A message as the index holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedMessage {
    pub user: ObjectId,
    pub id: ObjectId,
    pub mailbox: ObjectId,
    pub thread: ObjectId,
    /// Internal date, Unix milliseconds.
    pub idate: i64,
    pub size: u64,
    pub attachments: bool,
    pub deleted: bool,
    /// Every search term of the message (`mail::parse::index_terms`): headers and the whole text.
    pub terms: Vec<String>,
}

/// What changed about an indexed message without changing its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relocation {
    /// Moved to another folder.
    Mailbox(ObjectId),
    /// `\Deleted` set or cleared.
    Deleted(bool),
}

/// One change to the index. A batch of them is applied in order, as one commit.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexChange {
    /// Adds a message, replacing any earlier entry with the same id.
    Put(IndexedMessage),
    /// Forgets a message (an unknown id is fine).
    Remove(ObjectId),
    /// Records a folder move or a `\Deleted` change (an unknown id is skipped).
    Relocate(ObjectId, Relocation),
}

/// Where the index holds a message: what [`Relocation`]s change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub mailbox: ObjectId,
    pub deleted: bool,
}

/// The part of a search the index decides by itself. Every condition must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextQuery {
    /// Terms every match contains.
    pub all: Vec<String>,
    /// Prefixes (`word*`): every match contains a term starting with each.
    pub prefixes: Vec<String>,
    /// Terms no match contains.
    pub none: Vec<String>,
    /// When not empty: every match contains at least one of these terms.
    pub any: Vec<String>,
    /// When given: every match is in one of these folders (search leaves out Junk, Trash
    /// and folders deleted but not yet drained this way).
    pub mailboxes: Option<Vec<ObjectId>>,
    pub thread: Option<ObjectId>,
    /// Internal date bounds, Unix milliseconds, inclusive.
    pub idate_from: Option<i64>,
    pub idate_to: Option<i64>,
    /// Size bounds, inclusive.
    pub size_from: Option<u64>,
    pub size_to: Option<u64>,
    pub attachments: Option<bool>,
    pub deleted: Option<bool>,
}

/// Where a page of matches starts, in message-id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexPage {
    /// Only ids after this one (in the walk's direction).
    pub after: Option<ObjectId>,
    /// Newest (highest id) first.
    pub newest_first: bool,
    pub limit: usize,
}

#[async_trait]
pub trait TextIndex: Send + Sync {
    /// Applies `changes` to `user`'s messages, in order. Visible to searches once applied
    /// ([`TextIndex::settle`]).
    async fn apply(&self, user: &ObjectId, changes: Vec<IndexChange>) -> StoreResult<()>;

    /// Adds messages, replacing any earlier entry with the same id.
    async fn put(&self, messages: Vec<IndexedMessage>) -> StoreResult<()> {
        let mut by_user: std::collections::BTreeMap<ObjectId, Vec<IndexChange>> =
            Default::default();
        for message in messages {
            by_user
                .entry(message.user)
                .or_default()
                .push(IndexChange::Put(message));
        }
        for (user, changes) in by_user {
            self.apply(&user, changes).await?;
        }
        Ok(())
    }

    /// Forgets `user`'s messages (unknown ids are fine).
    async fn remove(&self, user: &ObjectId, ids: Vec<ObjectId>) -> StoreResult<()> {
        self.apply(user, ids.into_iter().map(IndexChange::Remove).collect())
            .await
    }

    /// Records folder moves and `\Deleted` changes of `user`'s messages (unknown ids are
    /// skipped).
    async fn relocate(
        &self,
        user: &ObjectId,
        changes: Vec<(ObjectId, Relocation)>,
    ) -> StoreResult<()> {
        self.apply(
            user,
            changes
                .into_iter()
                .map(|(id, r)| IndexChange::Relocate(id, r))
                .collect(),
        )
        .await
    }

    /// Drops whatever is left of `user`'s index (the user is purged; their messages were
    /// removed one by one before).
    async fn forget_user(&self, _user: &ObjectId) -> StoreResult<()> {
        Ok(())
    }

    /// Where the index holds each of `user`'s `ids` (the ids it does not hold are left out).
    async fn placements(
        &self,
        user: &ObjectId,
        ids: &[ObjectId],
    ) -> StoreResult<std::collections::HashMap<ObjectId, Placement>>;

    /// Waits until every change made before the call is visible to searches.
    async fn settle(&self) -> StoreResult<()>;

    /// Matching ids of `user` in id order from `page.after`, at most `page.limit`.
    async fn page(
        &self,
        user: &ObjectId,
        query: &TextQuery,
        page: IndexPage,
    ) -> StoreResult<Vec<ObjectId>>;

    /// How many of `user`'s messages match.
    async fn count(&self, user: &ObjectId, query: &TextQuery) -> StoreResult<u64>;

    /// Every indexed id of `user` in `mailbox`, any order (for reconciling with the table).
    async fn ids_in(&self, user: &ObjectId, mailbox: &ObjectId) -> StoreResult<Vec<ObjectId>>;
}
