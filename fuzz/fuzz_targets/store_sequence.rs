//! See `xqdb::fuzzing::store_sequence`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xqdb::fuzzing::store_sequence(data);
});
