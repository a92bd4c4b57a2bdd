//! The storage port: one narrow interface for the single table and one for blobs.
//!
//! Everything WildDuck-specific lives above this port (in the repositories of `crate::domain`),
//! so the two backends only have to agree on these few operations:
//!
//! * [`Table`]: items addressed by `(pk, sk)`, each with an opaque JSON `body`, named integer
//!   `counters` that can be changed atomically, up to two secondary-index keys and a TTL.
//!   Reads, ordered key-range queries (on the table or an index), single-item counter updates,
//!   and multi-item transactions whose writes carry a [`Condition`] from a small closed set.
//! * [`BlobStore`]: put, get, ranged get and delete of byte objects.
//!
//! Backends: [`embedded`] (redb file + blob folder, the local default) and [`dynamo`]
//! (DynamoDB + S3). Both pass the same contract suite in `tests/`.

pub mod aws_env;
pub mod blob_fs;
#[cfg(feature = "text-index")]
pub mod blob_text_index;
mod body;
pub mod decorate;
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod embedded;
mod rules;
pub mod s3;
pub mod sdk_http;
#[cfg(feature = "streams")]
pub mod stream_batch;
#[cfg(feature = "text-index")]
mod tantivy_docs;
#[cfg(feature = "text-index")]
pub mod tantivy_index;
pub mod text_index;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use body::Body;
use futures::StreamExt as _;
use serde_json::Value;

/// The primary key of an item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// The two secondary indexes of the table (`gsi1pk/gsi1sk` and `gsi2pk/gsi2sk` on DynamoDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index {
    Gsi1,
    Gsi2,
}

/// The key of an item inside a secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexKey {
    pub pk: String,
    pub sk: String,
}

impl IndexKey {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        IndexKey {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// One stored item.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    /// The entity itself, serialized as JSON by the repository that owns it (a [`Value`]
    /// through `Deref`; built lazily from what the embedded store read).
    pub body: Body,
    /// Atomic integer counters (quota used, UID allocation, version, ...).
    pub counters: BTreeMap<String, i64>,
    pub gsi1: Option<IndexKey>,
    pub gsi2: Option<IndexKey>,
    /// Unix time (seconds) after which the item is gone. Backends hide expired items from
    /// every read even before they are physically removed (DynamoDB's TTL deletes lazily).
    pub expires_at: Option<i64>,
}

impl Item {
    pub fn new(key: Key, body: Value) -> Self {
        Item {
            pk: key.pk,
            sk: key.sk,
            body: body.into(),
            ..Default::default()
        }
    }
    pub fn key(&self) -> Key {
        Key::new(self.pk.clone(), self.sk.clone())
    }
    /// The body read as `T`, straight from the stored JSON or the tree (no tree built for it).
    pub fn body_as<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        self.body.read_as()
    }
    pub fn with_counter(mut self, name: &str, value: i64) -> Self {
        self.counters.insert(name.to_string(), value);
        self
    }
    pub fn with_gsi1(mut self, key: IndexKey) -> Self {
        self.gsi1 = Some(key);
        self
    }
    pub fn with_gsi2(mut self, key: IndexKey) -> Self {
        self.gsi2 = Some(key);
        self
    }
    pub fn with_expiry(mut self, unix_seconds: i64) -> Self {
        self.expires_at = Some(unix_seconds);
        self
    }
    pub fn counter(&self, name: &str) -> i64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
    pub fn index_key(&self, index: Index) -> Option<&IndexKey> {
        match index {
            Index::Gsi1 => self.gsi1.as_ref(),
            Index::Gsi2 => self.gsi2.as_ref(),
        }
    }
    /// True when the TTL has passed at `now` (unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// A write's precondition. A closed set, so every backend can evaluate it exactly.
/// Counters that were never set count as 0.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// No live item exists under the key.
    NotExists,
    /// A live item exists under the key.
    Exists,
    /// The item exists and `counters[name] == value`.
    CounterEquals(String, i64),
    /// The item exists and `counters[name] <= value` (before the write is applied).
    CounterAtMost(String, i64),
}

impl Condition {
    /// This condition, reported as `label` when it fails.
    pub fn labeled(self, label: &'static str) -> Guard {
        Guard {
            condition: self,
            label,
        }
    }
}

/// A write's precondition and the name a failure reports it by
/// ([`StoreError::ConditionFailed`]), so callers tell failures apart by meaning ("username",
/// "quota") rather than by the write's position in a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    pub condition: Condition,
    pub label: &'static str,
}

/// One write inside [`Table::transact`].
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create or replace the whole item.
    Put { item: Item, guard: Option<Guard> },
    /// Change parts of an existing item (or create it when no condition demands existence).
    Update {
        key: Key,
        update: Update,
        guard: Option<Guard>,
    },
    /// Remove the item (no error when it is already gone, unless a condition says otherwise).
    Delete { key: Key, guard: Option<Guard> },
    /// Only check a condition on another item.
    Check { key: Key, guard: Guard },
}

