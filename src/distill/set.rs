//! Distillation sets: queries (real, or the generated queries stored with passages), their
//! candidates mined with the index, and the teacher's and the student's scores of each,
//! written as JSONL (one [`SetRow`] per line; schema in FORMAT.md, "Distillation set").

use super::teacher::{Candidate, Teacher, TeacherQuery};
use super::{
    dot, train_embedding, train_split, train_validated, Adapter, AdapterInfo, Example, Objective,
    QueryAdapters, TrainOptions, TrainReport,
};
use crate::error::{Error, Result};
use crate::types::Metric;
use crate::{Index, SearchOptions};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::Path;

/// One query to distil on: a line of a queries file, or a stored generated query.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SetQuery {
    /// The query text.
    pub query: String,
    /// Its language code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// The id of the passage known to answer it, if known (always, for generated queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive: Option<String>,
    /// A parallel version of the query (needed by the translation teacher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<String>,
}

/// One line of a distillation set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetRow {
    /// The query text.
    pub query: String,
    /// Its language code.
    pub lang: Option<String>,
    /// The passage known to answer it, if any (always among the candidates).
    pub positive: Option<String>,
    /// The query's parallel version, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<String>,
    /// Candidate passage ids: the index's top m for the query (the positive replaces the
    /// last one when the index missed it).
    pub candidates: Vec<String>,
    /// The teacher's score of each candidate.
    pub teacher_scores: Vec<f32>,
    /// The student's (index's) score of each candidate: the query embedding, without any
    /// adapter, against the stored vector.
    pub student_scores: Vec<f32>,
    /// The teacher's name.
    pub teacher: String,
}

/// How distillation sets are mined.
#[derive(Clone, Debug, PartialEq)]
pub struct SetOptions {
    /// Candidates per query (m).
    pub candidates: usize,
    /// Queries encoded and searched together.
    pub batch: usize,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            candidates: 20,
            batch: 64,
        }
    }
}

/// A built set and the queries that could not be used.
#[derive(Clone, Debug, Default)]
pub struct SetReport {
    /// One row per usable query.
    pub rows: Vec<SetRow>,
    /// (query index, reason) for queries left out (unknown positive, a teacher that cannot
    /// score them such as the translation teacher without a parallel version).
    pub skipped: Vec<(usize, String)>,
}

/// Reads a queries file: JSON lines with `query` and optionally `lang`, `positive` and
/// `parallel`. A bad line is an error that names it.
pub fn read_queries(path: &Path) -> Result<Vec<SetQuery>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let q: SetQuery = serde_json::from_str(&line)
            .map_err(|e| Error::InvalidArgument(format!("{}:{}: {e}", path.display(), i + 1)))?;
        if q.query.trim().is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{}:{}: the query is empty",
                path.display(),
                i + 1
            )));
        }
        out.push(q);
    }
    Ok(out)
}

/// The generated queries stored with the index's passages (pseudo-queries whose positive
/// is their passage), shuffled with `seed` and cut to `limit`.
pub fn pseudo_queries(index: &Index, limit: Option<usize>, seed: u64) -> Result<Vec<SetQuery>> {
    let snap = index.snapshot();
    let mut out = Vec::new();
    for id in snap.ids()? {
        for (lang, text) in snap.queries(&id)?.unwrap_or_default() {
            out.push(SetQuery {
                query: text,
                lang: Some(lang),
                positive: Some(id.clone()),
                parallel: None,
            });
        }
    }
    out.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    if let Some(n) = limit {
        out.truncate(n);
    }
    Ok(out)
}

fn normalised(metric: Metric, mut v: Vec<f32>) -> Vec<f32> {
    if metric == Metric::Cosine {
        let n = dot(&v, &v).sqrt();
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        }
    }
    v
}

