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
//! Backend: [`super::tantivy_index`] (Tantivy in the data folder), used by the local server.
//! Where no index is configured (the Lambda functions today), search walks the term items of
//! the table instead (see `domain::search`).

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
    /// Adds messages, replacing any earlier entry with the same id.
    async fn put(&self, messages: Vec<IndexedMessage>) -> StoreResult<()>;

    /// Forgets messages (unknown ids are fine).
    async fn remove(&self, ids: Vec<ObjectId>) -> StoreResult<()>;

    /// Records folder moves and `\Deleted` changes (unknown ids are skipped).
    async fn relocate(&self, changes: Vec<(ObjectId, Relocation)>) -> StoreResult<()>;

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
