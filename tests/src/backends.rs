//! The storage backends tests run against, each fresh and private to one test: the embedded
//! store in a temporary folder, and DynamoDB + S3 on moto with a new table and bucket.

use std::any::Any;
use std::sync::Arc;

use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use eider_shared::store::blob_fs::FsBlobStore;
use eider_shared::store::blob_text_index::BlobTextIndex;
use eider_shared::store::dynamo::{DynamoTable, create_table};
use eider_shared::store::embedded::EmbeddedTable;
use eider_shared::store::s3::{S3BlobStore, create_bucket};
use eider_shared::store::tantivy_index::TantivyIndex;
use eider_shared::store::text_index::TextIndex;
use eider_shared::store::{BlobStore, Table};

use crate::moto;

/// A table and a blob store, plus whatever must live as long as they do.
pub struct Backend {
    /// `"embedded"` or `"moto"`, for messages.
    pub name: &'static str,
    pub table: Arc<dyn Table>,
    pub blobs: Arc<dyn BlobStore>,
    /// The full-text index search uses: Tantivy in the folder on the embedded backend (as on
    /// the local server), per-user indexes in the bucket on moto (as in Lambda).
    pub text_index: Option<Arc<dyn TextIndex>>,
    /// The temporary folder of the embedded store (removed on drop).
    _guard: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A redb file and a blob folder in a new temporary folder.
pub async fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("temporary folder");
    let table = EmbeddedTable::open(&dir.path().join("eider.redb")).expect("open the store");
    let blobs = FsBlobStore::new(dir.path().join("blobs")).expect("blob folder");
    let index = TantivyIndex::open(&dir.path().join("search-v1")).expect("open the index");
    Backend {
        name: "embedded",
        table: Arc::new(table),
        blobs: Arc::new(blobs),
        text_index: Some(Arc::new(index)),
        _guard: Box::new(dir),
    }
}

/// The embedded store in a folder the caller keeps (benchmarks that reopen it).
pub async fn embedded_at(dir: &std::path::Path) -> Backend {
    let table = EmbeddedTable::open(&dir.join("eider.redb")).expect("open the store");
    let blobs = FsBlobStore::new(dir.join("blobs")).expect("blob folder");
    let index = TantivyIndex::open(&dir.join("search-v1")).expect("open the index");
    Backend {
        name: "embedded",
        table: Arc::new(table),
        blobs: Arc::new(blobs),
        text_index: Some(Arc::new(index)),
        _guard: Box::new(()),
    }
}

/// A new table and bucket on the moto server (started on first use).
pub async fn moto() -> Backend {
    let (dynamo, s3) = moto::clients().await;
    let name = moto::unique_name("eider-test");
    create_table(&dynamo, &name)
        .await
        .expect("create the moto table");
    create_bucket(&s3, &name)
        .await
        .expect("create the moto bucket");
    let table: Arc<dyn Table> = Arc::new(DynamoTable::new(dynamo, name.clone()));
    let blobs: Arc<dyn BlobStore> = Arc::new(S3BlobStore::new(s3, name.clone()));
    // Each user's search index in the bucket, written as each change happens (the Lambda
    // functions leave that to the stream indexer: tests/tests/search_index.rs runs it).
    let cache = tempfile::tempdir().expect("temporary folder");
    let index = BlobTextIndex::new(
        table.clone(),
        eider_shared::domain::keys::search_index,
        blobs.clone(),
        cache.path(),
    );
    Backend {
        name: "moto",
        table,
        blobs,
        text_index: Some(Arc::new(index)),
        _guard: Box::new((MotoCleanup { name }, cache)),
    }
}

/// Deletes a test's moto table and bucket when the test ends: moto keeps everything in memory
/// until it exits, and the suite's tables and messages add up.
struct MotoCleanup {
    name: String,
}

impl Drop for MotoCleanup {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // The test's runtime may be shutting down: a thread with its own, waited for, so the
        // memory is free before the next test starts.
        let removal = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the moto clean-up");
            runtime.block_on(remove_from_moto(&name))
        });
        if let Ok(Err(e)) = removal.join() {
            eprintln!("moto table and bucket not removed: {e:#}");
        }
    }
}

async fn remove_from_moto(name: &str) -> anyhow::Result<()> {
    let (dynamo, s3) = moto::clients().await;
    dynamo.delete_table().table_name(name).send().await?;
    loop {
        let listed = s3.list_objects_v2().bucket(name).send().await?;
        let keys: Vec<_> = listed
            .contents()
            .iter()
            .filter_map(|object| object.key())
            .map(|key| ObjectIdentifier::builder().key(key).build())
            .collect::<Result<_, _>>()?;
        if keys.is_empty() {
            break;
        }
        let delete = Delete::builder().set_objects(Some(keys)).build()?;
        s3.delete_objects()
            .bucket(name)
            .delete(delete)
            .send()
            .await?;
    }
    s3.delete_bucket().bucket(name).send().await?;
    Ok(())
}

/// Every backend.
pub async fn all() -> Vec<Backend> {
    vec![embedded().await, moto().await]
}

impl Backend {
    /// The same backend seen through another table (a fault injector around the real one).
    pub fn with_table(self, table: Arc<dyn Table>) -> Backend {
        Backend { table, ..self }
    }

    /// The same backend with another blob store in front (fault injection).
    pub fn with_blobs(self, blobs: Arc<dyn BlobStore>) -> Backend {
        Backend { blobs, ..self }
    }
}