/// Mines candidates for each query with the index (no adapter), scores them with the
/// teacher and the student. `progress` gets (done, total) after each batch.
pub fn build_set(
    index: &Index,
    queries: &[SetQuery],
    teacher: &dyn Teacher,
    options: &SetOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<SetReport> {
    if options.candidates < 2 {
        return Err(Error::InvalidArgument(
            "a distillation set needs at least 2 candidates per query".into(),
        ));
    }
    let snap = index.snapshot();
    let name = teacher.name();
    let mut report = SetReport::default();
    let mut done = 0;
    for (b, chunk) in queries.chunks(options.batch.max(1)).enumerate() {
        let texts: Vec<&str> = chunk.iter().map(|q| q.query.as_str()).collect();
        let vectors = index.encode_queries_for(&snap, &texts, false)?;
        let all_hits = snap.search_batch(&vectors, &SearchOptions::new(options.candidates))?;
        for (j, (q, mut hits)) in chunk.iter().zip(all_hits).enumerate() {
            let qi = b * options.batch.max(1) + j;
            let qv = normalised(snap.metric(), vectors[j].clone());
            if let Some(pos) = &q.positive {
                if !hits.iter().any(|h| &h.id == pos) {
                    let (Some(passage), Some(v)) = (snap.get(pos)?, snap.vector(pos)?) else {
                        report
                            .skipped
                            .push((qi, format!("positive {pos:?} is not in the index")));
                        continue;
                    };
                    let hit = crate::Hit {
                        id: pos.clone(),
                        score: dot(&qv, &v),
                        passage,
                        dense_score: None,
                        lexical_score: None,
                        snippet: None,
                    };
                    if hits.len() == options.candidates {
                        hits.pop();
                    }
                    hits.push(hit);
                }
            }
            if hits.len() < 2 {
                report
                    .skipped
                    .push((qi, "fewer than 2 candidates in the index".into()));
                continue;
            }
            let own = snap.hit_vectors(&hits)?;
            let candidates = Candidate::from_hits(&hits, &own);
            let tq = TeacherQuery {
                text: &q.query,
                lang: q.lang.as_deref(),
                parallel: q.parallel.as_deref(),
            };
            let scores = match teacher.score(&tq, &candidates) {
                Ok(s) => s,
                Err(Error::InvalidArgument(reason)) => {
                    report.skipped.push((qi, reason));
                    continue;
                }
                Err(e) => return Err(e),
            };
            report.rows.push(SetRow {
                query: q.query.clone(),
                lang: q.lang.clone(),
                positive: q.positive.clone(),
                parallel: q.parallel.clone(),
                candidates: hits.iter().map(|h| h.id.clone()).collect(),
                teacher_scores: scores,
                student_scores: hits.iter().map(|h| h.score).collect(),
                teacher: name.clone(),
            });
        }
        done += chunk.len();
        progress(done, queries.len());
    }
    Ok(report)
}

/// Writes a set as JSON lines.
pub fn write_set(path: &Path, rows: &[SetRow]) -> Result<()> {
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(r).expect("set rows serialise"));
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// Reads a set written by [`write_set`] (or by another tool in the same schema).
pub fn read_set(path: &Path) -> Result<Vec<SetRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let row: SetRow = serde_json::from_str(l).map_err(|e| {
                Error::InvalidArgument(format!("{}:{}: {e}", path.display(), i + 1))
            })?;
            if row.candidates.len() != row.teacher_scores.len() || row.candidates.len() < 2 {
                return Err(Error::InvalidArgument(format!(
                    "{}:{}: needs at least 2 candidates and one teacher score per candidate",
                    path.display(),
                    i + 1
                )));
            }
            Ok(row)
        })
        .collect()
}

/// Splits set rows into (training, held-out) so that all rows of one positive passage (or,
/// without a positive, one query text) land on the same side; about `holdout` of the
/// passages are held out, chosen by a seeded hash.
pub fn split_by_positive(rows: &[SetRow], holdout: f32, seed: u64) -> (Vec<SetRow>, Vec<SetRow>) {
    let threshold = (holdout.clamp(0.0, 1.0) as f64 * u64::MAX as f64) as u64;
    rows.iter().cloned().partition(|r| {
        let key = r.positive.as_deref().unwrap_or(&r.query);
        xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), seed) >= threshold
    })
}

