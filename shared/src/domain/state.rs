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
    /// The change itself, into [`StateParts::text_index`], right after it committed.
    Inline,
    /// Nobody here: the stream indexer applies the table's changes to the index.
    Stream,
}

/// The storage ports and the configuration, built once per process (per Lambda instance) and
/// cloned into each request: one shared pointer, since every request clones it several times
/// (each layer holding state, the handler) and a clone per port took 3 to 8 % of a request's
/// time under load. The HTTP routers use it as their state; its parts are read through it.
#[derive(Clone)]
pub struct AppState(Arc<StateParts>);

impl std::ops::Deref for AppState {
    type Target = StateParts;

    fn deref(&self) -> &StateParts {
        &self.0
    }
}

/// What an [`AppState`] holds.
#[derive(Clone)]
pub struct StateParts {
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
        AppState(Arc::new(StateParts {
            table,
            blobs,
            config: Arc::new(config),
            notifier: None,
            dispatcher: None,
            text_index: None,
            search_writes: SearchWrites::Terms,
            webhooks: Arc::default(),
        }))
    }

    /// The parts to change, during set-up (a copy of them when another clone shares them).
    pub fn parts_mut(&mut self) -> &mut StateParts {
        Arc::make_mut(&mut self.0)
    }

    /// Queued mail is sent by `dispatcher`.
    pub fn with_dispatcher(mut self, dispatcher: Arc<dyn Dispatcher>) -> Self {
        self.parts_mut().dispatcher = Some(dispatcher);
        self
    }

    /// Search asks `index` which messages match; stored messages are indexed there (and not
    /// as term items).
    pub fn with_text_index(mut self, index: Arc<dyn TextIndex>) -> Self {
        let parts = self.parts_mut();
        parts.text_index = Some(index);
        parts.search_writes = SearchWrites::Inline;
        self
    }

    /// Stored messages are indexed by the stream indexer (`eider-indexer`), not by this
    /// process; search asks `index` (`None` in a function that never searches).
    pub fn with_stream_indexing(mut self, index: Option<Arc<dyn TextIndex>>) -> Self {
        let parts = self.parts_mut();
        parts.text_index = index;
        parts.search_writes = SearchWrites::Stream;
        self
    }

    /// Update streams wait on `notifier` instead of polling, and the table is wrapped
    /// ([`JournalHook`]) so that every committed journal write notifies it.
    pub fn with_notifier(mut self, notifier: Arc<dyn ChangeNotifier>) -> Self {
        let parts = self.parts_mut();
        parts.table = Arc::new(JournalHook::watch(parts.table.clone(), notifier.clone()));
        parts.notifier = Some(notifier);
        self
    }
}
