//! Generation benchmark: queries generated per second by the Rust generator (7 languages ×
//! 5 top-k samples per passage, 32 tokens at most, KV cache) against a Python loop running
//! the same ONNX files with onnxruntime and the same decoding, side by side in one run; and
//! the share of time spent outside `Session::run`.
//!
//! The generator is `$XQDB_BENCH_GENERATOR`, else `.cache/xqdb/bench-generator` (an
//! mT5-base-sized random model: `python scripts/make_seq2seq_fixtures.py --big
//! .cache/xqdb/bench-generator`, in the fixture venv), else the tiny test model.
//! `cargo bench --bench generate`; needs `make setup`.

use std::path::PathBuf;
use std::time::Instant;
use xqdb::model::{Generator, GeneratorOptions, Sampling};
use xqdb::xqg::XqgProfile;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let big = xqdb::model::xqdb_home().join("bench-generator");
    let dir = std::env::var_os("XQDB_BENCH_GENERATOR")
        .map(PathBuf::from)
        .or_else(|| (full && big.join("config.json").exists()).then_some(big))
        .unwrap_or_else(|| root.join("tests/fixtures/seq2seq/mt5"));
    let g = Generator::open(
        &dir,
        &GeneratorOptions {
            threads,
            ..Default::default()
        },
    )
    .expect("generator");
    let profile = XqgProfile::default();
    let data =
        std::fs::read_to_string(root.join("../shared/data/xor-tydi/translations.fi-en.jsonl"))
            .expect("shared data");
    let english: Vec<String> = data
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["en"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let n_passages = if full { 3 } else { 1 };
    // Passages of ~120 words: consecutive English questions.
    let passages: Vec<Vec<Vec<u32>>> = (0..n_passages)
        .map(|i| {
            let text = english[i * 12..i * 12 + 12].join(" ");
            profile
                .languages
                .iter()
                .map(|l| {
                    let prompt = profile.prompt_for(l, None, &text);
                    g.tokenize(&prompt, profile.max_input_tokens).unwrap()
                })
                .collect()
        })
        .collect();
    let prompt_tokens: usize = passages[0].iter().map(Vec::len).sum::<usize>() / passages[0].len();
    let n = profile.per_language;
    let sampling = Sampling {
        temperature: 1.0,
        top_k: profile.top_k,
        top_p: 1.0,
        max_length: profile.max_query_tokens,
    };
    // Warm-up: one prompt.
    g.generate_ids(&passages[0][..1], n, &sampling, &vec![0; n])
        .unwrap();
    let run_before = g.run_seconds();
    let t = Instant::now();
    let mut tokens = 0;
    for (p, prompts) in passages.iter().enumerate() {
        let seeds: Vec<u64> = (0..prompts.len() * n)
            .map(|i| (p * 1000 + i) as u64)
            .collect();
        let rows = g.generate_ids(prompts, n, &sampling, &seeds).unwrap();
        tokens += rows.iter().map(Vec::len).sum::<usize>();
    }
    let wall = t.elapsed().as_secs_f64();
    let outside = (wall - (g.run_seconds() - run_before)) / wall;
    let n_prompts: usize = passages.iter().map(Vec::len).sum();
    let rust_prompts = n_prompts as f64 / wall;

    let prompts_file =
        std::env::temp_dir().join(format!("xqdb-generate-bench-{}.json", std::process::id()));
    std::fs::write(&prompts_file, serde_json::to_string(&passages).unwrap()).unwrap();
    let python = xqdb::model::xqdb_home().join("venv/bin/python");
    let out = std::process::Command::new(&python)
        .args([
            root.join("benches/generate_reference.py").to_str().unwrap(),
            dir.to_str().unwrap(),
            prompts_file.to_str().unwrap(),
            &n.to_string(),
            &profile.top_k.to_string(),
            &profile.max_query_tokens.to_string(),
            &threads.to_string(),
        ])
        .output()
        .expect("run the Python reference");
    let _ = std::fs::remove_file(&prompts_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let py_prompts = py["prompts_per_s"].as_f64().unwrap();
    println!(
        "# generation: {} ({}), {n_passages} passage(s) × {} languages × {n} samples, prompts ~{prompt_tokens} tokens, max_length {}, top-k {}, {threads} threads",
        g.fingerprint(),
        dir.display(),
        profile.languages.len(),
        profile.max_query_tokens,
        profile.top_k
    );
    println!(
        "| generator | prompts/s | queries/s | s/passage | tokens | time outside session.run |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| xqdb (Rust, ort) | {rust_prompts:.3} | {:.2} | {:.2} | {tokens} | {:.1}% |",
        rust_prompts * n as f64,
        wall / n_passages as f64,
        outside * 100.0
    );
    println!(
        "| Python onnxruntime loop, same files and decoding | {py_prompts:.3} | {:.2} | {:.2} | {} | {:.1}% |",
        py["queries_per_s"].as_f64().unwrap(),
        py["seconds"].as_f64().unwrap() / n_passages as f64,
        py["tokens"],
        py["outside_run_share"].as_f64().unwrap() * 100.0
    );
    println!(
        "| ratio xqdb / Python | {:.2} | | | | |",
        rust_prompts / py_prompts
    );
}
