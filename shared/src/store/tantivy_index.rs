//! The text index on Tantivy, in a folder of its own (the local server: `<data>/search-v1`).
//!
//! One index holds every user's messages (a `user` term narrows each query); documents and
//! queries are those of [`super::tantivy_docs`].
//!
//! Writes go through one worker thread that owns the `IndexWriter`: changes are queued, applied
//! in batches (everything queued while the last commit ran) and made visible by one commit and
//! reader reload per batch. [`TextIndex::settle`] waits for that, so a caller can read what it
//! wrote.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};

use anyhow::Context;
use async_trait::async_trait;
use tantivy::directory::MmapDirectory;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy};

use super::StoreResult;
use super::tantivy_docs::{self, Fields, backend};
use super::text_index::{IndexChange, IndexPage, Placement, TextIndex, TextQuery};
use crate::id::ObjectId;

/// The writer's memory budget: segments are flushed past it.
const WRITER_MEMORY: usize = 64 * 1024 * 1024;
/// Changes applied in one commit at most (a bound on how long one batch holds the worker).
const MAX_BATCH: usize = 20_000;

/// A batch of changes with the number of its queueing.
type Numbered = (u64, Vec<IndexChange>);

pub struct TantivyIndex {
    fields: Fields,
    reader: IndexReader,
    /// The worker's queue; `None` once dropped (the worker then commits and ends).
    changes: Mutex<Option<mpsc::Sender<Numbered>>>,
    /// The number of the last change queued.
    queued: AtomicU64,
    /// The number of the last change visible to searches.
    committed: tokio::sync::watch::Receiver<u64>,
}

impl TantivyIndex {
    /// Opens the index in `folder`, creating it when missing.
    pub fn open(folder: &Path) -> anyhow::Result<TantivyIndex> {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let (schema, fields) = tantivy_docs::schema();
        let directory = MmapDirectory::open(folder)
            .with_context(|| format!("cannot open the search index in {}", folder.display()))?;
        let index = Index::open_or_create(directory, schema)
            .with_context(|| format!("cannot open the search index in {}", folder.display()))?;
        tantivy_docs::prepare(&index);
        let writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY).context(
            "cannot lock the search index (is another eider-local using this data folder?)",
        )?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .context("cannot read the search index")?;
        let (sender, receiver) = mpsc::channel();
        let (committed_tx, committed) = tokio::sync::watch::channel(0);
        let worker = Worker {
            writer,
            reader: Clone::clone(&reader),
            fields,
            committed: committed_tx,
        };
        std::thread::Builder::new()
            .name("eider-search-index".into())
            .spawn(move || worker.run(receiver))
            .context("cannot start the search index writer")?;
        Ok(TantivyIndex {
            fields,
            reader,
            changes: Mutex::new(Some(sender)),
            queued: AtomicU64::new(0),
            committed,
        })
    }

    fn send(&self, change: Vec<IndexChange>) -> StoreResult<()> {
        let guard = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let sender = guard.as_ref().ok_or_else(|| backend("closed"))?;
        // Numbered under the lock: the worker sees numbers in increasing order.
        let number = self.queued.fetch_add(1, Ordering::SeqCst) + 1;
        sender
            .send((number, change))
            .map_err(|_| backend("the writer stopped"))
    }
}

impl Drop for TantivyIndex {
    fn drop(&mut self) {
        // Closing the queue lets the worker commit what it has and end.
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

#[async_trait]
impl TextIndex for TantivyIndex {
    async fn apply(&self, _user: &ObjectId, changes: Vec<IndexChange>) -> StoreResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.send(changes)
    }

    async fn placements(
        &self,
        user: &ObjectId,
        ids: &[ObjectId],
    ) -> StoreResult<HashMap<ObjectId, Placement>> {
        tantivy_docs::placements(&self.reader.searcher(), self.fields, user, ids)
    }

    async fn settle(&self) -> StoreResult<()> {
        let target = self.queued.load(Ordering::SeqCst);
        let mut committed = self.committed.clone();
        committed
            .wait_for(|c| *c >= target)
            .await
            .map(|_| ())
            .map_err(|_| backend("the writer stopped"))
    }

    async fn page(
        &self,
        user: &ObjectId,
        query: &TextQuery,
        page: IndexPage,
    ) -> StoreResult<Vec<ObjectId>> {
        tantivy_docs::page(&self.reader.searcher(), self.fields, user, query, page)
    }

    async fn count(&self, user: &ObjectId, query: &TextQuery) -> StoreResult<u64> {
        tantivy_docs::count(&self.reader.searcher(), self.fields, user, query)
    }

    async fn ids_in(&self, user: &ObjectId, mailbox: &ObjectId) -> StoreResult<Vec<ObjectId>> {
        tantivy_docs::ids_in(&self.reader.searcher(), self.fields, user, mailbox)
    }
}

/// Owns the writer: applies queued changes in batches, one commit each.
struct Worker {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    committed: tokio::sync::watch::Sender<u64>,
}

impl Worker {
    fn run(mut self, changes: mpsc::Receiver<Numbered>) {
        while let Ok(first) = changes.recv() {
            let mut batch = vec![first];
            let mut size = 0;
            while size < MAX_BATCH {
                match changes.try_recv() {
                    Ok(next) => {
                        size += next.1.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            let last = batch.last().map_or(0, |(n, _)| *n);
            if let Err(e) = self.apply(batch) {
                tracing::error!(error = %e, "search index: changes not applied");
            }
            // Advance even after a failure: a waiting search must not hang (its page is
            // checked against the table anyway).
            self.committed.send_replace(last);
        }
        if let Err(e) = self.writer.commit() {
            tracing::error!(error = %e, "search index: last commit failed");
        }
    }

    fn apply(&mut self, batch: Vec<Numbered>) -> tantivy::Result<()> {
        let changes = batch.into_iter().flat_map(|(_, c)| c).collect();
        tantivy_docs::apply(&self.writer, &self.reader.searcher(), self.fields, changes)?;
        self.writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }
}
