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

fn fixture() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bm25.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The stored index (stemming by language) gives the reference's scores too.
#[test]
fn the_stored_index_scores_equal_the_reference_implementation() {
    use xqdb::{Index, LexicalSettings, Passage, SearchOptions};
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let settings = LexicalSettings {
        stem: true,
        ..LexicalSettings::default()
    };
    let index = Index::builder()
        .dim(2)
        .lexical(settings)
        .create(dir.path())
        .unwrap();
    let docs = fixture["docs"].as_array().unwrap();
    let mut w = index.writer().unwrap();
    for (i, d) in docs.iter().enumerate() {
        let mut p = Passage::new(format!("d{i}"), d["text"].as_str().unwrap());
        if let Some(l) = d["lang"].as_str() {
            p = p.with_lang(l);
        }
        w.insert(p, &[1.0, i as f32]).unwrap();
    }
    w.commit().unwrap();
    let snap = index.snapshot();
    let report = snap.verify().unwrap();
    assert!(report.lexical_postings > 1000, "{report:?}");
    for q in fixture["queries"].as_array().unwrap() {
        let want: Vec<f64> = serde_json::from_value(q["scores"].clone()).unwrap();
        let mut options = SearchOptions::new(docs.len());
        if let Some(l) = q["lang"].as_str() {
            options = options.query_lang(l);
        }
        let hits = snap
            .search_lexical(q["text"].as_str().unwrap(), &options)
            .unwrap();
        assert_eq!(
            hits.len(),
            want.iter().filter(|&&w| w > 0.0).count(),
            "{}",
            q["text"]
        );
        for h in &hits {
            let d: usize = h.id[1..].parse().unwrap();
            let got = h.lexical_score.unwrap() as f64;
            assert!(
                (got - want[d]).abs() <= 1e-4,
                "{}: {got} vs {}",
                h.id,
                want[d]
            );
            assert_eq!(h.score, h.lexical_score.unwrap());
        }
        assert!(hits.windows(2).all(|p| p[0].score >= p[1].score));
    }
}

/// Deletes, upserts, generated queries, filters, reopening and enabling the index later
/// all keep the postings equal to the passages (verification recomputes them).
#[test]
fn postings_follow_every_change_and_survive_reopening() {
    use xqdb::xqg::Augmentation;
    use xqdb::{Filter, Index, LexicalSettings, Passage, SearchOptions};
    let dir = tempfile::tempdir().unwrap();
    let index = Index::builder()
        .dim(2)
        .xqg(xqdb::xqg::XqgProfile::default())
        .create(dir.path())
        .unwrap();
    let mut w = index.writer().unwrap();
    w.insert(
        Passage::new("a", "Disk full: error E1234 on volume one").with_lang("en"),
        &[1.0, 0.0],
    )
    .unwrap();
    w.insert(
        Passage::new("b", "東京タワーは東京にある").with_lang("ja"),
        &[0.0, 1.0],
    )
    .unwrap();
    w.commit().unwrap();
    let no_lexical = index
        .snapshot()
        .search_lexical("e1234", &SearchOptions::new(3));
    assert!(
        matches!(&no_lexical, Err(xqdb::Error::InvalidArgument(m)) if m.contains("enable")),
        "{no_lexical:?}"
    );
    // Enabling indexes what is there, with a buffered insert committed first.
    w.insert(Passage::new("c", "volume two is fine"), &[0.5, 0.5])
        .unwrap();
    assert!(w.enable_lexical(LexicalSettings::default()).unwrap());
    assert!(!w.enable_lexical(LexicalSettings::default()).unwrap());
    let ids = |q: &str, o: &SearchOptions| -> Vec<String> {
        index
            .snapshot()
            .search_lexical(q, o)
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect()
    };
    let all = SearchOptions::new(10);
    assert_eq!(ids("E1234", &all), ["a"]);
    assert_eq!(ids("volume", &all).len(), 2);
    assert_eq!(ids("タワー", &all), ["b"]);
    assert_eq!(
        ids("volume", &all.clone().filter(Filter::new().lang("en"))),
        ["a"]
    );
    let hit = &index.snapshot().search_lexical("東京", &all).unwrap()[0];
    assert_eq!(
        hit.snippet.as_deref(),
        Some("<mark>東京</mark>タワーは<mark>東京</mark>にある")
    );
    // Upsert replaces the terms; delete removes them; queries are a field of their own.
    w.upsert(Passage::new("a", "Printer jam"), &[1.0, 0.0])
        .unwrap();
    w.delete("c").unwrap();
    let aug = Augmentation::new(
        vec![0.0, 1.0],
        vec![("fi".into(), "Missä on Tokion torni?".into())],
        &[vec![0.0, 1.0]],
        false,
    );
    w.upsert_augmented(Passage::new("b", "東京タワーは東京にある"), aug)
        .unwrap();
    w.commit().unwrap();
    assert!(ids("E1234", &all).is_empty());
    assert!(ids("volume", &all).is_empty());
    assert_eq!(ids("printer", &all), ["a"]);
    let by_query = index.snapshot().search_lexical("tokion", &all).unwrap();
    assert_eq!(by_query.len(), 1);
    assert_eq!(by_query[0].id, "b");
    assert_eq!(
        by_query[0].snippet, None,
        "matched by its queries, not its text"
    );
    let report = index.verify().unwrap();
    assert_eq!(report.passages, 2);
    assert!(report.lexical_postings > 5);
    drop(w);
    drop(index);
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(
        index.snapshot().lexical_settings(),
        Some(LexicalSettings::default())
    );
    let hits = index.snapshot().search_lexical("printer", &all).unwrap();
    assert_eq!(hits[0].id, "a");
    assert_eq!(index.verify().unwrap(), report);
    assert_eq!(index.stats().unwrap().format_version, 7);
}