impl Write {
    pub fn put(item: Item) -> Self {
        Write::Put { item, guard: None }
    }
    /// Puts `item` only where no live item is; reported as `label` otherwise.
    pub fn put_new(item: Item, label: &'static str) -> Self {
        Write::put(item).when(Condition::NotExists, label)
    }
    pub fn update(key: Key, update: Update) -> Self {
        Write::Update {
            key,
            update,
            guard: None,
        }
    }
    pub fn delete(key: Key) -> Self {
        Write::Delete { key, guard: None }
    }
    /// Checks `condition` on the item under `key`, reported as `label` when it fails.
    pub fn check(key: Key, condition: Condition, label: &'static str) -> Self {
        Write::Check {
            key,
            guard: condition.labeled(label),
        }
    }
    /// This write, applied only when `condition` holds (replacing any condition it had).
    pub fn when(self, condition: Condition, label: &'static str) -> Self {
        let guard = condition.labeled(label);
        match self {
            Write::Put { item, .. } => Write::Put {
                item,
                guard: Some(guard),
            },
            Write::Update { key, update, .. } => Write::Update {
                key,
                update,
                guard: Some(guard),
            },
            Write::Delete { key, .. } => Write::Delete {
                key,
                guard: Some(guard),
            },
            Write::Check { key, .. } => Write::Check { key, guard },
        }
    }
    pub fn key(&self) -> Key {
        match self {
            Write::Put { item, .. } => item.key(),
            Write::Update { key, .. } | Write::Delete { key, .. } | Write::Check { key, .. } => {
                key.clone()
            }
        }
    }
    /// The write's precondition, if it has one.
    pub fn guard(&self) -> Option<&Guard> {
        match self {
            Write::Put { guard, .. }
            | Write::Update { guard, .. }
            | Write::Delete { guard, .. } => guard.as_ref(),
            Write::Check { guard, .. } => Some(guard),
        }
    }
}

/// Partial change of one item. Fields left `None` keep their stored value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    pub body: Option<Value>,
    /// Added to the named counters (missing counters start at 0).
    pub add: BTreeMap<String, i64>,
    /// `Some(None)` removes the index key, `Some(Some(k))` sets it.
    pub gsi1: Option<Option<IndexKey>>,
    pub gsi2: Option<Option<IndexKey>>,
    pub expires_at: Option<Option<i64>>,
}

impl Update {
    pub fn body(body: Value) -> Self {
        Update {
            body: Some(body),
            ..Default::default()
        }
    }
    pub fn add(mut self, counter: &str, by: i64) -> Self {
        *self.add.entry(counter.to_string()).or_insert(0) += by;
        self
    }
}

/// Where a query starts and which way it walks.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `None` queries the table itself; otherwise the given secondary index.
    pub index: Option<Index>,
    /// Partition key (of the table or of the index).
    pub pk: String,
    /// Sort-key condition.
    pub range: SortRange,
    /// `true`: ascending sort keys; `false`: descending.
    pub forward: bool,
    /// At most this many items (backends may return fewer only when the range is exhausted).
    pub limit: usize,
    /// Exclusive start: the [`Cursor`] of the last item of the previous page.
    pub start_after: Option<Cursor>,
}

impl Query {
    pub fn table(pk: impl Into<String>) -> Self {
        Query {
            index: None,
            pk: pk.into(),
            range: SortRange::All,
            forward: true,
            limit: 100,
            start_after: None,
        }
    }
    pub fn index(index: Index, pk: impl Into<String>) -> Self {
        Query {
            index: Some(index),
            ..Query::table(pk)
        }
    }
    pub fn range(mut self, range: SortRange) -> Self {
        self.range = range;
        self
    }
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    pub fn backwards(mut self) -> Self {
        self.forward = false;
        self
    }
    pub fn forward(mut self, forward: bool) -> Self {
        self.forward = forward;
        self
    }
    pub fn start_after(mut self, cursor: Option<Cursor>) -> Self {
        self.start_after = cursor;
        self
    }
}

/// Sort-key conditions a query may use (all comparisons on UTF-8 bytes, as DynamoDB does).
#[derive(Debug, Clone, PartialEq)]
pub enum SortRange {
    All,
    BeginsWith(String),
    /// Inclusive on both ends.
    Between(String, String),
}

impl SortRange {
    pub fn contains(&self, sk: &str) -> bool {
        match self {
            SortRange::All => true,
            SortRange::BeginsWith(p) => sk.starts_with(p.as_str()),
            SortRange::Between(a, b) => a.as_str() <= sk && sk <= b.as_str(),
        }
    }
}

/// Position of an item in a query's order: its table key, plus its index key for index queries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub pk: String,
    pub sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<(String, String)>,
}

