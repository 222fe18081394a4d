//! Evaluation commands (`eval translations|trec|xor`) and the demo (the main job).

use crate::common::{err, load_encoder, open_index, CliResult};
use crate::output::{metrics_table, progress_bar, quiet_unless};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use xqdb::eval::{RankMetrics, TranslationPair};
use xqdb::{Index, Passage, SearchOptions};

#[derive(Subcommand)]
pub(crate) enum EvalTask {
    /// Score a TREC run against TREC qrels with trec_eval's conventions: MRR@k, Recall@k,
    /// P@k, nDCG@k, per query and averaged.
    Trec {
        /// The run file (`qid Q0 docid rank score tag`).
        #[arg(long)]
        run: PathBuf,
        /// The qrels file (`qid iter docid rel`).
        #[arg(long)]
        qrels: PathBuf,
        /// Cutoff.
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        /// Count queries that have qrels but no results as zeros (trec_eval -c).
        #[arg(long)]
        complete: bool,
    },
    /// XOR-Retrieve R@2kt and R@5kt as the official eval_xor_retrieve.py computes them:
    /// score a prediction file, or retrieve with an index first.
    Xor {
        /// The XOR-Retrieve data file: {"id","lang","question","answers"} per line.
        #[arg(long)]
        questions: PathBuf,
        /// A prediction file ([{"id","lang","ctxs":[text, ...]}, ...]) to score.
        #[arg(long, conflicts_with = "index")]
        predictions: Option<PathBuf>,
        /// Retrieve each question's passages from this index (with its model).
        #[arg(long)]
        index: Option<PathBuf>,
        /// Passages retrieved per question (with --index).
        #[arg(short, long, default_value_t = 100)]
        k: usize,
        /// Write the retrieved passages as a prediction file (with --index).
        #[arg(long)]
        write_predictions: Option<PathBuf>,
        /// Token cutoffs (default 2000 and 5000).
        #[arg(long, value_delimiter = ',', default_value = "2000,5000")]
        tokens: Vec<usize>,
    },
    /// Native → English retrieval over {"lang","native","en"} files: each native text queries
    /// for its English translation among all English texts of its language.
    Translations {
        files: Vec<PathBuf>,
        /// Encoder model bundle, a folder or a name `xqdb models` lists (default: the set-up's multilingual-e5-small).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Use only the first N rows of each file.
        #[arg(long)]
        limit: Option<usize>,
        /// Oracle xQG (multi-parallel files): fuse each English vector with its versions in
        /// the other languages (the query's language left out) before searching.
        #[arg(long)]
        xqg_oracle: bool,
        /// Fusion weights for --xqg-oracle (comma-separated; 0 = no fusion).
        #[arg(long, value_delimiter = ',', default_value = "0.01")]
        alpha: Vec<f32>,
        /// L2-normalise fused vectors (--xqg-oracle).
        #[arg(long)]
        normalize: bool,
    },
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Encoder model bundle, a folder or a name `xqdb models` lists (default: the set-up's multilingual-e5-small).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Sample file of {"lang","native","en"} rows.
    #[arg(long)]
    sample: Option<PathBuf>,
    /// Where to build the index (default: a fresh folder under the set-up's cache).
    #[arg(long)]
    index: Option<PathBuf>,
}

/// Runs an `eval` task; tables go to stderr, the JSON document only with `--json`.
pub(crate) fn eval(task: EvalTask, json_out: bool) -> CliResult {
    match task {
        EvalTask::Xor {
            questions,
            predictions,
            index,
            k,
            write_predictions,
            tokens,
        } => quiet_unless(
            json_out,
            eval_xor(
                &questions,
                predictions.as_deref(),
                index.as_deref(),
                k,
                write_predictions.as_deref(),
                &tokens,
            ),
        ),
        EvalTask::Translations {
            files,
            model,
            limit,
            xqg_oracle: true,
            alpha,
            normalize,
        } => quiet_unless(
            json_out,
            eval_oracle(&files, model.as_deref(), limit, &alpha, normalize),
        ),
        EvalTask::Translations {
            files,
            model,
            limit,
            ..
        } => quiet_unless(json_out, eval_translations(&files, model.as_deref(), limit)),
        EvalTask::Trec {
            run,
            qrels,
            k,
            complete,
        } => {
            let r = xqdb::eval::trec::read_run(&run).map_err(err)?;
            let q = xqdb::eval::trec::read_qrels(&qrels).map_err(err)?;
            let report = xqdb::eval::trec::evaluate(&r, &q, k, complete);
            if !json_out {
                let m = &report.mean;
                println!(
                    "queries {}  MRR@{k} {:.4}  Recall@{k} {:.4}  P@{k} {:.4}  nDCG@{k} {:.4}",
                    report.queries, m.mrr, m.recall, m.precision, m.ndcg
                );
                return Ok(Value::Null);
            }
            serde_json::to_value(report).map_err(|e| e.to_string())
        }
    }
}

/// `xqdb demo`: the README's main job.
pub(crate) fn demo(a: DemoArgs, json_out: bool) -> CliResult {
    let DemoArgs {
        model,
        sample,
        index,
    } = a;
    quiet_unless(json_out, run_demo(model.as_deref(), sample, index))
}

fn eval_translations(files: &[PathBuf], model: Option<&Path>, limit: Option<usize>) -> CliResult {
    if files.is_empty() {
        return Err("give at least one translations file".into());
    }
    let encoder = load_encoder(model)?;
    let mut pairs: Vec<TranslationPair> = Vec::new();
    for f in files {
        pairs.extend(xqdb::eval::read_pairs(f, limit).map_err(err)?);
    }
    let start = std::time::Instant::now();
    let per_lang = xqdb::eval::eval_translations(&encoder, &pairs).map_err(err)?;
    metrics_table(
        &format!(
            "native -> English among each language's English texts ({}; {:.1} s)",
            encoder.fingerprint(),
            start.elapsed().as_secs_f64()
        ),
        &per_lang,
    );
    let avg = RankMetrics::macro_average(per_lang.values());
    Ok(json!({ "model": encoder.fingerprint(), "languages": per_lang, "average": avg }))
}

fn eval_xor(
    questions: &Path,
    predictions: Option<&Path>,
    index: Option<&Path>,
    k: usize,
    write: Option<&Path>,
    cutoffs: &[usize],
) -> CliResult {
    use xqdb::eval::xor;
    let qs = xor::read_questions(questions).map_err(err)?;
    let preds = match (predictions, index) {
        (Some(p), _) => xor::read_predictions(p).map_err(err)?,
        (None, Some(dir)) => {
            let index = open_index(dir, None, true)?;
            let texts: Vec<&str> = qs.iter().map(|q| q.question.as_str()).collect();
            let start = std::time::Instant::now();
            let mut preds = Vec::with_capacity(qs.len());
            for (chunk, qchunk) in texts.chunks(64).zip(qs.chunks(64)) {
                let hits = index
                    .search_texts(chunk, &SearchOptions::new(k))
                    .map_err(err)?;
                for (q, hits) in qchunk.iter().zip(hits) {
                    preds.push(xor::XorPrediction {
                        id: q.id.clone(),
                        lang: q.lang.clone(),
                        ctxs: hits
                            .into_iter()
                            .map(|h| xor::Ctx::Text(h.passage.text))
                            .collect(),
                    });
                }
            }
            eprintln!(
                "retrieved top-{k} for {} questions in {:.1} s",
                qs.len(),
                start.elapsed().as_secs_f64()
            );
            if let Some(w) = write {
                let json = serde_json::to_string(&preds).map_err(|e| e.to_string())?;
                std::fs::write(w, json).map_err(|e| format!("{}: {e}", w.display()))?;
            }
            preds
        }
        (None, None) => return Err("give --predictions FILE or --index DIR".into()),
    };
    let scores = xor::score(&qs, &preds, cutoffs);
    let mut out = serde_json::Map::new();
    for s in &scores {
        eprintln!("R@{}kt", s.max_tokens as f64 / 1000.0);
        eprintln!("{:<8} {:>7} {:>7} {:>10}", "lang", "count", "hit", "score");
        for l in &s.languages {
            eprintln!(
                "{:<8} {:>7} {:>7} {:>10.4}",
                l.lang, l.count, l.hit, l.score
            );
        }
        eprintln!("{:<8} {:>26.4}", "average", s.macro_average);
        out.insert(
            format!("R@{}kt", s.max_tokens as f64 / 1000.0),
            serde_json::to_value(s).map_err(|e| e.to_string())?,
        );
    }
    Ok(Value::Object(out))
}

fn eval_oracle(
    files: &[PathBuf],
    model: Option<&Path>,
    limit: Option<usize>,
    alphas: &[f32],
    normalize: bool,
) -> CliResult {
    if files.is_empty() {
        return Err("give at least one multi-parallel file".into());
    }
    if alphas
        .iter()
        .any(|a| !a.is_finite() || !(0.0..=1.0).contains(a))
    {
        return Err("every --alpha must be in [0, 1]".into());
    }
    let encoder = load_encoder(model)?;
    let mut rows = Vec::new();
    for f in files {
        let mut r = xqdb::eval::read_parallel(f).map_err(err)?;
        r.truncate(limit.unwrap_or(usize::MAX));
        rows.extend(r);
    }
    let start = std::time::Instant::now();
    let runs = xqdb::eval::eval_xqg_oracle(&encoder, &rows, alphas, normalize).map_err(err)?;
    for run in &runs {
        metrics_table(
            &format!(
                "oracle xQG, alpha {}{}: native -> English among {} English texts ({})",
                run.alpha,
                if normalize { ", normalised" } else { "" },
                rows.len(),
                encoder.fingerprint()
            ),
            &run.languages,
        );
    }
    eprintln!("({:.1} s)", start.elapsed().as_secs_f64());
    Ok(json!({ "model": encoder.fingerprint(), "rows": rows.len(), "runs": runs }))
}

fn run_demo(
    model: Option<&Path>,
    sample: Option<PathBuf>,
    index_dir: Option<PathBuf>,
) -> CliResult {
    let sample = sample.unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/xor-tydi-sample.jsonl")
    });
    let pairs = xqdb::eval::read_pairs(&sample, None).map_err(err)?;
    let dir = index_dir.unwrap_or_else(|| xqdb::model::xqdb_home().join("demo-index"));
    if dir.join("catalog.redb").exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let encoder = load_encoder(model)?;
    eprintln!(
        "model: {} ({})",
        encoder.fingerprint(),
        encoder.bundle().dir().display()
    );
    let index = Index::builder()
        .encoder(encoder.clone())
        .create(&dir)
        .map_err(err)?;
    // The collection: every English question of the sample, once.
    let mut seen = std::collections::HashSet::new();
    let passages: Vec<Passage> = pairs
        .iter()
        .filter(|p| seen.insert(p.en.clone()))
        .enumerate()
        .map(|(i, p)| {
            Passage::new(format!("en-{i}"), p.en.clone())
                .with_lang("en")
                .with_meta(json!({ "translated_from": p.lang }))
        })
        .collect();
    let id_of: std::collections::HashMap<&str, &str> = passages
        .iter()
        .map(|p| (p.text.as_str(), p.id.as_str()))
        .collect();
    let start = std::time::Instant::now();
    let bar = progress_bar(passages.len() as u64, "passages");
    let mut w = index.writer().map_err(err)?;
    w.insert_texts(passages.clone(), &|p| bar.set_position(p.passages as u64))
        .map_err(err)?;
    w.commit().map_err(err)?;
    drop(w);
    bar.finish_and_clear();
    eprintln!(
        "indexed {} English questions in {:.1} s into {}",
        passages.len(),
        start.elapsed().as_secs_f64(),
        dir.display()
    );
    let mut by_lang: std::collections::BTreeMap<String, Vec<&TranslationPair>> = Default::default();
    for p in &pairs {
        by_lang.entry(p.lang.clone()).or_default().push(p);
    }
    let mut per_lang = std::collections::BTreeMap::new();
    let mut examples = Vec::new();
    let start = std::time::Instant::now();
    for (lang, rows) in &by_lang {
        let queries: Vec<&str> = rows.iter().map(|p| p.native.as_str()).collect();
        let hits = index
            .search_texts(&queries, &SearchOptions::new(10))
            .map_err(err)?;
        let ranks: Vec<usize> = rows
            .iter()
            .zip(&hits)
            .map(|(p, h)| {
                h.iter()
                    .position(|hit| hit.id == id_of[p.en.as_str()])
                    .unwrap_or(10)
            })
            .collect();
        per_lang.insert(lang.clone(), RankMetrics::from_ranks(&ranks));
        let (p, h) = (rows[0], &hits[0]);
        println!("\n[{lang}] {}", p.native);
        for (rank, hit) in h.iter().take(3).enumerate() {
            let mark = if hit.id == id_of[p.en.as_str()] {
                "  <- its translation"
            } else {
                ""
            };
            println!(
                "  {}. {:.3}  {}{mark}",
                rank + 1,
                hit.score,
                hit.passage.text
            );
        }
        examples.push(json!({ "lang": lang, "query": p.native, "hits": h.iter().take(3).collect::<Vec<_>>() }));
    }
    let n: usize = by_lang.values().map(Vec::len).sum();
    println!();
    metrics_table(
        &format!(
            "{n} native-language questions searched in {:.1} s; top-10 among {} English questions:",
            start.elapsed().as_secs_f64(),
            passages.len()
        ),
        &per_lang,
    );
    Ok(
        json!({ "index": dir, "passages": passages.len(), "languages": per_lang, "average": RankMetrics::macro_average(per_lang.values()), "examples": examples }),
    )
}
