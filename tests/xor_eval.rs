//! The XOR-Retrieve scorer against the official script, and the nltk `word_tokenize` port
//! against nltk itself, on fixtures recorded by scripts/make_xor_fixtures.py (nltk 3.10.4
//! with NLTK's English Punkt parameters; the official evals/eval_xor_retrieve.py).

mod common;

use sha2::Digest;
use std::path::{Path, PathBuf};
use xqdb::eval::nltk::word_tokenize;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xor")
}

fn lines(name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(fixtures().join(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn word_tokenize_matches_nltk_on_real_text() {
    let rows = lines("tokens.jsonl");
    assert!(rows.len() > 9000);
    let (mut same, mut tokens) = (0, 0);
    let mut bad = Vec::new();
    for r in &rows {
        let text = r["text"].as_str().unwrap();
        let got = word_tokenize(text);
        let h = format!("{:x}", sha2::Sha256::digest(got.join("\n").as_bytes()));
        tokens += got.len();
        if h == r["sha256"].as_str().unwrap() {
            same += 1;
        } else if bad.len() < 10 {
            bad.push(format!("{text:?} -> {got:?} (nltk: {} tokens)", r["n"]));
        }
    }
    eprintln!(
        "word_tokenize parity: {same}/{} texts token-for-token identical ({tokens} tokens)",
        rows.len()
    );
    assert!(
        bad.is_empty(),
        "texts that differ from nltk:\n{}",
        bad.join("\n")
    );
}

#[test]
fn r_at_kt_equals_the_official_script_to_the_last_digit() {
    let pool: Vec<String> = lines("pool.jsonl")
        .into_iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let predictions: Vec<serde_json::Value> = lines("predictions.jsonl")
        .into_iter()
        .map(|p| {
            let ctxs: Vec<&str> = p["ctxs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| pool[i.as_u64().unwrap() as usize].as_str())
                .collect();
            serde_json::json!({ "id": p["id"], "lang": p["lang"], "ctxs": ctxs })
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let pred_file = tmp.path().join("predictions.json");
    std::fs::write(&pred_file, serde_json::to_string(&predictions).unwrap()).unwrap();
    let questions = fixtures().join("questions.jsonl");
    let got = common::xqdb_json(&[
        "eval",
        "xor",
        "--questions",
        questions.to_str().unwrap(),
        "--predictions",
        pred_file.to_str().unwrap(),
    ]);
    let official: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("official.json")).unwrap())
            .unwrap();
    let bits = |s: &serde_json::Value| s.as_str().unwrap().parse::<f64>().unwrap().to_bits();
    for (cutoff, key) in [("2000", "R@2kt"), ("5000", "R@5kt")] {
        let want = &official[cutoff];
        let have = &got[key];
        let (wl, hl) = (
            want["languages"].as_array().unwrap(),
            have["languages"].as_array().unwrap(),
        );
        assert_eq!(wl.len(), hl.len(), "{key}: languages");
        for (w, h) in wl.iter().zip(hl) {
            assert_eq!(w["lang"], h["lang"], "{key}");
            assert_eq!(w["count"], h["count"], "{key} {}", w["lang"]);
            assert_eq!(
                bits(&w["score"]),
                h["score"].as_f64().unwrap().to_bits(),
                "{key} {}: {} vs {}",
                w["lang"],
                w["score"],
                h["score"]
            );
        }
        assert_eq!(
            bits(&want["macro_average"]),
            have["macro_average"].as_f64().unwrap().to_bits(),
            "{key} macro average: {} vs {}",
            want["macro_average"],
            have["macro_average"]
        );
        eprintln!(
            "{key}: macro average {} (official {})",
            have["macro_average"], want["macro_average"]
        );
    }
    // The answers sit at different depths: the two cutoffs must disagree somewhere.
    assert_ne!(
        official["2000"]["macro_average"],
        official["5000"]["macro_average"]
    );
}

#[test]
fn eval_xor_retrieves_with_an_index_and_scores_what_it_wrote() {
    let dir = xqdb::ModelBundle::default_dir();
    assert!(
        dir.join("xqdb-bundle.json").exists(),
        "the default model bundle is missing at {}: run `make setup` first",
        dir.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_xqdb");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let idx = tmp.path().join("idx");
    run(&["init".as_ref(), idx.as_os_str(), "--json".as_ref()]);
    // The first 200 composed passages of the fixture pool as the collection.
    let corpus = tmp.path().join("corpus.jsonl");
    let rows: Vec<String> = lines("pool.jsonl")
        .into_iter()
        .take(200)
        .enumerate()
        .map(|(i, t)| serde_json::json!({ "id": format!("p{i}"), "text": t }).to_string())
        .collect();
    std::fs::write(&corpus, rows.join("\n")).unwrap();
    run(&[
        "add".as_ref(),
        idx.as_os_str(),
        corpus.as_os_str(),
        "--json".as_ref(),
    ]);
    let questions = fixtures().join("questions.jsonl");
    let preds = tmp.path().join("preds.json");
    let by_index = run(&[
        "eval".as_ref(),
        "xor".as_ref(),
        "--json".as_ref(),
        "--questions".as_ref(),
        questions.as_os_str(),
        "--index".as_ref(),
        idx.as_os_str(),
        "-k".as_ref(),
        "20".as_ref(),
        "--write-predictions".as_ref(),
        preds.as_os_str(),
    ]);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&preds).unwrap()).unwrap();
    let written = written.as_array().unwrap();
    assert_eq!(written.len(), 350);
    assert!(written
        .iter()
        .all(|p| p["ctxs"].as_array().unwrap().len() == 20));
    let by_file = run(&[
        "eval".as_ref(),
        "xor".as_ref(),
        "--json".as_ref(),
        "--questions".as_ref(),
        questions.as_os_str(),
        "--predictions".as_ref(),
        preds.as_os_str(),
    ]);
    assert_eq!(by_index, by_file);
    // 20 passages of ~150 tokens pass 2,000 tokens: the two cutoffs see different text.
    let langs = by_index["R@2kt"]["languages"].as_array().unwrap();
    assert_eq!(langs.len(), 7);
}
