//! The text index on Tantivy, in a folder of its own (the local server: `<data>/search-v1`).
//!
//! One index holds every user's messages (a `user` term narrows each query); documents and
//! queries are those of [`super::tantivy_docs`].
//!
//! Writes go through one worker thread that owns the `IndexWriter`: changes are queued, applied
//! in batches and made visible by one commit and reader reload per batch. A batch gathers what
//! arrives within [`COMMIT_DELAY`] of its first change, or less when a search is waiting:
//! [`TextIndex::settle`] asks for the commit at once and waits for it, so a caller can read
//! what it wrote. (Each commit writes a segment of several files that merges later delete; a
//! commit per upload made creating those files a third of the server's time while mail
//! arrived, see docs/benchmarks.md.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

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

/// How long a batch waits for more changes before its commit when no search asks for it.
const COMMIT_DELAY: Duration = Duration::from_millis(100);

/// What the worker's queue carries.
enum Queued {
    /// A batch of changes with the number of its queueing.
    Changes(u64, Vec<IndexChange>),
    /// A search waits: commit what is gathered now.
    Commit,
}

pub struct TantivyIndex {
    fields: Fields,
    reader: IndexReader,
    /// The worker's queue; `None` once dropped (the worker then commits and ends).
    changes: Mutex<Option<mpsc::Sender<Queued>>>,
    /// The number of the last change queued.
    queued: AtomicU64,
    /// The number of the last change visible to searches.
    committed: tokio::sync::watch::Receiver<u64>,
}

impl TantivyIndex {
    /// Opens the index in `folder`, creating it when missing. An index made before segments
    /// were sorted is rebuilt sorted from its own stored documents first (once).
    pub fn open(folder: &Path) -> anyhow::Result<TantivyIndex> {
        let (_, fields) = tantivy_docs::schema();
        finish_interrupted_sort(folder)?;
        let mut index = open_folder(folder)?;
        if !tantivy_docs::sorted_newest_first(&index) {
            drop(index);
            sort_once(folder)?;
            index = open_folder(folder)?;
        }
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
            .send(Queued::Changes(number, change))
            .map_err(|_| backend("the writer stopped"))
    }

    fn ask_for_commit(&self) -> StoreResult<()> {
        let guard = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let sender = guard.as_ref().ok_or_else(|| backend("closed"))?;
        sender
            .send(Queued::Commit)
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
        if *committed.borrow() >= target {
            return Ok(());
        }
        self.ask_for_commit()?;
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

/// Opens (or creates, sorted) the index in `folder`.
fn open_folder(folder: &Path) -> anyhow::Result<Index> {
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let directory = MmapDirectory::open(folder)
        .with_context(|| format!("cannot open the search index in {}", folder.display()))?;
    let index = Index::builder()
        .schema(tantivy_docs::schema().0)
        .settings(tantivy_docs::settings())
        .open_or_create(directory)
        .with_context(|| format!("cannot open the search index in {}", folder.display()))?;
    tantivy_docs::prepare(&index);
    Ok(index)
}

/// `<folder>.sorting` and `<folder>.unsorted`: the sorted copy [`sort_once`] builds, and the
/// old index it moves aside.
fn sort_folders(folder: &Path) -> (PathBuf, PathBuf) {
    let sibling = |suffix: &str| {
        let mut name = folder.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    (sibling(".sorting"), sibling(".unsorted"))
}

/// A crash between the two renames of [`sort_once`] leaves no index in `folder`, the old one
/// moved aside and the committed sorted copy beside it: the copy takes its place.
fn finish_interrupted_sort(folder: &Path) -> anyhow::Result<()> {
    let (sorting, unsorted) = sort_folders(folder);
    if !folder.exists() && sorting.exists() && unsorted.exists() {
        std::fs::rename(&sorting, folder)
            .with_context(|| format!("cannot move the sorted index to {}", folder.display()))?;
        std::fs::remove_dir_all(&unsorted)
            .with_context(|| format!("cannot remove {}", unsorted.display()))?;
    }
    Ok(())
}

/// Rebuilds the unsorted index in `folder` as a sorted one: its documents are copied into
/// `<folder>.sorting`, which replaces it once committed. A crash before that leaves the old
/// index (this runs again); one between the renames is finished at the next start.
fn sort_once(folder: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (sorting, unsorted) = sort_folders(folder);
    for stale in [&sorting, &unsorted] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("cannot remove {}", stale.display()))?;
        }
    }
    std::fs::create_dir_all(&sorting)
        .with_context(|| format!("cannot create {}", sorting.display()))?;
    let copied = tantivy_docs::sorted_copy(&open_folder(folder)?, &sorting, WRITER_MEMORY)
        .context("cannot copy the search index into a sorted one")?;
    std::fs::rename(folder, &unsorted)
        .with_context(|| format!("cannot move {} aside", folder.display()))?;
    std::fs::rename(&sorting, folder)
        .with_context(|| format!("cannot move the sorted index to {}", folder.display()))?;
    std::fs::remove_dir_all(&unsorted)
        .with_context(|| format!("cannot remove {}", unsorted.display()))?;
    tracing::info!(
        documents = copied,
        seconds = started.elapsed().as_secs_f64(),
        "search index sorted newest first"
    );
    Ok(())
}

