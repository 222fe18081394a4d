//! The xqdb command-line tool. Every command takes `--json` for scripts.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use xqdb::eval::{RankMetrics, TranslationPair};
use xqdb::{
    Dtype, Encoder, EncoderOptions, Filter, Index, Metric, ModelBundle, Passage, SearchOptions,
};

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
    /// Create an empty index: for text with a model (default: the default bundle), or
    /// for vectors only with --dim.
    Init {
        dir: PathBuf,
        /// Vector dimension (vectors-only index; omit to use a model).
        #[arg(long)]
        dim: Option<usize>,
        /// Encoder model bundle (default: the set-up's multilingual-e5-small).
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
        #[command(flatten)]
        out: Output,
    },
    /// Show the queries generated (or imported) for passages.
    Queries {
        dir: PathBuf,
        ids: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Recompute every fused vector with a new alpha, without generating again.
    Refuse {
        dir: PathBuf,
        /// The new fusion weight.
        #[arg(long)]
        alpha: f32,
        /// Keep the fused vectors unnormalised (dot-product indexes only).
        #[arg(long)]
        no_normalize: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Generate queries for passages added with deferred generation, within a budget.
    Augment {
        dir: PathBuf,
        /// Stop after this many passages.
        #[arg(long)]
        passages: Option<usize>,
        /// Stop after this many seconds (the passage in progress is finished).
        #[arg(long)]
        seconds: Option<f64>,
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
        /// Encoder model bundle for rows without a vector (default: the one the index records).
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        out: Output,
    },
    /// Search by vector.
    Search {
        dir: PathBuf,
        /// Query text, encoded by the index's model (or use --vector-file).
        text: Option<String>,
        /// Encoder model bundle (default: the one the index records).
        #[arg(long)]
        model: Option<PathBuf>,
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
        /// Search text queries without the stored query adapter.
        #[arg(long)]
        no_adapter: bool,
        /// Rescore the dense top --rerank-depth with a teacher: `translation` (needs
        /// --parallel), `generator[:DIR]` (needs --query-lang) or `encoder:DIR`.
        #[arg(long)]
        rerank: Option<String>,
        /// How many dense hits the teacher rescores.
        #[arg(long, default_value_t = 20)]
        rerank_depth: usize,
        /// Teacher weight w: final = (1 - w)·z(dense) + w·z(teacher).
        #[arg(long, default_value_t = 0.5)]
        rerank_weight: f32,
        /// The query's language code (the generator teacher's prompt names it).
        #[arg(long)]
        query_lang: Option<String>,
        /// A parallel (e.g. English) version of the query, for the translation teacher.
        #[arg(long)]
        parallel: Option<String>,
        /// Length-normalise the generator teacher's log-likelihood.
        #[arg(long)]
        length_normalize: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Mine a distillation set with a teacher and train a query adapter stored in the index.
    Distill {
        dir: PathBuf,
        /// `translation` (queries need `parallel`), `generator[:DIR]` or `encoder:DIR`.
        #[arg(long)]
        teacher: Option<String>,
        /// Real queries: JSONL with `query` and optionally `lang`, `positive`, `parallel`.
        #[arg(long)]
        queries: Option<PathBuf>,
        /// Use up to N of the generated queries stored with the passages instead.
        #[arg(long)]
        pseudo: Option<usize>,
        /// Train on a set written earlier (skips mining and the teacher).
        #[arg(long, conflicts_with_all = ["queries", "pseudo", "teacher"])]
        from_set: Option<PathBuf>,
        /// Write the distillation set (JSONL) here.
        #[arg(long)]
        set_out: Option<PathBuf>,
        /// Only write the set; store no adapter.
        #[arg(long)]
        no_train: bool,
        /// Candidates per query.
        #[arg(long, default_value_t = 20)]
        candidates: usize,
        /// Train a low-rank adapter W = I + A·B of this rank instead of a full matrix.
        #[arg(long)]
        rank: Option<usize>,
        #[arg(long, default_value_t = 15)]
        epochs: usize,
        /// Adam step size (small sets overfit quickly: the held-out split keeps the best epoch).
        #[arg(long, default_value_t = 1e-4)]
        learning_rate: f32,
        /// Softmax temperature of both teacher and student scores.
        #[arg(long, default_value_t = 0.02)]
        temperature: f32,
        /// Share of the set held out for early stopping.
        #[arg(long, default_value_t = 0.1)]
        holdout: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Length-normalise the generator teacher's log-likelihood.
        #[arg(long)]
        length_normalize: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Show (default) or remove the index's query adapter.
    Adapter {
        dir: PathBuf,
        /// Show the adapter (the default).
        #[arg(long)]
        show: bool,
        /// Remove the adapter; text searches use the plain encoder again.
        #[arg(long, conflicts_with = "show")]
        drop: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Answer a local HTTP JSON API (search, get, add, delete, stats, health) until
    /// interrupted; see the `xqdb::server` docs for the routes.
    Serve {
        dir: PathBuf,
        /// Address to listen on (keep it on loopback: there is no authentication).
        #[arg(long, default_value = "127.0.0.1:7700")]
        addr: String,
        /// Worker threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Largest request body in bytes.
        #[arg(long, default_value_t = 16 << 20)]
        max_body_bytes: usize,
        /// Refuse writes; other processes may write meanwhile.
        #[arg(long)]
        read_only: bool,
        /// Encoder model bundle (default: the one the index records).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Write every passage (text, queries, vectors) to a Parquet or Arrow IPC file.
    Export {
        dir: PathBuf,
        /// Output file: .parquet or .arrow.
        file: PathBuf,
        /// Store vectors as f16.
        #[arg(long)]
        f16: bool,
        /// Rows per record batch.
        #[arg(long, default_value_t = 8192)]
        batch_rows: usize,
        #[command(flatten)]
        out: Output,
    },
    /// Store the rows of a Parquet or Arrow IPC file in the schema of `export` (creating
    /// the index from the file's metadata when DIR does not exist).
    Import {
        dir: PathBuf,
        file: PathBuf,
        /// Replace passages whose id exists instead of failing.
        #[arg(long)]
        upsert: bool,
        /// Rows per durable commit.
        #[arg(long, default_value_t = 65_536)]
        commit_rows: usize,
        /// Encoder bundle for rows without vectors (default: the index's, or the default
        /// bundle for a new index whose file names a model).
        #[arg(long)]
        model: Option<PathBuf>,
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
    /// Show the CPU and the scoring kernels searches use on it; with --check, run every
    /// kernel this CPU can execute against exact sums (exit status 1 on a failure).
    Kernels {
        /// Also check each kernel against the exact reference.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Evaluate retrieval quality.
    Eval {
        #[command(subcommand)]
        task: EvalTask,
    },
    /// The main job: index the bundled XOR-TyDi sample (English questions) and answer the
    /// native-language originals across languages, printing hits and R@1 per language.
    Demo {
        /// Encoder model bundle (default: the set-up's multilingual-e5-small).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Sample file of {"lang","native","en"} rows.
        #[arg(long)]
        sample: Option<PathBuf>,
        /// Where to build the index (default: a fresh folder under the set-up's cache).
        #[arg(long)]
        index: Option<PathBuf>,
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

/// The xQG augmentation profile of `init`.
#[derive(Args, Clone)]
struct ProfileArgs {
    /// Target languages: codes (ar,bn,fi,ja,ko,ru,te) or CODE=Name.
    #[arg(long, default_value = "ar,bn,fi,ja,ko,ru,te")]
    languages: String,
    /// Queries sampled per language.
    #[arg(long, default_value_t = 5)]
    per_language: usize,
    /// Fusion weight of the query vectors.
    #[arg(long, default_value_t = 0.01)]
    alpha: f32,
    /// Keep fused vectors unnormalised (only meaningful with --metric dot).
    #[arg(long)]
    no_normalize: bool,
    /// Sample among the k most likely tokens.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Longest query in tokens (with the decoder start token).
    #[arg(long, default_value_t = 32)]
    max_query_tokens: usize,
    /// Prompts are truncated to this many tokens.
    #[arg(long, default_value_t = 256)]
    max_input_tokens: usize,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Make passages searchable at once and generate their queries later (`xqdb augment`).
    #[arg(long)]
    deferred: bool,
    /// Keep each generated query's vector too (about 35× the space).
    #[arg(long)]
    store_query_vectors: bool,
}

impl ProfileArgs {
    fn profile(&self) -> Result<xqdb::XqgProfile, String> {
        Ok(xqdb::XqgProfile {
            languages: xqdb::xqg::TargetLanguage::parse_list(&self.languages).map_err(err)?,
            per_language: self.per_language,
            alpha: self.alpha,
            normalize: !self.no_normalize,
            top_k: self.top_k,
            top_p: self.top_p,
            temperature: self.temperature,
            max_query_tokens: self.max_query_tokens,
            max_input_tokens: self.max_input_tokens,
            seed: self.seed,
            deferred: self.deferred,
            store_query_vectors: self.store_query_vectors,
            ..Default::default()
        })
    }
}

#[derive(Subcommand)]
enum EvalTask {
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
        #[command(flatten)]
        out: Output,
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
        #[command(flatten)]
        out: Output,
    },
    /// Native → English retrieval over {"lang","native","en"} files: each native text queries
    /// for its English translation among all English texts of its language.
    Translations {
        files: Vec<PathBuf>,
        /// Encoder model bundle (default: the set-up's multilingual-e5-small).
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
        #[command(flatten)]
        out: Output,
    },
}

type CliResult = Result<Value, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_out = match &cli.command {
        Command::Init { out, .. }
        | Command::Queries { out, .. }
        | Command::Refuse { out, .. }
        | Command::Augment { out, .. }
        | Command::Add { out, .. }
        | Command::Search { out, .. }
        | Command::Distill { out, .. }
        | Command::Adapter { out, .. }
        | Command::Export { out, .. }
        | Command::Import { out, .. }
        | Command::Get { out, .. }
        | Command::Delete { out, .. }
        | Command::Compact { out, .. }
        | Command::Verify { out, .. }
        | Command::Stats { out, .. }
        | Command::Kernels { out, .. }
        | Command::Demo { out, .. }
        | Command::Eval {
            task:
                EvalTask::Translations { out, .. }
                | EvalTask::Trec { out, .. }
                | EvalTask::Xor { out, .. },
        } => out.json,
        Command::StressWriter { .. } | Command::Serve { .. } => false,
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
            model,
            metric,
            dtype,
            generator,
            xqg,
            profile,
            ..
        } => {
            let mut builder = Index::builder().metric(metric).dtype(dtype);
            if xqg || generator.is_some() {
                builder = builder.xqg(profile.profile()?);
            }
            if let Some(g) = generator {
                let g =
                    xqdb::Generator::open(&g, &xqdb::GeneratorOptions::default()).map_err(err)?;
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
                json!({ "created": dir, "dim": s.dim, "metric": s.metric, "dtype": s.dtype, "store_uuid": s.store_uuid, "model": s.model_fingerprint, "xqg": profile }),
            )
        }
        Command::Queries { dir, ids, .. } => {
            let index = Index::builder().read_only(true).open(&dir).map_err(err)?;
            let snap = index.snapshot();
            let mut out = serde_json::Map::new();
            let mut missing = Vec::new();
            for id in ids {
                match snap.augmentation(&id).map_err(err)? {
                    Some(a) => {
                        let queries: Vec<Value> = a
                            .queries
                            .iter()
                            .map(|(l, t)| json!({ "lang": l, "text": t }))
                            .collect();
                        out.insert(id, json!({ "pending": a.pending, "queries": queries }));
                    }
                    None if snap.contains(&id).map_err(err)? => {
                        out.insert(id, json!({ "pending": false, "queries": [] }));
                    }
                    None => missing.push(id),
                }
            }
            Ok(json!({ "passages": out, "missing": missing }))
        }
        Command::Refuse {
            dir,
            alpha,
            no_normalize,
            ..
        } => {
            let index = Index::open(&dir).map_err(err)?;
            let mut w = index.writer().map_err(err)?;
            let start = std::time::Instant::now();
            let r = w.refuse(alpha, !no_normalize).map_err(err)?;
            Ok(
                json!({ "refused": r.refused, "unchanged": r.unchanged, "alpha": alpha, "normalize": !no_normalize, "seconds": start.elapsed().as_secs_f64() }),
            )
        }
        Command::Augment {
            dir,
            passages,
            seconds,
            ..
        } => {
            let index = Index::open(&dir).map_err(err)?;
            let mut w = index.writer().map_err(err)?;
            let mut budget = xqdb::AugmentBudget::default();
            if let Some(p) = passages {
                budget.max_passages = p;
            }
            if let Some(s) = seconds {
                budget.max_time = std::time::Duration::from_secs_f64(s.max(0.0));
            }
            let start = std::time::Instant::now();
            let r = w.augment(&budget).map_err(err)?;
            Ok(
                json!({ "augmented": r.augmented, "queries": r.queries, "remaining": r.remaining, "seconds": start.elapsed().as_secs_f64() }),
            )
        }
        Command::Add {
            dir,
            file,
            upsert,
            batch_size,
            model,
            ..
        } => add(&dir, &file, upsert, batch_size, model.as_deref()),
        Command::Search {
            dir,
            text,
            model,
            vector_file,
            k,
            langs,
            meta,
            no_adapter,
            rerank,
            rerank_depth,
            rerank_weight,
            query_lang,
            parallel,
            length_normalize,
            ..
        } => {
            let index = open_index(&dir, model.as_deref(), true)?;
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
            let options = SearchOptions::new(k).filter(filter).adapter(!no_adapter);
            let hits = match (text, vector_file) {
                (_, Some(f)) => {
                    if rerank.is_some() {
                        return Err("--rerank needs a text query".into());
                    }
                    index
                        .search_batch(&read_vectors(&f)?, &options)
                        .map_err(err)?
                }
                (Some(t), None) => match rerank {
                    Some(spec) => {
                        let teacher = make_teacher(&spec, &index, length_normalize)?;
                        let query = xqdb::distill::TeacherQuery {
                            text: &t,
                            lang: query_lang.as_deref(),
                            parallel: parallel.as_deref(),
                        };
                        let r = xqdb::Rerank {
                            teacher: teacher.as_ref(),
                            depth: rerank_depth,
                            weight: rerank_weight,
                        };
                        vec![index
                            .search_text_reranked(&query, &options, &r)
                            .map_err(err)?]
                    }
                    None => index.search_texts(&[t], &options).map_err(err)?,
                },
                (None, None) => return Err("give a query text or --vector-file".into()),
            };
            Ok(json!({ "results": hits }))
        }
        Command::Distill {
            dir,
            teacher,
            queries,
            pseudo,
            from_set,
            set_out,
            no_train,
            candidates,
            rank,
            epochs,
            learning_rate,
            temperature,
            holdout,
            seed,
            length_normalize,
            ..
        } => distill(
            &dir,
            DistillArgs {
                teacher,
                queries,
                pseudo,
                from_set,
                set_out,
                no_train,
                candidates,
                train: xqdb::distill::TrainOptions {
                    learning_rate,
                    epochs,
                    tau_teacher: temperature,
                    tau_student: temperature,
                    holdout,
                    seed,
                    rank,
                    ..Default::default()
                },
                length_normalize,
            },
        ),
        Command::Adapter { dir, drop, .. } => {
            if drop {
                let index = Index::open(&dir).map_err(err)?;
                let dropped = index.writer().map_err(err)?.drop_adapter().map_err(err)?;
                return Ok(json!({ "dropped": dropped }));
            }
            let index = Index::builder().read_only(true).open(&dir).map_err(err)?;
            let snap = index.snapshot();
            Ok(match snap.adapter() {
                None => json!({ "adapter": null }),
                Some(a) => json!({
                    "adapter": {
                        "dim": a.adapter.dim(),
                        "rank": a.adapter.rank(),
                        "distance_from_identity": a.adapter.distance_from_identity(),
                        "info": a.info,
                    }
                }),
            })
        }
        Command::Serve {
            dir,
            addr,
            threads,
            max_body_bytes,
            read_only,
            model,
        } => {
            let index = open_index(&dir, model.as_deref(), read_only)?;
            let server = xqdb::server::Server::bind(
                index,
                &addr,
                xqdb::server::ServerOptions {
                    threads,
                    max_body_bytes,
                    read_only,
                    ..Default::default()
                },
            )
            .map_err(err)?;
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, stop.clone())
                    .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
            }
            println!("listening on http://{}", server.addr());
            std::io::stdout().flush().ok();
            server.run(&stop);
            server.close();
            eprintln!("stopped; the index was closed cleanly");
            Ok(Value::Null)
        }
        Command::Export {
            dir,
            file,
            f16,
            batch_rows,
            ..
        } => {
            let index = Index::builder().read_only(true).open(&dir).map_err(err)?;
            let start = std::time::Instant::now();
            let r = xqdb::interchange::export(
                &index,
                &file,
                &xqdb::interchange::ExportOptions { batch_rows, f16 },
            )
            .map_err(err)?;
            let secs = start.elapsed().as_secs_f64();
            Ok(
                json!({ "file": file, "report": r, "seconds": secs, "rows_per_second": r.rows as f64 / secs }),
            )
        }
        Command::Import {
            dir,
            file,
            upsert,
            commit_rows,
            model,
            ..
        } => {
            let options = xqdb::interchange::ImportOptions {
                commit_rows,
                upsert,
                ..Default::default()
            };
            let start = std::time::Instant::now();
            let r = if dir.join("catalog.redb").exists() {
                let index = open_index(&dir, model.as_deref(), false)?;
                let source =
                    xqdb::interchange::Source::open(&file, options.batch_rows).map_err(err)?;
                xqdb::interchange::import(&index, source, &options).map_err(err)?
            } else {
                let source =
                    xqdb::interchange::Source::open(&file, options.batch_rows).map_err(err)?;
                let names_model = source.metadata().contains_key("xqdb.model_fingerprint");
                drop(source);
                let encoder = if model.is_some() || names_model {
                    Some(load_encoder(model.as_deref())?)
                } else {
                    None
                };
                xqdb::interchange::import_new(&dir, &file, encoder, &options)
                    .map_err(err)?
                    .1
            };
            let secs = start.elapsed().as_secs_f64();
            Ok(
                json!({ "index": dir, "report": r, "seconds": secs, "rows_per_second": r.rows as f64 / secs }),
            )
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
        Command::Kernels { check, out } => kernels(check, out.json),
        Command::Stats { dir, .. } => {
            let index = Index::builder().read_only(true).open(&dir).map_err(err)?;
            Ok(serde_json::to_value(index.stats().map_err(err)?).map_err(|e| e.to_string())?)
        }
        Command::Eval {
            task:
                EvalTask::Xor {
                    questions,
                    predictions,
                    index,
                    k,
                    write_predictions,
                    tokens,
                    out,
                },
        } => quiet_unless(
            out.json,
            eval_xor(
                &questions,
                predictions.as_deref(),
                index.as_deref(),
                k,
                write_predictions.as_deref(),
                &tokens,
            ),
        ),
        Command::Eval {
            task:
                EvalTask::Translations {
                    files,
                    model,
                    limit,
                    xqg_oracle: true,
                    alpha,
                    normalize,
                    out,
                },
        } => quiet_unless(
            out.json,
            eval_oracle(&files, model.as_deref(), limit, &alpha, normalize),
        ),
        Command::Eval {
            task:
                EvalTask::Translations {
                    files,
                    model,
                    limit,
                    out,
                    ..
                },
        } => quiet_unless(out.json, eval_translations(&files, model.as_deref(), limit)),
        Command::Eval {
            task:
                EvalTask::Trec {
                    run,
                    qrels,
                    k,
                    complete,
                    out,
                },
        } => {
            let r = xqdb::eval::trec::read_run(&run).map_err(err)?;
            let q = xqdb::eval::trec::read_qrels(&qrels).map_err(err)?;
            let report = xqdb::eval::trec::evaluate(&r, &q, k, complete);
            if !out.json {
                let m = &report.mean;
                println!(
                    "queries {}  MRR@{k} {:.4}  Recall@{k} {:.4}  P@{k} {:.4}  nDCG@{k} {:.4}",
                    report.queries, m.mrr, m.recall, m.precision, m.ndcg
                );
                return Ok(Value::Null);
            }
            serde_json::to_value(report).map_err(|e| e.to_string())
        }
        Command::Demo {
            model,
            sample,
            index,
            out,
        } => quiet_unless(out.json, demo(model.as_deref(), sample, index)),
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

fn load_encoder(model: Option<&Path>) -> Result<Arc<Encoder>, String> {
    let dir = model
        .map(Path::to_path_buf)
        .unwrap_or_else(ModelBundle::default_dir);
    let bundle = ModelBundle::open(&dir).map_err(err)?;
    Encoder::open(bundle, &EncoderOptions::default())
        .map(Arc::new)
        .map_err(err)
}

fn make_teacher(
    spec: &str,
    index: &Index,
    length_normalize: bool,
) -> Result<Box<dyn xqdb::distill::Teacher>, String> {
    use xqdb::distill::{EncoderTeacher, GeneratorTeacher, TranslationTeacher};
    let (kind, arg) = match spec.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (spec, None),
    };
    match (kind, arg) {
        ("translation", None) => Ok(Box::new(TranslationTeacher::new(
            index.encoder().map_err(err)?,
        ))),
        ("generator", dir) => {
            let generator = match dir {
                Some(d) => Arc::new(
                    xqdb::Generator::open(d, &xqdb::GeneratorOptions::default()).map_err(err)?,
                ),
                None => index
                    .generator()
                    .map_err(|e| format!("{e}; name one with --teacher generator:DIR"))?,
            };
            let profile = index.snapshot().xqg_profile().cloned().unwrap_or_default();
            Ok(Box::new(GeneratorTeacher::new(
                generator,
                profile,
                length_normalize,
            )))
        }
        ("encoder", Some(d)) => Ok(Box::new(EncoderTeacher::new(load_encoder(Some(
            Path::new(d),
        ))?))),
        _ => Err(format!(
            "unknown teacher {spec:?}: use translation, generator[:DIR] or encoder:DIR"
        )),
    }
}

struct DistillArgs {
    teacher: Option<String>,
    queries: Option<PathBuf>,
    pseudo: Option<usize>,
    from_set: Option<PathBuf>,
    set_out: Option<PathBuf>,
    no_train: bool,
    candidates: usize,
    train: xqdb::distill::TrainOptions,
    length_normalize: bool,
}

fn distill(dir: &Path, a: DistillArgs) -> CliResult {
    use xqdb::distill::{build_set, fit, pseudo_queries, read_queries, read_set, write_set};
    let index = Index::open(dir).map_err(err)?;
    let start = std::time::Instant::now();
    let mut out = serde_json::Map::new();
    let rows = match &a.from_set {
        Some(path) => read_set(path).map_err(err)?,
        None => {
            let spec = a
                .teacher
                .as_deref()
                .ok_or("give --teacher (or train on a written set with --from-set)")?;
            let teacher = make_teacher(spec, &index, a.length_normalize)?;
            let queries = match (&a.queries, a.pseudo) {
                (Some(f), None) => read_queries(f).map_err(err)?,
                (None, Some(n)) => pseudo_queries(&index, Some(n), a.train.seed).map_err(err)?,
                _ => return Err("give exactly one of --queries FILE or --pseudo N".into()),
            };
            let bar = progress_bar(queries.len() as u64, "queries");
            let set = build_set(
                &index,
                &queries,
                teacher.as_ref(),
                &xqdb::distill::SetOptions {
                    candidates: a.candidates,
                    ..Default::default()
                },
                &|done, _| bar.set_position(done as u64),
            )
            .map_err(err)?;
            bar.finish_and_clear();
            out.insert("queries".into(), json!(queries.len()));
            out.insert("skipped".into(), json!(set.skipped.len()));
            if let Some((i, why)) = set.skipped.first() {
                out.insert("first_skipped".into(), json!({ "query": i, "reason": why }));
            }
            out.insert("teacher".into(), json!(teacher.name()));
            out.insert("mine_seconds".into(), json!(start.elapsed().as_secs_f64()));
            set.rows
        }
    };
    out.insert("set_rows".into(), json!(rows.len()));
    if let Some(path) = &a.set_out {
        write_set(path, &rows).map_err(err)?;
        out.insert("set".into(), json!(path));
    }
    if !a.no_train {
        let t = std::time::Instant::now();
        let (report, info) = fit(&index, &rows, &a.train).map_err(err)?;
        out.insert("train_seconds".into(), json!(t.elapsed().as_secs_f64()));
        out.insert("holdout_kl_before".into(), json!(info.initial_holdout_kl));
        out.insert("holdout_kl_after".into(), json!(info.holdout_kl));
        out.insert("best_epoch".into(), json!(info.best_epoch));
        out.insert("holdout_mrr_before".into(), json!(info.initial_holdout_mrr));
        out.insert("holdout_mrr_after".into(), json!(info.holdout_mrr));
        if report.best_epoch == 0 {
            out.insert(
                "stored".into(),
                json!("no epoch beat the identity on the held-out queries; nothing stored"),
            );
        } else {
            index
                .writer()
                .map_err(err)?
                .set_adapter(&report.adapter, &info)
                .map_err(err)?;
            out.insert("stored".into(), json!(true));
        }
    }
    Ok(Value::Object(out))
}

fn open_index(dir: &Path, model: Option<&Path>, read_only: bool) -> Result<Index, String> {
    let mut builder = Index::builder().read_only(read_only);
    if let Some(m) = model {
        builder = builder.encoder(load_encoder(Some(m))?);
    }
    builder.open(dir).map_err(err)
}

fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}} {{msg}}");
    b.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    b
}

/// Buffers one batch of parsed lines: rows with vectors directly, the rest encoded.
type Row = (
    usize,
    Passage,
    Option<Vec<f32>>,
    Option<Vec<(String, String)>>,
);

fn stage_batch(
    w: &mut xqdb::Writer,
    rows: Vec<Row>,
    upsert: bool,
    file: &Path,
) -> Result<usize, String> {
    let n = rows.len();
    let mut texts = Vec::new();
    let mut text_lines = Vec::new();
    for (line_no, passage, vector, queries) in rows {
        let fail = |msg: String| {
            format!(
                "{}:{line_no}: {msg} (nothing of this batch was written)",
                file.display()
            )
        };
        match vector {
            Some(v) => {
                let r = if upsert {
                    w.upsert(passage, &v)
                } else {
                    w.insert(passage, &v)
                };
                r.map_err(|e| fail(e.to_string()))?;
            }
            None => {
                text_lines.push((passage.id.clone(), line_no));
                texts.push(xqdb::IngestItem { passage, queries });
            }
        }
    }
    if !texts.is_empty() {
        let bar = progress_bar(texts.len() as u64, "passages");
        let report = |p: &xqdb::Progress| {
            bar.set_position(p.passages as u64);
            bar.set_message(format!(
                "{:.1} passages/s, {:.1} queries/s",
                p.passages_per_second(),
                p.queries_per_second()
            ));
        };
        let r = if upsert {
            w.upsert_items(texts, &report)
        } else {
            w.insert_items(texts, &report)
        };
        bar.finish_and_clear();
        r.map_err(|e| {
            let line = match &e {
                xqdb::Error::InvalidPassage { id, .. }
                | xqdb::Error::DuplicateId { id }
                | xqdb::Error::InvalidVector { id, .. } => text_lines
                    .iter()
                    .find(|(i, _)| i == id)
                    .map(|(_, l)| format!(":{l}"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            format!(
                "{}{line}: {e} (nothing of this batch was written)",
                file.display()
            )
        })?;
    }
    Ok(n)
}

fn add(
    dir: &Path,
    file: &Path,
    upsert: bool,
    batch_size: Option<usize>,
    model: Option<&Path>,
) -> CliResult {
    let index = open_index(dir, model, false)?;
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
    let mut batch: Vec<Row> = Vec::new();
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
        let Some(row) = xqdb::ingest::jsonl::parse_line(&buf).map_err(fail)? else {
            continue;
        };
        batch.push((line_no, row.passage, row.vector, row.queries));
        if batch_size.is_some_and(|b| batch.len() >= b) {
            added += stage_batch(&mut w, std::mem::take(&mut batch), upsert, file)?;
            w.commit().map_err(err)?;
            commits += 1;
        }
    }
    added += stage_batch(&mut w, batch, upsert, file)?;
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

/// The one generated-query vector of every stress passage (with α ∈ {0.5, 0.25} fusion is
/// exact in f32).
fn stress_query(dim: usize) -> Vec<f32> {
    (0..dim).map(|j| [1.0, -1.0, 0.5, 0.0][j % 4]).collect()
}

/// The stress writer's adapter after batch `b`: a diagonal of 1 + b/1000.
fn stress_adapter(b: u64, dim: usize) -> xqdb::distill::Adapter {
    let mut m = vec![0f32; dim * dim];
    for i in 0..dim {
        m[i * dim + i] = 1.0 + b as f32 / 1000.0;
    }
    xqdb::distill::Adapter::from_matrix(dim, m).expect("a finite square matrix")
}

fn stress_adapter_info(b: u64) -> xqdb::distill::AdapterInfo {
    xqdb::distill::AdapterInfo {
        teacher: "stress".into(),
        examples: b as usize,
        ..Default::default()
    }
}

/// After batch b: store adapter b when b % 7 == 2, drop it when b % 7 == 0 and b / 7 is odd.
fn stress_adapter_step(w: &mut xqdb::Writer, b: u64, dim: usize) -> xqdb::Result<()> {
    if b % 7 == 2 {
        w.set_adapter(&stress_adapter(b, dim), &stress_adapter_info(b))?;
    } else if b.is_multiple_of(7) && (b / 7) % 2 == 1 {
        w.drop_adapter()?;
    }
    Ok(())
}

/// Inserts batch after batch; each batch also deletes half of the batch before the
/// previous one, and every few batches the writer seals, re-fuses (α alternating between
/// 0.25 and 0.5) or compacts. Passages carry an xQG record (E(p) = the stress vector, one
/// query). After each commit returns it prints `committed B`.
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
        .xqg(xqdb::XqgProfile {
            alpha: 0.5,
            normalize: false,
            ..Default::default()
        })
        .open(dir)?;
    let query = stress_query(dim);
    let mut w = index.writer()?;
    let mut out = std::io::stdout().lock();
    // A killed predecessor may have committed batch first - 1 without its adapter step.
    if let Some(prev) = first.checked_sub(1) {
        stress_adapter_step(&mut w, prev, dim)?;
    }
    for b in first..first.saturating_add(batches) {
        let big = b % 5 == 4;
        let n = if big { batch_size * 2 } else { batch_size };
        for i in 0..n as u64 {
            let id = format!("b{b}-{i}");
            let p = Passage::new(&id, format!("passage {i} of batch {b}"))
                .with_meta(json!({ "batch": b }));
            let q = vec![("fi".to_string(), format!("kysymys {i}"))];
            let a = xqdb::Augmentation::new(
                stress_vector(b * 100_000 + i, dim),
                q,
                std::slice::from_ref(&query),
                false,
            );
            w.insert_augmented(p, a)?;
        }
        if b >= 2 {
            for i in (0..batch_size as u64).step_by(2) {
                w.delete(&format!("b{}-{i}", b - 2))?;
            }
        }
        w.commit()?;
        writeln!(out, "committed {b}").ok();
        out.flush().ok();
        stress_adapter_step(&mut w, b, dim)?;
        match b % 7 {
            3 => {
                w.seal()?;
                writeln!(out, "sealed {b}").ok();
            }
            5 => {
                let alpha = if (b / 7) % 2 == 0 { 0.25 } else { 0.5 };
                w.refuse(alpha, false)?;
                writeln!(out, "refused {b}").ok();
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

/// Commands that print their own tables return their JSON only when asked for it.
fn quiet_unless(json: bool, r: CliResult) -> CliResult {
    r.map(|v| if json { v } else { Value::Null })
}

fn metrics_table(title: &str, per_lang: &std::collections::BTreeMap<String, RankMetrics>) {
    eprintln!("{title}");
    eprintln!(
        "{:<8} {:>7} {:>7} {:>7} {:>7}",
        "lang", "n", "R@1", "R@10", "MRR@10"
    );
    for (lang, m) in per_lang {
        eprintln!(
            "{lang:<8} {:>7} {:>7.4} {:>7.4} {:>7.4}",
            m.queries, m.recall_at_1, m.recall_at_10, m.mrr_at_10
        );
    }
    let avg = RankMetrics::macro_average(per_lang.values());
    eprintln!(
        "{:<8} {:>7} {:>7.4} {:>7.4} {:>7.4}",
        "average", avg.queries, avg.recall_at_1, avg.recall_at_10, avg.mrr_at_10
    );
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

fn demo(model: Option<&Path>, sample: Option<PathBuf>, index_dir: Option<PathBuf>) -> CliResult {
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

/// `xqdb kernels`: the report, and with `check` the self-check of every runnable kernel.
fn kernels(check: bool, json_out: bool) -> Result<Value, String> {
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
