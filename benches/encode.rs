//! Model benchmark: text-encoding throughput of the Rust encoder against a Python loop
//! (onnxruntime + tokenizers) running the same ONNX file on the same batches, side by side
//! in one run; and end-to-end text search latency (query encoding + scan + fetch) over
//! 100,000 passages. Needs `make setup`. `cargo bench --bench encode`; `XQDB_SESSIONS`,
//! `XQDB_BATCH_ROWS` and `XQDB_BATCH_TOKENS` override the encoder's defaults.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;
use xqdb::{Encoder, EncoderOptions, Index, ModelBundle, Passage};

const BATCH: usize = 32;

/// Passages of roughly 100 tokens: consecutive English questions of the translation data.
fn passages(n: usize) -> Vec<String> {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/xor-tydi/translations.ja-en.jsonl");
    let text = std::fs::read_to_string(data).expect("shared data");
    let questions: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["en"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    (0..n)
        .map(|i| {
            questions[(i * 7) % questions.len()..]
                .iter()
                .take(7)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Passages per second of the Rust encoder and of the Python reference on the same file,
/// alternating, best of `reps` each.
fn throughput(
    encoder: &Encoder,
    dir: &std::path::Path,
    texts: &[String],
    texts_file: &std::path::Path,
    threads: usize,
    reps: usize,
) -> (f64, f64) {
    let python = xqdb::model::xqdb_home().join("venv/bin/python");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/encode_reference.py");
    encoder.encode_passages(&texts[..BATCH]).unwrap(); // warm-up
    let (mut rust_best, mut py_best) = (0f64, 0f64);
    for _ in 0..reps {
        let t = Instant::now();
        encoder.encode_passages(texts).unwrap();
        rust_best = rust_best.max(texts.len() as f64 / t.elapsed().as_secs_f64());
        let out = std::process::Command::new(&python)
            .args([
                script.to_str().unwrap(),
                dir.to_str().unwrap(),
                texts_file.to_str().unwrap(),
                &BATCH.to_string(),
                &threads.to_string(),
                "1",
            ])
            .output()
            .expect("run the Python reference");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        py_best = py_best.max(v["passages_per_s"].as_f64().unwrap());
    }
    (rust_best, py_best)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = ModelBundle::default_dir();
    let bundle = ModelBundle::open(&dir).expect("default bundle (run `make setup`)");
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let sessions = env("XQDB_SESSIONS", EncoderOptions::default().sessions);
    let options = EncoderOptions {
        threads: (threads / sessions).max(1),
        sessions,
        batch_size: env("XQDB_BATCH_ROWS", EncoderOptions::default().batch_size),
        batch_tokens: env("XQDB_BATCH_TOKENS", EncoderOptions::default().batch_tokens),
        ..Default::default()
    };
    // The path before token budgets: 32 texts per call whatever their length, on the fp32
    // graph (multilingual-e5-small-fp32).
    let previous = EncoderOptions {
        batch_size: BATCH,
        batch_tokens: usize::MAX,
        ..options.clone()
    };
    eprintln!(
        "encoder: {sessions} session(s) x {} thread(s)",
        options.threads
    );
    let encoder = Arc::new(Encoder::open(bundle, &options).unwrap());
    let n = if full { 512 } else { 64 };
    let texts = passages(n);
    let tokens: usize = texts
        .iter()
        .map(|t| t.split_whitespace().count())
        .sum::<usize>()
        / n;
    let texts_file =
        std::env::temp_dir().join(format!("xqdb-encode-bench-{}.json", std::process::id()));
    std::fs::write(&texts_file, serde_json::to_string(&texts).unwrap()).unwrap();
    let reps = if full { 3 } else { 1 };
    println!("# encoding: {n} passages of ~{tokens} words, {threads} threads, best of {reps}, every installed bundle");
    println!("# xqdb: batches of at most {} rows and {} tokens; Python: batches of {BATCH} in file order", options.batch_size, options.batch_tokens);
    println!("| bundle | dtype | MB | xqdb (Rust, ort) passages/s | Python onnxruntime + tokenizers, same file | xqdb / Python | xqdb / previous path |");
    println!("|---|---|---|---|---|---|---|");
    let bundles = xqdb::model::installed_bundles();
    let fp32 = bundles
        .iter()
        .find(|b| b.name.ends_with("-fp32"))
        .expect("the set-up installs the fp32 bundle");
    let enc = Encoder::open(ModelBundle::open(&fp32.path).unwrap(), &previous).unwrap();
    let (base, py) = throughput(&enc, &fp32.path, &texts, &texts_file, threads, reps);
    drop(enc);
    println!(
        "| {} (previous path: {BATCH} texts per call) | {} | {:.0} | {base:.1} | {py:.1} | {:.2} | 1.00 |",
        fp32.name,
        fp32.dtype,
        fp32.size_bytes as f64 / 1e6,
        base / py
    );
    for b in &bundles {
        let enc = if b.default {
            encoder.clone()
        } else {
            Arc::new(Encoder::open(ModelBundle::open(&b.path).unwrap(), &options).unwrap())
        };
        let (rust, py) = throughput(&enc, &b.path, &texts, &texts_file, threads, reps);
        println!(
            "| {}{} | {} | {:.0} | {rust:.1} | {py:.1} | {:.2} | {:.2} |",
            b.name,
            if b.default { " (default)" } else { "" },
            b.dtype,
            b.size_bytes as f64 / 1e6,
            rust / py,
            rust / base
        );
    }
    let _ = std::fs::remove_file(&texts_file);

    // Search latency over 100,000 stored passages (random unit vectors stand in for their
    // embeddings: the scan costs the same), queries encoded by the model for real.
    let rows = if full { 100_000 } else { 2_000 };
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::builder()
        .encoder(encoder.clone())
        .create(tmp.path().join("idx"))
        .unwrap();
    let mut rng = SmallRng::seed_from_u64(7);
    let mut w = index.writer().unwrap();
    for i in 0..rows {
        let v: Vec<f32> = (0..encoder.dim())
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        w.insert(
            Passage::new(format!("p{i}"), texts[i % texts.len()].clone()),
            &v,
        )
        .unwrap();
        if i % 10_000 == 9_999 {
            w.commit().unwrap();
        }
    }
    w.commit().unwrap();
    drop(w);
    let queries: Vec<String> = passages(200)
        .into_iter()
        .map(|p| p.split('?').next().unwrap_or("").to_string() + "?")
        .collect();
    index.search_text(&queries[0], 10).unwrap();
    let mut lat: Vec<f64> = queries
        .iter()
        .map(|q| {
            let t = Instant::now();
            let hits = index.search_text(q, 10).unwrap();
            assert_eq!(hits.len(), 10);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    println!();
    println!(
        "# text search over {rows} passages ({} queries, top-10, all cores)",
        lat.len()
    );
    println!("| p50 ms | p99 ms |");
    println!("|---|---|");
    println!(
        "| {:.1} | {:.1} |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}
