//! Distillation benchmark: text-search latency with the stored query adapter against
//! without it (interleaved, same queries, same index), the adapter's matrix-vector product
//! alone, and teacher reranking latency for m = 20 and 100 candidates with the translation
//! teacher, the encoder teacher (the default model re-encoding the candidates) and — when a
//! benchmark generator exists — the generator teacher. Needs `make setup`.
//! `cargo bench --bench distill` (without `--bench`, as under `cargo test`, a small smoke run).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;
use xqdb::distill::{
    Adapter, EncoderTeacher, GeneratorTeacher, Teacher, TeacherQuery, TranslationTeacher,
};
use xqdb::{Encoder, Index, ModelBundle, Passage, Rerank, SearchOptions};

fn questions() -> Vec<(String, String)> {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/xor-tydi/translations.ja-en.jsonl");
    let text = std::fs::read_to_string(data).expect("shared data");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["native"].as_str().unwrap().to_string(),
                v["en"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let encoder =
        Arc::new(Encoder::from_dir(ModelBundle::default_dir()).expect("run `make setup`"));
    let dim = encoder.dim();
    let qa = questions();
    let rows = if full { 100_000 } else { 2_000 };
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::builder()
        .encoder(encoder.clone())
        .create(tmp.path().join("idx"))
        .unwrap();
    // Random unit vectors stand in for passage embeddings (the scan costs the same); the
    // texts are real English questions, which the encoder teacher re-encodes.
    let mut rng = SmallRng::seed_from_u64(11);
    let mut w = index.writer().unwrap();
    for i in 0..rows {
        let v: Vec<f32> = (0..dim).map(|_| rng.random::<f32>() - 0.5).collect();
        w.insert(
            Passage::new(format!("p{i}"), qa[i % qa.len()].1.clone()),
            &v,
        )
        .unwrap();
        if i % 10_000 == 9_999 {
            w.commit().unwrap();
        }
    }
    w.commit().unwrap();
    w.seal().unwrap();
    // A trained-looking full adapter: the identity plus small noise.
    let mut m = Adapter::identity(dim).matrix();
    m.iter_mut()
        .for_each(|x| *x += (rng.random::<f32>() - 0.5) * 0.02);
    let adapter = Adapter::from_matrix(dim, m).unwrap();
    w.set_adapter(&adapter, &Default::default()).unwrap();
    drop(w);

    let n_queries = if full { 200 } else { 5 };
    let queries: Vec<&(String, String)> = qa.iter().step_by(7).take(n_queries).collect();
    index.search_text(&queries[0].0, 10).unwrap();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for (q, _) in &queries {
        for (use_adapter, out) in [(true, &mut with), (false, &mut without)] {
            let t = Instant::now();
            let hits = index
                .search_text_with(q, &SearchOptions::new(10).adapter(use_adapter))
                .unwrap();
            out.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(hits.len(), 10);
        }
    }
    let v = encoder
        .encode_queries(&[&queries[0].0])
        .unwrap()
        .pop()
        .unwrap();
    let reps = if full { 10_000 } else { 100 };
    let t = Instant::now();
    let mut sink = 0f32;
    for _ in 0..reps {
        sink += adapter.apply(std::hint::black_box(&v))[0];
    }
    let apply_us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    std::hint::black_box(sink);
    let (a, b) = (p50(with), p50(without));
    println!("# text search over {rows} passages, top-10, {n_queries} queries, interleaved");
    println!("| p50 ms without adapter | p50 ms with adapter | ratio | adapter W·q alone |");
    println!("|---|---|---|---|");
    println!("| {b:.2} | {a:.2} | {:.3} | {apply_us:.1} µs |", a / b);

    let mut teachers: Vec<(String, Box<dyn Teacher>)> = vec![
        (
            "translation".into(),
            Box::new(TranslationTeacher::new(encoder.clone())),
        ),
        (
            "encoder (default model)".into(),
            Box::new(EncoderTeacher::new(encoder.clone())),
        ),
    ];
    let gen_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/xqdb/bench-generator");
    if full && gen_dir.join("config.json").exists() {
        let g = xqdb::Generator::open(&gen_dir, &Default::default()).unwrap();
        teachers.push((
            "generator (mT5-base-sized)".into(),
            Box::new(GeneratorTeacher::new(
                Arc::new(g),
                Default::default(),
                false,
            )),
        ));
    } else if full {
        println!("(no generator teacher: make one with scripts/make_seq2seq_fixtures.py --big .cache/xqdb/bench-generator)");
    }
    println!();
    println!("# teacher reranking of the dense top m (p50 ms per query, dense search included)");
    println!("| teacher | m = 20 | m = 100 |");
    println!("|---|---|---|");
    for (name, teacher) in &teachers {
        let slow = name.starts_with("generator");
        let mut cells = Vec::new();
        for m in [20, 100] {
            let n = match (full, slow) {
                (false, _) => 2,
                (true, true) => 2,
                (true, false) => 20,
            };
            if slow && m == 100 {
                cells.push("—".to_string());
                continue;
            }
            let lat: Vec<f64> = queries
                .iter()
                .take(n)
                .map(|(q, en)| {
                    let tq = TeacherQuery {
                        text: q,
                        lang: Some("ja"),
                        parallel: Some(en),
                    };
                    let t = Instant::now();
                    let hits = index
                        .search_text_reranked(
                            &tq,
                            &SearchOptions::new(10),
                            &Rerank {
                                teacher: teacher.as_ref(),
                                depth: m,
                                weight: 0.5,
                            },
                        )
                        .unwrap();
                    assert_eq!(hits.len(), 10);
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            cells.push(format!("{:.1}", p50(lat)));
        }
        println!("| {name} | {} |", cells.join(" | "));
    }
}
