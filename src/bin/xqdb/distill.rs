//! Distillation commands: distill (mine a set with a teacher, train a query adapter) and
//! adapter (show or drop it); the teachers `search --rerank` uses too.

use crate::common::{err, load_encoder, CliResult};
use crate::output::progress_bar;
use clap::Args;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xqdb::Index;

#[derive(Args)]
pub(crate) struct DistillArgs {
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
    /// What the adapter learns: `embedding` (the translation teacher's embedding of the
    /// parallel query, closed form), `scores` (the teacher's scores of the candidates, any
    /// teacher) or `auto` (embedding for the translation teacher without --rank).
    #[arg(long, default_value = "auto", value_parser = ["auto", "scores", "embedding"])]
    objective: String,
    /// One adapter per query language (queries need `lang`); a search uses its query's
    /// language's adapter and the identity for a language without one.
    #[arg(long)]
    per_language: bool,
    /// Train a low-rank adapter W = I + A·B of this rank instead of a full matrix (scores).
    #[arg(long)]
    rank: Option<usize>,
    /// Epochs at most (scores).
    #[arg(long, default_value_t = xqdb::distill::TrainOptions::default().epochs)]
    epochs: usize,
    /// Adam step size (scores; small sets overfit quickly: the held-out split keeps the
    /// best epoch).
    #[arg(long, default_value_t = xqdb::distill::TrainOptions::default().learning_rate)]
    learning_rate: f32,
    /// Weight of the penalty that keeps W near the identity (scores).
    #[arg(long, default_value_t = 0.0)]
    identity_penalty: f32,
    /// Softmax temperature of both teacher and student scores.
    #[arg(long, default_value_t = xqdb::distill::TrainOptions::default().tau_teacher)]
    temperature: f32,
    /// Share of the set held out for early stopping.
    #[arg(long, default_value_t = 0.1)]
    holdout: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Length-normalise the generator teacher's log-likelihood.
    #[arg(long)]
    length_normalize: bool,
}

#[derive(Args)]
pub(crate) struct AdapterArgs {
    dir: PathBuf,
    /// Show the adapter (the default).
    #[arg(long)]
    show: bool,
    /// Remove the adapter; text searches use the plain encoder again.
    #[arg(long, conflicts_with = "show")]
    drop: bool,
}

pub(crate) fn adapter(AdapterArgs { dir, drop, .. }: AdapterArgs) -> CliResult {
    if drop {
        let index = Index::open(&dir).map_err(err)?;
        let dropped = index.writer().map_err(err)?.drop_adapter().map_err(err)?;
        return Ok(json!({ "dropped": dropped }));
    }
    let index = Index::builder().read_only(true).open(&dir).map_err(err)?;
    let snap = index.snapshot();
    let describe = |a: &xqdb::distill::StoredAdapter| {
        json!({
            "dim": a.adapter.dim(),
            "rank": a.adapter.rank(),
            "distance_from_identity": a.adapter.distance_from_identity(),
            "info": a.info,
        })
    };
    let by_lang: serde_json::Map<String, Value> = snap
        .lang_adapters()
        .map(|(l, a)| (l.to_string(), describe(a)))
        .collect();
    Ok(json!({
        "adapter": snap.adapter().map(describe),
        "by_lang": by_lang,
    }))
}

pub(crate) fn make_teacher(
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

pub(crate) fn distill(a: DistillArgs) -> CliResult {
    let train = xqdb::distill::TrainOptions {
        learning_rate: a.learning_rate,
        epochs: a.epochs,
        tau_teacher: a.temperature,
        tau_student: a.temperature,
        holdout: a.holdout,
        seed: a.seed,
        rank: a.rank,
        identity_penalty: a.identity_penalty,
        per_language: a.per_language,
        objective: match a.objective.as_str() {
            "scores" => xqdb::distill::Objective::Scores,
            "embedding" => xqdb::distill::Objective::Embedding,
            _ => xqdb::distill::Objective::Auto,
        },
        ..Default::default()
    };
    run(&a, &train)
}

fn run(a: &DistillArgs, train: &xqdb::distill::TrainOptions) -> CliResult {
    let dir = &a.dir;
    use xqdb::distill::{
        build_set, fit_adapters, pseudo_queries, read_queries, read_set, write_set,
    };
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
                (None, Some(n)) => pseudo_queries(&index, Some(n), train.seed).map_err(err)?,
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
        let (adapters, fits) = fit_adapters(&index, &rows, train).map_err(err)?;
        out.insert("train_seconds".into(), json!(t.elapsed().as_secs_f64()));
        let kept: Vec<(xqdb::distill::Adapter, xqdb::distill::AdapterInfo)> = fits
            .iter()
            .filter(|f| f.info.best_epoch > 0)
            .filter_map(|f| {
                let a = match &f.lang {
                    Some(l) => adapters.by_lang.get(l),
                    None => adapters.shared.as_ref(),
                };
                a.map(|a| (a.clone(), f.info.clone()))
            })
            .collect();
        let list: Vec<Value> = fits
            .iter()
            .map(|f| {
                json!({
                    "lang": f.lang,
                    "kept": f.info.best_epoch > 0,
                    "skipped": f.skipped,
                    "objective": f.info.objective,
                    "lambda": f.info.lambda,
                    "best_epoch": f.info.best_epoch,
                    "holdout_kl_before": f.info.initial_holdout_kl,
                    "holdout_kl_after": f.info.holdout_kl,
                    "holdout_mrr_before": f.info.initial_holdout_mrr,
                    "holdout_mrr_after": f.info.holdout_mrr,
                })
            })
            .collect();
        // One adapter for all queries: its figures at the top level too.
        if !train.per_language && !list.is_empty() {
            for key in [
                "objective",
                "best_epoch",
                "holdout_kl_before",
                "holdout_kl_after",
                "holdout_mrr_before",
                "holdout_mrr_after",
            ] {
                out.insert(key.into(), list[0][key].clone());
            }
        }
        out.insert("adapters".into(), json!(list));
        if kept.is_empty() {
            out.insert(
                "stored".into(),
                json!("no adapter beat the identity on the held-out queries; nothing stored"),
            );
        } else {
            index
                .writer()
                .map_err(err)?
                .replace_adapters(&kept)
                .map_err(err)?;
            out.insert("stored".into(), json!(true));
        }
    }
    Ok(Value::Object(out))
}
