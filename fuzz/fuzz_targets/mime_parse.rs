//! Any bytes as a message: parsing (addresses, subject, text, html, attachments with their
//! byte ranges, thread references, search terms) must not panic, and every attachment's range
//! must lie inside the message.
#![no_main]

use eider_shared::mail::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = parse::parse(data);
    for attachment in &parsed.attachments {
        assert!(attachment.body_start <= attachment.body_end);
        assert!(attachment.body_end as usize <= data.len());
        let body = &data[attachment.body_start as usize..attachment.body_end as usize];
        let _ = parse::decode_body(body, &attachment.transfer_encoding);
    }
    let _ = eider_shared::domain::filters::MatchInput::of(&parsed, data.len() as u64);
});
