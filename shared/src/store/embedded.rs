//! The embedded table: the [`Table`] port on one redb file, for the local server and tests.
//!
//! This module owns the on-disk layout and the reference semantics of the port:
//!
//! * `items`: `(pk, sk)` → the item's JSON (body, counters, index keys, expiry).
//! * `gsi1` / `gsi2`: `(index pk, index sk, pk, sk)` → `()`, one entry per item that carries
//!   that index key, changed in the same write transaction as the item itself.
//!
//! redb serializes write transactions, so a [`Table::transact`] call reads, checks its
//! conditions and writes inside one transaction: atomic and isolated, as on DynamoDB.
//! Calls that arrive while a commit is under way share the next redb transaction (group
//! commit): each still checks its conditions against the state the calls before it left, and
//! fails or succeeds alone, but the batch pays one sync to disk instead of one per call.
//! Expired items stay in the file until [`EmbeddedTable::purge_expired`] removes them (the
//! emulation of DynamoDB's TTL sweeper); until then every read hides them.
//!
//! The request checks and condition semantics it shares with the DynamoDB backend are in
//! [`super::rules`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Body;
use super::rules::{
    apply_update, check_item, check_key, check_query, check_writes, condition_holds, item_size, now,
};
use super::{
    Cursor, Guard, Index, IndexKey, Item, Key, Page, Query, SortRange, StoreError, StoreResult,
    Table, Update, Write,
};

/// `(pk, sk)`.
type ItemKey = (&'static str, &'static str);
/// `(index pk, index sk, pk, sk)`.
type IndexEntry = (&'static str, &'static str, &'static str, &'static str);
type ItemsDef = TableDefinition<'static, ItemKey, &'static [u8]>;
type IndexDef = TableDefinition<'static, IndexEntry, ()>;

const ITEMS: ItemsDef = TableDefinition::new("items");
const GSI1: IndexDef = TableDefinition::new("gsi1");
const GSI2: IndexDef = TableDefinition::new("gsi2");

/// DynamoDB's limit on a transaction's items, enforced here when the new items are known
/// (DynamoDB enforces it itself).
const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;

/// At most this many waiting write calls share one redb transaction.
const MAX_BATCH_CALLS: usize = 128;

/// The [`Table`] port on a redb file. Cheap to clone (the database is shared).
#[derive(Clone)]
pub struct EmbeddedTable {
    db: Arc<Database>,
    commits: Arc<Mutex<CommitQueue>>,
}

/// Write calls waiting for a commit, and whether a committer is draining them.
#[derive(Default)]
struct CommitQueue {
    waiting: Vec<WriteCall>,
    draining: bool,
    /// Batches taken so far (calls per batch = calls ÷ batches).
    batches: u64,
}

/// One `transact` or `update` call.
struct WriteCall {
    writes: Vec<Write>,
    /// `update` answers the item as written.
    read_back: Option<Key>,
    reply: tokio::sync::oneshot::Sender<StoreResult<Option<Item>>>,
}

/// What the `items` table stores for one item (its key is the redb key).
#[derive(Serialize)]
struct Stored<'a> {
    body: &'a Value,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    counters: BTreeMap<String, i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi1: Option<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gsi2: Option<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

