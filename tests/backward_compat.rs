//! Golden stores: `tests/golden/v1` was written by format version 1, `tests/golden/v3` by
//! format version 3 (xQG records and a query adapter too), `tests/golden/v4` by format
//! version 4 (a synced folder's file records too) and `tests/golden/v5` by format version 5
//! (a store with binary and i8 codes too) and `tests/golden/v6` by format version 6 (a query
//! adapter for Finnish queries too) and `tests/golden/v7` by format version 7 (a store with
//! a lexical index too; see `examples/make_golden_store.rs`). Every later build
//! must open a copy of each, verify it,
//! read every passage, xQG record and adapter, give the same top-3 answers it recorded, and
//! keep writing to it.

use std::path::{Path, PathBuf};
use xqdb::{Index, Passage, VerifyPolicy};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn golden(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(version)
}

/// Each golden store of `version` (copied to a scratch folder and opened with a full
/// verification), with what was recorded about it.
fn open_golden(
    version: &str,
    format: u64,
) -> Vec<(String, serde_json::Value, tempfile::TempDir, Index)> {
    let root = golden(version);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("expected.json")).unwrap())
            .unwrap();
    assert_eq!(expected["format_version"], format);
    let mut out = Vec::new();
    for (name, want) in expected["stores"].as_object().unwrap() {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&root.join(name), tmp.path());
        let index = Index::builder()
            .verify_policy(VerifyPolicy::Always)
            .open(tmp.path())
            .unwrap();
        out.push((name.clone(), want.clone(), tmp, index));
    }
    out
}

/// Every recorded passage is stored exactly as recorded, and nothing else.
fn assert_passages(name: &str, snap: &xqdb::Snapshot, want: &serde_json::Value) -> Vec<Passage> {
    let passages: Vec<Passage> = serde_json::from_value(want["passages"].clone()).unwrap();
    assert_eq!(snap.len() as usize, passages.len(), "{name}");
    for p in &passages {
        assert_eq!(
            snap.get(&p.id).unwrap().as_ref(),
            Some(p),
            "{name}: passage {}",
            p.id
        );
    }
    passages
}

/// Every recorded query gets the recorded top-3, ids and scores.
fn assert_answers(name: &str, snap: &xqdb::Snapshot, want: &serde_json::Value) {
    let queries: Vec<Vec<f32>> = serde_json::from_value(want["queries"].clone()).unwrap();
    for (q, answer) in queries.iter().zip(want["answers"].as_array().unwrap()) {
        let got: Vec<(String, f32)> = snap
            .search(q, 3)
            .unwrap()
            .into_iter()
            .map(|h| (h.id, h.score))
            .collect();
        let answer: Vec<(String, f32)> = serde_json::from_value(answer.clone()).unwrap();
        assert_eq!(got, answer, "{name}: query {q:?}");
    }
}

#[test]
fn format_v1_stores_open_verify_and_answer_as_recorded() {
    for (name, want, tmp, index) in open_golden("v1", 1) {
        let report = index.verify().unwrap();
        assert_eq!(report.segments, 1, "{name}");
        assert_eq!(report.tombstones, 1, "{name}");
        let snap = index.snapshot();
        let passages = assert_passages(&name, &snap, &want);
        assert_answers(&name, &snap, &want);
        match want["lexical_answers"].as_array() {
            Some(answers) => {
                assert!(index.verify().unwrap().lexical_postings > 0, "{name}");
                for a in answers {
                    let hits = snap
                        .search_lexical(
                            a["query"].as_str().unwrap(),
                            &xqdb::SearchOptions::new(3).query_lang("en"),
                        )
                        .unwrap();
                    let got: Vec<(String, f32)> =
                        hits.into_iter().map(|h| (h.id, h.score)).collect();
                    let want: Vec<(String, f32)> =
                        serde_json::from_value(a["hits"].clone()).unwrap();
                    assert_eq!(got, want, "{name}: {}", a["query"]);
                }
            }
            None => assert_eq!(snap.lexical_settings(), None, "{name}"),
        }
        drop(snap);
        let mut w = index.writer().unwrap();
        w.insert(
            Passage::new("new", "written by this build"),
            &[1.0, 0.0, 0.0, 0.0],
        )
        .unwrap();
        w.commit().unwrap();
        w.compact().unwrap();
        assert_eq!(index.stats().unwrap().format_version, 1, "{name}");
        // Storing a query adapter marks the store as format 3 (no later: it holds nothing of
        // format 4) in the same commit, so that builds that would ignore the adapter refuse it.
        let adapter = xqdb::distill::Adapter::from_matrix(
            4,
            (0..16)
                .map(|k| if k % 5 == 0 { 2.0 } else { 0.0 })
                .collect(),
        )
        .unwrap();
        w.set_adapter(&adapter, &Default::default()).unwrap();
        drop(w);
        drop(index);
        let index = Index::open(tmp.path()).unwrap();
        let stats = index.stats().unwrap();
        assert_eq!(
            (stats.format_version, stats.query_adapter),
            (3, true),
            "{name}"
        );
        assert_eq!(index.snapshot().adapter().unwrap().adapter, adapter);
        assert_eq!(
            index.verify().unwrap().passages as usize,
            passages.len() + 1,
            "{name}"
        );
    }
}

