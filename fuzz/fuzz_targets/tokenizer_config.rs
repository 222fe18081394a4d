//! A `tokenizer.json` from a model bundle: xqdb's loader must give an error, never panic,
//! whatever the bytes. The tokenizers library panics on some malformed files; the loader
//! catches that, so this target lets panics unwind (libFuzzer's hook would abort first) and
//! fails only on a panic that escapes the loader or the encoding of a text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let path = std::path::Path::new("tokenizer.json");
    if let Ok(t) = xqdb::model::parse_tokenizer(data, path) {
        let r = std::panic::catch_unwind(|| {
            let _ = t.encode(xqdb::model::TOKENIZER_PROBE, true);
        });
        assert!(r.is_ok(), "encoding with a tokenizer that loaded panicked");
    }
});
