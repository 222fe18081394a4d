//! See `xqdb::fuzzing::model_files`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xqdb::fuzzing::model_files(data);
});
