//! Quality of dense, lexical and hybrid search on real multilingual data (BENCHMARKS.md,
//! "Hybrid search"), with the default encoder:
//!
//! (a) `gettext/ui_strings.all7.jsonl`: each English UI string is a passage; for queries in
//!     language L its versions in the six other languages stand in for generated queries
//!     (L left out, as `xqdb eval translations --xqg-oracle` does), fused into the vector
//!     (α 0.01) and indexed as the queries field; one index per query language.
//! (b) `xor-tydi/translations.*-en.jsonl`: each English question is a passage, its native
//!     original the query; one index per language. No generated queries exist for it.
//!
//! Every search covers the whole index. Rows/pairs are split: the first 30% tune settings
//! (`--split tune` prints a grid), the rest are the test split reported with the library's
//! defaults (`--split test`, the default). `cargo run --release --example hybrid_quality`.

use std::collections::BTreeMap;
use xqdb::eval::RankMetrics;
use xqdb::xqg::{Augmentation, XqgProfile};
use xqdb::{Encoder, Fusion, Index, LexicalSettings, Metric, Passage, SearchMode, SearchOptions};

const SHARED: &str = "../shared/data";

/// A generated query: language, text, vector.
type Generated = (String, String, Vec<f32>);

/// One query: its text, vector and the passage it should find.
struct Query {
    text: String,
    vector: Vec<f32>,
    target: String,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Dense,
    Lexical,
    Hybrid(Fusion),
}

fn name(m: &Mode) -> String {
    match m {
        Mode::Dense => "dense".into(),
        Mode::Lexical => "lexical".into(),
        Mode::Hybrid(Fusion::Rrf { k, lexical_weight }) => {
            format!("hybrid rrf (k {k}, w {lexical_weight})")
        }
        Mode::Hybrid(Fusion::Weighted { lexical_weight }) => {
            format!("hybrid weighted (w {lexical_weight})")
        }
    }
}

fn rank(index: &Index, q: &Query, mode: Mode) -> xqdb::Result<usize> {
    let snap = index.snapshot();
    let options = SearchOptions::new(10);
    let hits = match mode {
        Mode::Dense => snap.search_with(&q.vector, &options)?,
        Mode::Lexical => snap.search_lexical(&q.text, &options)?,
        Mode::Hybrid(f) => snap.search_hybrid(
            &q.text,
            &q.vector,
            &options.mode(SearchMode::Hybrid).fusion(f),
        )?,
    };
    Ok(hits.iter().position(|h| h.id == q.target).unwrap_or(10))
}

fn build(
    dir: &std::path::Path,
    dim: usize,
    lexical: LexicalSettings,
    passages: &[(String, String, Vec<f32>)],
    generated: Option<&[Vec<Generated>]>,
) -> xqdb::Result<Index> {
    let index = Index::builder()
        .dim(dim)
        .metric(Metric::Cosine)
        .xqg(XqgProfile {
            alpha: 0.01,
            ..Default::default()
        })
        .lexical(lexical)
        .create(dir)?;
    let mut w = index.writer()?;
    for (i, (id, text, v)) in passages.iter().enumerate() {
        let p = Passage::new(id, text).with_lang("en");
        match generated {
            None => w.insert(p, v)?,
            Some(g) => {
                let queries = g[i]
                    .iter()
                    .map(|(l, t, _)| (l.clone(), t.clone()))
                    .collect();
                let vectors: Vec<Vec<f32>> = g[i].iter().map(|(_, _, v)| v.clone()).collect();
                w.insert_augmented(p, Augmentation::new(v.clone(), queries, &vectors, false))?
            }
        }
    }
    w.commit()?;
    Ok(index)
}

/// Per mode: per language metrics.
type Table = BTreeMap<String, BTreeMap<String, RankMetrics>>;

fn evaluate(index: &Index, queries: &[Query], modes: &[Mode], lang: &str, out: &mut Table) {
    for m in modes {
        let ranks: Vec<usize> = queries
            .iter()
            .map(|q| rank(index, q, *m).expect("search"))
            .collect();
        out.entry(name(m))
            .or_default()
            .insert(lang.to_string(), RankMetrics::from_ranks(&ranks));
    }
}

fn print(title: &str, table: &Table) {
    println!("\n{title}");
    let langs: Vec<&String> = table
        .values()
        .next()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    print!("| mode | avg R@1 | avg MRR@10 |");
    for l in &langs {
        print!(" {l} R@1 |");
    }
    println!();
    for (mode, per) in table {
        let avg = RankMetrics::macro_average(per.values());
        print!("| {mode} | {:.4} | {:.4} |", avg.recall_at_1, avg.mrr_at_10);
        for l in &langs {
            print!(" {:.3} |", per[*l].recall_at_1);
        }
        println!();
    }
}

fn in_split(i: usize, n: usize, tune: bool) -> bool {
    (i * 10 < n * 3) == tune
}

