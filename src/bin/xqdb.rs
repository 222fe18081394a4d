//! The xqdb command-line tool. Every command takes `--json` for scripts.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use xqdb::{Dtype, Filter, Index, Metric, Passage, SearchOptions};

#[derive(Parser)]
#[command(
    name = "xqdb",
    version,
    about = "Embedded cross-lingual search: store passages with vectors, search them exactly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Copy)]
struct Output {
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create an empty index.
    Init {
        dir: PathBuf,
        /// Vector dimension.
        #[arg(long)]
        dim: usize,
        /// Similarity: dot or cosine.
        #[arg(long, default_value = "cosine")]
        metric: Metric,
        /// Segment storage type: f32, f16 or i8.
        #[arg(long, default_value = "f32")]
        dtype: Dtype,
        #[command(flatten)]
        out: Output,
    },
    /// Add passages from a JSONL file: {"id","text",["title","lang","meta","vector"]} a line.
    Add {
        dir: PathBuf,
        file: PathBuf,
        /// Replace passages whose id exists instead of failing.
        #[arg(long)]
        upsert: bool,
        /// Commit every N lines (default: the whole file is one atomic batch).
        #[arg(long)]
        batch_size: Option<usize>,
        #[command(flatten)]
        out: Output,
    },
    /// Search by vector.
    Search {
        dir: PathBuf,
        /// Query text (needs a model bundle; vector search uses --vector-file).
        text: Option<String>,
        /// A JSON array of numbers (one query) or one array per line (a batch).
        #[arg(long)]
        vector_file: Option<PathBuf>,
        /// Number of hits.
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        /// Only passages in these languages.
        #[arg(long = "lang")]
        langs: Vec<String>,
        /// Only passages whose metadata field equals a JSON value: FIELD=VALUE.
        #[arg(long = "meta")]
        meta: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Print stored passages.
    Get {
        dir: PathBuf,
        ids: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Delete passages.
    Delete {
        dir: PathBuf,
        ids: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Seal the tail and merge all segments, dropping deleted rows.
    Compact {
        dir: PathBuf,
        #[command(flatten)]
        out: Output,
    },
    /// Check every segment and catalog row.
    Verify {
        dir: PathBuf,
        #[command(flatten)]
        out: Output,
    },
    /// Counts and sizes.
    Stats {
        dir: PathBuf,
        #[command(flatten)]
        out: Output,
    },
    /// Test helper: insert and commit batches forever, printing each committed batch.
    #[command(hide = true)]
    StressWriter {
        dir: PathBuf,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        #[arg(long, default_value_t = 8)]
        dim: usize,
        #[arg(long, default_value_t = 0)]
        first_batch: u64,
        #[arg(long, default_value_t = u64::MAX)]
        batches: u64,
    },
}

type CliResult = Result<Value, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_out = match &cli.command {
        Command::Init { out, .. }
        | Command::Add { out, .. }
        | Command::Search { out, .. }
        | Command::Get { out, .. }
        | Command::Delete { out, .. }
        | Command::Compact { out, .. }
        | Command::Verify { out, .. }
        | Command::Stats { out, .. } => out.json,
        Command::StressWriter { .. } => false,
    };
    match run(cli.command) {
        Ok(Value::Null) => ExitCode::SUCCESS,
        Ok(v) => {
            if json_out {
                println!("{v}");
            } else {
                print_human(&v);
            }
            ExitCode::SUCCESS
        }
        Err(msg) => {
            if json_out {
                println!("{}", json!({ "error": msg }));
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn print_human(v: &Value) {
    if let Some(results) = v.get("results").and_then(Value::as_array) {
        for (qi, hits) in results.iter().enumerate() {
            if results.len() > 1 {
                println!("query {qi}:");
            }
            for (rank, h) in hits.as_array().into_iter().flatten().enumerate() {
                let text = h["text"].as_str().unwrap_or("");
                let short: String = text.chars().take(100).collect();
                println!(
                    "{:>3}. {:.4}  {}  {}",
                    rank + 1,
                    h["score"].as_f64().unwrap_or(0.0),
                    h["id"].as_str().unwrap_or(""),
                    short
                );
            }
        }
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                match val {
                    Value::String(s) => println!("{k}: {s}"),
                    other => println!("{k}: {other}"),
                }
            }
        }
        other => println!("{other}"),
    }
}

fn err(e: xqdb::Error) -> String {
    e.to_string()
}

fn run(command: Command) -> CliResult {
    match command {
        Command::Init {
            dir,
            dim,
            metric,
            dtype,
            ..
        } => {
            let index = Index::builder()
                .dim(dim)
                .metric(metric)
                .dtype(dtype)
                .create(&dir)
                .map_err(err)?;
            let s = index.stats().map_err(err)?;
            Ok(
                json!({ "created": dir, "dim": s.dim, "metric": s.metric, "dtype": s.dtype, "store_uuid": s.store_uuid }),
            )
        }
        Command::Add {
            dir,
            file,
            upsert,
            batch_size,
            ..
        } => add(&dir, &file, upsert, batch_size),
        Command::Search {
            dir,
            text,
            vector_file,
            k,
            langs,
            meta,
            ..
        } => {
            let index = Index::builder().read_only(true).open(&dir).map_err(err)?;
            let queries = match (text, vector_file) {
                (_, Some(f)) => read_vectors(&f)?,
                (Some(_), None) => {
                    return Err("text search needs an encoder model bundle; this index has none. Pass --vector-file".into())
                }
                (None, None) => return Err("give a query text or --vector-file".into()),
            };
            let mut filter = Filter::new();
            if !langs.is_empty() {
                filter = filter.langs(langs);
            }
            for m in meta {
                let (field, value) = m
                    .split_once('=')
                    .ok_or_else(|| format!("--meta {m:?}: expected FIELD=VALUE"))?;
                let value: Value = serde_json::from_str(value)
                    .unwrap_or_else(|_| Value::String(value.to_string()));
                filter = filter.meta_eq(field, value);
            }
            let hits = index
                .search_batch(&queries, &SearchOptions::new(k).filter(filter))
                .map_err(err)?;
            Ok(json!({ "results": hits }))
        }
        Command::Get { dir, ids, .. } => {
            let index = Index::builder().read_only(true).open(&dir).map_err(err)?;
            let snap = index.snapshot();
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                match snap.get(&id).map_err(err)? {
                    Some(p) => found.push(p),
                    None => missing.push(id),
                }
            }
            Ok(json!({ "passages": found, "missing": missing }))
        }
        Command::Delete { dir, ids, .. } => {
            let index = Index::open(&dir).map_err(err)?;
            let mut w = index.writer().map_err(err)?;
            let mut deleted = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                if w.delete(&id).map_err(err)? {
                    deleted.push(id);
                } else {
                    missing.push(id);
                }
            }
            let info = w.commit().map_err(err)?;
            Ok(json!({ "deleted": deleted, "missing": missing, "commit_seq": info.commit_seq }))
        }
        Command::Compact { dir, .. } => {
            let index = Index::open(&dir).map_err(err)?;
            let rewritten = index.compact().map_err(err)?;
            Ok(json!({ "rewritten": rewritten, "stats": index.stats().map_err(err)? }))
        }
        Command::Verify { dir, .. } => {
            let index = Index::builder()
                .verify_policy(xqdb::VerifyPolicy::Always)
                .open(&dir)
                .map_err(err)?;
            let report = index.verify().map_err(err)?;
            Ok(json!({ "ok": true, "report": report }))
        }
        Command::Stats { dir, .. } => {
            let index = Index::builder().read_only(true).open(&dir).map_err(err)?;
            Ok(serde_json::to_value(index.stats().map_err(err)?).map_err(|e| e.to_string())?)
        }
        Command::StressWriter {
            dir,
            batch_size,
            dim,
            first_batch,
            batches,
        } => {
            stress_writer(&dir, batch_size, dim, first_batch, batches).map_err(err)?;
            Ok(Value::Null)
        }
    }
}

/// One JSONL input line.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    text: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    meta: Option<Value>,
    #[serde(default)]
    vector: Option<Vec<f32>>,
}

fn add(dir: &Path, file: &Path, upsert: bool, batch_size: Option<usize>) -> CliResult {
    let index = Index::open(dir).map_err(err)?;
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta} {msg}",
            )
            .expect("valid template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut reader = BufReader::new(f);
    let mut w = index.writer().map_err(err)?;
    let mut buf = Vec::new();
    let (mut line_no, mut added, mut commits) = (0usize, 0usize, 0usize);
    let mut in_batch = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        bar.inc(n as u64);
        let fail = |msg: String| {
            format!(
                "{}:{line_no}: {msg} (nothing of this batch was written)",
                file.display()
            )
        };
        if buf.len() > xqdb::MAX_TEXT_BYTES * 2 {
            return Err(fail("line too long".into()));
        }
        let text = std::str::from_utf8(&buf).map_err(|e| fail(format!("invalid UTF-8: {e}")))?;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(text).map_err(|e| fail(e.to_string()))?;
        let vector = line.vector.ok_or_else(|| {
            fail(format!(
                "passage {:?} has no \"vector\" and this index has no encoder model",
                line.id
            ))
        })?;
        let passage = Passage {
            id: line.id,
            title: line.title,
            text: line.text,
            lang: line.lang,
            meta: line.meta,
        };
        let r = if upsert {
            w.upsert(passage, &vector)
        } else {
            w.insert(passage, &vector)
        };
        r.map_err(|e| fail(e.to_string()))?;
        added += 1;
        in_batch += 1;
        if batch_size.is_some_and(|b| in_batch >= b) {
            w.commit().map_err(err)?;
            commits += 1;
            in_batch = 0;
        }
    }
    let info = w.commit().map_err(err)?;
    commits += 1;
    bar.finish_and_clear();
    Ok(
        json!({ "added": added, "lines": line_no, "commits": commits, "commit_seq": info.commit_seq }),
    )
}

