//! What every domain operation works over: the storage ports, the configuration and, on the
//! local server, the notifier that wakes update streams.

use std::sync::Arc;

use super::outgoing::Dispatcher;
use super::updates::{ChangeNotifier, JournalHook};
use crate::config::Config;
use crate::store::text_index::TextIndex;
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
    /// Sends queued mail (local recipients through the delivery pipeline, others out).
    /// `None` where a function sends nothing itself: its submissions wait in the queue for
    /// the janitor.
    pub dispatcher: Option<Arc<dyn Dispatcher>>,
    /// The full-text index search asks which messages match (the local server's Tantivy).
    /// `None` in Lambda, where search walks the table's term items.
    pub text_index: Option<Arc<dyn TextIndex>>,
    /// This process's copy of the webhook list, and the bell of its local sender.
    pub webhooks: Arc<super::webhooks::Registry>,
}

impl AppState {
    pub fn new(table: Arc<dyn Table>, blobs: Arc<dyn BlobStore>, config: Config) -> Self {
        AppState {
            table,
            blobs,
            config: Arc::new(config),
            notifier: None,
            dispatcher: None,
            text_index: None,
            webhooks: Arc::default(),
        }
    }

    /// Queued mail is sent by `dispatcher`.
    pub fn with_dispatcher(mut self, dispatcher: Arc<dyn Dispatcher>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// Search asks `index` which messages match; stored messages are indexed there (and not
    /// as term items).
    pub fn with_text_index(mut self, index: Arc<dyn TextIndex>) -> Self {
        self.text_index = Some(index);
        self
    }

    /// Update streams wait on `notifier` instead of polling, and the table is wrapped
    /// ([`JournalHook`]) so that every committed journal write notifies it.
    pub fn with_notifier(mut self, notifier: Arc<dyn ChangeNotifier>) -> Self {
        self.table = Arc::new(JournalHook::watch(self.table, notifier.clone()));
        self.notifier = Some(notifier);
        self
    }
}
