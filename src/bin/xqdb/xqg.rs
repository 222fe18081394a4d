//! xQG commands: the augmentation profile of `init`, and queries, re-fuse, augment.

use crate::common::{err, CliResult};
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;
use xqdb::Index;

/// The xQG augmentation profile of `init`.
#[derive(Args, Clone)]
pub(crate) struct ProfileArgs {
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
    pub(crate) fn profile(&self) -> Result<xqdb::XqgProfile, String> {
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

#[derive(Args)]
pub(crate) struct QueriesArgs {
    dir: PathBuf,
    ids: Vec<String>,
}

#[derive(Args)]
pub(crate) struct ReFuseArgs {
    dir: PathBuf,
    /// The new fusion weight.
    #[arg(long)]
    alpha: f32,
    /// Keep the fused vectors unnormalised (dot-product indexes only).
    #[arg(long)]
    no_normalize: bool,
}

#[derive(Args)]
pub(crate) struct AugmentArgs {
    dir: PathBuf,
    /// Stop after this many passages.
    #[arg(long)]
    passages: Option<usize>,
    /// Stop after this many seconds (the passage in progress is finished).
    #[arg(long)]
    seconds: Option<f64>,
}

pub(crate) fn queries(QueriesArgs { dir, ids }: QueriesArgs) -> CliResult {
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

pub(crate) fn re_fuse(a: ReFuseArgs) -> CliResult {
    let ReFuseArgs {
        dir,
        alpha,
        no_normalize,
    } = a;
    let index = Index::open(&dir).map_err(err)?;
    let mut w = index.writer().map_err(err)?;
    let start = std::time::Instant::now();
    let r = w.re_fuse(alpha, !no_normalize).map_err(err)?;
    Ok(
        json!({ "re_fused": r.re_fused, "unchanged": r.unchanged, "alpha": alpha, "normalize": !no_normalize, "seconds": start.elapsed().as_secs_f64() }),
    )
}

pub(crate) fn augment(a: AugmentArgs) -> CliResult {
    let AugmentArgs {
        dir,
        passages,
        seconds,
    } = a;
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
