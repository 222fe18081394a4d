//! Does a query adapter help questions it never saw, when its training passages share the
//! index? Per language (ar, bn, fi, ja, ko, ru, te) of `../shared/data/xor-tydi`, pairs
//! 0..TRAIN train, TRAIN..TRAIN+1000 are the test questions and the next 1,000 pairs a tuning
//! split. One index holds the English side of all of them (21,000 texts at most); a test
//! question searches its language's training and test passages, a tuning question its
//! language's training and tuning passages (metadata filters), so the training passages are
//! candidates for every search. Settings are chosen on the tuning split; the test split is
//! what is reported.
//!
//! `cargo run --release --example distill_unseen [-- --train N] [-- --variants a,b]`
//! (needs `make setup`; the index and the encoded questions are cached under
//! `target/distill-unseen`).

use std::collections::BTreeMap;
use std::path::Path;
use xqdb::distill::{
    build_set, fit_adapters, read_set, write_set, Objective, QueryAdapters, SetOptions, SetQuery,
    TrainOptions, TranslationTeacher,
};
use xqdb::eval::RankMetrics;
use xqdb::{Encoder, Filter, Index, Passage, SearchOptions};

const LANGS: [&str; 7] = ["ar", "bn", "fi", "ja", "ko", "ru", "te"];
const TEST: usize = 1000;
const TUNE: usize = 1000;
const MAX_TRAIN: usize = 600;