/// Owns the writer: applies queued changes in batches, one commit each.
struct Worker {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    committed: tokio::sync::watch::Sender<u64>,
}

impl Worker {
    fn run(mut self, queue: mpsc::Receiver<Queued>) {
        while let Ok(first) = queue.recv() {
            let Queued::Changes(mut last, mut changes) = first else {
                continue; // nothing gathered: a commit asked for after the last one
            };
            let due = Instant::now() + COMMIT_DELAY;
            while changes.len() < MAX_BATCH {
                let wait = due.saturating_duration_since(Instant::now());
                match queue.recv_timeout(wait) {
                    Ok(Queued::Changes(number, more)) => {
                        last = number;
                        changes.extend(more);
                    }
                    // A search waits, the delay is over, or the index is closing.
                    Ok(Queued::Commit) | Err(_) => break,
                }
            }
            if let Err(e) = self.apply(changes) {
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

    fn apply(&mut self, changes: Vec<IndexChange>) -> tantivy::Result<()> {
        tantivy_docs::apply(&self.writer, &self.reader.searcher(), self.fields, changes)?;
        self.writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::text_index::IndexedMessage;

    fn message(user: ObjectId, n: u32) -> IndexedMessage {
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&(1_700_000_000 + n / 10).to_be_bytes());
        id[8..].copy_from_slice(&n.to_be_bytes());
        IndexedMessage {
            user,
            id: ObjectId::from_bytes(id),
            mailbox: ObjectId::from_bytes([1; 12]),
            thread: ObjectId::from_bytes([2; 12]),
            idate: i64::from(n),
            size: 10,
            attachments: n.is_multiple_of(2),
            deleted: false,
            terms: vec!["word".into(), format!("n{n}")],
        }
    }

    #[tokio::test]
    async fn an_index_made_before_sorting_is_sorted_once_with_every_document() {
        let data = tempfile::tempdir().unwrap();
        let folder = data.path().join("search-v1");
        let user = ObjectId::from_bytes([9; 12]);
        // An index as made before the sort setting: several commits, one document replaced.
        {
            std::fs::create_dir_all(&folder).unwrap();
            let (schema, fields) = tantivy_docs::schema();
            let index = Index::create_in_dir(&folder, schema).unwrap();
            tantivy_docs::prepare(&index);
            let reader: IndexReader = index.reader().unwrap();
            let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
            for chunk in (0..300u32).collect::<Vec<_>>().chunks(70) {
                let changes = chunk
                    .iter()
                    .rev()
                    .map(|n| IndexChange::Put(message(user, *n)))
                    .collect();
                tantivy_docs::apply(&writer, &reader.searcher(), fields, changes).unwrap();
                writer.commit().unwrap();
                reader.reload().unwrap();
            }
            let mut moved = message(user, 5);
            moved.mailbox = ObjectId::from_bytes([3; 12]);
            let changes = vec![IndexChange::Put(moved)];
            tantivy_docs::apply(&writer, &reader.searcher(), fields, changes).unwrap();
            writer.commit().unwrap();
            writer.wait_merging_threads().unwrap();
            assert!(!tantivy_docs::sorted_newest_first(&index));
        }
        let index = TantivyIndex::open(&folder).unwrap();
        assert!(tantivy_docs::sorted_newest_first(
            index.reader.searcher().index()
        ));
        let mut names: Vec<String> = std::fs::read_dir(data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["search-v1"], "nothing left beside the index");
        let query = TextQuery {
            all: vec!["word".into()],
            ..Default::default()
        };
        assert_eq!(index.count(&user, &query).await.unwrap(), 300);
        let page = IndexPage {
            after: None,
            newest_first: true,
            limit: 1000,
        };
        let ids = index.page(&user, &query, page).await.unwrap();
        let expected: Vec<ObjectId> = (0..300).rev().map(|n| message(user, n).id).collect();
        assert_eq!(ids, expected);
        let placed = index
            .placements(&user, &[message(user, 5).id])
            .await
            .unwrap();
        assert_eq!(
            placed[&message(user, 5).id].mailbox,
            ObjectId::from_bytes([3; 12])
        );
        // A crash between the renames: the sorted copy beside the old index, no index.
        drop(index);
        let (sorting, unsorted) = sort_folders(&folder);
        std::fs::rename(&folder, &sorting).unwrap();
        std::fs::create_dir_all(&unsorted).unwrap();
        finish_interrupted_sort(&folder).unwrap();
        assert!(folder.exists() && !sorting.exists() && !unsorted.exists());
        // What a later start opens is sorted already (no copy again).
        let reopened = open_folder(&folder).unwrap();
        assert!(tantivy_docs::sorted_newest_first(&reopened));
        assert_eq!(reopened.reader().unwrap().searcher().num_docs(), 300);
    }
}
