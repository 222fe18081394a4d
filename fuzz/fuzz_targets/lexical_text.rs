//! See `xqdb::fuzzing::lexical_text`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xqdb::fuzzing::lexical_text(data);
});