fn read_vectors(path: &Path) -> Result<Vec<Vec<f32>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(one) = serde_json::from_str::<Vec<f32>>(&text) {
        return Ok(vec![one]);
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Vec<f32>>(l)
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Deterministic vector of passage `n` (so a checker can recompute it).
fn stress_vector(n: u64, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|j| (((n * 31 + j as u64 * 17) % 97) as f32 - 48.0) / 16.0)
        .collect()
}

/// Inserts batch after batch; each batch also deletes half of the batch before the
/// previous one, and every few batches the writer seals or compacts. After each commit
/// returns it prints `committed B`.
fn stress_writer(
    dir: &Path,
    batch_size: usize,
    dim: usize,
    first: u64,
    batches: u64,
) -> xqdb::Result<()> {
    let index = Index::builder()
        .dim(dim)
        .metric(Metric::Dot)
        .seal_rows(batch_size * 3)
        .direct_segment_rows(batch_size * 2)
        .open(dir)?;
    let mut w = index.writer()?;
    let mut out = std::io::stdout().lock();
    for b in first..first.saturating_add(batches) {
        let big = b % 5 == 4;
        let n = if big { batch_size * 2 } else { batch_size };
        for i in 0..n as u64 {
            let id = format!("b{b}-{i}");
            let p = Passage::new(&id, format!("passage {i} of batch {b}"))
                .with_meta(json!({ "batch": b }));
            w.insert(p, &stress_vector(b * 100_000 + i, dim))?;
        }
        if b >= 2 {
            for i in (0..batch_size as u64).step_by(2) {
                w.delete(&format!("b{}-{i}", b - 2))?;
            }
        }
        w.commit()?;
        writeln!(out, "committed {b}").ok();
        out.flush().ok();
        match b % 7 {
            3 => {
                w.seal()?;
                writeln!(out, "sealed {b}").ok();
            }
            6 => {
                w.compact()?;
                writeln!(out, "compacted {b}").ok();
            }
            _ => {}
        }
        out.flush().ok();
    }
    Ok(())
}
