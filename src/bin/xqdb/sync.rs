//! `xqdb sync`: keep an index in step with a folder of documents; snippets for their hits.

use crate::common::{err, open_index, CliResult};
use crate::output::progress_bar;
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;
use xqdb::documents::{ChunkOptions, SyncOptions};

#[derive(Args)]
pub(crate) struct SyncArgs {
    /// The index (made with a model, e.g. `xqdb init DIR`).
    dir: PathBuf,
    /// The folder of documents (.txt, .md, .html, .pdf).
    folder: PathBuf,
    /// Leave out paths matching a gitignore-style pattern (repeatable); `.gitignore` and
    /// `.ignore` files in the folder apply too.
    #[arg(long)]
    exclude: Vec<String>,
    /// Show what a sync would do; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Read every file with this encoding (a WHATWG label: shift_jis, windows-1251,
    /// utf-16le …) instead of telling it file by file.
    #[arg(long)]
    encoding: Option<String>,
    /// Read hidden files and folders too.
    #[arg(long)]
    hidden: bool,
    /// Do not follow symbolic links.
    #[arg(long)]
    no_follow: bool,
    /// Skip files larger than this many MiB.
    #[arg(long, default_value_t = 16)]
    max_file_mb: u64,
    /// Words a passage aims at (it closes at the next sentence end).
    #[arg(long, default_value_t = 100)]
    words: usize,
    /// Sentences repeated from one passage at the start of the next.
    #[arg(long, default_value_t = 0)]
    overlap: usize,
    /// Tag every passage with this language instead of detecting it.
    #[arg(long)]
    lang: Option<String>,
    /// Detect only among these languages (comma-separated tags, e.g. en,ja,fi): more
    /// accurate when the folder's languages are known.
    #[arg(long, value_delimiter = ',')]
    languages: Vec<String>,
    /// Encoder model bundle (default: the one the index records).
    #[arg(long)]
    model: Option<PathBuf>,
}

pub(crate) fn sync(a: SyncArgs, json_out: bool) -> CliResult {
    let index = open_index(&a.dir, a.model.as_deref(), a.dry_run)?;
    let options = SyncOptions {
        exclude: a.exclude,
        hidden: a.hidden,
        follow_links: !a.no_follow,
        max_file_bytes: a.max_file_mb << 20,
        chunk: ChunkOptions {
            target_words: a.words,
            max_words: a.words + a.words / 2,
            overlap_sentences: a.overlap,
        },
        lang: a.lang,
        languages: a.languages,
        dry_run: a.dry_run,
        encoding: a.encoding,
        stop: Some(crate::common::interruptible()),
        ..Default::default()
    };
    let bar = progress_bar(0, "files");
    let report = xqdb::documents::sync(&index, &a.folder, &options, &|p| {
        bar.set_length(p.total_files as u64);
        bar.set_position(p.files as u64);
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{} passages ({:.1}/s)",
            p.passages,
            p.passages as f64 / secs
        ));
    })
    .map_err(err)?;
    bar.finish_and_clear();
    let mut reasons = std::collections::BTreeMap::<&str, usize>::new();
    for s in &report.skipped {
        *reasons.entry(s.reason.as_str()).or_default() += 1;
    }
    eprintln!(
        "{}{} added, {} changed, {} removed, {} unchanged, {} skipped; {} passages encoded, {} removed ({:.1} s)",
        if report.dry_run { "dry run: " } else { "" },
        report.added,
        report.changed,
        report.removed,
        report.unchanged,
        report.skipped.len(),
        report.passages_encoded,
        report.passages_removed,
        report.seconds
    );
    for s in &report.skipped {
        eprintln!("  skipped {}: {}", s.path, s.reason);
    }
    if report.interrupted {
        crate::common::tell_interrupted(
            "the files counted above are synced (each wholly); the others, and removals, \
             wait for the next sync",
        );
    }
    let v = serde_json::to_value(&report).map_err(|e| e.to_string());
    crate::output::quiet_unless(json_out, v)
}

/// Adds `"location"` (`path:line`) and `"snippet"` (the sentence closest to the query first,
/// cut to `width`) to hits of document passages.
pub(crate) fn add_snippets(
    index: &xqdb::Index,
    query: &str,
    hits: Vec<xqdb::Hit>,
    width: usize,
) -> Result<Vec<Value>, String> {
    let docs: Vec<usize> = (0..hits.len())
        .filter(|&i| doc_path(&hits[i]).is_some())
        .collect();
    let mut out: Vec<Value> = hits
        .iter()
        .map(|h| serde_json::to_value(h).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    if docs.is_empty() {
        return Ok(out);
    }
    let encoder = index.encoder().map_err(err)?;
    let q = encoder.encode_queries(&[query]).map_err(err)?.remove(0);
    let per_hit: Vec<Vec<&str>> = docs
        .iter()
        .map(|&i| xqdb::documents::sentences(&hits[i].passage.text))
        .collect();
    let flat: Vec<&str> = per_hit.iter().flatten().copied().collect();
    let vectors = encoder.encode_passages(&flat).map_err(err)?;
    let mut at = 0;
    for (&i, sents) in docs.iter().zip(&per_hit) {
        let best = (0..sents.len())
            .max_by(|&a, &b| {
                let dot = |v: &Vec<f32>| v.iter().zip(&q).map(|(x, y)| x * y).sum::<f32>();
                dot(&vectors[at + a]).total_cmp(&dot(&vectors[at + b]))
            })
            .unwrap_or(0);
        at += sents.len();
        let h = &hits[i];
        let meta = h
            .passage
            .meta
            .as_ref()
            .expect("document hits have metadata");
        let location = format!(
            "{}:{}",
            meta["path"].as_str().unwrap_or(""),
            meta["line"].as_u64().unwrap_or(1)
        );
        let o = out[i].as_object_mut().expect("a hit is an object");
        o.insert("location".into(), json!(location));
        if h.snippet.is_none() {
            o.insert(
                "snippet".into(),
                json!(xqdb::documents::snippet(&h.passage.text, best, width)),
            );
        }
    }
    Ok(out)
}

fn doc_path(h: &xqdb::Hit) -> Option<&str> {
    let m = h.passage.meta.as_ref()?;
    m.get("start")?;
    m.get("path")?.as_str()
}