fn main() -> xqdb::Result<()> {
    let tune = std::env::args().any(|a| a == "tune");
    let encoder = Encoder::from_dir(xqdb::ModelBundle::default_dir())?;
    let dim = encoder.dim();
    let tmp = tempfile::tempdir().expect("temp dir");
    let defaults = LexicalSettings::default();
    let modes: Vec<Mode> = if tune {
        let mut m = vec![Mode::Dense, Mode::Lexical];
        for w in [0.25, 0.5, 1.0] {
            m.push(Mode::Hybrid(Fusion::Rrf {
                k: 60.0,
                lexical_weight: w,
            }));
        }
        for w in [0.1, 0.2, 0.3, 0.5] {
            m.push(Mode::Hybrid(Fusion::Weighted { lexical_weight: w }));
        }
        m
    } else {
        vec![
            Mode::Dense,
            Mode::Lexical,
            Mode::Hybrid(Fusion::rrf()),
            Mode::Hybrid(Fusion::default()),
        ]
    };
    let mut report = serde_json::Map::new();

    // (a) UI strings, generated queries from the other languages.
    let rows: Vec<BTreeMap<String, String>> = xqdb::eval::read_parallel(std::path::Path::new(
        &format!("{SHARED}/gettext/ui_strings.all7.jsonl"),
    ))?;
    let langs: Vec<String> = rows[0].keys().filter(|k| *k != "en").cloned().collect();
    let en: Vec<&str> = rows.iter().map(|r| r["en"].as_str()).collect();
    let e_p = encoder.encode_passages(&en)?;
    let mut q_vecs: BTreeMap<&str, Vec<Vec<f32>>> = BTreeMap::new();
    for l in &langs {
        let texts: Vec<&str> = rows.iter().map(|r| r[l].as_str()).collect();
        q_vecs.insert(l, encoder.encode_queries(&texts)?);
    }
    let passages: Vec<(String, String, Vec<f32>)> = rows
        .iter()
        .zip(&e_p)
        .enumerate()
        .map(|(i, (r, v))| (format!("u{i}"), r["en"].clone(), v.clone()))
        .collect();
    let weights: &[f32] = if tune {
        &[0.25, 0.5, 1.0]
    } else {
        &[defaults.queries_weight]
    };
    for with_queries in [false, true] {
        for &qw in if with_queries { weights } else { &weights[..1] } {
            let mut table = Table::new();
            for l in &langs {
                let generated: Option<Vec<Vec<Generated>>> = with_queries.then(|| {
                    rows.iter()
                        .enumerate()
                        .map(|(i, r)| {
                            langs
                                .iter()
                                .filter(|o| *o != l)
                                .map(|o| (o.clone(), r[o].clone(), q_vecs[o.as_str()][i].clone()))
                                .collect()
                        })
                        .collect()
                });
                let dir = tmp.path().join(format!("ui-{l}-{with_queries}-{qw}"));
                let settings = LexicalSettings {
                    queries_weight: qw,
                    ..defaults
                };
                let index = build(&dir, dim, settings, &passages, generated.as_deref())?;
                let queries: Vec<Query> = rows
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| in_split(*i, rows.len(), tune))
                    .map(|(i, r)| Query {
                        text: r[l].clone(),
                        vector: q_vecs[l.as_str()][i].clone(),
                        target: format!("u{i}"),
                    })
                    .collect();
                evaluate(&index, &queries, &modes, l, &mut table);
            }
            let title = format!(
                "(a) UI strings, {} generated queries{} ({} split)",
                if with_queries { "with" } else { "without" },
                if with_queries {
                    format!(", queries weight {qw}")
                } else {
                    String::new()
                },
                if tune { "tuning" } else { "test" }
            );
            print(&title, &table);
            report.insert(title, serde_json::to_value(&table).expect("json"));
        }
    }

    // (b) XOR-TyDi translations.
    let mut table = Table::new();
    for l in ["ar", "bn", "fi", "ja", "ko", "ru", "te"] {
        let path = format!("{SHARED}/xor-tydi/translations.{l}-en.jsonl");
        let pairs: Vec<_> = xqdb::eval::read_pairs(std::path::Path::new(&path), None)?
            .into_iter()
            .filter(|p| !p.en.trim().is_empty() && !p.native.trim().is_empty())
            .collect();
        let en: Vec<&str> = pairs.iter().map(|p| p.en.as_str()).collect();
        let e_p = encoder.encode_passages(&en)?;
        let passages: Vec<(String, String, Vec<f32>)> = pairs
            .iter()
            .zip(e_p)
            .enumerate()
            .map(|(i, (p, v))| (format!("x{i}"), p.en.clone(), v))
            .collect();
        let dir = tmp.path().join(format!("xor-{l}"));
        let index = build(&dir, dim, defaults, &passages, None)?;
        let chosen: Vec<(usize, &str)> = pairs
            .iter()
            .enumerate()
            .filter(|(i, _)| in_split(*i, pairs.len(), tune))
            .map(|(i, p)| (i, p.native.as_str()))
            .collect();
        let texts: Vec<&str> = chosen.iter().map(|c| c.1).collect();
        let vectors = encoder.encode_queries(&texts)?;
        let queries: Vec<Query> = chosen
            .iter()
            .zip(vectors)
            .map(|(&(i, t), v)| Query {
                text: t.to_string(),
                vector: v,
                target: format!("x{i}"),
            })
            .collect();
        evaluate(&index, &queries, &modes, l, &mut table);
        eprintln!(
            "xor-tydi {l}: {} passages, {} queries",
            pairs.len(),
            queries.len()
        );
    }
    let title = format!(
        "(b) XOR-TyDi translations, no generated queries ({} split)",
        if tune { "tuning" } else { "test" }
    );
    print(&title, &table);
    report.insert(title, serde_json::to_value(&table).expect("json"));
    let out = std::path::Path::new("target/hybrid-quality.json");
    std::fs::write(out, serde_json::to_string_pretty(&report).expect("json")).expect("write");
    eprintln!("wrote {}", out.display());
    Ok(())
}
