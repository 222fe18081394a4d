//! TREC run and qrels files, and the ranking measures with trec_eval's conventions.
//!
//! Conventions followed (trec_eval 9.x): a run line is `qid Q0 docid rank score tag`; the
//! rank column is ignored and documents are ordered by score, descending, ties broken by
//! docid in decreasing lexical order. A qrels line is `qid iter docid rel`; a document is
//! relevant when `rel >= 1`. Only queries with at least one relevant document are
//! evaluated; a query in the qrels but absent from the run counts as zero only with
//! `complete` (trec_eval `-c`). P@k divides by k even when fewer documents were retrieved.
//! nDCG@k uses the graded `rel` as gain and log2(rank + 1) discounts, normalised by the ideal
//! ordering of all judged documents. The hand-computed cases in the tests below give the
//! same values as trec_eval 9 (through pytrec_eval) for recip_rank, P_k, recall_k and
//! ndcg_cut_k, ties included; xqdb's MRR is cut at k, trec_eval's recip_rank is not.

use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A ranked run: for each query, (docid, score) pairs in file order.
pub type Run = BTreeMap<String, Vec<(String, f64)>>;
/// Relevance judgements: for each query, docid → relevance grade.
pub type Qrels = BTreeMap<String, HashMap<String, i64>>;

fn bad(path: &Path, line: usize, what: &str) -> Error {
    Error::InvalidArgument(format!("{}:{line}: {what}", path.display()))
}

/// Calls `row` with the whitespace-separated fields of every non-blank line, which must
/// number `fields`; errors name the file and line.
fn each_line(
    path: &Path,
    fields: usize,
    shape: &str,
    mut row: impl FnMut(&[&str]) -> std::result::Result<(), &'static str>,
) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != fields {
            return Err(bad(path, i + 1, &format!("expected `{shape}`")));
        }
        row(&f).map_err(|what| bad(path, i + 1, what))?;
    }
    Ok(())
}

/// Reads a TREC run file.
pub fn read_run(path: &Path) -> Result<Run> {
    let mut run = Run::new();
    each_line(path, 6, "qid Q0 docid rank score tag", |f| {
        let score: f64 = f[4].parse().map_err(|_| "score is not a number")?;
        run.entry(f[0].to_string())
            .or_default()
            .push((f[2].to_string(), score));
        Ok(())
    })?;
    Ok(run)
}

/// Reads a TREC qrels file.
pub fn read_qrels(path: &Path) -> Result<Qrels> {
    let mut qrels = Qrels::new();
    each_line(path, 4, "qid iter docid rel", |f| {
        let rel: i64 = f[3].parse().map_err(|_| "relevance is not an integer")?;
        qrels
            .entry(f[0].to_string())
            .or_default()
            .insert(f[2].to_string(), rel);
        Ok(())
    })?;
    Ok(qrels)
}

/// Writes a run in TREC format (ranks from 1, in the order given).
pub fn write_run(run: &Run, tag: &str) -> String {
    let mut out = String::new();
    for (qid, docs) in run {
        for (rank, (doc, score)) in docs.iter().enumerate() {
            out.push_str(&format!("{qid} Q0 {doc} {} {score} {tag}\n", rank + 1));
        }
    }
    out
}

/// The measures of one query (or their mean), at one cutoff k.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrecMetrics {
    /// Reciprocal rank of the first relevant document within the top k (0 if none).
    pub mrr: f64,
    /// Relevant documents in the top k over all relevant documents.
    pub recall: f64,
    /// Relevant documents in the top k over k.
    pub precision: f64,
    /// nDCG of the top k with graded gains.
    pub ndcg: f64,
}

/// Orders one query's documents the trec_eval way.
fn ranked(docs: &[(String, f64)]) -> Vec<&str> {
    let mut v: Vec<&(String, f64)> = docs.iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    v.into_iter().map(|(d, _)| d.as_str()).collect()
}

/// Measures of one query at cutoff `k`; `None` when the query has no relevant document.
pub fn query_metrics(
    docs: &[(String, f64)],
    judged: &HashMap<String, i64>,
    k: usize,
) -> Option<TrecMetrics> {
    let num_rel = judged.values().filter(|&&r| r >= 1).count();
    if num_rel == 0 || k == 0 {
        return None;
    }
    let order = ranked(docs);
    let top = &order[..order.len().min(k)];
    let rel_of = |d: &str| judged.get(d).copied().unwrap_or(0);
    let hits = top.iter().filter(|d| rel_of(d) >= 1).count();
    let mrr = top
        .iter()
        .position(|d| rel_of(d) >= 1)
        .map_or(0.0, |p| 1.0 / (p + 1) as f64);
    let dcg: f64 = top
        .iter()
        .enumerate()
        .map(|(i, d)| rel_of(d).max(0) as f64 / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<i64> = judged.values().copied().filter(|&r| r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &g)| g as f64 / ((i + 2) as f64).log2())
        .sum();
    Some(TrecMetrics {
        mrr,
        recall: hits as f64 / num_rel as f64,
        precision: hits as f64 / k as f64,
        ndcg: if idcg > 0.0 { dcg / idcg } else { 0.0 },
    })
}