impl Cursor {
    /// The cursor of `item` for a query on `index` (or the table).
    pub fn of(item: &Item, index: Option<Index>) -> Cursor {
        Cursor {
            pk: item.pk.clone(),
            sk: item.sk.clone(),
            index: index
                .and_then(|i| item.index_key(i))
                .map(|k| (k.pk.clone(), k.sk.clone())),
        }
    }
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Set when more items may follow: pass it as `start_after` to continue.
    pub next: Option<Cursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write's condition failed; `label` is its [`Guard`]'s label.
    #[error("condition {label:?} failed")]
    ConditionFailed { label: &'static str },
    /// The transaction names too many items, the same item twice, or an item is too large.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A spooled body was larger than allowed (the limit in bytes).
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    /// Anything else: I/O, the network, the service.
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Largest number of writes one transaction may carry (DynamoDB's limit).
pub const MAX_TRANSACTION_WRITES: usize = 100;

/// The single table.
#[async_trait]
pub trait Table: Send + Sync {
    /// The live item under `key`, if any (strongly consistent).
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>>;

    /// Several items at once; missing ones are left out. Order is not guaranteed.
    async fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Item>>;

    /// One page of a key-range query.
    async fn query(&self, query: &Query) -> StoreResult<Page>;

    /// Applies all writes or none. Each item may appear at most once; at most
    /// [`MAX_TRANSACTION_WRITES`] writes.
    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()>;

    /// Deletes the items of `keys` (missing ones and repeats are fine), unconditionally and
    /// not as one unit: an error may leave some deleted. For bulk removal where every delete
    /// stands alone (the janitor); DynamoDB does it with BatchWriteItem at half the write cost
    /// of a transaction.
    async fn delete_many(&self, keys: &[Key]) -> StoreResult<()> {
        let keys: BTreeSet<&Key> = keys.iter().collect();
        let keys: Vec<&Key> = keys.into_iter().collect();
        for chunk in keys.chunks(MAX_TRANSACTION_WRITES) {
            let writes = chunk.iter().map(|k| Write::delete((*k).clone())).collect();
            self.transact(writes).await?;
        }
        Ok(())
    }

    /// Applies one update and returns the item as it is afterwards (atomic counters: UIDs,
    /// sequence numbers). With a failing condition: `ConditionFailed` with the guard's label.
    async fn update(&self, key: &Key, update: Update, guard: Option<Guard>) -> StoreResult<Item>;
}

/// Every item `query` matches, read page after page (its `limit` is the page size). For
/// partitions that stay small: a user's mailboxes, addresses, filters, ASPs.
pub async fn query_all(table: &dyn Table, mut query: Query) -> StoreResult<Vec<Item>> {
    let mut items = Vec::new();
    loop {
        let page = table.query(&query).await?;
        items.extend(page.items);
        match page.next {
            Some(next) => query = query.start_after(Some(next)),
            None => return Ok(items),
        }
    }
}

/// Byte objects: raw messages, attachments.
#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(&self, key: &str, bytes: Bytes) -> StoreResult<()>;
    async fn get(&self, key: &str) -> StoreResult<Option<Bytes>>;
    /// Bytes `range` of the object (clamped to its length); `None` when it does not exist.
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Option<Bytes>>;
    /// No error when the object does not exist.
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// A URL that lets a client PUT the object itself for `expires` (S3's presigned URLs, so
    /// large messages bypass Lambda's 6 MB payload limit). `None`: this store can't presign
    /// (the local folder), bytes go through the API instead.
    async fn presign_put(&self, _key: &str, _expires: Duration) -> StoreResult<Option<String>> {
        Ok(None)
    }

    /// A URL that lets a client GET the object for `expires`, answered with the given content
    /// type and disposition. `None` when this store can't presign.
    async fn presign_get(
        &self,
        _key: &str,
        _expires: Duration,
        _content_type: &str,
        _disposition: Option<&str>,
    ) -> StoreResult<Option<String>> {
        Ok(None)
    }

    /// A scratch copy of what `body` yields (a large request body, a decoded upload), at
    /// most `max` bytes (more: [`StoreError::TooLarge`]). The local folder writes it chunk by
    /// chunk to an unnamed file beside the blobs and answers it memory-mapped, so it never
    /// sits in memory and vanishes with its last reference, even after a crash; this default
    /// (S3, where Lambda has the whole body in memory anyway) gathers it in memory.
    async fn spool(&self, mut body: BlobStream, max: u64) -> StoreResult<Bytes> {
        let mut gathered = bytes::BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StoreError::Backend(e.into()))?;
            if (gathered.len() + chunk.len()) as u64 > max {
                return Err(StoreError::TooLarge(max));
            }
            gathered.extend_from_slice(&chunk);
        }
        Ok(gathered.freeze())
    }
}

/// Chunks of bytes on their way into [`BlobStore::spool`]: a request body, a decoding.
pub type BlobStream = futures::stream::BoxStream<'static, std::io::Result<Bytes>>;
