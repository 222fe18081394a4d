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

/// `n` passages of about `words` words: consecutive English questions of the translation
/// data, cut at a word count.
fn passages_of(n: usize, words: usize) -> Vec<String> {
    let all: Vec<String> = passages(n * 8)
        .iter()
        .flat_map(|p| p.split_whitespace().map(String::from).collect::<Vec<_>>())
        .collect();
    (0..n)
        .map(|i| {
            let start = (i * words * 3) % (all.len() - words);
            all[start..start + words].join(" ")
        })
        .collect()
}

/// The int8 default encoded one text per call (its rows depend on their batch otherwise)
/// against the same bundle in batches of 32 as before (a copy of its manifest that claims
/// batch invariance) and the fp32 bundle in batches, on short and long passages.
fn one_text_per_call(
    bundles: &[xqdb::model::InstalledBundle],
    threads: usize,
    reps: usize,
    n: usize,
) {
    let int8 = bundles
        .iter()
        .find(|b| b.default)
        .expect("the default bundle");
    let fp32 = bundles
        .iter()
        .find(|b| b.name.ends_with("-fp32"))
        .expect("the fp32 bundle");
    // The same files, with a manifest that lets the encoder batch them.
    let tmp = tempfile::tempdir().unwrap();
    let batched = tmp.path().join("int8-batched");
    std::fs::create_dir(&batched).unwrap();
    for f in std::fs::read_dir(&int8.path).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_owned();
        if name == "xqdb-bundle.json" {
            let mut m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            m["batch_invariant"] = serde_json::json!(true);
            std::fs::write(batched.join(&name), serde_json::to_vec(&m).unwrap()).unwrap();
        } else {
            std::os::unix::fs::symlink(&f, batched.join(&name)).unwrap();
        }
    }
    let open = |dir: &std::path::Path| {
        Encoder::open(
            ModelBundle::open(dir).unwrap(),
            &EncoderOptions {
                threads,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let encoders = [
        (
            format!("{} (default): one text per call", int8.name),
            open(&int8.path),
        ),
        (
            format!("{}: batches of 32 (before)", int8.name),
            open(&batched),
        ),
        (format!("{}: batches of 32", fp32.name), open(&fp32.path)),
    ];
    println!();
    println!("# one text per call: {n} passages, {threads} threads, best of {reps}");
    println!("| encoder | ~58 words: passages/s | vs before | ~300 words: passages/s | vs before | max abs difference, alone vs in a batch |");
    println!("|---|---|---|---|---|---|");
    let sets = [passages_of(n, 58), passages_of(n / 4, 300)];
    let mut rates = vec![[0f64; 2]; encoders.len()];
    for (s, texts) in sets.iter().enumerate() {
        for (e, (_, enc)) in encoders.iter().enumerate() {
            enc.encode_passages(&texts[..4]).unwrap();
            for _ in 0..reps {
                let t = Instant::now();
                enc.encode_passages(texts).unwrap();
                rates[e][s] = rates[e][s].max(texts.len() as f64 / t.elapsed().as_secs_f64());
            }
        }
    }
    for (e, (name, enc)) in encoders.iter().enumerate() {
        let texts = &sets[0][..32];
        let together = enc.encode_passages(texts).unwrap();
        let worst = texts
            .iter()
            .zip(&together)
            .map(|(t, v)| {
                let alone = enc.encode_passages(&[t]).unwrap().remove(0);
                alone
                    .iter()
                    .zip(v)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max)
            })
            .fold(0f32, f32::max);
        println!(
            "| {name} | {:.1} | {:.2} | {:.1} | {:.2} | {worst:.1e} |",
            rates[e][0],
            rates[e][0] / rates[1][0],
            rates[e][1],
            rates[e][1] / rates[1][1]
        );
    }
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
        threads,
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
        "encoder: {sessions} session(s) (0: chosen by the bundle), {threads} thread(s) in all"
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
    one_text_per_call(
        &bundles,
        threads,
        if full { 3 } else { 1 },
        if full { 192 } else { 32 },
    );

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
