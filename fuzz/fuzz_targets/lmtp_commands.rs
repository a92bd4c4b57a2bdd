//! Any bytes as what an LMTP client sends: command lines, paths, SIZE parameters and the DATA
//! reader never panic (delivery itself is left out).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eider_local::lmtp::parse_for_fuzzing(data);
});
