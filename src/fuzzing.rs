//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz). Each takes arbitrary bytes,
//! must never panic except on a broken invariant, and checks what it can: codecs round
//! trip, parsers either accept or give an error, and an in-memory store agrees with a
//! plain map. Not part of the supported API.

use crate::store::{self, SegmentRecordCodec};
use crate::xqg::{Augmentation, XqgProfile};
use crate::{Index, Metric, Passage};
use std::collections::BTreeMap;

/// Catalog values: passage, xQG and segment records, and the stored xQG profile.
pub fn catalog_values(data: &[u8]) {
    if let Ok(p) = store::decode_passage(data) {
        let meta = p.meta.as_ref().map(|m| m.to_string());
        let once = store::encode_passage(&p, meta.as_deref());
        let again = store::decode_passage(&once).expect("a re-encoded passage decodes");
        assert_eq!(store::encode_passage(&again, meta.as_deref()), once);
        assert_eq!(again.id, p.id);
        assert_eq!(again.text, p.text);
    }
    let _ = store::decode_passage_meta(data);
    if let Ok(a) = store::decode_augmentation(data) {
        assert_eq!(
            store::encode_augmentation(&a),
            data,
            "xQG records are canonical"
        );
    }
    if let Ok(r) = SegmentRecordCodec::decode(data) {
        let again = SegmentRecordCodec::decode(&SegmentRecordCodec::encode(&r)).expect("decodes");
        assert_eq!(again, r);
    }
    if let Ok((a, info)) = crate::distill::Adapter::from_bytes(data) {
        let again = crate::distill::Adapter::from_bytes(&a.to_bytes(&info))
            .expect("a re-encoded query adapter record decodes");
        assert_eq!(again, (a, info));
    }
    if let Ok(p) = serde_json::from_slice::<XqgProfile>(data) {
        if p.validate().is_ok() {
            let json = serde_json::to_string(&p).expect("serialises");
            let again: XqgProfile = serde_json::from_str(&json).expect("parses");
            assert_eq!(again, p);
        }
    }
}

/// Model files: a bundle manifest, a seq2seq `config.json` and a generator's
/// `target_vocab.json`.
pub fn model_files(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("/bundle/xqdb-bundle.json");
        if let Ok(m) = crate::model::Manifest::parse(text, path) {
            assert!(m.dim > 0 && m.dim <= crate::types::MAX_DIM);
            for rel in [&m.model, &m.tokenizer].into_iter().chain(m.files.keys()) {
                let p = std::path::Path::new(rel);
                assert!(p
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))));
            }
        }
        let _ = crate::model::check_config(text);
    }
    for (vocab, eos) in [(1000, 1), (250_112, 2)] {
        if let Ok(ids) = crate::model::check_target_vocab(data, vocab, eos) {
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            assert!(ids.binary_search(&eos).is_ok() && (*ids.last().unwrap() as usize) < vocab);
        }
    }
}

/// One `xqdb add` line, parsed and stored in an in-memory index with an xQG profile.
pub fn jsonl_line(data: &[u8]) {
    let Ok(Some(row)) = crate::ingest::jsonl::parse_line(data) else {
        return;
    };
    let index = Index::builder()
        .dim(4)
        .metric(Metric::Dot)
        .xqg(XqgProfile {
            normalize: false,
            ..Default::default()
        })
        .threads(1)
        .in_memory()
        .expect("in-memory index");
    let mut w = index.writer().expect("writer");
    let passage = row.passage.clone();
    let r = match (row.vector, row.queries) {
        (Some(v), _) => w.insert(row.passage, &v),
        (None, Some(q)) => {
            let qv = vec![vec![0.0, 1.0, 0.0, 0.0]; q.len()];
            let a = Augmentation::new(vec![1.0, 0.0, 0.0, 0.0], q, &qv, false);
            w.insert_augmented(row.passage, a)
        }
        (None, None) => w.insert(row.passage, &[1.0, 0.0, 0.0, 0.0]),
    };
    if r.is_ok() {
        w.commit().expect("commit in memory");
        let got = index.get(&passage.id).expect("get").expect("stored");
        assert_eq!(got.text, passage.text);
        assert_eq!(got.title, passage.title);
        assert_eq!(got.lang, passage.lang);
    } else {
        assert_eq!(w.pending(), 0, "a refused row leaves nothing buffered");
    }
}

