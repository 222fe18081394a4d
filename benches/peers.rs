//! xqdb's side of `scripts/bench_peers.py`: loads the raw f32 vectors the script wrote,
//! builds an index through the public API, times exact top-10 search (single queries and a
//! batch of 32, one thread and all threads) and writes timings and top-10 row numbers as
//! JSON for the script to compare with faiss and usearch. The index keeps binary and i8
//! codes too: the two-stage searches (first pass over codes, exact rescoring) are timed the
//! same way, with recall@10 against the exact top-10 over oversampling factors (on
//! `recall_queries.f32` when the script wrote one: even-numbered queries are the tuning
//! half, odd-numbered ones the held-out half). Under `cargo test` (no `--bench` flag, no
//! XQDB_PEERS_DIR) it checks itself on a small generated set.

use std::path::{Path, PathBuf};
use std::time::Instant;
use xqdb::{Codes, Dtype, FirstPass, Index, Metric, Passage, SearchOptions};

const K: usize = 10;

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = std::env::var_os("XQDB_PEERS_DIR").map(PathBuf::from);
    let dim: usize = std::env::var("XQDB_PEERS_DIM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(384);
    let (data, queries) = match &dir {
        Some(d) => (
            read_f32(&d.join("vectors.f32")),
            read_f32(&d.join("queries.f32")),
        ),
        None => {
            // Smoke run: small deterministic data.
            let gen = |n: usize, s: u64| {
                (0..n * dim)
                    .map(|i| (((i as u64 * 2654435761 + s) % 1000) as f32) / 500.0 - 1.0)
                    .collect::<Vec<f32>>()
            };
            (gen(2000, 1), gen(32, 7))
        }
    };
    let rows = data.len() / dim;
    let queries: Vec<Vec<f32>> = queries.chunks_exact(dim).map(<[f32]>::to_vec).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tmp = tempfile::tempdir_in(dir.clone().unwrap_or_else(std::env::temp_dir)).unwrap();
    let index = Index::builder()
        .dim(dim)
        .metric(Metric::Dot)
        .codes(Codes::parse("binary,i8").unwrap())
        .create(tmp.path().join("idx"))
        .unwrap();
    let t = Instant::now();
    let mut w = index.writer().unwrap();
    for (i, v) in data.chunks_exact(dim).enumerate() {
        w.insert(Passage::new(i.to_string(), "p"), v).unwrap();
        if i % 10_000 == 9_999 {
            w.commit().unwrap();
        }
    }
    w.commit().unwrap();
    drop(w);
    let build_s = t.elapsed().as_secs_f64();
    let mut timings = serde_json::Map::new();
    for t in [1, threads] {
        let opts = SearchOptions::new(K)
            .threads(t)
            .first_pass(FirstPass::Exact);
        let (single, batch) = time_search(&index, &queries, &opts, &opts);
        timings.insert(format!("single_ms_{t}t"), single.into());
        timings.insert(format!("batch32_ms_{t}t"), batch.into());
    }
    let exact = SearchOptions::new(K).first_pass(FirstPass::Exact);
    let hits = index.search_batch(&queries, &exact).unwrap();
    let top: Vec<Vec<usize>> = hits
        .iter()
        .map(|hits| hits.iter().map(|h| h.id.parse().unwrap()).collect())
        .collect();
    let top_scores: Vec<Vec<f32>> = hits
        .iter()
        .map(|hits| hits.iter().map(|h| h.score).collect())
        .collect();
    // The batch path and the single-query path must agree.
    for (q, want) in queries.iter().zip(&top).take(4) {
        let single: Vec<usize> = index
            .search_with(q, &exact)
            .unwrap()
            .into_iter()
            .map(|h| h.id.parse().unwrap())
            .collect();
        assert_eq!(&single, want, "batch and single-query results differ");
    }
    let first_pass = two_stage(&index, dir.as_deref(), dim, &queries, threads);
    // A full compaction fits the codebook again on every row (the first one saw only the
    // first commit's rows).
    index.writer().unwrap().compact().unwrap();
    let first_pass_compacted = two_stage(&index, dir.as_deref(), dim, &queries, threads);
    drop(index);
    // Quantized segment types (XQDB_PEERS_DTYPES, e.g. "f16,i8"): timings and top-10.
    let mut dtypes = serde_json::Map::new();
    let wanted = std::env::var("XQDB_PEERS_DTYPES").unwrap_or_else(|_| {
        if dir.is_none() {
            "f16,i8".into()
        } else {
            String::new()
        }
    });
    for name in wanted.split(',').filter(|n| !n.is_empty() && *n != "f32") {
        let dtype: Dtype = name.parse().expect("dtype");
        let index = Index::builder()
            .dim(dim)
            .metric(Metric::Dot)
            .dtype(dtype)
            .create(tmp.path().join(format!("idx-{name}")))
            .unwrap();
        let mut w = index.writer().unwrap();
        for (i, v) in data.chunks_exact(dim).enumerate() {
            w.insert(Passage::new(i.to_string(), "p"), v).unwrap();
            if i % 10_000 == 9_999 {
                w.commit().unwrap();
            }
        }
        w.seal().unwrap(); // quantized rows live in segments
        drop(w);
        let one = SearchOptions::new(K).threads(1);
        let all = SearchOptions::new(K).threads(threads);
        let (single, batch) = time_search(&index, &queries, &one, &all);
        let top: Vec<Vec<usize>> = index
            .search_batch(&queries, &all)
            .unwrap()
            .into_iter()
            .map(|hits| hits.into_iter().map(|h| h.id.parse().unwrap()).collect())
            .collect();
        dtypes.insert(
            name.to_string(),
            serde_json::json!({ "single_ms_1t": single, format!("batch32_ms_{threads}t"): batch, "top10": top }),
        );
    }
    let out = serde_json::json!({ "rows": rows, "dim": dim, "threads": threads, "build_s": build_s, "timings": timings, "top10": top, "top10_scores": top_scores, "dtypes": dtypes, "first_pass": first_pass, "first_pass_compacted": first_pass_compacted });
    match &dir {
        Some(d) => std::fs::write(d.join("xqdb.json"), out.to_string()).unwrap(),
        None => println!(
            "smoke: {} rows, timings {}",
            rows,
            serde_json::Value::Object(timings)
        ),
    }
}

