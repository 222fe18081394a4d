//! xQG end to end: generation on insert with the tiny mT5 test generator and the default
//! encoder (the fp32 graph where vectors are compared with texts encoded apart), fusion
//! checked against a direct computation, re-fusion against a fresh ingest,
//! imported queries, deferred generation across a reopen, determinism, and all-or-nothing
//! batches. Needs the default bundle and ONNX Runtime (`make setup`).

mod common;

use std::path::Path;
use std::sync::Arc;
use xqdb::ingest::IngestItem;
use xqdb::model::Encoder;
use xqdb::xqg::{fuse, TargetLanguage};
use xqdb::{AugmentBudget, Generator, GeneratorOptions, Index, Passage, XqgProfile};

fn generator() -> Arc<Generator> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seq2seq/mt5");
    Arc::new(Generator::open(dir, &GeneratorOptions::default()).unwrap())
}

fn profile(alpha: f32) -> XqgProfile {
    XqgProfile {
        languages: TargetLanguage::parse_list("fi,ja,te").unwrap(),
        per_language: 3,
        alpha,
        max_query_tokens: 10,
        seed: 42,
        ..Default::default()
    }
}

fn passages() -> Vec<Passage> {
    [
        "Helsinki is the capital and most populous city of Finland.",
        "Tokyo is the capital of Japan.",
        "The Godavari is the second longest river in India.",
        "Photosynthesis turns light into chemical energy.",
        "Moscow is the largest city in Russia.",
        "The printer could not be found.",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| Passage::new(format!("p{i}"), *t).with_lang("en"))
    .collect()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

fn build(dir: &Path, p: XqgProfile, enc: Arc<Encoder>) -> Index {
    Index::builder()
        .encoder(enc)
        .generator(generator())
        .xqg(p)
        .create(dir)
        .unwrap()
}

#[test]
fn generated_queries_are_stored_and_fused_as_the_formula_says() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = common::fp32_encoder_threads(2); // batch-invariant vectors
    let index = build(tmp.path(), profile(0.05), enc.clone());
    let mut w = index.writer().unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    w.insert_texts(passages(), &|p| seen.lock().unwrap().push(*p))
        .unwrap();
    w.commit().unwrap();
    drop(w);
    let seen = seen.into_inner().unwrap();
    let last = seen.last().unwrap();
    assert_eq!((last.passages, last.total), (6, 6));
    assert!(last.queries > 0 && last.queries_per_second() > 0.0);
    let snap = index.snapshot();
    for p in passages() {
        let a = snap.augmentation(&p.id).unwrap().unwrap();
        assert!(!a.pending);
        assert!(!a.queries.is_empty() && a.queries.len() <= 9);
        for (lang, q) in &a.queries {
            assert!(["fi", "ja", "te"].contains(&lang.as_str()), "{lang}");
            assert!(!q.trim().is_empty());
        }
        // Direct computation from the texts.
        let e_p = enc.encode_passages(&[p.text.as_str()]).unwrap().remove(0);
        assert!(close(&a.passage_vector, &e_p, 1e-5));
        let texts: Vec<&str> = a.queries.iter().map(|(_, t)| t.as_str()).collect();
        let mut sum = vec![0f32; e_p.len()];
        for v in enc.encode_queries(&texts).unwrap() {
            sum.iter_mut().zip(&v).for_each(|(s, x)| *s += x);
        }
        assert!(close(&a.query_sum, &sum, 1e-4));
        let want = fuse(&e_p, &sum, a.queries.len(), 0.05, true);
        let stored = snap.vector(&p.id).unwrap().unwrap();
        assert!(close(&stored, &want, 1e-5), "{}", p.id);
        // With 3 languages × 3 samples fused in, e' is no longer E(p).
        assert!(!close(&stored, &e_p, 1e-3));
    }
    let stats = index.stats().unwrap();
    assert_eq!((stats.augmented, stats.augment_backlog), (6, 0));
}

