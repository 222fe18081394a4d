//! See `xqdb::fuzzing::catalog_values`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xqdb::fuzzing::catalog_values(data);
});