/// Medians of 15 single queries (with `one`) and of 3 batches of all `queries` (with
/// `all`), in ms.
fn time_search(
    index: &Index,
    queries: &[Vec<f32>],
    one: &SearchOptions,
    all: &SearchOptions,
) -> (f64, f64) {
    index.search_with(&queries[0], one).unwrap();
    let single = median(
        queries
            .iter()
            .cycle()
            .take(15)
            .map(|q| {
                let s = Instant::now();
                index.search_with(q, one).unwrap();
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    let batch = median(
        (0..3)
            .map(|_| {
                let s = Instant::now();
                index.search_batch(queries, all).unwrap();
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    (single, batch)
}

/// Recall@10 against the exact answers, over the queries `pick` selects: the share of
/// returned hits that belong to the exact top-10. Rescored hits carry exact scores, so a hit
/// counts when its score reaches the exact 10th score (a row tied with the 10th, such as a
/// duplicate text, is as right as the one the exact scan listed).
fn recall(got: &[Vec<xqdb::Hit>], exact: &[Vec<xqdb::Hit>], pick: impl Fn(usize) -> bool) -> f64 {
    let (mut found, mut total) = (0usize, 0usize);
    for (_, (g, e)) in got.iter().zip(exact).enumerate().filter(|(i, _)| pick(*i)) {
        let Some(tenth) = e.last().map(|h| h.score) else {
            continue;
        };
        // Batches score with the tile kernel, rescoring with the single-row one: allow
        // their rounding difference.
        let tol = 1e-5 * tenth.abs().max(1.0);
        found += g.iter().filter(|h| h.score >= tenth - tol).count();
        total += e.len();
    }
    found as f64 / total.max(1) as f64
}

/// Timings and recall of the binary and i8 first passes with exact rescoring.
fn two_stage(
    index: &Index,
    dir: Option<&Path>,
    dim: usize,
    queries: &[Vec<f32>],
    threads: usize,
) -> serde_json::Value {
    let recall_queries: Vec<Vec<f32>> = match dir.map(|d| d.join("recall_queries.f32")) {
        Some(p) if p.exists() => read_f32(&p)
            .chunks_exact(dim)
            .map(<[f32]>::to_vec)
            .collect(),
        _ => queries.to_vec(),
    };
    let exact_opts = SearchOptions::new(K).first_pass(FirstPass::Exact);
    let exact = index.search_batch(&recall_queries, &exact_opts).unwrap();
    let mut out = serde_json::Map::new();
    for pass in [FirstPass::I8, FirstPass::Binary] {
        let mut r = serde_json::Map::new();
        for t in [1, threads] {
            let opts = SearchOptions::new(K).threads(t).first_pass(pass);
            let (single, batch) = time_search(index, queries, &opts, &opts);
            r.insert(format!("single_ms_{t}t"), single.into());
            r.insert(format!("batch32_ms_{t}t"), batch.into());
        }
        let opts = SearchOptions::new(K).first_pass(pass);
        let got = index.search_batch(&recall_queries, &opts).unwrap();
        r.insert(
            "recall_tune".into(),
            recall(&got, &exact, |i| i % 2 == 0).into(),
        );
        r.insert(
            "recall_heldout".into(),
            recall(&got, &exact, |i| i % 2 == 1).into(),
        );
        let timed = index.search_batch(queries, &opts).unwrap();
        r.insert(
            "top10".into(),
            serde_json::json!(timed
                .iter()
                .map(|h| h
                    .iter()
                    .map(|h| h.id.parse::<usize>().unwrap())
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>()),
        );
        let mut curve = Vec::new();
        for over in [1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 32, 48, 64] {
            let opts = SearchOptions::new(K)
                .threads(threads)
                .first_pass(pass)
                .oversample(over);
            let (single, _) = time_search(index, queries, &opts, &opts);
            let got = index.search_batch(&recall_queries, &opts).unwrap();
            curve.push(serde_json::json!({
                "oversample": over,
                format!("single_ms_{threads}t"): single,
                "recall_tune": recall(&got, &exact, |i| i % 2 == 0),
                "recall_heldout": recall(&got, &exact, |i| i % 2 == 1),
            }));
        }
        r.insert(
            "default_oversample".into(),
            pass.default_oversample().into(),
        );
        r.insert("curve".into(), curve.into());
        out.insert(pass.name().into(), r.into());
    }
    let queries_n = recall_queries.len();
    out.insert("recall_queries".into(), queries_n.into());
    out.into()
}
