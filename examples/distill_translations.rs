//! Query-adapter distillation on the translation data: per language, the English
//! translations are the collection; the native questions of the first 2,000 pairs train one
//! adapter for all languages with the translation teacher (the encoder's score of the
//! English version of the question against each candidate; candidates are the student's top
//! 20 in the whole collection). Pairs 1,800..2,000 are held out from the gradient steps and
//! choose the epoch to keep (MRR@10 searched over the whole collection); the other 1,000
//! pairs measure native → English R@1 and MRR@10 with and without the adapter.
//!
//! `cargo run --release --example distill_translations` (needs `make setup`).

use xqdb::distill::{train_validated, Adapter, Example, TrainOptions};
use xqdb::eval::{rank_of, RankMetrics};
use xqdb::Encoder;

const TRAIN: usize = 2000;
const FIT: usize = 1800;
const CANDIDATES: usize = 20;

fn normalized(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / n).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

struct Lang {
    name: String,
    passages: Vec<f32>,
    native: Vec<Vec<f32>>,
}

fn main() -> xqdb::Result<()> {
    let encoder = Encoder::from_dir(xqdb::ModelBundle::default_dir())?;
    let dim = encoder.dim();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/xor-tydi");
    let mut langs = Vec::new();
    let (mut fit, mut hold) = (Vec::new(), Vec::new());
    for code in ["ar", "bn", "fi", "ja", "ko", "ru", "te"] {
        let pairs =
            xqdb::eval::read_pairs(&root.join(format!("translations.{code}-en.jsonl")), None)?;
        let en: Vec<&str> = pairs.iter().map(|p| p.en.as_str()).collect();
        let native: Vec<&str> = pairs.iter().map(|p| p.native.as_str()).collect();
        let t = std::time::Instant::now();
        let passages: Vec<f32> = encoder.encode_passages(&en)?.concat();
        let native_q = encoder.encode_queries(&native)?;
        let teacher_q = encoder.encode_queries(&en[..TRAIN])?;
        eprintln!(
            "{code}: encoded {} pairs in {:.0} s",
            pairs.len(),
            t.elapsed().as_secs_f64()
        );
        let rows: Vec<&[f32]> = passages.chunks_exact(dim).collect();
        for i in 0..TRAIN {
            let mut scored: Vec<(f32, usize)> = rows
                .iter()
                .enumerate()
                .map(|(j, p)| (dot(&native_q[i], p), j))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut cands: Vec<usize> = scored.iter().take(CANDIDATES).map(|s| s.1).collect();
            if !cands.contains(&i) {
                cands[CANDIDATES - 1] = i;
            }
            let ex = Example {
                query: native_q[i].clone(),
                candidates: cands.iter().map(|&j| rows[j].to_vec()).collect(),
                teacher: cands.iter().map(|&j| dot(&teacher_q[i], rows[j])).collect(),
            };
            if i < FIT {
                fit.push(ex);
            } else {
                hold.push(ex);
            }
        }
        langs.push(Lang {
            name: code.to_string(),
            passages,
            native: native_q,
        });
    }
    let metrics = |a: &Adapter, range: std::ops::Range<usize>| -> Vec<RankMetrics> {
        langs
            .iter()
            .map(|l| {
                let ranks: Vec<usize> = range
                    .clone()
                    .map(|i| rank_of(&l.passages, dim, &normalized(a.apply(&l.native[i])), i))
                    .collect();
                RankMetrics::from_ranks(&ranks)
            })
            .collect()
    };
    let configs: [(&str, f32, Option<usize>); 3] = [
        ("full W, lr 5e-4", 5e-4, None),
        ("full W, lr 5e-5", 5e-5, None),
        ("rank 32, lr 5e-4", 5e-4, Some(32)),
    ];
    let identity = Adapter::identity(dim);
    let base = metrics(&identity, TRAIN..3000);
    let mut tables = Vec::new();
    for (name, lr, rank) in configs {
        let t = std::time::Instant::now();
        let mut validate =
            |a: &Adapter| 1.0 - RankMetrics::macro_average(&metrics(a, FIT..TRAIN)).mrr_at_10;
        let report = train_validated(
            &fit,
            &hold,
            dim,
            &TrainOptions {
                learning_rate: lr,
                epochs: 15,
                batch_size: 64,
                tau_teacher: 0.02,
                tau_student: 0.02,
                rank,
                ..Default::default()
            },
            &mut validate,
        );
        eprintln!(
            "{name}: {} examples in {:.0} s; held-out KL {:.4} -> {:.4?}; held-out MRR@10 {:.4?} -> {:.4?}; kept epoch {}",
            fit.len(),
            t.elapsed().as_secs_f64(),
            report.initial_holdout_kl,
            report.holdout_kl,
            report.initial_validation.map(|v| 1.0 - v),
            report.validation.iter().map(|v| 1.0 - v).collect::<Vec<_>>(),
            report.best_epoch
        );
        tables.push((
            name,
            report.best_epoch,
            metrics(&report.adapter, TRAIN..3000),
        ));
    }
    for (name, epoch, tuned) in &tables {
        println!("\n{name} (kept epoch {epoch}):\n");
        println!("| lang | R@1 | R@1 adapter | MRR@10 | MRR@10 adapter |");
        println!("|---|---|---|---|---|");
        for ((l, b), t) in langs.iter().zip(&base).zip(tuned) {
            println!(
                "| {} | {:.4} | {:.4} | {:.4} | {:.4} |",
                l.name, b.recall_at_1, t.recall_at_1, b.mrr_at_10, t.mrr_at_10
            );
        }
        let (b, t) = (
            RankMetrics::macro_average(&base),
            RankMetrics::macro_average(tuned),
        );
        println!(
            "| **average** | {:.4} | {:.4} | {:.4} | {:.4} |",
            b.recall_at_1, t.recall_at_1, b.mrr_at_10, t.mrr_at_10
        );
    }
    Ok(())
}