/// Training examples from set rows: each query encoded by the index's encoder (no
/// adapter) and each candidate's stored vector (the one searches score). Rows naming a
/// passage no longer in the index are left out; their count is returned.
pub fn examples_from_set(index: &Index, rows: &[SetRow]) -> Result<(Vec<Example>, usize)> {
    let snap = index.snapshot();
    let mut examples = Vec::with_capacity(rows.len());
    let mut missing = 0;
    for chunk in rows.chunks(64) {
        let texts: Vec<&str> = chunk.iter().map(|r| r.query.as_str()).collect();
        let vectors = index.encode_queries_for(&snap, &texts, false)?;
        'rows: for (r, q) in chunk.iter().zip(vectors) {
            let mut candidates = Vec::with_capacity(r.candidates.len());
            for id in &r.candidates {
                match snap.vector(id)? {
                    Some(v) => candidates.push(v),
                    None => {
                        missing += 1;
                        continue 'rows;
                    }
                }
            }
            examples.push(Example {
                query: normalised(snap.metric(), q),
                candidates,
                teacher: r.teacher_scores.clone(),
            });
        }
    }
    Ok((examples, missing))
}

/// Trains an adapter on set rows (see [`super::train_validated`]) and describes it for storing with
/// [`crate::Writer::set_adapter`].
pub fn fit(
    index: &Index,
    rows: &[SetRow],
    options: &TrainOptions,
) -> Result<(TrainReport, AdapterInfo)> {
    let (fit_rows, hold_rows) = split_by_positive(rows, options.holdout, options.seed);
    let embedding = match options.objective {
        Objective::Embedding => true,
        Objective::Scores => false,
        Objective::Auto => {
            options.rank.is_none()
                && rows
                    .iter()
                    .all(|r| r.parallel.is_some() && r.teacher == "translation")
        }
    };
    let snap = index.snapshot();
    // The embedding objective's pairs: each training query and the encoding of its
    // parallel version (the translation teacher's query), both as searched.
    let pairs = if embedding {
        let mut q = Vec::new();
        let mut t = Vec::new();
        for chunk in fit_rows.chunks(64) {
            let texts: Vec<&str> = chunk.iter().map(|r| r.query.as_str()).collect();
            let parallel = chunk
                .iter()
                .map(|r| {
                    r.parallel.as_deref().ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "the embedding objective needs a parallel version of every query; \
                             {:?} has none",
                            r.query
                        ))
                    })
                })
                .collect::<Result<Vec<&str>>>()?;
            for v in index.encode_queries_for(&snap, &texts, false)? {
                q.push(normalised(snap.metric(), v));
            }
            for v in index.encode_queries_for(&snap, &parallel, false)? {
                t.push(normalised(snap.metric(), v));
            }
        }
        Some((q, t))
    } else {
        None
    };
    // The scores objective's examples (candidates and teacher scores); the embedding
    // objective trains on its pairs and needs none.
    let examples = match pairs {
        Some(_) => Vec::new(),
        None => examples_from_set(index, &fit_rows)?.0,
    };
    let (hold, _) = examples_from_set(index, &hold_rows)?;
    let usable = pairs.as_ref().map_or(examples.len(), |(q, _)| q.len());
    if usable < 2 || hold.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{usable} usable training and {} held-out examples; distillation needs at least 2 \
             and 1 (give more queries or a larger --holdout)",
            hold.len()
        )));
    }
    // Validation by retrieval: held-out queries with a positive, searched over the whole
    // index with the adapter; the loss is 1 − MRR@10.
    let with_positive: Vec<&SetRow> = hold_rows.iter().filter(|r| r.positive.is_some()).collect();
    let texts: Vec<&str> = with_positive.iter().map(|r| r.query.as_str()).collect();
    let vectors = index.encode_queries_for(&snap, &texts, false)?;
    let mut failure = None;
    let mut validate = |a: &Adapter| -> f64 {
        let adapted: Vec<Vec<f32>> = vectors.iter().map(|v| a.apply(v)).collect();
        match snap.search_batch(&adapted, &SearchOptions::new(10)) {
            Ok(all) => {
                let rr: f64 = all
                    .iter()
                    .zip(&with_positive)
                    .map(|(hits, r)| {
                        hits.iter()
                            .position(|h| Some(&h.id) == r.positive.as_ref())
                            .map_or(0.0, |p| 1.0 / (p + 1) as f64)
                    })
                    .sum();
                1.0 - rr / with_positive.len() as f64
            }
            Err(e) => {
                failure.get_or_insert(e);
                f64::INFINITY
            }
        }
    };
    let validate: Option<&mut dyn FnMut(&Adapter) -> f64> =
        (!with_positive.is_empty()).then_some(&mut validate);
    let report = match (&pairs, validate) {
        (Some((q, t)), v) => train_embedding(q, t, &hold, snap.dim(), options, v),
        (None, Some(v)) => train_validated(&examples, &hold, snap.dim(), options, v),
        (None, None) => train_split(&examples, &hold, snap.dim(), options),
    };
    if let Some(e) = failure {
        return Err(e);
    }
    let pick = |curve: &[f64], initial: f64| match report.best_epoch {
        0 => initial,
        e => curve[e - 1],
    };
    let holdout_kl = pick(&report.holdout_kl, report.initial_holdout_kl);
    let mrr = report
        .initial_validation
        .map(|v| (1.0 - v, 1.0 - pick(&report.validation, v)));
    let info = AdapterInfo {
        teacher: rows.first().map(|r| r.teacher.clone()).unwrap_or_default(),
        model_fingerprint: index.encoder()?.fingerprint().to_string().into(),
        examples: usable + hold.len(),
        initial_holdout_kl: report.initial_holdout_kl,
        holdout_kl,
        best_epoch: report.best_epoch,
        initial_holdout_mrr: mrr.map(|m| m.0),
        holdout_mrr: mrr.map(|m| m.1),
        objective: Some(if embedding { "embedding" } else { "scores" }.into()),
        lambda: report.lambda,
        lang: None,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    Ok((report, info))
}