#[test]
fn snippets_mark_matches_escape_html_and_cut_long_texts() {
    let a = Analyzer::new();
    let q = a.terms("tag");
    assert_eq!(
        a.highlight("<b>tag</b> & more", &q, 10).as_deref(),
        Some("&lt;b&gt;<mark>tag</mark>&lt;/b&gt; &amp; more")
    );
    let long: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
    let text = long.join(" ");
    let q = a.terms("w50 w51");
    let s = a.highlight(&text, &q, 6).unwrap();
    assert!(s.starts_with("… ") && s.ends_with(" …"), "{s}");
    assert!(s.contains("<mark>w50</mark> <mark>w51</mark>"), "{s}");
    assert_eq!(a.highlight(&text, &a.terms("absent"), 6), None);
}

/// Hybrid searches fuse both lists under the same filter, report both scores where
/// computed, and refuse vectors alone and indexes without postings.
#[test]
fn hybrid_searches_filter_both_lists_and_report_both_scores() {
    use xqdb::{Filter, Fusion, Index, LexicalSettings, Passage, SearchMode, SearchOptions};
    let dir = tempfile::tempdir().unwrap();
    let index = Index::builder()
        .dim(2)
        .metric(xqdb::Metric::Dot)
        .lexical(LexicalSettings::default())
        .create(dir.path())
        .unwrap();
    let mut w = index.writer().unwrap();
    let rows = [
        ("en-near", "en", "nothing in common", [1.0, 0.0]),
        ("en-code", "en", "error E77 again", [0.2, 0.9]),
        ("fi-near", "fi", "virhe E77", [0.99, 0.1]),
        ("fi-far", "fi", "ei mitään", [0.0, 1.0]),
    ];
    for (id, lang, text, v) in rows {
        w.insert(Passage::new(id, text).with_lang(lang), &v)
            .unwrap();
    }
    w.commit().unwrap();
    let snap = index.snapshot();
    let q = [1.0, 0.0];
    for fusion in [Fusion::default(), Fusion::rrf()] {
        let options = SearchOptions::new(4)
            .mode(SearchMode::Hybrid)
            .fusion(fusion);
        let all = snap.search_hybrid("E77", &q, &options).unwrap();
        assert_eq!(all.len(), 4, "{fusion:?}");
        assert!(
            all.iter().all(|h| h.dense_score.is_some()),
            "depth covers all"
        );
        let both: Vec<&str> = all
            .iter()
            .filter(|h| h.lexical_score.is_some())
            .map(|h| h.id.as_str())
            .collect();
        assert_eq!(both.len(), 2, "{fusion:?}: {all:?}");
        assert_eq!(all[0].id, "fi-near", "close and matching: {fusion:?}");
        let en = snap
            .search_hybrid("E77", &q, &options.clone().filter(Filter::new().lang("en")))
            .unwrap();
        let ids: Vec<&str> = en.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids.len(), 2, "{fusion:?}: {ids:?}");
        assert!(
            ids.contains(&"en-near") && ids.contains(&"en-code"),
            "{ids:?}"
        );
        // Lexical scores under a filter use the whole index's statistics.
        let code = en.iter().find(|h| h.id == "en-code").unwrap();
        let unfiltered = all.iter().find(|h| h.id == "en-code").unwrap();
        assert_eq!(code.lexical_score, unfiltered.lexical_score);
    }
    let vector_only = snap.search_with(&q, &SearchOptions::new(3).mode(SearchMode::Lexical));
    assert!(matches!(vector_only, Err(xqdb::Error::InvalidArgument(_))));
    let bad = snap.search_hybrid(
        "x",
        &q,
        &SearchOptions::new(3).fusion(Fusion::Weighted {
            lexical_weight: 1.5,
        }),
    );
    assert!(matches!(bad, Err(xqdb::Error::InvalidArgument(_))));
    let plain = tempfile::tempdir().unwrap();
    let plain = Index::builder().dim(2).create(plain.path()).unwrap();
    let e = plain
        .snapshot()
        .search_hybrid("x", &q, &SearchOptions::new(3));
    assert!(matches!(e, Err(xqdb::Error::InvalidArgument(m)) if m.contains("lexical")));
}

