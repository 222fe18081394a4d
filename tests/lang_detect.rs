//! Language detection on real questions: the XOR-TyDi native questions of seven languages and
//! their English translations (`../shared/data/xor-tydi/translations.*-en.jsonl`), each
//! detected on its own. Prints the accuracy per language; the average over the eight
//! languages must reach 0.95.

use std::collections::BTreeMap;
use std::path::Path;

/// Accuracy per language of `detect` on every native question and English translation.
fn accuracy(detect: &dyn Fn(&str) -> Option<String>) -> f64 {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/xor-tydi");
    let langs = ["ar", "bn", "fi", "ja", "ko", "ru", "te"];
    let mut hits: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut confused: BTreeMap<(String, String), usize> = BTreeMap::new();
    for lang in langs {
        let file = data.join(format!("translations.{lang}-en.jsonl"));
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (the shared data folder)", file.display()));
        for line in text.lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            for (want, field) in [(lang, "native"), ("en", "en")] {
                let q = row[field].as_str().unwrap();
                let got = detect(q).unwrap_or_default();
                let e = hits.entry(want).or_default();
                e.1 += 1;
                if got == want {
                    e.0 += 1;
                } else {
                    *confused.entry((want.to_string(), got)).or_default() += 1;
                }
            }
        }
    }
    eprintln!("{:<6} {:>6} {:>8}", "lang", "n", "accuracy");
    let mut sum = 0.0;
    for (lang, (ok, n)) in &hits {
        let acc = *ok as f64 / *n as f64;
        sum += acc;
        eprintln!("{lang:<6} {n:>6} {acc:>8.4}");
    }
    let avg = sum / hits.len() as f64;
    eprintln!("{:<6} {:>6} {avg:>8.4}", "avg", "");
    let mut worst: Vec<_> = confused.into_iter().collect();
    worst.sort_by_key(|w| std::cmp::Reverse(w.1));
    eprintln!(
        "most frequent confusions: {:?}",
        &worst[..worst.len().min(8)]
    );
    assert_eq!(hits.len(), 8);
    avg
}

#[test]
fn detection_accuracy_on_xor_tydi_questions() {
    eprintln!(
        "among all {} languages:",
        xqdb::documents::detectable_languages().len()
    );
    let all = accuracy(&xqdb::documents::detect_language);
    let tags: Vec<String> = ["ar", "bn", "en", "fi", "ja", "ko", "ru", "te"]
        .map(String::from)
        .to_vec();
    let among = xqdb::documents::Detector::among(&tags).unwrap();
    eprintln!("among the eight:");
    let eight = accuracy(&|q| among.detect(q));
    assert!(eight >= 0.95, "average accuracy among the eight {eight:.4}");
    assert!(all >= 0.90, "average accuracy among all {all:.4}");
}
