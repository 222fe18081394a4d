//! Query-adapter distillation on the translation data (a first experiment): per language, the
//! English translations are the collection; the native questions of the first 2,000 pairs
//! train one adapter with the translation teacher (the encoder's score of the English version
//! of the question against each candidate); the other 1,000 pairs measure native → English
//! R@1 and MRR@10 with and without the adapter.
//!
//! `cargo run --release --example distill_translations` (needs `make setup`).

use xqdb::distill::{train, Adapter, Example, TrainOptions};
use xqdb::eval::{rank_of, RankMetrics};
use xqdb::Encoder;

const TRAIN: usize = 2000;
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
    let mut examples = Vec::new();
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
            examples.push(Example {
                query: native_q[i].clone(),
                candidates: cands.iter().map(|&j| rows[j].to_vec()).collect(),
                teacher: cands.iter().map(|&j| dot(&teacher_q[i], rows[j])).collect(),
            });
        }
        langs.push(Lang {
            name: code.to_string(),
            passages,
            native: native_q,
        });
    }
    let t = std::time::Instant::now();
    let report = train(
        &examples,
        dim,
        &TrainOptions {
            learning_rate: 5e-4,
            epochs: 15,
            batch_size: 64,
            tau_teacher: 0.02,
            tau_student: 0.02,
            ..Default::default()
        },
    );
    eprintln!(
        "trained on {} examples in {:.0} s: held-out KL {:.4} -> {:?} (best epoch {})",
        examples.len(),
        t.elapsed().as_secs_f64(),
        report.initial_holdout_kl,
        report.holdout_kl,
        report.best_epoch
    );
    let identity = Adapter::identity(dim);
    println!("| lang | R@1 | R@1 adapter | MRR@10 | MRR@10 adapter |");
    println!("|---|---|---|---|---|");
    let (mut base_all, mut tuned_all) = (Vec::new(), Vec::new());
    for l in &langs {
        let eval = |a: &Adapter| {
            let ranks: Vec<usize> = (TRAIN..l.native.len())
                .map(|i| rank_of(&l.passages, dim, &normalized(a.apply(&l.native[i])), i))
                .collect();
            RankMetrics::from_ranks(&ranks)
        };
        let (base, tuned) = (eval(&identity), eval(&report.adapter));
        println!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} |",
            l.name, base.recall_at_1, tuned.recall_at_1, base.mrr_at_10, tuned.mrr_at_10
        );
        base_all.push(base);
        tuned_all.push(tuned);
    }
    let (b, t) = (
        RankMetrics::macro_average(&base_all),
        RankMetrics::macro_average(&tuned_all),
    );
    println!(
        "| average | {:.4} | {:.4} | {:.4} | {:.4} |",
        b.recall_at_1, t.recall_at_1, b.mrr_at_10, t.mrr_at_10
    );
    Ok(())
}
