//! Cursor paging on the wire, as WildDuck's API does it: `limit` (default 20, at most 250),
//! opaque `next` / `previous` cursors, a cosmetic `page`, and `nextCursor` / `previousCursor`
//! in responses (`false` when there is no such page). The walks themselves are
//! `crate::domain::paging`'s.

use serde::Serialize;
use serde_json::Value;

use super::validate::{Str, Validator};
pub use crate::domain::paging::{Direction, PageRequest, PageResult};

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 250;

/// Whether `text` can be a cursor token: `[A-Za-z0-9_-]`, at most 1024 characters (what
/// WildDuck accepts; the listing itself then decides whether it is one of its own).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 1024
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Reads `limit`, `next`, `previous` and `page`. `next` wins over `previous`.
pub fn page_request(v: &mut Validator) -> PageRequest {
    let limit = v.integer("limit", 1, MAX_LIMIT).unwrap_or(DEFAULT_LIMIT) as usize;
    let page = v.integer("page", 0, i64::from(u32::MAX)).unwrap_or(1) as u64;
    let cursor = |v: &mut Validator, field: &str| {
        let text = v.string(field, Str::max(1024).trim())?;
        if !is_token(&text) {
            v.error(field, format!("\"{field}\" contains an invalid value"));
            return None;
        }
        Some(text)
    };
    let next = cursor(v, "next");
    let previous = cursor(v, "previous");
    let direction = match (next, previous) {
        (Some(c), _) => Direction::After(c),
        (None, Some(c)) => Direction::Before(c),
        (None, None) => Direction::First,
    };
    PageRequest {
        limit,
        direction,
        page,
    }
}

/// Adds the paging fields of a listing (`page`, `previousCursor`, `nextCursor`) to `body`.
pub fn add_paging<T>(body: &mut Value, result: &PageResult<T>, request: &PageRequest) {
    if let (Value::Object(out), Ok(Value::Object(paging))) =
        (body, serde_json::to_value(Paging::new(result, request)))
    {
        out.extend(paging);
    }
}

/// The paging fields of a listing response; a cursor is `false` when there is no such page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Paging<'a> {
    pub page: u64,
    #[serde(serialize_with = "cursor_or_false")]
    pub previous_cursor: &'a Option<String>,
    #[serde(serialize_with = "cursor_or_false")]
    pub next_cursor: &'a Option<String>,
}

impl<'a> Paging<'a> {
    pub fn new<T>(result: &'a PageResult<T>, request: &PageRequest) -> Self {
        let page = if result.previous.is_some() {
            request.page.max(1)
        } else {
            1
        };
        Paging {
            page,
            previous_cursor: &result.previous,
            next_cursor: &result.next,
        }
    }
}

fn cursor_or_false<S: serde::Serializer>(
    cursor: &&Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match cursor {
        Some(c) => serializer.serialize_str(c),
        None => serializer.serialize_bool(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_for_the_allowed_alphabet_only() {
        assert!(is_token("cWyIwMDAwMDAwMDEzIl0"));
        assert!(is_token("s-_09azAZ"));
        assert!(!is_token("not a cursor!"));
        assert!(!is_token(""));
        assert!(!is_token(&"a".repeat(1025)));
    }
}
