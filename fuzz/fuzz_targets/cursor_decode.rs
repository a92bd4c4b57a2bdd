//! Any text as a paging cursor, for a table listing, an index listing inside a partition and a
//! bucketed index listing: decoding never panics, and a decoded cursor stays in the listing's
//! partition.
#![no_main]

use eider_shared::domain::paging::{Positions, decode_compact};
use eider_shared::store::Index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let table = Positions {
        index: None,
        pk: Some("USER#6b1575adb1601c1a6d2aa029"),
    };
    if let Some(cursor) = decode_compact(table, token) {
        assert_eq!(cursor.pk, "USER#6b1575adb1601c1a6d2aa029");
    }
    let index = Positions {
        index: Some(Index::Gsi1),
        pk: Some("FLAGGED#6b1575adb1601c1a6d2aa029"),
    };
    if let Some(cursor) = decode_compact(index, token) {
        assert_eq!(cursor.index.unwrap().0, "FLAGGED#6b1575adb1601c1a6d2aa029");
    }
    let buckets = Positions {
        index: Some(Index::Gsi1),
        pk: None,
    };
    let _ = decode_compact(buckets, &format!("c{token}"));
});