#[test]
fn re_fusion_equals_a_fresh_ingest_with_the_new_alpha() {
    let enc = common::fp32_encoder_threads(2); // batch-invariant vectors
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = build(a_dir.path(), profile(0.01), enc.clone());
    let b = build(b_dir.path(), profile(0.2), enc.clone());
    for (index, re_fuse) in [(&a, true), (&b, false)] {
        let mut w = index.writer().unwrap();
        let all = passages();
        w.insert_texts(all[..3].to_vec(), &|_| {}).unwrap();
        w.seal().unwrap(); // some rows in a segment, some in the tail
        w.insert_texts(all[3..].to_vec(), &|_| {}).unwrap();
        w.insert(Passage::new("plain", "no queries"), &[0.5; 384])
            .unwrap();
        w.commit().unwrap();
        w.delete("p1").unwrap();
        w.commit().unwrap();
        if re_fuse {
            let before = index.snapshot().vector("p0").unwrap().unwrap();
            let r = w.re_fuse(0.2, true).unwrap();
            assert_eq!((r.re_fused, r.unchanged), (5, 1));
            assert!(!close(
                &before,
                &index.snapshot().vector("p0").unwrap().unwrap(),
                1e-4
            ));
        }
    }
    let (sa, sb) = (a.snapshot(), b.snapshot());
    assert_eq!(sa.xqg_profile().unwrap().alpha, 0.2);
    assert_eq!(sa.ids().unwrap(), sb.ids().unwrap());
    for id in sa.ids().unwrap() {
        assert_eq!(sa.queries(&id).unwrap(), sb.queries(&id).unwrap(), "{id}");
        let (va, vb) = (
            sa.vector(&id).unwrap().unwrap(),
            sb.vector(&id).unwrap().unwrap(),
        );
        assert!(close(&va, &vb, 1e-5), "{id}");
    }
    a.verify().unwrap();
    let q = enc
        .encode_queries(&["Suomen pääkaupunki"])
        .unwrap()
        .remove(0);
    let ids =
        |i: &Index| -> Vec<String> { i.search(&q, 5).unwrap().into_iter().map(|h| h.id).collect() };
    assert_eq!(ids(&a), ids(&b));
}

#[test]
fn imported_queries_are_encoded_and_fused_without_a_generator() {
    let tmp = tempfile::tempdir().unwrap();
    let enc = common::fp32_encoder_threads(2); // batch-invariant vectors
    let index = Index::builder()
        .encoder(enc.clone())
        .xqg(profile(0.1))
        .create(tmp.path())
        .unwrap();
    let mut w = index.writer().unwrap();
    let queries = vec![
        ("fi".to_string(), "Mikä on Suomen pääkaupunki?".to_string()),
        ("ja".to_string(), "フィンランドの首都は？".to_string()),
    ];
    let items = vec![
        IngestItem {
            passage: Passage::new("hel", "Helsinki is the capital of Finland."),
            queries: Some(queries.clone()),
        },
        Passage::new("tok", "Tokyo is the capital of Japan.").into(),
    ];
    w.insert_items(items, &|_| {}).unwrap();
    w.commit().unwrap();
    let snap = index.snapshot();
    assert_eq!(snap.queries("hel").unwrap().unwrap(), queries);
    // Without a generator, a passage without queries keeps e' = E(p).
    assert!(snap.queries("tok").unwrap().unwrap().is_empty());
    let e_tok = enc
        .encode_passages(&["Tokyo is the capital of Japan."])
        .unwrap();
    assert!(close(
        &snap.vector("tok").unwrap().unwrap(),
        &e_tok[0],
        1e-5
    ));
    let e_hel = enc
        .encode_passages(&["Helsinki is the capital of Finland."])
        .unwrap();
    let qv = enc
        .encode_queries(&[queries[0].1.as_str(), queries[1].1.as_str()])
        .unwrap();
    let sum: Vec<f32> = (0..384).map(|i| qv[0][i] + qv[1][i]).collect();
    let want = fuse(&e_hel[0], &sum, 2, 0.1, true);
    assert!(close(&snap.vector("hel").unwrap().unwrap(), &want, 1e-5));
    // A bad imported query fails the whole call, naming the passage; nothing is buffered.
    let bad = vec![
        Passage::new("ok", "fine").into(),
        IngestItem {
            passage: Passage::new("broken", "text"),
            queries: Some(vec![("fi".into(), "   ".into())]),
        },
    ];
    let e = w.insert_items(bad, &|_| {}).unwrap_err();
    assert!(
        matches!(&e, xqdb::Error::InvalidPassage { id, .. } if id == "broken"),
        "{e}"
    );
    assert_eq!(w.pending(), 0);
    // A plain index refuses imported queries with a clear error.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = Index::builder()
        .encoder(enc)
        .create(plain_dir.path())
        .unwrap();
    let mut pw = plain.writer().unwrap();
    let e = pw
        .insert_items(
            vec![IngestItem {
                passage: Passage::new("x", "y"),
                queries: Some(queries),
            }],
            &|_| {},
        )
        .unwrap_err();
    assert!(e.to_string().contains("no xQG profile"), "{e}");
}