struct Split {
    /// (lang, pair index, native question vector) per question.
    questions: Vec<(String, usize, Vec<f32>)>,
    name: &'static str,
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> xqdb::Result<()> {
    let train_n: usize = arg("--train").map_or(MAX_TRAIN, |v| v.parse().expect("--train N"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../shared/data/xor-tydi");
    let work = root.join("target/distill-unseen");
    std::fs::create_dir_all(&work)
        .map_err(|e| xqdb::Error::InvalidArgument(format!("{}: {e}", work.display())))?;
    let encoder = std::sync::Arc::new(Encoder::from_dir(xqdb::ModelBundle::default_dir())?);
    let mut pairs = BTreeMap::new();
    for l in LANGS {
        let mut p = xqdb::eval::read_pairs(&data.join(format!("translations.{l}-en.jsonl")), None)?;
        // A few pairs have an empty side; they are left out (ids count the pairs kept).
        p.retain(|p| !p.en.trim().is_empty() && !p.native.trim().is_empty());
        pairs.insert(l, p);
    }
    let split_of = |i: usize| {
        if i < MAX_TRAIN {
            "train"
        } else if i < MAX_TRAIN + TEST {
            "test"
        } else {
            "tune"
        }
    };
    // The index (built once).
    let index_dir = work.join("index");
    let index = if index_dir.exists() {
        Index::builder().encoder(encoder.clone()).open(&index_dir)?
    } else {
        let tmp = work.join("index.partial");
        let _ = std::fs::remove_dir_all(&tmp);
        let index = Index::builder().encoder(encoder.clone()).open(&tmp)?;
        let mut w = index.writer()?;
        let t = std::time::Instant::now();
        for l in LANGS {
            let passages: Vec<Passage> = pairs[l]
                .iter()
                .take(MAX_TRAIN + TEST + TUNE)
                .enumerate()
                .map(|(i, p)| {
                    Passage::new(format!("{l}-{i}"), p.en.clone())
                        .with_lang("en")
                        .with_meta(serde_json::json!({"src": l, "split": split_of(i)}))
                })
                .collect();
            w.insert_texts(passages, &|_| {})?;
            w.commit()?;
            eprintln!("indexed {l} ({:.0} s)", t.elapsed().as_secs_f64());
        }
        drop(w);
        drop(index);
        std::fs::rename(&tmp, &index_dir)
            .map_err(|e| xqdb::Error::InvalidArgument(format!("{}: {e}", index_dir.display())))?;
        Index::builder().encoder(encoder.clone()).open(&index_dir)?
    };
    let snap = index.snapshot();
    eprintln!("index: {} passages", snap.len());
    // Evaluation questions, encoded once (no adapter).
    let encode_split = |name: &'static str, range: std::ops::Range<usize>| -> xqdb::Result<Split> {
        let cache = work.join(format!("{name}.f32"));
        let mut questions = Vec::new();
        let mut texts = Vec::new();
        for l in LANGS {
            for i in range.clone() {
                texts.push(pairs[l][i].native.clone());
                questions.push((l.to_string(), i, Vec::new()));
            }
        }
        let dim = snap.dim();
        let flat: Vec<f32> = match std::fs::read(&cache) {
            Ok(b) if b.len() == texts.len() * dim * 4 => bytemuck::pod_collect_to_vec(&b),
            _ => {
                let v = index.encode_queries_for(&snap, &texts, false)?.concat();
                std::fs::write(&cache, bytemuck::cast_slice(&v)).map_err(|e| {
                    xqdb::Error::InvalidArgument(format!("{}: {e}", cache.display()))
                })?;
                v
            }
        };
        for (q, v) in questions.iter_mut().zip(flat.chunks_exact(dim)) {
            q.2 = v.to_vec();
        }
        Ok(Split { questions, name })
    };
    let test = encode_split("test", MAX_TRAIN..MAX_TRAIN + TEST)?;
    let tune = encode_split("tune", MAX_TRAIN + TEST..MAX_TRAIN + TEST + TUNE)?;
    // The distillation set: the first train_n training pairs of each language, mined and
    // scored with the translation teacher as `xqdb distill --teacher translation` does.
    let set_path = work.join(format!("set-{train_n}.jsonl"));
    let rows = match read_set(&set_path) {
        Ok(rows) => rows,
        Err(_) => {
            let queries: Vec<SetQuery> = LANGS
                .iter()
                .flat_map(|&l| {
                    pairs[l]
                        .iter()
                        .take(train_n)
                        .enumerate()
                        .map(move |(i, p)| SetQuery {
                            query: p.native.clone(),
                            lang: Some(l.to_string()),
                            positive: Some(format!("{l}-{i}")),
                            parallel: Some(p.en.clone()),
                        })
                })
                .collect();
            let t = std::time::Instant::now();
            let teacher = TranslationTeacher::new(encoder.clone());
            let set = build_set(
                &index,
                &queries,
                &teacher,
                &SetOptions::default(),
                &|_, _| {},
            )?;
            eprintln!(
                "mined {} rows in {:.0} s",
                set.rows.len(),
                t.elapsed().as_secs_f64()
            );
            write_set(&set_path, &set.rows)?;
            set.rows
        }
    };
    let evaluate = |split: &Split, adapters: &QueryAdapters| -> xqdb::Result<Eval> {
        let mut per_lang = BTreeMap::new();
        let mut to_train = 0usize;
        for l in LANGS {
            let qs: Vec<&(String, usize, Vec<f32>)> =
                split.questions.iter().filter(|q| q.0 == l).collect();
            let vectors: Vec<Vec<f32>> = qs.iter().map(|q| adapters.apply(Some(l), &q.2)).collect();
            let pool = Filter::new()
                .meta_eq("src", l.into())
                .meta_in("split", ["train".into(), split.name.into()]);
            let hits = snap.search_batch(&vectors, &SearchOptions::new(10).filter(pool))?;
            let ranks: Vec<usize> = qs
                .iter()
                .zip(&hits)
                .map(|(q, h)| {
                    let want = format!("{l}-{}", q.1);
                    if h.first().is_some_and(|top| {
                        top.id
                            .split('-')
                            .nth(1)
                            .and_then(|i| i.parse::<usize>().ok())
                            < Some(MAX_TRAIN)
                    }) {
                        to_train += 1;
                    }
                    h.iter().position(|x| x.id == want).unwrap_or(usize::MAX)
                })
                .collect();
            per_lang.insert(l, RankMetrics::from_ranks(&ranks));
        }
        Ok(Eval {
            per_lang,
            top1_train: to_train as f64 / split.questions.len() as f64,
        })
    };
    let identity = QueryAdapters::default();
    let base_test = evaluate(&test, &identity)?;
    let base_tune = evaluate(&tune, &identity)?;
    let variants = variants();
    let wanted: Option<Vec<String>> =
        arg("--variants").map(|v| v.split(',').map(str::to_string).collect());
    println!(
        "\n{} training pairs per language; tuning split (R@1 avg / worst language delta / top-1 a training passage), then test:\n",
        train_n
    );
    report_line(
        "identity", &base_tune, &base_tune, &base_test, &base_test, 0.0,
    );
    for (name, options) in variants {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.iter().any(|x| x == name))
        {
            continue;
        }
        let t = std::time::Instant::now();
        let (adapters, fits) = fit_adapters(&index, &rows, &options)?;
        let secs = t.elapsed().as_secs_f64();
        let kept: Vec<String> = fits
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f.lang.as_deref().unwrap_or("shared"),
                    match (f.info.best_epoch, f.info.lambda) {
                        (0, _) => "identity".to_string(),
                        (_, Some(l)) => format!("λ {l}"),
                        (e, None) => format!("epoch {e}"),
                    }
                )
            })
            .collect();
        eprintln!("{name}: kept {}", kept.join(", "));
        let (tuned, tested) = (evaluate(&tune, &adapters)?, evaluate(&test, &adapters)?);
        report_line(name, &base_tune, &tuned, &base_test, &tested, secs);
        if wanted.is_some() {
            print_table(&base_test, &tested);
        }
    }
    Ok(())
}