/// The fuzz target's seeds (and a few edge cases) pass its checks in every build.
#[test]
fn the_lexical_fuzz_checks_hold_on_their_seeds() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/lexical_text");
    let mut n = 0;
    for e in std::fs::read_dir(seeds).unwrap() {
        xqdb::fuzzing::lexical_text(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 3);
    for edge in [
        &b""[..],
        b"\x00",
        b"\x05\x00\x00",
        b"\x02<<&&>>\x00<",
        b"\x03 \xe3\x81\x82 a",
    ] {
        xqdb::fuzzing::lexical_text(edge);
    }
}

/// Terms with many rows span many postings blocks: appends, deletes across blocks, upserts
/// and a row added and deleted in one commit keep the scores equal to a brute-force BM25.
#[test]
fn postings_blocks_split_and_shrink_under_many_changes() {
    use xqdb::{Index, LexicalSettings, Passage, SearchOptions};
    let dir = tempfile::tempdir().unwrap();
    let index = Index::builder()
        .dim(2)
        .lexical(LexicalSettings::default())
        .create(dir.path())
        .unwrap();
    // Live rows in row order: (id, text).
    let mut live: Vec<(String, String)> = Vec::new();
    let mut w = index.writer().unwrap();
    let put = |w: &mut xqdb::Writer, live: &mut Vec<(String, String)>, id: String, text: String| {
        live.retain(|(i, _)| *i != id);
        w.upsert(Passage::new(&id, &text), &[1.0, 0.0]).unwrap();
        live.push((id, text));
    };
    for i in 0..700 {
        put(
            &mut w,
            &mut live,
            format!("r{i}"),
            format!("common w{} r{i}", i % 10),
        );
    }
    w.commit().unwrap();
    for i in (0..700).step_by(3) {
        w.delete(&format!("r{i}")).unwrap();
        live.retain(|(id, _)| *id != format!("r{i}"));
    }
    for i in (0..700).step_by(5) {
        put(
            &mut w,
            &mut live,
            format!("r{i}"),
            format!("common changed common r{i}"),
        );
    }
    put(&mut w, &mut live, "gone".into(), "common gone".into());
    w.delete("gone").unwrap();
    live.retain(|(id, _)| id != "gone");
    w.commit().unwrap();
    for i in 700..1000 {
        put(
            &mut w,
            &mut live,
            format!("r{i}"),
            format!("common w{} r{i}", i % 7),
        );
        if i == 850 {
            w.commit().unwrap();
        }
    }
    w.commit().unwrap();
    let report = index.verify().unwrap();
    assert_eq!(report.passages as usize, live.len());
    let a = Analyzer::new();
    let mut oracle = Postings::new();
    for (_, text) in &live {
        oracle.add(&a.terms(text));
    }
    for q in ["common", "changed w3", "common w6 r999", "gone"] {
        let scores = oracle.scores(&a.terms(q), &Bm25::default());
        let mut want: Vec<(f64, usize)> = scores
            .iter()
            .enumerate()
            .filter(|(_, s)| **s > 0.0)
            .map(|(i, s)| (*s, i))
            .collect();
        want.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let hits = index
            .snapshot()
            .search_lexical(q, &SearchOptions::new(2000))
            .unwrap();
        assert_eq!(hits.len(), want.len(), "{q}");
        for (h, (s, i)) in hits.iter().zip(&want) {
            assert_eq!(h.id, live[*i].0, "{q}");
            assert!(
                (h.score as f64 - s).abs() <= 1e-4,
                "{q}: {} vs {s}",
                h.score
            );
        }
    }
}
