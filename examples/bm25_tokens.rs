//! Writes the analysed texts of the BM25 parity fixture (stdout, JSON): documents and queries
//! from `../shared/data` in eight languages, with the analyzer's terms. `scripts/make_bm25_fixture.py`
//! scores them with an independent BM25 implementation; `tests/lexical.rs` checks both.
//!
//! `cargo run --example bm25_tokens > target/bm25-tokens.json`

use serde_json::json;
use xqdb::lexical::Analyzer;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let mut docs = Vec::new();
    let mut queries = Vec::new();
    for lang in ["ar", "bn", "fi", "ja", "ko", "ru", "te"] {
        let text =
            std::fs::read_to_string(root.join(format!("xor-tydi/translations.{lang}-en.jsonl")))
                .expect("the shared data");
        for (i, line) in text.lines().take(12).enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
            let (native, en) = (v["native"].as_str().unwrap(), v["en"].as_str().unwrap());
            docs.push((native.to_string(), Some(lang)));
            docs.push((en.to_string(), Some("en")));
            if i < 2 {
                queries.push((native.to_string(), Some(lang)));
            }
        }
    }
    let ui = std::fs::read_to_string(root.join("gettext/ui_strings.all7.jsonl")).expect("gettext");
    for line in ui.lines().take(10) {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        for lang in ["en", "ja", "ko", "ru"] {
            docs.push((v[lang].as_str().unwrap().to_string(), Some(lang)));
        }
    }
    queries.push(("maximum width of a column".to_string(), Some("en")));
    queries.push(("台湾".to_string(), None));
    queries.push(("타이완".to_string(), Some("ko")));
    let analyse = |(text, lang): &(String, Option<&str>)| json!({ "text": text, "lang": lang, "terms": Analyzer::for_lang(*lang).terms(text) });
    let out = json!({
        "docs": docs.iter().map(analyse).collect::<Vec<_>>(),
        "queries": queries.iter().map(analyse).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