/// A sequence of store operations on an in-memory index, checked against a map.
pub fn store_sequence(data: &[u8]) {
    let index = Index::builder()
        .dim(4)
        .metric(Metric::Dot)
        .seal_rows(5)
        .direct_segment_rows(4)
        .threads(1)
        .in_memory()
        .expect("in-memory index");
    let mut w = index.writer().expect("writer");
    let mut committed: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut pending = committed.clone();
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let id = format!("p{}", (op >> 3) % 16);
        match op % 8 {
            0..=2 => {
                let v: Vec<f32> = (0..4)
                    .map(|_| bytes.next().unwrap_or(0) as i8 as f32)
                    .collect();
                w.upsert(Passage::new(&id, "t"), &v).expect("upsert");
                pending.insert(id, v);
            }
            3 => {
                let existed = w.delete(&id).expect("delete");
                assert_eq!(existed, pending.remove(&id).is_some());
            }
            4 => {
                w.commit().expect("commit");
                committed = pending.clone();
            }
            5 => {
                w.seal().expect("seal");
                committed = pending.clone();
            }
            6 => {
                w.compact().expect("compact");
                committed = pending.clone();
            }
            _ => {
                w.rollback();
                pending = committed.clone();
            }
        }
        let snap = index.snapshot();
        let ids = snap.ids().expect("ids");
        assert_eq!(ids, committed.keys().cloned().collect::<Vec<_>>());
        let q = [1.0, -2.0, 3.0, 0.5];
        let hits = snap.search(&q, 3).expect("search");
        let dot = |v: &[f32]| v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>();
        let mut want: Vec<f32> = committed.values().map(|v| dot(v)).collect();
        want.sort_by(|a, b| b.total_cmp(a));
        want.truncate(3);
        let got: Vec<f32> = hits.iter().map(|h| h.score).collect();
        assert_eq!(got, want, "top-3 scores");
        for h in &hits {
            assert_eq!(h.score, dot(&committed[&h.id]));
        }
    }
}

