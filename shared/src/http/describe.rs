//! Describe mode: how the API document (`openapi`) learns each route's parameters from the
//! validators themselves, so the document can't drift from what the code accepts.
//!
//! While a handler runs inside [`describe`], every [`Validator`](super::Validator) records the
//! fields it is asked for (name, type, limits, whether required) instead of reading any, and
//! its `finish()` fails, so no handler goes past its checks. The typed path extractor records
//! its parts the same way. Only the document generator enters this mode: it is a task-local
//! value, which no request can set.

use std::cell::RefCell;
use std::future::Future;

/// What a field accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldKind {
    String {
        min: usize,
        max: usize,
        /// The pattern the value must match (after trimming and lowercasing, if any).
        pattern: Option<&'static str>,
        lowercase: bool,
    },
    Boolean,
    Integer {
        min: i64,
        max: i64,
    },
    /// Strings, as an array or comma-separated.
    List {
        item_max: usize,
        max_items: Option<usize>,
    },
    /// A JSON object, or its JSON text.
    JsonObject,
    /// A date: ISO 8601 / RFC 2822 text, or milliseconds since 1970.
    Date,
    /// An RFC 3339 date, or `false` for none.
    DateOrFalse,
    /// A 24-digit hexadecimal object id.
    ObjectId,
    /// Checked by hand after reading: any JSON value.
    Any,
}

/// What a path parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    ObjectId,
    /// A message UID: a whole number from 1.
    Uid,
    /// A UID, a list `1,2,3` or a range `1:*`.
    UidSet,
    /// `ATT` and digits.
    Attachment,
}

/// One recorded field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub kind: FieldKind,
    pub required: bool,
}

/// Everything one handler asked for.
#[derive(Debug, Clone, Default)]
pub struct Description {
    pub fields: Vec<Field>,
    /// Whether unknown fields are refused (WildDuck's strict endpoints).
    pub strict: bool,
    pub path: Vec<(&'static str, PathKind)>,
}

impl Description {
    /// Records `name` as `kind`; a typed record replaces an untyped one (`raw` first, then a
    /// check by hand), otherwise the first record stands.
    fn field(&mut self, name: &str, kind: FieldKind) {
        match self.fields.iter_mut().find(|f| f.name == name) {
            Some(field) if field.kind == FieldKind::Any => field.kind = kind,
            Some(_) => {}
            None => self.fields.push(Field {
                name: name.to_string(),
                kind,
                required: false,
            }),
        }
    }
}

tokio::task_local! {
    static DESCRIBING: RefCell<Description>;
}

/// Whether the current task is describing a route.
pub fn active() -> bool {
    DESCRIBING.try_with(|_| ()).is_ok()
}

fn record(change: impl FnOnce(&mut Description)) {
    let _ = DESCRIBING.try_with(|d| change(&mut d.borrow_mut()));
}

pub(crate) fn field(name: &str, kind: FieldKind) {
    record(|d| d.field(name, kind));
}

/// A field whose absence is an error: a validator said "is required" for it (in describe
/// mode nothing is given, so exactly the required fields say so).
pub(crate) fn required(name: &str) {
    record(|d| {
        d.field(name, FieldKind::Any);
        if let Some(field) = d.fields.iter_mut().find(|f| f.name == name) {
            field.required = true;
        }
    });
}

pub(crate) fn strict() {
    record(|d| d.strict = true);
}

pub(crate) fn path_part(name: &'static str, kind: PathKind) {
    record(|d| {
        if !d.path.iter().any(|(n, _)| *n == name) {
            d.path.push((name, kind));
        }
    });
}

/// Runs `work` (a handler's request) in describe mode, and answers what it recorded.
pub async fn describe<F: Future>(work: F) -> (F::Output, Description) {
    DESCRIBING
        .scope(RefCell::new(Description::default()), async {
            let output = work.await;
            (output, DESCRIBING.with(|d| d.take()))
        })
        .await
}
