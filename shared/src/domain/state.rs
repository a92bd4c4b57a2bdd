//! What every domain operation works over: the storage ports, the configuration and, on the
//! local server, the notifier that wakes update streams.

use std::sync::Arc;

use super::updates::{ChangeNotifier, JournalHook};
use crate::config::Config;
use crate::store::{BlobStore, Table};

/// The storage ports and the configuration, built once per process (per Lambda instance) and
/// cloned cheaply into each request. The HTTP routers use it as their state.
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
    /// ([`JournalHook`]) so that every committed journal write notifies it.
    pub fn with_notifier(mut self, notifier: Arc<dyn ChangeNotifier>) -> Self {
        self.table = Arc::new(JournalHook::watch(self.table, notifier.clone()));
        self.notifier = Some(notifier);
        self
    }
}