/// A document's bytes (the first byte picks text, Markdown or HTML): extraction and cutting
/// into passages never panic, and every passage is non-empty, within the word limit the
/// fuzzer's "tokenizer" sets (unless it is one word), and has a byte range on character
/// boundaries of the source.
#[cfg(feature = "documents")]
pub fn document_text(data: &[u8]) {
    use crate::documents::{ChunkOptions, Kind};
    use unicode_segmentation::UnicodeSegmentation;
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let kind = [Kind::Text, Kind::Markdown, Kind::Html, Kind::Mdx][pick as usize % 4];
    // Any bytes: decoded (or refused) with a map into them that never goes backwards or past
    // their end.
    if let Ok(d) = crate::documents::decode::decode(rest, kind, None) {
        let mut previous = 0;
        for at in d.text.char_indices().map(|(i, _)| i).chain([d.text.len()]) {
            let original = d.original(at);
            assert!(
                previous <= original && original <= rest.len(),
                "{at} → {original}"
            );
            previous = original;
        }
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let chunking = ChunkOptions {
        target_words: 1 + (pick as usize / 3) % 40,
        max_words: 60,
        overlap_sentences: (pick as usize / 120) % 2,
    };
    let limit = 20 + pick as usize % 30;
    let detector = crate::documents::Detector::default();
    let passages = crate::documents::passages_of(
        "f",
        kind,
        text,
        &chunking,
        &Default::default(),
        None,
        &detector,
        &mut |t| Ok(t.unicode_words().count() <= limit),
    )
    .expect("the fuzz tokenizer never fails");
    for p in passages {
        assert!(!p.text.trim().is_empty());
        let words = p.text.unicode_words().count();
        assert!(words <= limit || words == 1, "{words} words over {limit}");
        let m = p.meta.expect("document passages have metadata");
        let (s, e) = (
            m["start"].as_u64().unwrap() as usize,
            m["end"].as_u64().unwrap() as usize,
        );
        assert!(s <= e && e <= text.len(), "{s}..{e} of {}", text.len());
        assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
    }
}

/// Arbitrary bytes as a postings block (decoded or refused, never a panic), then as text:
/// a passage and a keyword query (split at the first NUL; the first byte picks the language
/// and whether to stem): analysis and snippets never panic, a snippet
/// is the text with marks (once tags and escapes are undone), and an in-memory index that
/// stores the passage verifies and finds it by its own text.
#[cfg(feature = "lexical")]
pub fn lexical_text(data: &[u8]) {
    use crate::lexical::Analyzer;
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    // The bytes as a postings block: refused, or decoded to postings that encode back to a
    // block decoding to the same postings.
    let mut block = Vec::new();
    if crate::lexical::blocks::decode(pick as u64, rest, &mut block).is_ok() {
        let mut again = Vec::new();
        crate::lexical::blocks::encode(&block, &mut again);
        let mut back = Vec::new();
        crate::lexical::blocks::decode(pick as u64, &again, &mut back).expect("re-encoded block");
        assert_eq!(back, block);
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (passage, query) = text.split_once('\0').unwrap_or((text, text));
    let lang = ["en", "fi", "ru", "ar", "ja", "te"][pick as usize % 6];
    let stem = pick & 0x80 != 0;
    let analyzer = if stem {
        Analyzer::for_lang(Some(lang))
    } else {
        Analyzer::new()
    };
    let terms = analyzer.terms(passage);
    assert!(terms.iter().all(|t| !t.is_empty()));
    let q = analyzer.terms(query);
    if let Some(s) = analyzer.highlight(passage, &q, 1 + pick as usize % 40) {
        assert!(s.contains("<mark>"));
        let plain = s
            .replace("<mark>", "")
            .replace("</mark>", "")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        let core = plain.trim_start_matches("… ").trim_end_matches(" …");
        assert!(passage.contains(core), "{core:?} is not in the passage");
    }
    if passage.trim().is_empty() || passage.len() > 4096 {
        return;
    }
    let index = Index::builder()
        .dim(2)
        .metric(Metric::Dot)
        .lexical(crate::LexicalSettings {
            stem,
            ..Default::default()
        })
        .in_memory()
        .expect("in-memory index");
    let mut w = index.writer().expect("writer");
    w.insert(Passage::new("p", passage).with_lang(lang), &[1.0, 0.0])
        .expect("insert");
    w.commit().expect("commit");
    let report = index.verify().expect("verify");
    let unique: std::collections::BTreeSet<&String> = terms.iter().collect();
    assert_eq!(report.lexical_postings, unique.len() as u64);
    if !terms.is_empty() {
        // Searched by its own text (analysed as the passage was: stemming is not idempotent,
        // so a stemmed term is no query for itself).
        let options = crate::SearchOptions::new(1).query_lang(lang);
        let hits = index
            .snapshot()
            .search_lexical(passage, &options)
            .expect("search");
        assert_eq!(hits.len(), 1, "a passage is found by its own text");
    }
}

/// One HTTP request through the server's whole router (guard, CORS, token, limits, routes)
/// over an in-memory index: the first byte picks the method and the headers sent, the bytes
/// up to the first newline are the path, the rest is the body. Every answer must have a status
/// the API documents, and every refusal an `{"error": ...}` body.
#[cfg(feature = "server")]
pub fn http_request(data: &[u8]) {
    use crate::server::harness::{is_documented, Harness};
    thread_local! {
        static SERVER: Harness = Harness::new(crate::server::ServerOptions {
            allow_origins: vec!["http://localhost:3000".into()],
            ..Default::default()
        });
    }
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let methods = [
        "GET", "POST", "DELETE", "PUT", "OPTIONS", "PATCH", "HEAD", "BREW",
    ];
    let method = methods[usize::from(flags & 7)];
    let (path, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let path = format!("/{}", String::from_utf8_lossy(path));
    let mut headers = Vec::new();
    if flags & 8 != 0 {
        headers.push(("content-type", "application/json"));
    }
    if flags & 16 != 0 {
        headers.push(("origin", "http://localhost:3000"));
    }
    if flags & 32 != 0 {
        headers.push(("origin", "http://evil.example"));
    }
    if flags & 64 != 0 {
        headers.push(("host", "evil.example"));
    }
    if flags & 128 != 0 {
        headers.push(("access-control-request-method", "POST"));
    }
    SERVER.with(|server| {
        // A path that is not a URI is refused before it reaches the router.
        if let Some((status, _, bytes)) = server.send(method, &path, &headers, body) {
            assert!(is_documented(status), "{method} {path}: {status}");
            if status >= 400 && method != "HEAD" {
                let v: serde_json::Value =
                    serde_json::from_slice(&bytes).expect("a refusal's body is JSON");
                assert!(v["error"].is_string(), "{method} {path}: {status} {v}");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn fuzz_entry_points_hold_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            catalog_values(&data);
            model_files(&data);
            jsonl_line(&data);
            store_sequence(&data);
            #[cfg(feature = "server")]
            http_request(&data);
        }
    }

    #[test]
    fn fuzz_entry_points_hold_on_valid_inputs() {
        jsonl_line(br#"{"id":"a","text":"t","generated_queries":{"te":["q"]}}"#);
        jsonl_line(br#"{"id":"a","text":"t","vector":[1,2,3,4]}"#);
        catalog_values(&store::encode_augmentation(&Augmentation::new(
            vec![1.0, 2.0],
            vec![("fi".into(), "k".into())],
            &[vec![0.5, 0.5]],
            true,
        )));
        catalog_values(
            serde_json::to_string(&XqgProfile::default())
                .unwrap()
                .as_bytes(),
        );
        store_sequence(&[
            0, 1, 2, 3, 4, 8, 9, 9, 9, 9, 4, 5, 16, 1, 1, 1, 1, 6, 3, 4, 7,
        ]);
    }
}
