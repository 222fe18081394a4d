//! Store commands: init, add, get, delete, compact, verify, stats; kernels and models.

use crate::common::{err, load_encoder, CliResult};
use crate::output::progress_bar;
use crate::xqg::ProfileArgs;
use clap::Args;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xqdb::ingest::{Row, WriteMode};
use xqdb::{Dtype, Index, Metric};

#[derive(Args)]
pub(crate) struct InitArgs {
    dir: PathBuf,
    /// Vector dimension (vectors-only index; omit to use a model).
    #[arg(long)]
    dim: Option<usize>,
    /// Encoder model bundle, a folder or a name `xqdb models` lists (default: the bundle
    /// `xqdb models` marks with *).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Similarity: dot or cosine.
    #[arg(long, default_value = "cosine")]
    metric: Metric,
    /// Segment storage type: f32, f16 or i8.
    #[arg(long, default_value = "f32")]
    dtype: Dtype,
    /// xQG: a seq2seq generator (optimum export folder); every added passage gets
    /// generated queries folded into its vector.
    #[arg(long)]
    generator: Option<PathBuf>,
    /// xQG profile without a generator: queries can only be imported
    /// (`generated_queries` in `add` files).
    #[arg(long)]
    xqg: bool,
    #[command(flatten)]
    profile: ProfileArgs,
    /// Compact codes kept beside the rows for fast first passes: binary, i8 or binary,i8
    /// (searches then scan the cheapest by default and rescore exactly).
    #[arg(long)]
    codes: Option<String>,
    /// Default oversampling of the first pass over codes (default: 48 binary, 4 i8).
    #[arg(long, requires = "codes")]
    oversample: Option<u32>,
    /// Keep a lexical (keyword) index for `search --mode lexical|hybrid`.
    #[arg(long)]
    lexical: bool,
    #[command(flatten)]
    lexical_settings: LexicalArgs,
}

/// Settings of a lexical (keyword) index.
#[derive(Args)]
pub(crate) struct LexicalArgs {
    /// BM25 term-frequency saturation.
    #[arg(long, default_value_t = 1.2)]
    k1: f32,
    /// BM25 length normalisation.
    #[arg(long, default_value_t = 0.75)]
    b: f32,
    /// Weight of the generated-queries field.
    #[arg(long, default_value_t = 0.5)]
    queries_weight: f32,
    /// Stem words by language (Snowball; passages by their lang, queries by --query-lang).
    #[arg(long)]
    stem: bool,
}

impl LexicalArgs {
    pub(crate) fn settings(&self) -> xqdb::LexicalSettings {
        xqdb::LexicalSettings {
            k1: self.k1,
            b: self.b,
            queries_weight: self.queries_weight,
            stem: self.stem,
        }
    }
}

#[derive(Args)]
pub(crate) struct EnableLexicalArgs {
    dir: PathBuf,
    #[command(flatten)]
    settings: LexicalArgs,
}

/// Adds a lexical index to an index (indexing what it holds) unless it has one; prints
/// the settings in force.
pub(crate) fn enable_lexical(a: EnableLexicalArgs) -> CliResult {
    let index = Index::open(&a.dir).map_err(err)?;
    let mut w = index.writer().map_err(err)?;
    let wanted = a.settings.settings();
    if let Some(kept) = index.snapshot().lexical_settings() {
        if kept != wanted {
            return Err(format!(
                "the index already keeps a lexical index with {}; its settings are fixed when it is added",
                crate::output::f32_tidy(json!(kept))
            ));
        }
    }
    let added = w.enable_lexical(wanted).map_err(err)?;
    drop(w);
    let report = index.verify().map_err(err)?;
    Ok(json!({
        "enabled": added,
        "lexical": crate::output::f32_tidy(json!(index.snapshot().lexical_settings())),
        "passages": report.passages,
        "postings": report.lexical_postings,
    }))
}

#[derive(Args)]
pub(crate) struct AddArgs {
    dir: PathBuf,
    file: PathBuf,
    /// Replace passages whose id exists instead of failing.
    #[arg(long)]
    upsert: bool,
    /// Commit every N lines (default: the whole file is one atomic batch).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Encoder model bundle (a folder or a name `xqdb models` lists) for rows without a vector (default: the one the index records).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Language tag of rows that name none (default: detected where the detector is
    /// confident; the rest stay untagged).
    #[arg(long)]
    lang: Option<String>,
}

#[derive(Args)]
pub(crate) struct GetArgs {
    dir: PathBuf,
    /// The passages' ids.
    #[arg(required = true)]
    ids: Vec<String>,
}