/// What [`fit_adapters`] trained for one group of queries.
#[derive(Clone, Debug)]
pub struct FitReport {
    /// The query language of the group (`None`: the shared adapter).
    pub lang: Option<String>,
    /// What training recorded (`best_epoch` 0: nothing beat the identity, none kept).
    pub info: AdapterInfo,
    /// Why the group trained nothing, when it could not (too few queries).
    pub skipped: Option<String>,
}

/// Trains the adapters `options` asks for on set rows: one per query language when
/// `options.per_language` (rows without a language train none), else one shared by all
/// queries. Each is validated by retrieval on its own held-out passages (see [`fit`]) and
/// kept only when it beats the identity there. A language with too few queries to split is
/// reported as skipped and keeps the identity.
pub fn fit_adapters(
    index: &Index,
    rows: &[SetRow],
    options: &TrainOptions,
) -> Result<(QueryAdapters, Vec<FitReport>)> {
    let mut adapters = QueryAdapters::default();
    let mut reports = Vec::new();
    if !options.per_language {
        let (report, info) = fit(index, rows, options)?;
        if report.best_epoch > 0 {
            adapters.shared = Some(report.adapter);
        }
        reports.push(FitReport {
            lang: None,
            info,
            skipped: None,
        });
        return Ok((adapters, reports));
    }
    let mut groups: std::collections::BTreeMap<&str, Vec<SetRow>> = Default::default();
    for r in rows {
        if let Some(l) = r.lang.as_deref() {
            groups.entry(l).or_default().push(r.clone());
        }
    }
    if groups.is_empty() {
        return Err(Error::InvalidArgument(
            "per-language adapters need queries with a language (\"lang\")".into(),
        ));
    }
    for (lang, group) in groups {
        match fit(index, &group, options) {
            Ok((report, mut info)) => {
                info.lang = Some(lang.to_string());
                if report.best_epoch > 0 {
                    adapters.by_lang.insert(lang.to_string(), report.adapter);
                }
                reports.push(FitReport {
                    lang: Some(lang.to_string()),
                    info,
                    skipped: None,
                });
            }
            Err(Error::InvalidArgument(why)) => reports.push(FitReport {
                lang: Some(lang.to_string()),
                info: AdapterInfo::default(),
                skipped: Some(why),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok((adapters, reports))
}
