//! Evaluation: ranking metrics, TREC runs and qrels, the XOR-Retrieve scorer (with a port of
//! nltk's English `word_tokenize`), and the cross-lingual translation tasks.

pub mod nltk;
pub mod trec;
pub mod xor;

use crate::error::{Error, Result};
use crate::model::Encoder;
use crate::scan::{simd_scores, PreparedQuery, Rows};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Recall and reciprocal rank over a set of queries, each with one relevant item.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RankMetrics {
    /// Number of queries.
    pub queries: usize,
    /// Share of queries whose relevant item is ranked first.
    pub recall_at_1: f64,
    /// Share of queries whose relevant item is in the top 10.
    pub recall_at_10: f64,
    /// Mean of 1/rank over queries, counting ranks beyond 10 as 0.
    pub mrr_at_10: f64,
}

impl RankMetrics {
    /// Metrics from the 0-based rank of each query's relevant item.
    pub fn from_ranks(ranks: &[usize]) -> Self {
        let n = ranks.len().max(1) as f64;
        RankMetrics {
            queries: ranks.len(),
            recall_at_1: ranks.iter().filter(|&&r| r == 0).count() as f64 / n,
            recall_at_10: ranks.iter().filter(|&&r| r < 10).count() as f64 / n,
            mrr_at_10: ranks
                .iter()
                .map(|&r| if r < 10 { 1.0 / (r + 1) as f64 } else { 0.0 })
                .sum::<f64>()
                / n,
        }
    }

    /// The unweighted mean of several languages' metrics (queries are summed).
    pub fn macro_average<'a>(all: impl IntoIterator<Item = &'a RankMetrics>) -> Self {
        let all: Vec<&RankMetrics> = all.into_iter().collect();
        let n = all.len().max(1) as f64;
        RankMetrics {
            queries: all.iter().map(|m| m.queries).sum(),
            recall_at_1: all.iter().map(|m| m.recall_at_1).sum::<f64>() / n,
            recall_at_10: all.iter().map(|m| m.recall_at_10).sum::<f64>() / n,
            mrr_at_10: all.iter().map(|m| m.mrr_at_10).sum::<f64>() / n,
        }
    }
}

/// One line of a translation file: a question in `lang` and its English translation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranslationPair {
    /// Language of `native`.
    pub lang: String,
    /// The non-English text.
    pub native: String,
    /// Its English translation.
    pub en: String,
}