#[derive(Args)]
pub(crate) struct DeleteArgs {
    dir: PathBuf,
    /// The passages' ids.
    #[arg(required = true)]
    ids: Vec<String>,
}

/// An index folder.
#[derive(Args)]
pub(crate) struct DirArgs {
    dir: PathBuf,
}

#[derive(Args)]
pub(crate) struct KernelsArgs {
    /// Also check each kernel against the exact reference.
    #[arg(long)]
    check: bool,
}

pub(crate) fn init(a: InitArgs) -> CliResult {
    let InitArgs {
        dir,
        dim,
        model,
        metric,
        dtype,
        generator,
        xqg,
        profile,
        codes,
        oversample,
        lexical,
        lexical_settings,
    } = a;
    check_new_folder(&dir)?;
    let mut builder = Index::builder().metric(metric).dtype(dtype);
    if lexical {
        builder = builder.lexical(lexical_settings.settings());
    }
    if let Some(list) = codes {
        let mut c = xqdb::Codes::parse(&list).map_err(err)?;
        c.default_oversample = oversample;
        builder = builder.codes(c);
    }
    if xqg || generator.is_some() {
        builder = builder.xqg(profile.profile()?);
    }
    if let Some(g) = generator {
        let g = xqdb::Generator::open(&g, &xqdb::GeneratorOptions::default()).map_err(err)?;
        builder = builder.generator(Arc::new(g));
    }
    builder = match (dim, model) {
        (Some(dim), None) => builder.dim(dim),
        (dim, model) => {
            let encoder = load_encoder(model.as_deref())?;
            if let Some(d) = dim.filter(|&d| d != encoder.dim()) {
                return Err(format!(
                    "--dim {d} disagrees with the model's dimension {}",
                    encoder.dim()
                ));
            }
            builder.encoder(encoder)
        }
    };
    let index = builder.create(&dir).map_err(err)?;
    let s = index.stats().map_err(err)?;
    let profile = index.snapshot().xqg_profile().cloned();
    Ok(
        json!({ "created": dir, "dim": s.dim, "metric": s.metric, "dtype": s.dtype, "store_uuid": s.store_uuid, "model": s.model_fingerprint, "xqg": crate::output::f32_tidy(json!(profile)), "codes": s.codes, "first_pass": s.first_pass, "oversample": s.oversample, "lexical": crate::output::f32_tidy(json!(s.lexical)) }),
    )
}

/// `init` makes a new folder or fills an empty one: a file, or a folder holding other
/// things, is refused before anything is written.
fn check_new_folder(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Err(_) => Ok(()),
        Ok(m) if !m.is_dir() => Err(format!(
            "{} is a file; give a folder that does not exist yet (or an empty one)",
            dir.display()
        )),
        Ok(_) => {
            let mut entries =
                std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if entries.next().is_none() {
                return Ok(());
            }
            if dir.join("catalog.redb").exists() {
                return Err(format!(
                    "{} already holds an index; open it (`xqdb stats {}`) or choose another folder",
                    dir.display(),
                    dir.display()
                ));
            }
            Err(format!(
                "{} is not empty and holds no index; give a new or empty folder",
                dir.display()
            ))
        }
    }
}

