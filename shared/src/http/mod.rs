//! HTTP plumbing shared by every router: application state, the parameter extractor,
//! validation with WildDuck's messages, paging, and the finishing layer.

pub mod finish;
pub mod paging;
pub mod params;
pub mod validate;

use std::sync::Arc;

use crate::config::Config;
use crate::domain::updates::{ChangeNotifier, JournalWatch};
use crate::store::{BlobStore, Table};

pub use finish::finish;
pub use params::{Params, PathParam};
pub use validate::{Str, Validator};

/// What every handler gets: the storage ports and the configuration. Built once per process
/// (per Lambda instance) and cloned cheaply into each request.
#[derive(Clone)]
pub struct AppState {
    pub table: Arc<dyn Table>,
    pub blobs: Arc<dyn BlobStore>,
    pub config: Arc<Config>,
    /// Wakes waiting update streams when a journal write commits (the local server's
    /// in-process notifier). `None` in Lambda, where streams poll the journal instead.
    pub notifier: Option<Arc<dyn ChangeNotifier>>,
}

impl AppState {
    pub fn new(table: Arc<dyn Table>, blobs: Arc<dyn BlobStore>, config: Config) -> Self {
        AppState {
            table,
            blobs,
            config: Arc::new(config),
            notifier: None,
        }
    }

    /// Update streams wait on `notifier` instead of polling, and the table is wrapped
    /// ([`JournalWatch`]) so that every committed journal write notifies it.
    pub fn with_notifier(mut self, notifier: Arc<dyn ChangeNotifier>) -> Self {
        self.table = Arc::new(JournalWatch::new(self.table, notifier.clone()));
        self.notifier = Some(notifier);
        self
    }
}

/// Logs through `tracing`: JSON lines in Lambda (CloudWatch), readable text locally.
/// `RUST_LOG` sets the filter (default `info`).
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder
            .json()
            .without_time()
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The state of a Lambda function: DynamoDB and S3 clients built once per instance.
pub async fn cloud_state() -> anyhow::Result<AppState> {
    let config = Config::from_env()?;
    let cloud = crate::config::CloudConfig::from_env()?;
    let (dynamo, s3) = crate::store::dynamo::aws_clients_from_env().await;
    let table = Arc::new(crate::store::dynamo::DynamoTable::new(dynamo, cloud.table));
    let blobs = Arc::new(crate::store::s3::S3BlobStore::new(s3, cloud.bucket));
    Ok(AppState::new(table, blobs, config))
}
