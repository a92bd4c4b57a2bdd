//! What every domain operation works over: the storage ports, the configuration and, on the
//! local server, the notifier that wakes update streams.

use std::sync::Arc;

use super::outgoing::Dispatcher;
use super::updates::{ChangeNotifier, JournalHook};
use crate::config::Config;
use crate::store::text_index::TextIndex;
use crate::store::{BlobStore, Table};

/// Who writes what search reads, each time a message is stored, moved, flagged or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchWrites {
    /// One term item per word of the message in the table (no text index).
    Terms,
    /// The change itself, into [`AppState::text_index`], right after it committed.
    Inline,
    /// Nobody here: the stream indexer applies the table's changes to the index.
    Stream,
}

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
    /// The full-text index search asks which messages match: the local server's Tantivy, or
    /// per-user indexes in the blob store (Lambda). `None` where search walks the table's term
    /// items, or in a Lambda function that never searches.
    pub text_index: Option<Arc<dyn TextIndex>>,
    /// Who keeps search's view of stored messages current.
    pub search_writes: SearchWrites,
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
            search_writes: SearchWrites::Terms,
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
        self.search_writes = SearchWrites::Inline;
        self
    }

    /// Stored messages are indexed by the stream indexer (`eider-indexer`), not by this
    /// process; search asks `index` (`None` in a function that never searches).
    pub fn with_stream_indexing(mut self, index: Option<Arc<dyn TextIndex>>) -> Self {
        self.text_index = index;
        self.search_writes = SearchWrites::Stream;
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
