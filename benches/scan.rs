//! Storage-engine benchmark: durable insert throughput and exact top-10 scans over
//! 1,000,000 × 384 vectors from a warm mmap, for f32, f16 and i8 rows, one thread and all
//! threads, SIMD against plain scalar Rust, plus batches of 32 queries.
//!
//! `cargo bench --bench scan` (set `XQDB_BENCH_ROWS` for a smaller run). Stores are
//! written under `target/bench-data/` and removed afterwards.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use xqdb::{Dtype, Index, Kernel, Metric, Passage, SearchOptions};

const DIM: usize = 384;
const BATCH: usize = 10_000;
const K: usize = 10;

fn unit_vectors(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..n * DIM)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    for row in v.chunks_exact_mut(DIM) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Builds a store and returns (index, durable insert vectors/s).
fn build(dir: &std::path::Path, dtype: Dtype, data: &[f32]) -> (Index, f64) {
    let _ = std::fs::remove_dir_all(dir);
    let index = Index::builder()
        .dim(DIM)
        .metric(Metric::Cosine)
        .dtype(dtype)
        .create(dir)
        .unwrap();
    let rows = data.len() / DIM;
    let start = Instant::now();
    {
        let mut w = index.writer().unwrap();
        for (b, chunk) in data.chunks(BATCH * DIM).enumerate() {
            for (i, v) in chunk.chunks_exact(DIM).enumerate() {
                let n = b * BATCH + i;
                w.insert(Passage::new(format!("p{n}"), format!("passage {n}")), v)
                    .unwrap();
            }
            w.commit().unwrap();
        }
    }
    let rate = rows as f64 / start.elapsed().as_secs_f64();
    (index, rate)
}

struct Timing {
    ms: f64,
}

fn time_queries(index: &Index, queries: &[Vec<f32>], opts: &SearchOptions, reps: usize) -> Timing {
    index.search_with(&queries[0], opts).unwrap(); // warm the map
    let mut times = Vec::new();
    for r in 0..reps {
        let q = &queries[r % queries.len()];
        let t = Instant::now();
        let hits = index.search_with(q, opts).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(hits.len(), K);
    }
    Timing { ms: median(times) }
}

fn time_batch(index: &Index, queries: &[Vec<f32>], opts: &SearchOptions, reps: usize) -> f64 {
    index.search_batch(queries, opts).unwrap();
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let r = index.search_batch(queries, opts).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.len(), queries.len());
    }
    median(times)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench` passes --bench; under `cargo test` this is a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let rows: usize = std::env::var("XQDB_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 3_000 });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&root).unwrap();
    eprintln!("generating {rows} x {DIM} unit vectors...");
    let data = unit_vectors(rows, 1);
    let queries: Vec<Vec<f32>> = unit_vectors(32, 2)
        .chunks_exact(DIM)
        .map(<[f32]>::to_vec)
        .collect();
    println!("# xqdb scan benchmark: {rows} x {DIM}, top-{K}, {threads} hardware threads");
    println!();
    println!("| dtype | kernel | threads | ms/query | M vectors/s | GB/s |");
    println!("|---|---|---|---|---|---|");
    let mut exact_top: Vec<Vec<String>> = Vec::new();
    // XQDB_BENCH_DTYPES=f16,i8 runs a subset (f16/i8 recall needs f32 first in the list).
    let dtypes: Vec<Dtype> = match std::env::var("XQDB_BENCH_DTYPES") {
        Ok(list) => list
            .split(',')
            .map(|d| d.trim().parse().expect("XQDB_BENCH_DTYPES: f32, f16 or i8"))
            .collect(),
        Err(_) => vec![Dtype::F32, Dtype::F16, Dtype::I8],
    };
    for dtype in dtypes {
        let dir = root.join(format!("scan-{dtype}"));
        let (index, insert_rate) = build(&dir, dtype, &data);
        let stats = index.stats().unwrap();
        let bytes = (rows * DIM * dtype.size()) as f64;
        let mut simd_1 = 0.0;
        for (kernel, t, reps) in [
            (Kernel::Simd, 1, 15),
            (Kernel::Simd, threads, 15),
            (Kernel::Scalar, 1, 3),
        ] {
            let opts = SearchOptions::new(K).threads(t).kernel(kernel);
            let timing = time_queries(&index, &queries, &opts, reps);
            if kernel == Kernel::Simd && t == 1 {
                simd_1 = timing.ms;
            }
            let ratio = if kernel == Kernel::Scalar {
                format!(" (SIMD {:.1}x faster)", timing.ms / simd_1)
            } else {
                String::new()
            };
            println!(
                "| {dtype} | {kernel:?}{ratio} | {t} | {:.1} | {:.1} | {:.1} |",
                timing.ms,
                rows as f64 / timing.ms / 1e3,
                bytes / timing.ms / 1e6
            );
        }
        for t in [1, threads] {
            let opts = SearchOptions::new(K).threads(t);
            let ms = time_batch(&index, &queries, &opts, 3);
            println!("| {dtype} | Simd, batch of 32 | {t} | {:.1} per batch ({:.2} per query) | {:.1} | {:.1} |", ms, ms / 32.0, 32.0 * rows as f64 / ms / 1e3, bytes / ms / 1e6);
        }
        let tops: Vec<Vec<String>> = queries
            .iter()
            .map(|q| {
                index
                    .search(q, K)
                    .unwrap()
                    .into_iter()
                    .map(|h| h.id)
                    .collect()
            })
            .collect();
        if dtype == Dtype::F32 {
            exact_top = tops;
        } else if !exact_top.is_empty() {
            let found: usize = tops
                .iter()
                .zip(&exact_top)
                .map(|(a, b)| a.iter().filter(|id| b.contains(id)).count())
                .sum();
            println!(
                "| {dtype} | recall@{K} vs f32 (no rescoring) | | {:.3} | | |",
                found as f64 / (K * queries.len()) as f64
            );
        }
        eprintln!(
            "{dtype}: durable insert {:.0} vectors/s at batch {BATCH} ({} segments, {:.0} MB)",
            insert_rate,
            stats.segments,
            stats.segment_bytes as f64 / 1e6
        );
        println!(
            "| {dtype} | durable insert, batch {BATCH} | | {:.0} vectors/s | | |",
            insert_rate
        );
        drop(index);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