#[test]
fn format_v3_stores_with_xqg_records_and_an_adapter_open_as_recorded() {
    check_v3_or_later("v3", 3);
}

#[test]
fn format_v4_stores_with_synced_files_open_as_recorded() {
    check_v3_or_later("v4", 4);
}

#[test]
fn format_v5_stores_with_codes_open_as_recorded() {
    check_v3_or_later("v5", 5);
}

#[test]
fn format_v6_stores_with_per_language_query_adapters_open_as_recorded() {
    check_v3_or_later("v6", 6);
}

#[test]
fn format_v7_stores_with_a_lexical_index_open_as_recorded() {
    check_v3_or_later("v7", 7);
}

fn check_v3_or_later(version: &str, format: u64) {
    for (name, want, _tmp, index) in open_golden(version, format) {
        index.verify().unwrap();
        if name == "store-docs" {
            check_docs(&want, &index, format);
            continue;
        }
        let stats = index.stats().unwrap();
        if name == "store-codes" {
            assert_eq!(stats.codes, ["binary", "i8"]);
            assert_eq!(stats.first_pass, xqdb::FirstPass::Binary);
            assert!(stats.code_bytes > 0);
        } else {
            assert!(stats.codes.is_empty(), "{name}");
        }
        let snap = index.snapshot();
        let passages = assert_passages(&name, &snap, &want);
        assert_answers(&name, &snap, &want);
        for a in want["augmentations"].as_array().unwrap() {
            let got = snap
                .augmentation(a["id"].as_str().unwrap())
                .unwrap()
                .unwrap();
            let pv: Vec<f32> = serde_json::from_value(a["passage_vector"].clone()).unwrap();
            let qs: Vec<f32> = serde_json::from_value(a["query_sum"].clone()).unwrap();
            let queries: Vec<(String, String)> =
                serde_json::from_value(a["queries"].clone()).unwrap();
            assert_eq!(
                (got.passage_vector, got.query_sum, got.queries),
                (pv, qs, queries)
            );
        }
        match want["adapter"].as_object() {
            Some(a) => {
                let stored = snap.adapter().expect("the golden adapter");
                let w: Vec<f32> = serde_json::from_value(a["weights"].clone()).unwrap();
                assert_eq!(stored.adapter.weights(), &w[..], "{name}");
                assert_eq!(stored.info.teacher, "golden");
            }
            None => assert!(snap.adapter().is_none(), "{name}"),
        }
        match want["lang_adapters"].as_object() {
            Some(by_lang) => {
                let stored: Vec<(&str, Vec<f32>)> = snap
                    .lang_adapters()
                    .map(|(l, a)| (l, a.adapter.weights().to_vec()))
                    .collect();
                let want: Vec<(&str, Vec<f32>)> = by_lang
                    .iter()
                    .map(|(l, w)| (l.as_str(), serde_json::from_value(w.clone()).unwrap()))
                    .collect();
                assert_eq!(stored, want, "{name}");
                let fi = snap.adapter_for(Some("fi")).unwrap();
                assert_eq!(fi.info.lang.as_deref(), Some("fi"));
                assert_eq!(fi.info.lambda, Some(3.0));
            }
            None => assert_eq!(snap.lang_adapters().count(), 0, "{name}"),
        }
        drop(snap);
        let mut w = index.writer().unwrap();
        w.insert(
            Passage::new("new", "written by this build"),
            &[1.0, 0.0, 0.0, 0.0],
        )
        .unwrap();
        w.commit().unwrap();
        w.compact().unwrap();
        drop(w);
        assert_eq!(
            index.verify().unwrap().passages as usize,
            passages.len() + 1
        );
    }
}

/// The synced store: the same file records (read through `xqdb::documents`), passages and
/// answers.
fn check_docs(want: &serde_json::Value, index: &Index, format: u64) {
    let snap = index.snapshot();
    assert_passages("store-docs", &snap, want);
    assert_answers("store-docs", &snap, want);
    drop(snap);
    assert_eq!(index.stats().unwrap().format_version as u64, format);
    let files: Vec<(String, xqdb::documents::FileRecord)> =
        serde_json::from_value(want["files"].clone()).unwrap();
    assert_eq!(xqdb::documents::files(index).unwrap(), files);
    assert_eq!(index.verify().unwrap().files as usize, files.len());
}
