//! Storage-engine benchmark: durable insert throughput and exact top-10 scans over
//! 1,000,000 × 384 vectors from a warm mmap, for f32, f16 and i8 rows, one thread and all
//! threads, SIMD against plain scalar Rust, plus batches of 32 queries; then two-stage
//! searches (binary and i8 codes, exact rescoring) against the f32 scan of the same index,
//! with recall@10 and the resident memory of the index's mappings; then many small commits
//! (10,000 of 100 rows) with automatic merging against the same rows compacted.
//!
//! `cargo bench --bench scan` (set `XQDB_BENCH_ROWS` for a smaller run, `XQDB_BENCH_DTYPES`
//! for a subset of the first table (empty: none), `XQDB_BENCH_TWO_STAGE=0` to skip the
//! two-stage table, `XQDB_BENCH_COMMITS` for the small-commit count, 0 to skip it,
//! `XQDB_BENCH_FAN_IN` for the automatic merging of the first table's stores). Stores are written under `target/bench-data/` and removed afterwards; figures
//! also go to `target/bench-scan.json`.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use xqdb::{Codes, Dtype, FirstPass, Index, Kernel, Metric, Passage, SearchOptions};

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
    build_with(dir, dtype, data, None)
}

fn build_with(
    dir: &std::path::Path,
    dtype: Dtype,
    data: &[f32],
    codes: Option<Codes>,
) -> (Index, f64) {
    let _ = std::fs::remove_dir_all(dir);
    let mut b = Index::builder()
        .dim(DIM)
        .metric(Metric::Cosine)
        .dtype(dtype)
        .merge_fan_in(
            std::env::var("XQDB_BENCH_FAN_IN")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(8),
        );
    if let Some(c) = codes {
        b = b.codes(c);
    }
    let index = b.create(dir).unwrap();
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
            .filter(|d| !d.trim().is_empty())
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
    let mut report = serde_json::Map::new();
    report.insert("rows".into(), rows.into());
    report.insert("threads".into(), threads.into());
    if std::env::var("XQDB_BENCH_TWO_STAGE").as_deref() != Ok("0") {
        two_stage(&root, &data, &queries, threads, &mut report);
    }
    let commits: usize = std::env::var("XQDB_BENCH_COMMITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 10_000 } else { 30 });
    if commits > 0 {
        small_commits(&root, &data, &queries, commits, &mut report);
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-scan.json");
    std::fs::write(out, serde_json::Value::Object(report).to_string()).unwrap();
}

/// Resident kB of this process's mappings of files under `dir` (from /proc/self/smaps).
fn mapped_rss_kb(dir: &std::path::Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let dir = dir.to_string_lossy();
    let mut inside = false;
    let mut kb = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line.contains(dir.as_ref());
        } else if inside && first == "Rss:" {
            kb += line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    kb
}

/// f32 exact against binary and i8 first passes with exact rescoring, on one index that
/// keeps both codes: latency (1 and all threads, batch of 32), recall@10 against the exact
/// answer, and the resident memory of the index's mappings after searching each way (each
/// measured on a freshly opened index, so only pages that way touched are counted).
fn two_stage(
    root: &std::path::Path,
    data: &[f32],
    queries: &[Vec<f32>],
    threads: usize,
    report: &mut serde_json::Map<String, serde_json::Value>,
) {
    let dir = root.join("scan-codes");
    let (index, insert_rate) = build_with(
        &dir,
        Dtype::F32,
        data,
        Some(Codes::parse("binary,i8").unwrap()),
    );
    index.writer().unwrap().compact().unwrap();
    let stats = index.stats().unwrap();
    drop(index);
    println!();
    println!("# two-stage search: first pass over codes, exact f32 rescoring (same index, compacted; {} MB of rows, {} MB of codes)", (stats.segment_bytes - stats.code_bytes) / 1_000_000, stats.code_bytes / 1_000_000);
    println!();
    println!("| first pass | oversample | threads | ms/query | batch of 32, ms per query | f32 exact / this (1 query) | recall@{K} | resident MB of the index's maps after 32 queries |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut out = serde_json::Map::new();
    out.insert("insert_vectors_per_s_with_codes".into(), insert_rate.into());
    let mut exact_top: Vec<Vec<xqdb::Hit>> = Vec::new();
    let mut exact_ms = std::collections::HashMap::new();
    let runs = [
        (FirstPass::Exact, 1),
        (FirstPass::I8, FirstPass::I8.default_oversample()),
        (FirstPass::Binary, 16),
        (FirstPass::Binary, 32),
        (FirstPass::Binary, 48),
        (FirstPass::Binary, 64),
    ];
    for (pass, over) in runs {
        // A fresh open: the maps start empty, so their resident size shows what this pass reads.
        let index = Index::open(&dir).unwrap();
        let base = SearchOptions::new(K).first_pass(pass).oversample(over);
        let top: Vec<Vec<xqdb::Hit>> = queries
            .iter()
            .map(|q| index.search_with(q, &base).unwrap())
            .collect();
        let rss_mb = mapped_rss_kb(&dir) as f64 / 1024.0;
        if pass == FirstPass::Exact {
            exact_top = top.clone();
        }
        // A hit counts when it reaches the exact 10th score (ties are equally right).
        let found: usize = top
            .iter()
            .zip(&exact_top)
            .map(|(a, b)| {
                let tenth = b.last().map_or(f32::INFINITY, |h| h.score);
                let tol = 1e-5 * tenth.abs().max(1.0);
                a.iter().filter(|h| h.score >= tenth - tol).count()
            })
            .sum();
        let recall = found as f64 / (K * queries.len()) as f64;
        let mut r = serde_json::Map::new();
        for t in [1, threads] {
            let opts = base.clone().threads(t);
            let single = time_queries(&index, queries, &opts, 15).ms;
            let batch = time_batch(&index, queries, &opts, 3) / queries.len() as f64;
            if pass == FirstPass::Exact {
                exact_ms.insert(t, single);
            }
            println!(
                "| {} | {} | {t} | {single:.2} | {batch:.2} | {:.1}x | {recall:.4} | {rss_mb:.0} |",
                pass.name(),
                if pass == FirstPass::Exact {
                    "-".to_string()
                } else {
                    over.to_string()
                },
                exact_ms[&t] / single
            );
            r.insert(format!("single_ms_{t}t"), single.into());
            r.insert(format!("batch32_ms_per_query_{t}t"), batch.into());
        }
        r.insert("recall".into(), recall.into());
        r.insert("oversample".into(), over.into());
        r.insert("resident_mb_after_32_queries".into(), rss_mb.into());
        let name = match pass {
            FirstPass::Exact => pass.name().to_string(),
            _ => format!("{}_x{over}", pass.name()),
        };
        out.insert(name, r.into());
    }
    report.insert("two_stage".into(), out.into());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `commits` commits of 100 rows each with automatic merging (the default), then the
/// segment count and single-query latency against the same index compacted into one
/// segment.
fn small_commits(
    root: &std::path::Path,
    data: &[f32],
    queries: &[Vec<f32>],
    commits: usize,
    report: &mut serde_json::Map<String, serde_json::Value>,
) {
    let dir = root.join("scan-commits");
    let _ = std::fs::remove_dir_all(&dir);
    let index = Index::builder()
        .dim(DIM)
        .metric(Metric::Cosine)
        .create(&dir)
        .unwrap();
    let rows = (commits * 100).min(data.len() / DIM);
    let start = Instant::now();
    let mut merges = 0;
    let mut most_segments = 0;
    {
        let mut w = index.writer().unwrap();
        for (c, chunk) in data[..rows * DIM].chunks(100 * DIM).enumerate() {
            for (i, v) in chunk.chunks_exact(DIM).enumerate() {
                let n = c * 100 + i;
                w.insert(Passage::new(format!("p{n}"), "p"), v).unwrap();
            }
            merges += w.commit().unwrap().merged as usize;
            if c % 100 == 99 {
                most_segments = most_segments.max(index.stats().unwrap().segments);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = index.stats().unwrap();
    let t = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = SearchOptions::new(K).threads(t);
    let merged_ms = time_queries(&index, queries, &opts, 15).ms;
    index.writer().unwrap().compact().unwrap();
    let compacted_ms = time_queries(&index, queries, &opts, 15).ms;
    println!();
    println!("# {commits} commits of 100 rows ({rows} rows, {secs:.0} s, {:.0} rows/s durable), automatic merging (fan-in 8)", rows as f64 / secs);
    println!();
    println!("| segments at the end | most segments seen | automatic merges | tail rows | ms/query ({t} threads) | compacted: ms/query | ratio |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {most_segments} | {merges} | {} | {merged_ms:.2} | {compacted_ms:.2} | {:.2} |",
        stats.segments,
        stats.tail_rows,
        merged_ms / compacted_ms
    );
    report.insert(
        "small_commits".into(),
        serde_json::json!({ "commits": commits, "rows": rows, "seconds": secs, "segments": stats.segments, "most_segments": most_segments, "merges": merges, "tail_rows": stats.tail_rows, "single_ms": merged_ms, "compacted_single_ms": compacted_ms }),
    );
    drop(index);
    let _ = std::fs::remove_dir_all(&dir);
}