/// A stored record's fields beside its body, read eagerly; the body is only checked to be
/// JSON here and read when used (see `Body`).
#[derive(Deserialize)]
struct StoredHead {
    #[allow(dead_code)]
    body: serde::de::IgnoredAny,
    #[serde(default)]
    counters: BTreeMap<String, i64>,
    #[serde(default)]
    gsi1: Option<(String, String)>,
    #[serde(default)]
    gsi2: Option<(String, String)>,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// Reads of up to this many items run on the calling thread (see `EmbeddedTable::read`).
const INLINE_READ_ITEMS: usize = 100;

impl EmbeddedTable {
    /// Opens (or creates, with its parent folders) the store file at `path`.
    ///
    /// Fails when another process (or another `EmbeddedTable` in this one) has the file open:
    /// redb holds an exclusive lock on it.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the folder {}", parent.display()))?;
        }
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(anyhow!(
                    "the store file {} is already open in another process \
                     (only one Eider server may use a data folder at a time)",
                    path.display()
                ));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open {}", path.display()));
            }
        };
        // Create the tables once, so read transactions can always open them.
        let txn = db.begin_write()?;
        txn.open_table(ITEMS)?;
        txn.open_table(GSI1)?;
        txn.open_table(GSI2)?;
        txn.commit()?;
        Ok(EmbeddedTable {
            db: Arc::new(db),
            commits: Arc::default(),
        })
    }

    /// Physically removes every expired item and its index entries (what DynamoDB's TTL
    /// sweeper does in the background). Returns how many items were removed.
    pub fn purge_expired(&self) -> anyhow::Result<usize> {
        let now = now();
        let removed = in_write_txn(&self.db, |tables| {
            let mut expired = Vec::new();
            for entry in tables.items.iter().map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                let (pk, sk) = k.value();
                let item = decode(pk, sk, v.value())?;
                if item.is_expired(now) {
                    expired.push(item);
                }
            }
            for item in &expired {
                write_item(tables, Some(item), None)?;
            }
            Ok(expired.len())
        })?;
        Ok(removed)
    }

    /// Runs a read of at most `items` items: small ones on this thread, larger ones on a
    /// blocking thread. A short read of redb's cached pages takes microseconds, less than
    /// handing it to another thread and back (profiled: two thirds of a `GET` of a message
    /// under load went to those thread switches); a long one must not stall the runtime.
    async fn read<T, F>(&self, items: usize, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        if items <= INLINE_READ_ITEMS {
            f(&self.db)
        } else {
            self.blocking(f).await
        }
    }

    /// Queues a write call and waits for the commit that takes it. The first call to find
    /// no committer running starts one on a blocking thread; it drains the queue batch by
    /// batch (see [`commit_batch`]) and stops when the queue is empty.
    async fn write(&self, writes: Vec<Write>, read_back: Option<Key>) -> StoreResult<Option<Item>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let start = {
            let mut queue = lock(&self.commits);
            queue.waiting.push(WriteCall {
                writes,
                read_back,
                reply,
            });
            !std::mem::replace(&mut queue.draining, true)
        };
        if start {
            let (db, commits) = (self.db.clone(), self.commits.clone());
            tokio::task::spawn_blocking(move || drain_commits(&db, &commits));
        }
        answer
            .await
            .map_err(|_| StoreError::Backend(anyhow!("the store's commit was interrupted")))?
    }

    /// Runs `f` on a blocking thread: redb is synchronous.
    async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Backend(anyhow!("store task failed: {e}")))?
    }
}

