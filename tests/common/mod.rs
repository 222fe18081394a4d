//! Helpers shared by the integration tests: the default encoder, the `xqdb` binary with
//! `--json`, and the model of what the `stress-writer` process has committed. Each test file
//! uses some of them.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use xqdb::{Encoder, EncoderOptions, ModelBundle};

/// The bundle at `dir` (made by `make setup`) with `threads` intra-op threads (0: the
/// runtime's default).
fn encoder_at(dir: std::path::PathBuf, threads: usize) -> Arc<Encoder> {
    assert!(
        dir.join("xqdb-bundle.json").exists(),
        "run `make setup` first: no bundle at {}",
        dir.display()
    );
    let options = EncoderOptions {
        threads,
        ..Default::default()
    };
    Arc::new(Encoder::open(ModelBundle::open(dir).unwrap(), &options).unwrap())
}

/// The default encoder bundle made by `make setup`, with `threads` intra-op threads (0: the
/// runtime's default).
pub fn default_encoder_threads(threads: usize) -> Arc<Encoder> {
    encoder_at(ModelBundle::default_dir(), threads)
}

/// The fp32 bundle made by `make setup` (`multilingual-e5-small-fp32`), whose vectors do not
/// depend on the batch a text is encoded in (the int8 default quantises activations per
/// batch): for tests that compare stored vectors with texts encoded apart.
pub fn fp32_encoder_threads(threads: usize) -> Arc<Encoder> {
    encoder_at(
        xqdb::model::models_dir().join("multilingual-e5-small-fp32"),
        threads,
    )
}

/// The default encoder bundle made by `make setup`.
pub fn default_encoder() -> Arc<Encoder> {
    default_encoder_threads(EncoderOptions::default().threads)
}

/// The first ```` ```sh ```` block of README.md after `marker`: what the README tells a reader
/// to type there.
pub fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split(marker).nth(1).expect("the README section");
    let block = section.split("```sh\n").nth(1).expect("a sh block");
    block.split("```").next().unwrap().to_string()
}

/// Runs `xqdb ARGS --json`, asserts that it succeeded and returns its JSON document.
pub fn xqdb_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "xqdb {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// What `xqdb stress-writer --batch-size 16 --dim 8` commits, batch by batch.
pub mod stress {
    use super::BTreeSet;

    /// Passages per ordinary batch.
    pub const BATCH: usize = 16;
    /// Vector dimension.
    pub const DIM: usize = 8;

    /// Passages in batch `b` (every fifth batch is twice as large).
    pub fn batch_len(b: u64) -> usize {
        if b % 5 == 4 {
            BATCH * 2
        } else {
            BATCH
        }
    }

    /// The ids the store holds once batches `0..=last` committed: batch `b` deletes the even
    /// passages of the first `BATCH` of batch `b - 2`.
    pub fn expected(last: Option<u64>) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let Some(last) = last else { return ids };
        for b in 0..=last {
            for i in 0..batch_len(b) {
                let deleted = b + 2 <= last && i < BATCH && i % 2 == 0;
                if !deleted {
                    ids.insert(format!("b{b}-{i}"));
                }
            }
        }
        ids
    }

    /// The passage vector of passage `n` (the same formula as the stress writer).
    pub fn vector(n: u64) -> Vec<f32> {
        (0..DIM)
            .map(|j| (((n * 31 + j as u64 * 17) % 97) as f32 - 48.0) / 16.0)
            .collect()
    }

    /// `xqdb stress-writer DIR` with this model's batch size and dimension, from batch
    /// `first_batch` on.
    pub fn command(dir: &std::path::Path, first_batch: u64) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_xqdb"));
        c.args([
            "stress-writer",
            dir.to_str().unwrap(),
            "--batch-size",
            &BATCH.to_string(),
            "--dim",
            &DIM.to_string(),
            "--first-batch",
            &first_batch.to_string(),
        ]);
        c
    }

    /// The one generated-query vector of every stress passage.
    pub fn query() -> Vec<f32> {
        (0..DIM).map(|j| [1.0, -1.0, 0.5, 0.0][j % 4]).collect()
    }
}

/// A running `xqdb serve` child process, killed when dropped.
pub struct Served {
    /// The process.
    pub child: std::process::Child,
    /// The address it printed (`host:port`).
    pub addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `xqdb serve DIR --addr ADDR EXTRA...` with `env` (and without `RUST_LOG`), and waits
/// for its first line, `listening on http(s)://ADDR`.
pub fn serve_at(dir: &std::path::Path, addr: &str, extra: &[&str], env: &[(&str, &str)]) -> Served {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(["serve", dir.to_str().unwrap(), "--addr", addr])
        .args(extra)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .split_once("://")
        .filter(|(head, _)| head.starts_with("listening on http"))
        .map(|(_, a)| a.to_string())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Served { child, addr }
}
