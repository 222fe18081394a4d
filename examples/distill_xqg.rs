//! Query adapter × xQG fusion on the multi-parallel gettext strings: each English string is
//! a passage; a query in language L is the L translation. "Fusion" folds the other six
//! languages' translations (the oracle generated queries of the xQG evaluation, the query's
//! own language left out) into the passage vector (α = 0.2, normalised). One adapter is
//! trained with the translation teacher on the native queries of the first 600 strings
//! (candidates: the student's top 20 in the collection the query searches; strings 500..600
//! are held out for early stopping), and the last 400 strings per language measure native → English R@1 and MRR@10 in four settings: plain,
//! adapter, fusion, and both (an adapter trained against the fused collection).
//!
//! `cargo run --release --example distill_xqg` (needs `make setup`).

use std::collections::BTreeMap;
use xqdb::distill::{train_validated, Adapter, Example, TrainOptions};
use xqdb::eval::{rank_of, RankMetrics};
use xqdb::Encoder;

/// Strings 0..TRAIN give training queries; of those, FIT.. are held out for early stopping
/// (split by string, so that no string is on both sides); TRAIN.. are the evaluation.
const TRAIN: usize = 600;
const FIT: usize = 500;
const CANDIDATES: usize = 20;
const ALPHA: f32 = 0.2;

fn normalized(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / n).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn examples(
    collection: &[f32],
    dim: usize,
    native: &[Vec<f32>],
    teacher_q: &[Vec<f32>],
    plain: &[f32],
    range: std::ops::Range<usize>,
) -> Vec<Example> {
    let rows: Vec<&[f32]> = collection.chunks_exact(dim).collect();
    let own: Vec<&[f32]> = plain.chunks_exact(dim).collect();
    range
        .map(|i| {
            // Candidates come from the whole collection, as `xqdb distill` mines them. The
            // adapter could learn to prefer training strings (every training positive is
            // one); the early-stopping strings are positives it never trained on, so their
            // KL shows that.
            let mut scored: Vec<(f32, usize)> = rows
                .iter()
                .enumerate()
                .map(|(j, p)| (dot(&native[i], p), j))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut cands: Vec<usize> = scored.iter().take(CANDIDATES).map(|s| s.1).collect();
            if !cands.contains(&i) {
                cands[CANDIDATES - 1] = i;
            }
            Example {
                query: native[i].clone(),
                candidates: cands.iter().map(|&j| rows[j].to_vec()).collect(),
                // The teacher scores the English version against E(p) (not the fused row).
                teacher: cands.iter().map(|&j| dot(&teacher_q[i], own[j])).collect(),
            }
        })
        .collect()
}