pub(crate) fn get(GetArgs { dir, ids }: GetArgs) -> CliResult {
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

pub(crate) fn delete(DeleteArgs { dir, ids }: DeleteArgs) -> CliResult {
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

pub(crate) fn compact(DirArgs { dir }: DirArgs) -> CliResult {
    let index = Index::open(&dir).map_err(err)?;
    // A compaction is one commit: an interrupt lets it finish (then the exit status is 130).
    crate::common::interruptible();
    let rewritten = index.compact().map_err(err)?;
    if crate::common::interrupted() {
        crate::common::tell_interrupted("the compaction finished first (it is one commit)");
    }
    Ok(json!({ "rewritten": rewritten, "stats": index.stats().map_err(err)? }))
}

pub(crate) fn verify(DirArgs { dir }: DirArgs) -> CliResult {
    let index = Index::builder()
        .verify_policy(xqdb::VerifyPolicy::Always)
        .open(&dir)
        .map_err(err)?;
    let report = index.verify().map_err(err)?;
    Ok(json!({ "ok": true, "report": report }))
}

pub(crate) fn stats(DirArgs { dir }: DirArgs) -> CliResult {
    let index = Index::builder().read_only(true).open(&dir).map_err(err)?;
    let stats = index.stats().map_err(err)?;
    let languages = index.snapshot().languages().map_err(err)?;
    let tagged: u64 = languages.iter().map(|(_, n)| n).sum();
    let mut v = serde_json::to_value(&stats).map_err(|e| e.to_string())?;
    v["languages"] = json!(languages
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>());
    v["untagged"] = json!(stats.passages.saturating_sub(tagged));
    Ok(v)
}

/// `xqdb kernels`: the report, and with `check` the self-check of every runnable kernel.
pub(crate) fn kernels(KernelsArgs { check }: KernelsArgs, json_out: bool) -> CliResult {
    let report = xqdb::kernel_report();
    let checks = if check {
        xqdb::kernel_self_check()
    } else {
        Vec::new()
    };
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.kernel)
        .collect();
    let doc = json!({ "report": report, "checks": checks, "passed": failed.is_empty() });
    if json_out {
        if failed.is_empty() {
            return Ok(doc);
        }
        println!("{doc}");
        std::process::exit(1);
    }
    println!("{report}");
    for c in &checks {
        let verdict = if c.passed { "ok" } else { "FAILED" };
        println!(
            "check {}: {} cases, worst error {:.3} of the f32 bound: {verdict}",
            c.kernel, c.cases, c.worst
        );
    }
    if failed.is_empty() {
        Ok(Value::Null)
    } else {
        Err(format!(
            "kernels outside the f32 error bound: {}",
            failed.join(", ")
        ))
    }
}

/// `xqdb add`: the file's lines staged through [`xqdb::Writer::stage_rows`], one atomic commit
/// per `--batch-size` lines (default: the whole file).
pub(crate) fn add(a: AddArgs) -> CliResult {
    let AddArgs {
        dir,
        file,
        upsert,
        batch_size,
        model,
        lang,
    } = a;
    let index = crate::common::open_index(&dir, model.as_deref(), false)?;
    let f = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(total, "bytes");
    let mode = if upsert {
        WriteMode::Upsert
    } else {
        WriteMode::Insert
    };
    let mut reader = BufReader::new(f);
    let mut w = index.writer().map_err(err)?;
    crate::common::interruptible();
    let stop = |w: &mut xqdb::Writer, committed: usize| -> CliResult {
        w.rollback();
        crate::common::tell_interrupted(&format!(
            "{committed} passages of earlier batches are committed; the batch in flight was not written"
        ));
        Err("stopped by a signal".into())
    };
    let mut buf = Vec::new();
    let (mut line_no, mut added, mut commits) = (0usize, 0usize, 0usize);
    // Rows of earlier batches, already durable when a later batch fails.
    let mut committed = 0usize;
    let mut rows: Vec<Row> = Vec::new();
    let mut lines: Vec<usize> = Vec::new();
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
        let Some(row) = xqdb::ingest::jsonl::parse_line(&buf)
            .map_err(|msg| batch_error(&file, Some(line_no), msg, committed))?
        else {
            continue;
        };
        let mut row: Row = row.into();
        if row.passage.lang.is_none() {
            row.passage.lang = lang.clone();
        }
        rows.push(row);
        lines.push(line_no);
        if crate::common::interrupted() {
            return stop(&mut w, committed);
        }
        if batch_size.is_some_and(|b| rows.len() >= b) {
            added += stage(
                &index, &mut w, &mut rows, &mut lines, mode, &file, committed,
            )?;
            if crate::common::interrupted() {
                return stop(&mut w, committed);
            }
            w.commit().map_err(err)?;
            commits += 1;
            committed = added;
        }
    }
    added += stage(
        &index, &mut w, &mut rows, &mut lines, mode, &file, committed,
    )?;
    if crate::common::interrupted() {
        return stop(&mut w, committed);
    }
    let info = w.commit().map_err(err)?;
    commits += 1;
    bar.finish_and_clear();

    Ok(
        json!({ "added": added, "lines": line_no, "commits": commits, "commit_seq": info.commit_seq }),
    )
}

