//! A text's vector does not depend on what it is encoded with: 200 real texts of mixed
//! lengths (10 to 500 tokens) in eight languages, encoded one at a time, in batches of 32 in
//! two orders, and with other session and thread counts, give bit-identical vectors with the
//! default (int8) bundle; so does a passage stored alone or among others, and a query searched
//! alone or in a batch. (The int8 graph scales a call's activations with one factor, so the
//! encoder gives such a bundle one text per call: nothing is padded either.)

mod common;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use xqdb::{Encoder, EncoderOptions, Index, ModelBundle, Passage, SearchOptions};

/// 200 texts: questions of the translation data in en, ar, bn, fi, ja, ko, ru and te, one to
/// sixty consecutive questions each (about 10 to 500 tokens).
fn texts() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/xor-tydi");
    let mut by_lang: Vec<Vec<String>> = Vec::new();
    for l in ["ar", "bn", "fi", "ja", "ko", "ru", "te"] {
        // Each line: {"lang", "native", "en"}.
        let text = std::fs::read_to_string(dir.join(format!("translations.{l}-en.jsonl"))).unwrap();
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        by_lang.push(
            rows.iter()
                .map(|r| r["native"].as_str().unwrap().to_string())
                .collect(),
        );
        if by_lang.len() == 1 {
            by_lang.push(
                rows.iter()
                    .map(|r| r["en"].as_str().unwrap().to_string())
                    .collect(),
            );
        }
    }
    (0..200)
        .map(|i| {
            let lang = &by_lang[i % by_lang.len()];
            let n = 1 + (i * 37) % 60;
            let start = (i * 13) % (lang.len() - n);
            lang[start..start + n].join(" ")
        })
        .collect()
}

fn open(sessions: usize, threads: usize, batch_size: usize) -> Encoder {
    let options = EncoderOptions {
        sessions,
        threads,
        batch_size,
        ..Default::default()
    };
    Encoder::open(
        ModelBundle::open(ModelBundle::default_dir()).unwrap(),
        &options,
    )
    .unwrap()
}

#[test]
fn texts_encode_the_same_alone_and_in_any_batch() {
    let texts = texts();
    // The defaults: on two cores, two one-thread sessions.
    let reference = open(0, 0, 32);
    let tokens: Vec<usize> = texts
        .iter()
        .map(|t| {
            reference
                .encode_passages(&[t])
                .map(|_| t.split_whitespace().count())
                .unwrap()
        })
        .collect();
    assert!(
        tokens.iter().any(|&w| w < 15) && tokens.iter().any(|&w| w > 300),
        "lengths {tokens:?}"
    );
    let alone: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| reference.encode_passages(&[t]).unwrap().remove(0))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(39);
    let mut order: Vec<usize> = (0..texts.len()).collect();
    for (label, encoder, orders) in [
        ("defaults", open(0, 0, 32), 2),
        ("one session of two threads, batches of 7", open(1, 2, 7), 1),
    ] {
        for pass in 0..orders {
            order.shuffle(&mut rng);
            for chunk in order.chunks(32) {
                let batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
                let got = encoder.encode_passages(&batch).unwrap();
                for (&i, v) in chunk.iter().zip(&got) {
                    assert!(
                        v == &alone[i],
                        "{label}, order {pass}: text {i} differs from its vector alone"
                    );
                }
            }
        }
        let queries = encoder.encode_queries(&texts[..40]).unwrap();
        for (i, q) in queries.iter().enumerate() {
            assert_eq!(
                q,
                &reference.encode_queries(&[&texts[i]]).unwrap()[0],
                "{label}: query {i}"
            );
        }
    }
}

#[test]
fn a_passage_is_stored_and_a_query_searched_the_same_in_any_company() {
    let texts = texts();
    let tmp = tempfile::tempdir().unwrap();
    let encoder = common::default_encoder();
    let alone = Index::builder()
        .encoder(encoder.clone())
        .create(tmp.path().join("alone"))
        .unwrap();
    let among = Index::builder()
        .encoder(encoder.clone())
        .create(tmp.path().join("among"))
        .unwrap();
    let mut w = alone.writer().unwrap();
    for (i, t) in texts.iter().enumerate().take(40) {
        w.insert_texts(vec![Passage::new(format!("p{i}"), t.clone())], &|_| {})
            .unwrap();
    }
    w.commit().unwrap();
    drop(w);
    let mut w = among.writer().unwrap();
    let mut all: Vec<Passage> = texts
        .iter()
        .enumerate()
        .take(40)
        .map(|(i, t)| Passage::new(format!("p{i}"), t.clone()))
        .collect();
    all.reverse();
    w.insert_texts(all, &|_| {}).unwrap();
    w.commit().unwrap();
    drop(w);
    let queries: Vec<&str> = texts[100..120].iter().map(String::as_str).collect();
    let options = SearchOptions::new(40);
    let batch_alone = alone.search_texts(&queries, &options).unwrap();
    let batch_among = among.search_texts(&queries, &options).unwrap();
    let key = |h: &Vec<xqdb::Hit>| {
        h.iter()
            .map(|h| (h.id.clone(), h.score.to_bits()))
            .collect::<Vec<_>>()
    };
    for (i, q) in queries.iter().enumerate() {
        // Stored alone or together: the same vectors, so the same scores to the bit.
        let single = alone.search_text_with(q, &options).unwrap();
        assert_eq!(
            key(&single),
            key(&among.search_text_with(q, &options).unwrap()),
            "query {i}: passages stored alone vs together"
        );
        // A batch search encodes the query as alone; its scan sums in another order (the
        // batch kernel's tiles), so scores may differ in the last bits: the same ids in the
        // same order, scores within 1e-6.
        for batch in [&batch_alone[i], &batch_among[i]] {
            let ids = |h: &Vec<xqdb::Hit>| h.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&single), ids(batch), "query {i}: alone vs in a batch");
            for (a, b) in single.iter().zip(batch.iter()) {
                assert!(
                    (a.score - b.score).abs() <= 1e-6,
                    "query {i}: {} vs {}",
                    a.score,
                    b.score
                );
            }
        }
    }
}