/// Reads a JSONL file of translations: rows `{"lang","native","en"}`, or multi-parallel rows
/// `{"en": .., "ar": .., "bn": .., ...}` (one pair per non-English key). A bad line is
/// reported with its number. `limit` keeps only the first rows of the file.
pub fn read_pairs(path: &Path, limit: Option<usize>) -> Result<Vec<TranslationPair>> {
    let mut out = Vec::new();
    let mut rows = read_rows(path)?;
    rows.truncate(limit.unwrap_or(usize::MAX));
    for (line, row) in rows {
        if row.contains_key("lang") {
            let pair: TranslationPair = serde_json::from_value(serde_json::Value::Object(row))
                .map_err(|e| bad_line(path, line, e))?;
            out.push(pair);
            continue;
        }
        let parallel = as_parallel(row).map_err(|e| bad_line(path, line, e))?;
        let en = parallel["en"].clone();
        for (lang, native) in parallel {
            if lang != "en" {
                out.push(TranslationPair {
                    lang,
                    native,
                    en: en.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Reads a multi-parallel JSONL file: every row maps language codes to the same text in
/// each language and has an `en` key.
pub fn read_parallel(path: &Path) -> Result<Vec<BTreeMap<String, String>>> {
    read_rows(path)?
        .into_iter()
        .map(|(line, row)| as_parallel(row).map_err(|e| bad_line(path, line, e)))
        .collect()
}

fn bad_line(path: &Path, line: usize, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{}:{line}: {e}", path.display()))
}

fn read_rows(path: &Path) -> Result<Vec<(usize, serde_json::Map<String, serde_json::Value>)>> {
    read_jsonl(path)
}

/// Reads a JSON-lines file into rows with their 1-based line numbers (blank lines skipped);
/// a bad line is reported with its number.
pub(crate) fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map(|row| (i + 1, row))
                .map_err(|e| bad_line(path, i + 1, e))
        })
        .collect()
}

fn as_parallel(
    row: serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in row {
        match v {
            serde_json::Value::String(s) => {
                out.insert(k, s);
            }
            _ => return Err(format!("value of {k:?} is not a string")),
        }
    }
    if !out.contains_key("en") || out.len() < 2 {
        return Err("expected {\"lang\",\"native\",\"en\"} or {\"en\": .., \"xx\": ..}".into());
    }
    Ok(out)
}

/// 0-based rank of `target` among `rows` (`n × dim`, row-major) for `query`: how many rows
/// score higher, plus how many earlier rows score the same.
pub fn rank_of(rows: &[f32], dim: usize, query: &[f32], target: usize) -> usize {
    let n = rows.len() / dim;
    let mut scores = vec![0f32; n];
    simd_scores(
        &Rows::F32(rows),
        dim,
        0..n,
        &PreparedQuery::new(query, false, 1.0),
        &mut scores,
    );
    let s = scores[target];
    scores
        .iter()
        .enumerate()
        .filter(|&(j, &x)| x > s || (x == s && j < target))
        .count()
}

/// Native → English retrieval for each language among `pairs` (each native text queries
/// for its own English translation among all English texts of the same language).
pub fn eval_translations(
    encoder: &Encoder,
    pairs: &[TranslationPair],
) -> Result<BTreeMap<String, RankMetrics>> {
    let mut by_lang: BTreeMap<&str, Vec<&TranslationPair>> = BTreeMap::new();
    for p in pairs {
        by_lang.entry(p.lang.as_str()).or_default().push(p);
    }
    let dim = encoder.dim();
    let mut out = BTreeMap::new();
    for (lang, rows) in by_lang {
        let en: Vec<&str> = rows.iter().map(|p| p.en.as_str()).collect();
        let native: Vec<&str> = rows.iter().map(|p| p.native.as_str()).collect();
        let en_vecs: Vec<f32> = encoder.encode_passages(&en)?.concat();
        let q_vecs = encoder.encode_queries(&native)?;
        let ranks: Vec<usize> = q_vecs
            .iter()
            .enumerate()
            .map(|(i, q)| rank_of(&en_vecs, dim, q, i))
            .collect();
        out.insert(lang.to_string(), RankMetrics::from_ranks(&ranks));
    }
    Ok(out)
}

/// Results of the oracle-xQG experiment for one α.
#[derive(Clone, Debug, Serialize)]
pub struct OracleRun {
    /// Fusion weight (0: no fusion).
    pub alpha: f32,
    /// Whether e' was L2-normalised.
    pub normalize: bool,
    /// Per query language.
    pub languages: BTreeMap<String, RankMetrics>,
    /// Macro average over languages.
    pub average: RankMetrics,
}

/// "Oracle xQG" on a multi-parallel set: human translations stand in for a perfect
/// generator. Each English string is a passage; for queries in language L, its vector is
/// fused with the query vectors of its versions in every other non-English language (L
/// itself left out, so a query never meets its own text). Returns one run per α (α = 0 is
/// the unfused baseline); each row must have every language of the file.
pub fn eval_xqg_oracle(
    encoder: &Encoder,
    rows: &[BTreeMap<String, String>],
    alphas: &[f32],
    normalize: bool,
) -> Result<Vec<OracleRun>> {
    let langs: Vec<String> = rows
        .first()
        .map(|r| r.keys().filter(|k| *k != "en").cloned().collect())
        .unwrap_or_default();
    for (i, r) in rows.iter().enumerate() {
        if r.len() != langs.len() + 1 || !langs.iter().all(|l| r.contains_key(l)) {
            return Err(Error::InvalidArgument(format!(
                "row {} does not have exactly the languages of the first row ({})",
                i + 1,
                langs.join(",")
            )));
        }
    }
    let dim = encoder.dim();
    let en: Vec<&str> = rows.iter().map(|r| r["en"].as_str()).collect();
    let e_p = encoder.encode_passages(&en)?;
    let mut queries: BTreeMap<&str, Vec<Vec<f32>>> = BTreeMap::new();
    for l in &langs {
        let texts: Vec<&str> = rows.iter().map(|r| r[l].as_str()).collect();
        queries.insert(l, encoder.encode_queries(&texts)?);
    }
    let mut runs = Vec::new();
    for &alpha in alphas {
        let mut per_lang = BTreeMap::new();
        for l in &langs {
            let mut fused = Vec::with_capacity(rows.len() * dim);
            for (i, p) in e_p.iter().enumerate() {
                let mut sum = vec![0f32; dim];
                let others = langs.iter().filter(|o| *o != l);
                for o in others.clone() {
                    sum.iter_mut()
                        .zip(&queries[o.as_str()][i])
                        .for_each(|(s, x)| *s += x);
                }
                let count = if alpha == 0.0 { 0 } else { others.count() };
                fused.extend(crate::xqg::fuse(p, &sum, count, alpha, normalize));
            }
            let ranks: Vec<usize> = queries[l.as_str()]
                .iter()
                .enumerate()
                .map(|(i, q)| rank_of(&fused, dim, q, i))
                .collect();
            per_lang.insert(l.clone(), RankMetrics::from_ranks(&ranks));
        }
        runs.push(OracleRun {
            alpha,
            normalize,
            average: RankMetrics::macro_average(per_lang.values()),
            languages: per_lang,
        });
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_follow_their_definitions() {
        let m = RankMetrics::from_ranks(&[0, 1, 9, 10, 0]);
        assert_eq!(m.queries, 5);
        assert!((m.recall_at_1 - 0.4).abs() < 1e-12);
        assert!((m.recall_at_10 - 0.8).abs() < 1e-12);
        assert!((m.mrr_at_10 - (1.0 + 0.5 + 0.1 + 0.0 + 1.0) / 5.0).abs() < 1e-12);
    }

    #[test]
    fn rank_counts_better_rows_and_earlier_ties() {
        let rows = [1.0, 0.0, 0.5, 0.0, 1.0, 0.0, 2.0, 0.0];
        assert_eq!(rank_of(&rows, 2, &[1.0, 0.0], 0), 1);
        assert_eq!(rank_of(&rows, 2, &[1.0, 0.0], 2), 2);
        assert_eq!(rank_of(&rows, 2, &[1.0, 0.0], 3), 0);
        assert_eq!(rank_of(&rows, 2, &[1.0, 0.0], 1), 3);
    }
}