/// Stages one batch of rows (read from `lines` of `file`), with a progress bar for the rows
/// the index encodes.
#[allow(clippy::too_many_arguments)]
fn stage(
    index: &Index,
    w: &mut xqdb::Writer,
    rows: &mut Vec<Row>,
    lines: &mut Vec<usize>,
    mode: WriteMode,
    file: &Path,
    committed: usize,
) -> Result<usize, String> {
    #[cfg_attr(not(feature = "documents"), allow(unused_mut))]
    let mut rows = std::mem::take(rows);
    let lines = std::mem::take(lines);
    #[cfg(feature = "documents")]
    xqdb::documents::tag_rows(&xqdb::documents::Detector::default(), &mut rows);
    let n = rows.len();
    let encoded = rows
        .iter()
        .filter(|r| {
            !matches!(
                r.data,
                xqdb::ingest::RowData::Vector(_) | xqdb::ingest::RowData::Augmented(_)
            )
        })
        .count();
    // A passage longer than the model reads is refused, not cut silently.
    index.check_fits(&rows).map_err(|e| match e.row {
        Some(r) => batch_error(file, Some(lines[r]), e.error, committed),
        None => err(e.error),
    })?;
    let bar = progress_bar(encoded as u64, "passages");
    let report = |p: &xqdb::Progress| {
        bar.set_position(p.passages as u64);
        bar.set_message(format!(
            "{:.1} passages/s, {:.1} queries/s",
            p.passages_per_second(),
            p.queries_per_second()
        ));
    };
    let staged = w.stage_rows(rows, mode, &report);
    bar.finish_and_clear();
    staged.map_err(|e| {
        let hint = match (&e.error, mode) {
            (xqdb::Error::DuplicateId { .. }, WriteMode::Insert) => {
                "; add --upsert to replace passages that exist"
            }
            _ => "",
        };
        batch_error(
            file,
            e.row.map(|r| lines[r]),
            format!("{}{hint}", e.error),
            committed,
        )
    })?;
    Ok(n)
}

fn batch_error(
    file: &Path,
    line: Option<usize>,
    msg: impl std::fmt::Display,
    committed: usize,
) -> String {
    let line = line.map(|l| format!(":{l}")).unwrap_or_default();
    let earlier = match committed {
        0 => String::new(),
        n => format!("; the {n} passages of earlier batches are committed"),
    };
    format!(
        "{}{line}: {msg} (nothing of this batch was written{earlier})",
        file.display()
    )
}

#[derive(clap::Args)]
pub(crate) struct ModelsArgs {
    /// Also encode this many passages of ~60 words with each bundle (all cores) and report
    /// passages per second (best of two runs).
    #[arg(long, value_name = "PASSAGES", num_args = 0..=1, default_missing_value = "128")]
    measure: Option<usize>,
}

/// English prose the `--measure` passages are cut from (a document of the bundled example).
const MEASURE_TEXT: &str = include_str!("../../../examples/docs/en/bees.md");

/// Passages of ~60 words cut from [`MEASURE_TEXT`] at staggered starts.
fn measure_passages(n: usize) -> Vec<String> {
    let words: Vec<&str> = MEASURE_TEXT
        .split_whitespace()
        .filter(|w| !w.starts_with('#'))
        .collect();
    let span = 60.min(words.len());
    (0..n)
        .map(|i| {
            let start = (i * 13) % (words.len() - span + 1);
            words[start..start + span].join(" ")
        })
        .collect()
}

/// Passages per second of the bundle at `dir`, best of two runs after a warm-up.
fn measure_bundle(dir: &Path, texts: &[String]) -> Result<f64, String> {
    let encoder = xqdb::Encoder::from_dir(dir).map_err(err)?;
    encoder
        .encode_passages(&texts[..texts.len().min(8)])
        .map_err(err)?;
    let mut best = 0f64;
    for _ in 0..2 {
        let t = std::time::Instant::now();
        encoder.encode_passages(texts).map_err(err)?;
        best = best.max(texts.len() as f64 / t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// `xqdb models`: the encoder bundles the set-up installed.
pub(crate) fn models(a: ModelsArgs, json_out: bool) -> CliResult {
    let list = xqdb::model::installed_bundles();
    if list.is_empty() {
        return Err(format!(
            "no model bundles in {}: {}",
            xqdb::model::models_dir().display(),
            xqdb::model::SETUP_HINT
        ));
    }
    let texts = a.measure.map(|n| measure_passages(n.max(1)));
    let mut rows = Vec::new();
    for b in &list {
        let speed = match &texts {
            Some(texts) => Some(measure_bundle(&b.path, texts)?),
            None => None,
        };
        let mut row = serde_json::to_value(b).map_err(|e| e.to_string())?;
        if let Some(s) = speed {
            row["passages_per_s"] = json!(s);
        }
        rows.push(row);
        if !json_out {
            let speed = speed
                .map(|s| format!("{s:>7.1} passages/s  "))
                .unwrap_or_default();
            println!(
                "{}{:<34} {:>5} {:>4}d {:>4} tokens {:>8.1} MB  {speed}{}",
                if b.default { "* " } else { "  " },
                b.name,
                b.dtype,
                b.dim,
                b.max_passage_tokens,
                b.size_bytes as f64 / 1e6,
                b.path.display()
            );
        }
    }
    if json_out {
        return Ok(Value::Array(rows));
    }
    Ok(Value::Null)
}
