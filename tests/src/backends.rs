//! The storage backends tests run against, each fresh and private to one test: the embedded
//! store in a temporary folder, and DynamoDB + S3 on moto with a new table and bucket.

use std::any::Any;
use std::sync::Arc;

use eider_shared::store::blob_fs::FsBlobStore;
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
    /// The full-text index search uses (the embedded backend's, as on the local server).
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
    Backend {
        name: "moto",
        table: Arc::new(DynamoTable::new(dynamo, name.clone())),
        blobs: Arc::new(S3BlobStore::new(s3, name)),
        text_index: None,
        _guard: Box::new(()),
    }
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