struct Eval {
    per_lang: BTreeMap<&'static str, RankMetrics>,
    top1_train: f64,
}

impl Eval {
    fn avg(&self) -> RankMetrics {
        RankMetrics::macro_average(self.per_lang.values())
    }
    fn worst_delta(&self, base: &Eval) -> f64 {
        self.per_lang
            .iter()
            .map(|(l, m)| m.recall_at_1 - base.per_lang[l].recall_at_1)
            .fold(f64::INFINITY, f64::min)
    }
}

fn report_line(name: &str, bt: &Eval, t: &Eval, bx: &Eval, x: &Eval, secs: f64) {
    println!(
        "{name:<40} tune {:.4} ({:+.4}) worst {:+.4} train-top1 {:.3} | test {:.4} ({:+.4}) MRR {:.4} worst {:+.4} train-top1 {:.3} | {secs:.0} s",
        t.avg().recall_at_1,
        t.avg().recall_at_1 - bt.avg().recall_at_1,
        t.worst_delta(bt),
        t.top1_train,
        x.avg().recall_at_1,
        x.avg().recall_at_1 - bx.avg().recall_at_1,
        x.avg().mrr_at_10,
        x.worst_delta(bx),
        x.top1_train,
    );
}

fn print_table(base: &Eval, tuned: &Eval) {
    println!("| lang | R@1 | R@1 adapter | MRR@10 | MRR@10 adapter |");
    println!("|---|---|---|---|---|");
    for (l, b) in &base.per_lang {
        let t = &tuned.per_lang[l];
        println!(
            "| {l} | {:.4} | {:.4} | {:.4} | {:.4} |",
            b.recall_at_1, t.recall_at_1, b.mrr_at_10, t.mrr_at_10
        );
    }
    let (b, t) = (base.avg(), tuned.avg());
    println!(
        "| **average** | {:.4} | {:.4} | {:.4} | {:.4} |",
        b.recall_at_1, t.recall_at_1, b.mrr_at_10, t.mrr_at_10
    );
}

fn variants() -> Vec<(&'static str, TrainOptions)> {
    let d = TrainOptions::default();
    let old = TrainOptions {
        learning_rate: 1e-4,
        epochs: 15,
        tau_teacher: 0.02,
        tau_student: 0.02,
        per_language: false,
        rank: None,
        identity_penalty: 0.0,
        objective: Objective::Scores,
        ..d.clone()
    };
    let v = |f: &dyn Fn(&mut TrainOptions)| {
        let mut o = old.clone();
        f(&mut o);
        o
    };
    vec![
        ("default", d.clone()),
        (
            "shared embedding",
            v(&|o| o.objective = Objective::Embedding),
        ),
        (
            "per-lang embedding",
            v(&|o| {
                o.objective = Objective::Embedding;
                o.per_language = true
            }),
        ),
        ("shared full lr1e-4 t.02 (previous)", old.clone()),
        ("shared full lr5e-4", v(&|o| o.learning_rate = 5e-4)),
        (
            "shared full t.05",
            v(&|o| {
                o.tau_teacher = 0.05;
                o.tau_student = 0.05
            }),
        ),
        (
            "shared full t.1",
            v(&|o| {
                o.tau_teacher = 0.1;
                o.tau_student = 0.1
            }),
        ),
        (
            "shared r32 lr5e-4",
            v(&|o| {
                o.rank = Some(32);
                o.learning_rate = 5e-4
            }),
        ),
        ("shared full pen1e-2", v(&|o| o.identity_penalty = 1e-2)),
        ("per-lang full lr1e-4", v(&|o| o.per_language = true)),
        (
            "per-lang full lr5e-4",
            v(&|o| {
                o.per_language = true;
                o.learning_rate = 5e-4
            }),
        ),
        (
            "per-lang r32 lr5e-4",
            v(&|o| {
                o.per_language = true;
                o.rank = Some(32);
                o.learning_rate = 5e-4
            }),
        ),
        (
            "per-lang r32 lr1e-3",
            v(&|o| {
                o.per_language = true;
                o.rank = Some(32);
                o.learning_rate = 1e-3
            }),
        ),
        (
            "per-lang full lr5e-4 pen1e-2",
            v(&|o| {
                o.per_language = true;
                o.learning_rate = 5e-4;
                o.identity_penalty = 1e-2
            }),
        ),
    ]
}