/// Per-query measures and their mean over the evaluated queries.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrecReport {
    /// Cutoff.
    pub k: usize,
    /// Queries evaluated.
    pub queries: usize,
    /// Mean of each measure.
    pub mean: TrecMetrics,
    /// Each evaluated query's measures.
    pub per_query: BTreeMap<String, TrecMetrics>,
}

/// Evaluates `run` against `qrels` at cutoff `k` (see the module notes for conventions).
pub fn evaluate(run: &Run, qrels: &Qrels, k: usize, complete: bool) -> TrecReport {
    let mut per_query = BTreeMap::new();
    for (qid, judged) in qrels {
        let docs = match run.get(qid) {
            Some(d) => d.as_slice(),
            None if complete => &[],
            None => continue,
        };
        if let Some(m) = query_metrics(docs, judged, k) {
            per_query.insert(qid.clone(), m);
        }
    }
    let n = per_query.len().max(1) as f64;
    let sum = |f: fn(&TrecMetrics) -> f64| per_query.values().map(f).sum::<f64>() / n;
    TrecReport {
        k,
        queries: per_query.len(),
        mean: TrecMetrics {
            mrr: sum(|m| m.mrr),
            recall: sum(|m| m.recall),
            precision: sum(|m| m.precision),
            ndcg: sum(|m| m.ndcg),
        },
        per_query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(v: &[(&str, f64)]) -> Vec<(String, f64)> {
        v.iter().map(|(d, s)| (d.to_string(), *s)).collect()
    }

    fn judged(v: &[(&str, i64)]) -> HashMap<String, i64> {
        v.iter().map(|(d, r)| (d.to_string(), *r)).collect()
    }

    #[test]
    fn hand_computed_query() {
        // Ranking by score: d1 (0.9), d2 (0.8), d3 (0.7), d4 (0.6). Relevant: d2 (grade 2), d4 (1), d9 (1, not retrieved).
        let run = docs(&[("d3", 0.7), ("d1", 0.9), ("d4", 0.6), ("d2", 0.8)]);
        let j = judged(&[("d2", 2), ("d4", 1), ("d9", 1), ("d1", 0)]);
        let m = query_metrics(&run, &j, 3).unwrap();
        assert_eq!(m.mrr, 0.5);
        assert!((m.recall - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.precision - 1.0 / 3.0).abs() < 1e-12);
        // DCG@3 = 2/log2(3); IDCG@3 = 2/log2(2) + 1/log2(3) + 1/log2(4).
        let want = (2.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2() + 0.5);
        assert!((m.ndcg - want).abs() < 1e-12, "{} vs {want}", m.ndcg);
        let m10 = query_metrics(&run, &j, 10).unwrap();
        assert!((m10.precision - 0.2).abs() < 1e-12, "P@10 divides by 10");
        assert!((m10.recall - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn ties_break_by_docid_descending_and_the_rank_column_is_ignored() {
        let run = docs(&[("a", 1.0), ("c", 1.0), ("b", 1.0)]);
        assert_eq!(ranked(&run), vec!["c", "b", "a"]);
        let m = query_metrics(&run, &judged(&[("a", 1)]), 10).unwrap();
        assert!((m.mrr - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn missing_queries_follow_trec_eval() {
        let mut run = Run::new();
        run.insert("q1".into(), docs(&[("x", 1.0)]));
        run.insert("q3".into(), docs(&[("y", 1.0)]));
        let mut qrels = Qrels::new();
        qrels.insert("q1".into(), judged(&[("x", 1)]));
        qrels.insert("q2".into(), judged(&[("z", 1)]));
        qrels.insert("q4".into(), judged(&[("w", 0)]));
        // q3 has no qrels, q4 no relevant document: neither counts. q2 counts only with -c.
        let r = evaluate(&run, &qrels, 10, false);
        assert_eq!((r.queries, r.mean.mrr), (1, 1.0));
        let r = evaluate(&run, &qrels, 10, true);
        assert_eq!((r.queries, r.mean.mrr), (2, 0.5));
    }

    #[test]
    fn files_round_trip_and_bad_lines_name_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = Run::new();
        run.insert("q1".into(), docs(&[("d1", 2.5), ("d2", 1.0)]));
        let p = dir.path().join("run.txt");
        std::fs::write(&p, write_run(&run, "xqdb")).unwrap();
        assert_eq!(read_run(&p).unwrap(), run);
        std::fs::write(&p, "q1 Q0 d1 1 high xqdb\n").unwrap();
        assert!(read_run(&p).unwrap_err().to_string().contains("run.txt:1"));
        let q = dir.path().join("qrels.txt");
        std::fs::write(&q, "q1 0 d1 1\nq1 0 d2\n").unwrap();
        assert!(read_qrels(&q)
            .unwrap_err()
            .to_string()
            .contains("qrels.txt:2"));
    }
}