#[test]
fn deferred_generation_is_searchable_at_once_and_resumes_after_reopen() {
    let enc = common::fp32_encoder_threads(2); // batch-invariant vectors
    let (d_dir, n_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let deferred = XqgProfile {
        deferred: true,
        ..profile(0.05)
    };
    {
        let index = build(d_dir.path(), deferred, enc.clone());
        let mut w = index.writer().unwrap();
        w.insert_texts(passages(), &|_| {}).unwrap();
        w.commit().unwrap();
        let snap = index.snapshot();
        for p in passages() {
            let a = snap.augmentation(&p.id).unwrap().unwrap();
            assert!(a.pending && a.queries.is_empty());
            let e_p = enc.encode_passages(&[p.text.as_str()]).unwrap().remove(0);
            assert!(close(&snap.vector(&p.id).unwrap().unwrap(), &e_p, 1e-5));
        }
        assert_eq!(index.stats().unwrap().augment_backlog, 6);
        let r = w
            .augment(&AugmentBudget {
                max_passages: 2,
                per_commit: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!((r.augmented, r.remaining), (2, 4));
        assert!(r.queries > 0);
    }
    // Reopen (the generator is loaded from the recorded folder) and finish.
    let index = Index::open(d_dir.path()).unwrap();
    let s = index.stats().unwrap();
    assert_eq!((s.augmented, s.augment_backlog), (2, 4));
    let mut w = index.writer().unwrap();
    let r = w.augment(&AugmentBudget::default()).unwrap();
    assert_eq!((r.augmented, r.remaining), (4, 0));
    assert_eq!(w.augment(&AugmentBudget::default()).unwrap().augmented, 0);
    drop(w);
    // The result equals generating at insert time (same seed, same queries, same vectors).
    let now = build(n_dir.path(), profile(0.05), enc);
    let mut w = now.writer().unwrap();
    w.insert_texts(passages(), &|_| {}).unwrap();
    w.commit().unwrap();
    let (a, b) = (index.snapshot(), now.snapshot());
    for p in passages() {
        assert_eq!(a.queries(&p.id).unwrap(), b.queries(&p.id).unwrap());
        let (va, vb) = (
            a.vector(&p.id).unwrap().unwrap(),
            b.vector(&p.id).unwrap().unwrap(),
        );
        assert!(close(&va, &vb, 1e-5), "{}", p.id);
    }
    index.verify().unwrap();
}

#[test]
fn same_seed_same_queries_on_any_thread_count_and_batch() {
    let (x, y) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = build(x.path(), profile(0.05), common::default_encoder_threads(1));
    let b = build(y.path(), profile(0.05), common::default_encoder_threads(2));
    let all = passages();
    let mut w = a.writer().unwrap();
    w.insert_texts(all.clone(), &|_| {}).unwrap();
    w.commit().unwrap();
    let mut w = b.writer().unwrap();
    for p in all.iter().rev() {
        w.insert_texts(vec![p.clone()], &|_| {}).unwrap();
    }
    w.commit().unwrap();
    for p in &all {
        let qa = a.snapshot().queries(&p.id).unwrap();
        assert_eq!(qa, b.snapshot().queries(&p.id).unwrap());
    }
    // Another seed gives other queries.
    let z = tempfile::tempdir().unwrap();
    let c = build(
        z.path(),
        XqgProfile {
            seed: 7,
            ..profile(0.05)
        },
        common::default_encoder_threads(2),
    );
    let mut w = c.writer().unwrap();
    w.insert_texts(all.clone(), &|_| {}).unwrap();
    w.commit().unwrap();
    let differ = all
        .iter()
        .filter(|p| a.snapshot().queries(&p.id).unwrap() != c.snapshot().queries(&p.id).unwrap())
        .count();
    assert!(differ >= 4, "only {differ} passages changed with the seed");
}

#[test]
fn passages_augmented_apart_store_what_an_insert_stores() {
    // What a worker of a cluster job computes (`augment_passages`, in other batches, the
    // deferred flag ignored), staged with `insert_augmented`, equals an insert.
    let (x, y) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let enc = common::fp32_encoder_threads(2);
    let local = build(x.path(), profile(0.05), enc.clone());
    let mut w = local.writer().unwrap();
    w.insert_texts(passages(), &|_| {}).unwrap();
    w.commit().unwrap();
    let g = generator();
    let worker_profile = XqgProfile {
        deferred: true,
        ..profile(0.05)
    };
    let mut apart = Vec::new();
    for part in passages().chunks(4).rev() {
        let done =
            xqdb::ingest::augment_passages(&enc, &g, &worker_profile, part.to_vec(), &|_| {})
                .unwrap();
        apart.extend(done);
    }
    let remote = build(y.path(), profile(0.05), enc.clone());
    let mut w = remote.writer().unwrap();
    for (p, a) in apart {
        assert!(!a.pending && !a.queries.is_empty());
        w.insert_augmented(p, a).unwrap();
    }
    w.commit().unwrap();
    let (l, r) = (local.snapshot(), remote.snapshot());
    for p in passages() {
        assert_eq!(l.queries(&p.id).unwrap(), r.queries(&p.id).unwrap());
        let (vl, vr) = (
            l.vector(&p.id).unwrap().unwrap(),
            r.vector(&p.id).unwrap().unwrap(),
        );
        assert!(close(&vl, &vr, 1e-5), "{}", p.id);
    }
    // Bad passages are refused as on insert, naming them.
    let mut bad = passages();
    bad[1].text = " ".into();
    let e = xqdb::ingest::augment_passages(&enc, &g, &worker_profile, bad, &|_| {}).unwrap_err();
    assert!(e.to_string().contains("p1"), "{e}");
    let e = xqdb::ingest::augment_passages(
        &enc,
        &g,
        &worker_profile,
        vec![passages()[0].clone(); 2],
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(e, xqdb::Error::DuplicateId { .. }), "{e}");
}

#[test]
fn a_different_generator_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    build(
        tmp.path(),
        profile(0.05),
        common::default_encoder_threads(1),
    );
    let t5 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seq2seq/t5");
    let other = Arc::new(Generator::open(t5, &GeneratorOptions::default()).unwrap());
    let e = Index::builder()
        .generator(other)
        .open(tmp.path())
        .unwrap_err();
    assert!(matches!(e, xqdb::Error::ModelMismatch { .. }), "{e}");
}

#[test]
fn the_cli_imports_generated_queries_shows_them_and_refuses() {
    common::default_encoder_threads(1); // fails with the set-up command when the default bundle is missing
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let dir = dir.to_str().unwrap();
    let created = common::xqdb_json(&["init", dir, "--xqg", "--alpha", "0.1"]);
    assert_eq!(created["xqg"]["per_language"], 5);
    let file = tmp.path().join("corpus.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"id":"hel","title":"Helsinki","text":"Helsinki is the capital of Finland.","generated_queries":{"fi":["Mikä on Suomen pääkaupunki?"],"te":["ఫిన్లాండ్ రాజధాని ఏది?"]}}"#,
            "\n",
            r#"{"id":"tok","text":"Tokyo is the capital of Japan.","generated_queries":{"ja":["日本の首都はどこですか？"]}}"#,
            "\n"
        ),
    )
    .unwrap();
    assert_eq!(
        common::xqdb_json(&["add", dir, file.to_str().unwrap()])["added"],
        2
    );
    let q = common::xqdb_json(&["queries", dir, "hel", "nope"]);
    assert_eq!(q["missing"][0], "nope");
    let hel = q["passages"]["hel"]["queries"].as_array().unwrap();
    assert_eq!(hel.len(), 2);
    assert_eq!(hel[0]["lang"], "fi");
    assert_eq!(hel[1]["text"], "ఫిన్లాండ్ రాజధాని ఏది?");
    let s = common::xqdb_json(&["stats", dir]);
    assert_eq!(
        (s["augmented"].as_u64(), s["augment_backlog"].as_u64()),
        (Some(2), Some(0))
    );
    let before = common::xqdb_json(&["search", dir, "ఫిన్లాండ్ రాజధాని", "-k", "1"]);
    assert_eq!(before["hits"][0]["id"], "hel");
    let r = common::xqdb_json(&["re-fuse", dir, "--alpha", "0.2"]);
    assert_eq!(r["re_fused"], 2);
    // The former name of the command still works (one release).
    let r = common::xqdb_json(&["refuse", dir, "--alpha", "0.3"]);
    assert_eq!(r["re_fused"], 2);
    let after = common::xqdb_json(&["search", dir, "ఫిన్లాండ్ రాజధాని", "-k", "1"]);
    assert_eq!(after["hits"][0]["id"], "hel");
    assert!(
        after["hits"][0]["score"].as_f64() > before["hits"][0]["score"].as_f64(),
        "more weight on the Telugu query raises the Telugu match"
    );
    assert!(
        (common::xqdb_json(&["stats", dir])["xqg_alpha"]
            .as_f64()
            .unwrap()
            - 0.3)
            .abs()
            < 1e-6
    );
}
