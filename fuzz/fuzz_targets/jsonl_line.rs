//! See `xqdb::fuzzing::jsonl_line`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xqdb::fuzzing::jsonl_line(data);
});