#[async_trait]
impl Table for EmbeddedTable {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        check_key(key)?;
        let key = key.clone();
        self.read(1, move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let items = txn.open_table(ITEMS).map_err(backend)?;
            Ok(load(&items, &key)?.filter(|item| !item.is_expired(now())))
        })
        .await
    }

    async fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Item>> {
        // Each item at most once, as BatchGetItem (which rejects duplicates) would give it.
        let keys: BTreeSet<Key> = keys.iter().cloned().collect();
        keys.iter().try_for_each(check_key)?;
        self.read(keys.len(), move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let items = txn.open_table(ITEMS).map_err(backend)?;
            let now = now();
            let mut found = Vec::new();
            for key in &keys {
                if let Some(item) = load(&items, key)?.filter(|i| !i.is_expired(now)) {
                    found.push(item);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        check_query(query)?;
        let query = query.clone();
        self.read(query.limit, move |db| query_sync(db, &query, now()))
            .await
    }

    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()> {
        check_writes(&writes)?;
        if writes.is_empty() {
            return Ok(());
        }
        self.write(writes, None).await.map(|_| ())
    }

    async fn update(&self, key: &Key, update: Update, guard: Option<Guard>) -> StoreResult<Item> {
        let write = Write::Update {
            key: key.clone(),
            update,
            guard,
        };
        check_writes(std::slice::from_ref(&write))?;
        self.write(vec![write], Some(key.clone()))
            .await?
            .ok_or_else(|| StoreError::Backend(anyhow!("updated item vanished")))
    }
}

/// The three tables, opened inside one write transaction.
struct Tables<'txn> {
    items: redb::Table<'txn, ItemKey, &'static [u8]>,
    gsi1: redb::Table<'txn, IndexEntry, ()>,
    gsi2: redb::Table<'txn, IndexEntry, ()>,
}

/// Runs `f` in one write transaction: committed when `f` succeeds, aborted otherwise.
fn in_write_txn<T>(
    db: &Database,
    f: impl FnOnce(&mut Tables<'_>) -> StoreResult<T>,
) -> StoreResult<T> {
    let txn = db.begin_write().map_err(backend)?;
    let result = {
        let mut tables = Tables {
            items: txn.open_table(ITEMS).map_err(backend)?,
            gsi1: txn.open_table(GSI1).map_err(backend)?,
            gsi2: txn.open_table(GSI2).map_err(backend)?,
        };
        f(&mut tables)
    };
    match result {
        Ok(value) => {
            txn.commit().map_err(backend)?;
            Ok(value)
        }
        Err(e) => {
            txn.abort().map_err(backend)?;
            Err(e)
        }
    }
}

fn lock(commits: &Mutex<CommitQueue>) -> MutexGuard<'_, CommitQueue> {
    // The queue stays consistent even if a holder panicked: it is only pushed to and taken.
    commits
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The committer: commits batches of waiting calls until none is left.
fn drain_commits(db: &Database, commits: &Mutex<CommitQueue>) {
    loop {
        let batch = {
            let mut queue = lock(commits);
            if queue.waiting.is_empty() {
                queue.draining = false;
                return;
            }
            let take = queue.waiting.len().min(MAX_BATCH_CALLS);
            queue.batches += 1;
            queue.waiting.drain(..take).collect::<Vec<_>>()
        };
        // A panic must not stop the committer: the batch's callers get an error (their reply
        // senders are dropped) and later calls are still committed.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit_batch(db, batch)));
    }
}

/// Commits `batch` in one write transaction, the calls in queue order. A call whose
/// conditions fail, or that is invalid, has written nothing when it fails ([`apply_writes`]
/// checks everything first), so it fails alone. A backend error leaves the transaction in an
/// unknown state: then nothing is committed and every call of the batch gets the error.
fn commit_batch(db: &Database, batch: Vec<WriteCall>) {
    let now = now();
    let mut answers = Vec::with_capacity(batch.len());
    let committed = in_write_txn(db, |tables| {
        for call in &batch {
            let answer =
                apply_writes(tables, &call.writes, now).and_then(|()| match &call.read_back {
                    Some(key) => load(&tables.items, key),
                    None => Ok(None),
                });
            if let Err(StoreError::Backend(e)) = answer {
                return Err(StoreError::Backend(e));
            }
            answers.push(answer);
        }
        Ok(())
    });
    match committed {
        Ok(()) => {
            for (call, answer) in batch.into_iter().zip(answers) {
                let _ = call.reply.send(answer);
            }
        }
        Err(e) => {
            let message = format!("{e:#}");
            for call in batch {
                let _ = call
                    .reply
                    .send(Err(StoreError::Backend(anyhow!("{message}"))));
            }
        }
    }
}

/// Checks every condition against the state before the transaction, then applies all writes.
fn apply_writes(tables: &mut Tables<'_>, writes: &[Write], now: i64) -> StoreResult<()> {
    // What is physically stored (to clean up index entries) for each write.
    let mut stored = Vec::with_capacity(writes.len());
    for write in writes {
        let old = load(&tables.items, &write.key())?;
        let live = old.as_ref().filter(|item| !item.is_expired(now));
        if let Some(guard) = write.guard()
            && !condition_holds(&guard.condition, live)
        {
            return Err(StoreError::ConditionFailed { label: guard.label });
        }
        stored.push(old);
    }

    // The new state of each item (None: absent), computed before anything is written.
    let mut new_items = Vec::with_capacity(writes.len());
    let mut total_bytes = 0;
    for (write, old) in writes.iter().zip(&stored) {
        let live = old.as_ref().filter(|item| !item.is_expired(now));
        let new = match write {
            Write::Put { item, .. } => Some(item.clone()),
            Write::Update { key, update, .. } => Some(apply_update(live, key, update)?),
            Write::Delete { .. } => None,
            Write::Check { .. } => continue,
        };
        if let Some(item) = &new {
            check_item(item)?;
            total_bytes += item_size(item);
        }
        new_items.push((old.as_ref(), new));
    }
    if total_bytes > MAX_TRANSACTION_BYTES {
        return Err(StoreError::Invalid(
            "the transaction is larger than 4 MB".into(),
        ));
    }

    for (old, new) in new_items {
        write_item(tables, old, new.as_ref())?;
    }
    Ok(())
}

/// Replaces the stored `old` item by `new` (either may be absent), index entries included.
fn write_item(tables: &mut Tables<'_>, old: Option<&Item>, new: Option<&Item>) -> StoreResult<()> {
    for (index, table) in [
        (Index::Gsi1, &mut tables.gsi1),
        (Index::Gsi2, &mut tables.gsi2),
    ] {
        let old_key = old.and_then(|i| i.index_key(index).map(|k| (k, &i.pk, &i.sk)));
        let new_key = new.and_then(|i| i.index_key(index).map(|k| (k, &i.pk, &i.sk)));
        if old_key == new_key {
            continue;
        }
        if let Some((k, pk, sk)) = old_key {
            table
                .remove((k.pk.as_str(), k.sk.as_str(), pk.as_str(), sk.as_str()))
                .map_err(backend)?;
        }
        if let Some((k, pk, sk)) = new_key {
            table
                .insert((k.pk.as_str(), k.sk.as_str(), pk.as_str(), sk.as_str()), ())
                .map_err(backend)?;
        }
    }
    match (old, new) {
        (_, Some(item)) => tables.items.insert(
            (item.pk.as_str(), item.sk.as_str()),
            encode(item)?.as_slice(),
        ),
        (Some(item), None) => tables.items.remove((item.pk.as_str(), item.sk.as_str())),
        (None, None) => return Ok(()),
    }
    .map_err(backend)?;
    Ok(())
}

fn query_sync(db: &Database, query: &Query, now: i64) -> StoreResult<Page> {
    let txn = db.begin_read().map_err(backend)?;
    let items = txn.open_table(ITEMS).map_err(backend)?;
    let mut found = Vec::new();
    match query.index {
        None => {
            let (lower, upper) = sort_bounds(&query.range, |s| s, |s| s);
            let cursor = query.start_after.as_ref().map(|c| c.sk.clone());
            let (lower, upper) = narrow(lower, upper, cursor, query.forward);
            if is_empty(&lower, &upper) {
                return Ok(Page::default());
            }
            let pk = query.pk.as_str();
            let end = format!("{pk}\0"); // (pk + "\0", "") follows every (pk, _)
            let lower = match &lower {
                Bound::Unbounded => Bound::Included((pk, "")),
                b => b.as_ref().map(|sk| (pk, sk.as_str())),
            };
            let upper = match &upper {
                Bound::Unbounded => Bound::Excluded((end.as_str(), "")),
                b => b.as_ref().map(|sk| (pk, sk.as_str())),
            };
            let range = items
                .range::<(&str, &str)>((lower, upper))
                .map_err(backend)?;
            walk(range, query.forward, |entry| {
                let (k, v) = entry.map_err(backend)?;
                let (pk, sk) = k.value();
                let item = decode(pk, sk, v.value())?;
                if !item.is_expired(now) {
                    found.push(item);
                }
                Ok(found.len() >= query.limit)
            })?;
        }
        Some(index) => {
            let table = txn.open_table(index_def(index)).map_err(backend)?;
            let with_tail = |s: String| (s, String::new(), String::new());
            let (lower, upper) = sort_bounds(&query.range, with_tail, with_tail);
            let cursor = query.start_after.as_ref().map(|c| {
                let (_, isk) = c.index.clone().unwrap_or_default();
                (isk, c.pk.clone(), c.sk.clone())
            });
            let (lower, upper) = narrow(lower, upper, cursor, query.forward);
            if is_empty(&lower, &upper) {
                return Ok(Page::default());
            }
            let ipk = query.pk.as_str();
            let end = format!("{ipk}\0");
            let lower = match &lower {
                Bound::Unbounded => Bound::Included((ipk, "", "", "")),
                b => b
                    .as_ref()
                    .map(|(isk, pk, sk)| (ipk, isk.as_str(), pk.as_str(), sk.as_str())),
            };
            let upper = match &upper {
                Bound::Unbounded => Bound::Excluded((end.as_str(), "", "", "")),
                b => b
                    .as_ref()
                    .map(|(isk, pk, sk)| (ipk, isk.as_str(), pk.as_str(), sk.as_str())),
            };
            let range = table
                .range::<(&str, &str, &str, &str)>((lower, upper))
                .map_err(backend)?;
            walk(range, query.forward, |entry| {
                let (k, _) = entry.map_err(backend)?;
                let (_, _, pk, sk) = k.value();
                // The index only points at items; they carry the projection (ALL).
                let item = load(&items, &Key::new(pk, sk))?;
                if let Some(item) = item.filter(|i| !i.is_expired(now)) {
                    found.push(item);
                }
                Ok(found.len() >= query.limit)
            })?;
        }
    }
    let next = if found.len() >= query.limit {
        found.last().map(|item| Cursor::of(item, query.index))
    } else {
        None
    };
    Ok(Page { items: found, next })
}

/// Feeds the entries to `visit` in the query's direction until it returns `true` (page full).
fn walk<T>(
    range: impl DoubleEndedIterator<Item = T>,
    forward: bool,
    mut visit: impl FnMut(T) -> StoreResult<bool>,
) -> StoreResult<()> {
    let entries: Box<dyn Iterator<Item = T> + '_> = if forward {
        Box::new(range)
    } else {
        Box::new(range.rev())
    };
    for entry in entries {
        if visit(entry)? {
            break;
        }
    }
    Ok(())
}

fn index_def(index: Index) -> IndexDef {
    match index {
        Index::Gsi1 => GSI1,
        Index::Gsi2 => GSI2,
    }
}

/// The bounds of `range` on the sort component, built with `low`/`high` (which extend a sort
/// key to the full key after it, smallest tail for both).
fn sort_bounds<T>(
    range: &SortRange,
    low: impl Fn(String) -> T,
    high: impl Fn(String) -> T,
) -> (Bound<T>, Bound<T>) {
    match range {
        SortRange::All => (Bound::Unbounded, Bound::Unbounded),
        SortRange::BeginsWith(prefix) => (
            Bound::Included(low(prefix.clone())),
            prefix_end(prefix).map_or(Bound::Unbounded, |end| Bound::Excluded(high(end))),
        ),
        // `b + "\0"` is the first string after `b` (and everything that extends it with
        // a table key), so the exclusive bound keeps every key whose sort key is `b`.
        SortRange::Between(a, b) => (
            Bound::Included(low(a.clone())),
            Bound::Excluded(high(format!("{b}\0"))),
        ),
    }
}

/// The smallest string greater than every string starting with `prefix`: the prefix with its
/// last character stepped up (UTF-8 byte order follows code point order). `None` when no such
/// string exists (empty prefix, or only `char::MAX`).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Narrows the bounds to what lies strictly after `cursor` in the query's direction.
fn narrow<T: Ord>(
    lower: Bound<T>,
    upper: Bound<T>,
    cursor: Option<T>,
    forward: bool,
) -> (Bound<T>, Bound<T>) {
    let Some(cursor) = cursor else {
        return (lower, upper);
    };
    if forward {
        let tighter = match &lower {
            Bound::Unbounded => true,
            Bound::Included(l) | Bound::Excluded(l) => cursor >= *l,
        };
        (
            if tighter {
                Bound::Excluded(cursor)
            } else {
                lower
            },
            upper,
        )
    } else {
        let tighter = match &upper {
            Bound::Unbounded => true,
            Bound::Included(u) | Bound::Excluded(u) => cursor <= *u,
        };
        (
            lower,
            if tighter {
                Bound::Excluded(cursor)
            } else {
                upper
            },
        )
    }
}

/// True when no key fits between the bounds (redb must not be given such a range).
fn is_empty<T: Ord>(lower: &Bound<T>, upper: &Bound<T>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
        _ => false,
    }
}