fn main() -> xqdb::Result<()> {
    let encoder = Encoder::from_dir(xqdb::ModelBundle::default_dir())?;
    let dim = encoder.dim();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/gettext/ui_strings.all7.jsonl");
    let rows = xqdb::eval::read_parallel(&path)?;
    let langs: Vec<String> = rows[0].keys().filter(|k| *k != "en").cloned().collect();
    let en: Vec<&str> = rows.iter().map(|r| r["en"].as_str()).collect();
    let t = std::time::Instant::now();
    let plain: Vec<f32> = encoder.encode_passages(&en)?.concat();
    let teacher_q = encoder.encode_queries(&en)?;
    let mut native: BTreeMap<&str, Vec<Vec<f32>>> = BTreeMap::new();
    for l in &langs {
        let texts: Vec<&str> = rows.iter().map(|r| r[l].as_str()).collect();
        native.insert(l, encoder.encode_queries(&texts)?);
    }
    eprintln!(
        "encoded {} strings in {} languages in {:.0} s",
        rows.len(),
        langs.len() + 1,
        t.elapsed().as_secs_f64()
    );
    // Per query language, the collection fused with the other languages' translations.
    let mut fused: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
    for l in &langs {
        let others: Vec<&String> = langs.iter().filter(|o| *o != l).collect();
        let mut coll = Vec::with_capacity(plain.len());
        for (i, p) in plain.chunks_exact(dim).enumerate() {
            let mut sum = vec![0f32; dim];
            for o in &others {
                sum.iter_mut()
                    .zip(&native[o.as_str()][i])
                    .for_each(|(s, x)| *s += x);
            }
            coll.extend(xqdb::xqg::fuse(p, &sum, others.len(), ALPHA, true));
        }
        fused.insert(l, coll);
    }
    let configs: [(&str, f32, Option<usize>); 2] = [
        ("full W, lr 5e-6", 5e-6, None),
        ("rank 32, lr 5e-5", 5e-5, Some(32)),
    ];
    let identity = Adapter::identity(dim);
    let mut settings: Vec<(String, bool, Adapter)> = vec![
        ("plain".into(), false, identity.clone()),
        ("fusion".into(), true, identity),
    ];
    for (cname, lr, rank) in configs {
        let options = TrainOptions {
            learning_rate: lr,
            rank,
            epochs: 15,
            batch_size: 64,
            tau_teacher: 0.02,
            tau_student: 0.02,
            ..Default::default()
        };
        for use_fusion in [false, true] {
            let coll_of = |l: &str| if use_fusion { &fused[l] } else { &plain };
            let (mut ex, mut hold) = (Vec::new(), Vec::new());
            for l in &langs {
                let q = &native[l.as_str()];
                ex.extend(examples(coll_of(l), dim, q, &teacher_q, &plain, 0..FIT));
                hold.extend(examples(coll_of(l), dim, q, &teacher_q, &plain, FIT..TRAIN));
            }
            let t = std::time::Instant::now();
            // Early stopping on 1 − MRR@10 of the held-out strings over the whole collection.
            let mut validate = |a: &Adapter| {
                let mut rr = 0.0;
                for l in &langs {
                    for (i, v) in native[l.as_str()].iter().enumerate().take(TRAIN).skip(FIT) {
                        let q = normalized(a.apply(v));
                        let r = rank_of(coll_of(l), dim, &q, i);
                        if r < 10 {
                            rr += 1.0 / (r + 1) as f64;
                        }
                    }
                }
                1.0 - rr / ((TRAIN - FIT) * langs.len()) as f64
            };
            let report = train_validated(&ex, &hold, dim, &options, &mut validate);
            let name = format!(
                "{}adapter ({cname}, kept epoch {})",
                if use_fusion { "fusion + " } else { "" },
                report.best_epoch
            );
            eprintln!(
                "{name}: {} examples in {:.0} s; held-out KL {:.4} -> {:.4?}; held-out MRR@10 {:.4?} -> {:.4?}",
                ex.len(),
                t.elapsed().as_secs_f64(),
                report.initial_holdout_kl,
                report.holdout_kl,
                report.initial_validation.map(|v| 1.0 - v),
                report.validation.iter().map(|v| 1.0 - v).collect::<Vec<_>>(),
            );
            settings.push((name, use_fusion, report.adapter));
        }
    }
    println!("| setting | ar | bn | fi | ja | ko | ru | te | **avg R@1** | **avg MRR@10** |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, use_fusion, a) in &settings {
        let mut per = Vec::new();
        let mut cells = Vec::new();
        for l in &langs {
            let coll = if *use_fusion {
                &fused[l.as_str()]
            } else {
                &plain
            };
            let ranks: Vec<usize> = (TRAIN..rows.len())
                .map(|i| rank_of(coll, dim, &normalized(a.apply(&native[l.as_str()][i])), i))
                .collect();
            let m = RankMetrics::from_ranks(&ranks);
            cells.push(format!("{:.3} / {:.3}", m.recall_at_1, m.mrr_at_10));
            per.push(m);
        }
        let avg = RankMetrics::macro_average(&per);
        println!(
            "| {name} | {} | {:.4} | {:.4} |",
            cells.join(" | "),
            avg.recall_at_1,
            avg.mrr_at_10
        );
    }
    Ok(())
}
