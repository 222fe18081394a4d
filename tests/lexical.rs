//! BM25 parity: xqdb's analyzer and scores on real multilingual texts (XOR-TyDi questions in
//! seven languages and English, UI strings) against bm25s (method "lucene"), an independent
//! implementation, run once by `scripts/make_bm25_fixture.py` on the same terms.

use xqdb::lexical::{Analyzer, Bm25, Postings};

#[test]
fn bm25_scores_equal_the_reference_implementation() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bm25.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let analyse = |v: &serde_json::Value| -> Vec<String> {
        let terms = Analyzer::for_lang(v["lang"].as_str()).terms(v["text"].as_str().unwrap());
        let recorded: Vec<String> = serde_json::from_value(v["terms"].clone()).unwrap();
        assert_eq!(terms, recorded, "the analyzer changed: {}", v["text"]);
        terms
    };
    let mut postings = Postings::new();
    for d in fixture["docs"].as_array().unwrap() {
        postings.add(&analyse(d));
    }
    let queries = fixture["queries"].as_array().unwrap();
    let mut matched = 0;
    for q in queries {
        let got = postings.scores(&analyse(q), &Bm25::default());
        let want: Vec<f64> = serde_json::from_value(q["scores"].clone()).unwrap();
        assert_eq!(got.len(), want.len());
        for (d, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4,
                "{}: document {d}: {g} vs {w}",
                q["text"]
            );
        }
        matched += want.iter().filter(|&&w| w > 0.0).count();
    }
    // The fixture exercises real matches, in every script.
    assert!(matched > queries.len() * 3, "{matched} matches");
}