fn load(
    items: &impl ReadableTable<ItemKey, &'static [u8]>,
    key: &Key,
) -> StoreResult<Option<Item>> {
    let Some(value) = items
        .get((key.pk.as_str(), key.sk.as_str()))
        .map_err(backend)?
    else {
        return Ok(None);
    };
    decode(&key.pk, &key.sk, value.value()).map(Some)
}

fn encode(item: &Item) -> StoreResult<Vec<u8>> {
    let pair = |k: &Option<IndexKey>| k.as_ref().map(|k| (k.pk.clone(), k.sk.clone()));
    let stored = Stored {
        body: &item.body,
        counters: item.counters.clone(),
        gsi1: pair(&item.gsi1),
        gsi2: pair(&item.gsi2),
        expires_at: item.expires_at,
    };
    serde_json::to_vec(&stored).map_err(|e| StoreError::Backend(e.into()))
}

fn decode(pk: &str, sk: &str, bytes: &[u8]) -> StoreResult<Item> {
    let stored: StoredHead = serde_json::from_slice(bytes)
        .with_context(|| format!("corrupt item ({pk}, {sk})"))
        .map_err(StoreError::Backend)?;
    let key = |k: Option<(String, String)>| k.map(|(pk, sk)| IndexKey { pk, sk });
    Ok(Item {
        pk: pk.to_string(),
        sk: sk.to_string(),
        body: Body::in_record(bytes.to_vec()),
        counters: stored.counters,
        gsi1: key(stored.gsi1),
        gsi2: key(stored.gsi2),
        expires_at: stored.expires_at,
    })
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(anyhow::Error::new(e.into()))
}

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;
    use serde_json::json;

    use super::*;

    #[test]
    fn prefix_end_steps_the_last_char() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        // Skips the surrogate gap.
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }

    #[tokio::test]
    async fn data_persists_and_the_file_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/eider.redb");
        let table = EmbeddedTable::open(&path).unwrap();
        let item = Item::new(Key::new("a", "b"), serde_json::json!({"x": 1}))
            .with_counter("n", 3)
            .with_gsi1(IndexKey::new("i", "j"));
        table
            .transact(vec![Write::put(item.clone())])
            .await
            .unwrap();

        let second = EmbeddedTable::open(&path)
            .err()
            .expect("the file is locked");
        assert!(second.to_string().contains("already open"), "{second}");

        drop(table);
        let table = EmbeddedTable::open(&path).unwrap();
        assert_eq!(table.get(&item.key()).await.unwrap(), Some(item.clone()));
        let page = table.query(&Query::index(Index::Gsi1, "i")).await.unwrap();
        assert_eq!(page.items, vec![item]);
    }

    #[tokio::test]
    async fn purge_removes_expired_items_and_their_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let table = EmbeddedTable::open(&dir.path().join("t.redb")).unwrap();
        let old = Item::new(Key::new("p", "old"), Value::Null)
            .with_gsi1(IndexKey::new("i", "old"))
            .with_expiry(now() - 1);
        let live = Item::new(Key::new("p", "live"), Value::Null).with_expiry(now() + 60);
        table
            .transact(vec![Write::put(old), Write::put(live.clone())])
            .await
            .unwrap();

        assert_eq!(table.purge_expired().unwrap(), 1);
        assert_eq!(table.purge_expired().unwrap(), 0);
        let txn = table.db.begin_read().unwrap();
        assert_eq!(txn.open_table(ITEMS).unwrap().len().unwrap(), 1);
        assert_eq!(txn.open_table(GSI1).unwrap().len().unwrap(), 0);
        assert_eq!(table.get(&live.key()).await.unwrap(), Some(live));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_writes_share_commits_and_each_keeps_its_own_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let table = EmbeddedTable::open(&dir.path().join("t.redb")).unwrap();
        let counter = Key::new("p", "counter");
        let calls = 200;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..calls {
            let (table, counter) = (table.clone(), counter.clone());
            tasks.spawn(async move {
                match i % 4 {
                    // Allocations: each must see a distinct value.
                    0 | 1 => table
                        .update(&counter, Update::default().add("n", 1), None)
                        .await
                        .map(|item| Some(item.counter("n"))),
                    // Everyone creates the same item: exactly one wins.
                    2 => table
                        .transact(vec![Write::put_new(
                            Item::new(Key::new("p", "once"), json!({ "by": i })),
                            "exists",
                        )])
                        .await
                        .map(|()| None),
                    // Larger than 4 MB together, found only inside the commit: fails alone.
                    _ if i < 40 => table
                        .transact(
                            (0..11)
                                .map(|j| {
                                    let key = Key::new("p", format!("big{i}-{j}"));
                                    Write::put(Item::new(key, json!("x".repeat(390 * 1024))))
                                })
                                .collect(),
                        )
                        .await
                        .map(|()| None),
                    _ => table
                        .transact(vec![Write::put(Item::new(
                            Key::new("p", format!("small{i}")),
                            json!(i),
                        ))])
                        .await
                        .map(|()| None),
                }
            });
        }
        let (mut allocated, mut created, mut exists, mut invalid) = (Vec::new(), 0, 0, 0);
        while let Some(result) = tasks.join_next().await {
            match result.unwrap() {
                Ok(Some(n)) => allocated.push(n),
                Ok(None) => created += 1,
                Err(StoreError::ConditionFailed { label: "exists" }) => exists += 1,
                Err(StoreError::Invalid(_)) => invalid += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        allocated.sort();
        assert_eq!(allocated, (1..=calls as i64 / 2).collect::<Vec<_>>());
        assert_eq!((created, exists, invalid), (1 + 40, 49, 10));
        let item = table.get(&counter).await.unwrap().unwrap();
        assert_eq!(item.counter("n"), calls as i64 / 2);
        for i in (3..40).step_by(4) {
            let big = Key::new("p", format!("big{i}-0"));
            assert_eq!(table.get(&big).await.unwrap(), None);
        }
        let batches = lock(&table.commits).batches;
        assert!(
            batches < calls as u64,
            "{batches} commits for {calls} calls"
        );
    }

    #[test]
    fn narrow_keeps_the_tighter_bound() {
        let (l, u) = narrow(Bound::Included(2), Bound::Excluded(9), Some(5), true);
        assert_eq!((l, u), (Bound::Excluded(5), Bound::Excluded(9)));
        let (l, u) = narrow(Bound::Included(2), Bound::Excluded(9), Some(5), false);
        assert_eq!((l, u), (Bound::Included(2), Bound::Excluded(5)));
        assert!(is_empty(&Bound::Excluded(5), &Bound::Excluded(5)));
        assert!(!is_empty(&Bound::Included(5), &Bound::Included(5)));
    }
}
