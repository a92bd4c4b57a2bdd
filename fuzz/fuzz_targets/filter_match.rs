//! A filter built from the first bytes and a message from the rest: matching never panics and
//! answers the same twice.
#![no_main]

use eider_shared::domain::filters::{Filter, FilterQuery, MatchInput};
use eider_shared::id::ObjectId;
use eider_shared::mail::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let split = (data[0] as usize) % data.len().min(200);
    let (head, message) = data.split_at(split.max(1));
    let fields: Vec<String> = String::from_utf8_lossy(head)
        .split('\u{0}')
        .map(str::to_string)
        .collect();
    let field = |i: usize| fields.get(i).filter(|f| !f.is_empty()).cloned();
    let query = FilterQuery {
        from: field(0),
        to: field(1),
        subject: field(2),
        list_id: field(3),
        text: field(4),
        ha: head.get(1).map(|b| b % 2 == 0),
        size: head.get(2).map(|b| (*b as i64 - 128) * 100),
    };
    let filter = Filter {
        id: ObjectId::new(),
        user: ObjectId::new(),
        name: String::new(),
        query,
        action: Default::default(),
        disabled: false,
        meta_data: None,
        created: chrono::Utc::now(),
    };
    let input = MatchInput::of(&parse::parse(message), message.len() as u64);
    assert_eq!(filter.matches(&input), filter.matches(&input));
});
