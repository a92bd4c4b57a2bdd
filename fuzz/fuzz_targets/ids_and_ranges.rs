//! Any text through the small parsers requests go through: object ids, UID sets, the search
//! language, dates, addresses, imported password hashes, request parameters.
#![no_main]

use eider_shared::domain::messages::Selector;
use eider_shared::domain::search::{SearchQuery, UidSet, parse_q};
use eider_shared::domain::{names, password};
use eider_shared::id::ObjectId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<ObjectId>() {
        assert_eq!(id.to_string(), text.to_ascii_lowercase());
    }
    if let Some(Selector::Range(a, Some(b))) = Selector::parse(text) {
        assert!(a <= b);
    }
    let _ = UidSet::parse(text);
    let mut query = SearchQuery::default();
    parse_q(text, &mut query);
    let _ = eider_shared::time::parse_date(text);
    let _ = names::normalize_address(text, true);
    let _ = names::uview(text);
    let _ = password::check_import(text);
    let _ = password::hash_format(text);
});
