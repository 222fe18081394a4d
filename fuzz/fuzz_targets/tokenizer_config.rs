//! A `tokenizer.json` from a model bundle: the tokenizers crate must give an error, not
//! panic, on any bytes (xqdb turns its errors into `Error::Model`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = tokenizers::Tokenizer::from_bytes(data) {
        let _ = t.encode("Mikä on Suomen pääkaupunki? フィンランドの首都", true);
    }
});
