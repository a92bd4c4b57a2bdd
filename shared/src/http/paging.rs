//! Cursor paging on the wire, as WildDuck's API does it: `limit` (default 20, at most 250),
//! opaque `next` / `previous` cursors, a cosmetic `page`, and `nextCursor` / `previousCursor`
//! in responses (`false` when there is no such page). The walks themselves are
//! `crate::domain::paging`'s.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::validate::{Str, Validator};
pub use crate::domain::paging::{Direction, PageRequest, PageResult};
use crate::store::Cursor;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 250;

/// Encodes a cursor as WildDuck clients expect: `[A-Za-z0-9_-]`, at most 1024 characters.
pub fn encode_cursor(cursor: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

pub fn decode_cursor(text: &str) -> Option<Cursor> {
    if text.len() > 1024 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Reads `limit`, `next`, `previous` and `page`. `next` wins over `previous`.
pub fn page_request(v: &mut Validator) -> PageRequest {
    let limit = v.integer("limit", 1, MAX_LIMIT).unwrap_or(DEFAULT_LIMIT) as usize;
    let page = v.integer("page", 0, i64::from(u32::MAX)).unwrap_or(1) as u64;
    let cursor = |v: &mut Validator, field: &str| {
        let text = v.string(field, Str::max(1024).trim())?;
        let decoded = decode_cursor(&text);
        if decoded.is_none() {
            v.error(field, format!("\"{field}\" contains an invalid value"));
        }
        decoded
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

/// The paging fields of a listing response.
pub fn paging_json<T>(result: &PageResult<T>, request: &PageRequest) -> Value {
    let cursor = |c: &Option<Cursor>| match c {
        Some(c) => Value::String(encode_cursor(c)),
        None => Value::Bool(false),
    };
    let page = if result.previous.is_some() {
        request.page.max(1)
    } else {
        1
    };
    json!({
        "page": page,
        "previousCursor": cursor(&result.previous),
        "nextCursor": cursor(&result.next),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_in_the_allowed_alphabet() {
        let cursor = Cursor {
            pk: "USER#1".into(),
            sk: "PROFILE".into(),
            index: Some(("USERS#a".into(), "alice".into())),
        };
        let text = encode_cursor(&cursor);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
        assert_eq!(decode_cursor(&text), Some(cursor));
        assert_eq!(decode_cursor("not a cursor!"), None);
        assert_eq!(decode_cursor("abcd"), None);
    }
}
