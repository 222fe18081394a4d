//! Lexical and hybrid search at scale: synthetic passages (40 words drawn from a Zipf law
//! over 50,000 words) with random 384-dimensional vectors, stored in commits of 20,000 in an
//! index that keeps a lexical index and, in the same run, in one that does not (the
//! difference in catalog bytes is the lexical index's size). Reports insert throughput, the
//! bytes per passage, and the latency of dense, lexical and hybrid (default fusion) searches
//! for 200 queries of one to three words drawn from the words of the first 2,000 passages.
//!
//! `cargo bench --bench lexical` (1,000,000 passages; `XQDB_BENCH_LEXICAL_ROWS` for another
//! size); under `cargo test` a 5,000-passage smoke run. Writes `target/bench-lexical.json`.

use rand::{Rng, SeedableRng};
use std::time::Instant;
use xqdb::{Fusion, Index, LexicalSettings, Metric, Passage, SearchMode, SearchOptions};

const DIM: usize = 384;
const VOCAB: usize = 50_000;
const WORDS: usize = 40;
const BATCH: usize = 20_000;

/// A pronounceable word for rank `i`.
fn word(mut i: usize) -> String {
    const SYL: [&str; 16] = [
        "ka", "to", "ri", "mu", "se", "no", "ha", "li", "po", "an", "ve", "du", "si", "ro", "ne",
        "ku",
    ];
    let mut w = String::new();
    loop {
        w.push_str(SYL[i % 16]);
        i /= 16;
        if i == 0 {
            break;
        }
    }
    w
}

/// Zipf(1) sampler by inverse CDF over a precomputed table.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Self {
        let mut c = Vec::with_capacity(n);
        let mut s = 0.0;
        for r in 1..=n {
            s += 1.0 / r as f64;
            c.push(s);
        }
        c.iter_mut().for_each(|x| *x /= s);
        Zipf(c)
    }
    fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.0.partition_point(|&x| x < u).min(self.0.len() - 1)
    }
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    std::fs::metadata(p.join("catalog.redb")).map_or(0, |m| m.len())
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rows: usize = std::env::var("XQDB_BENCH_LEXICAL_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 5_000 });
    let words: Vec<String> = (0..VOCAB).map(word).collect();
    let zipf = Zipf::new(VOCAB);
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut figures = serde_json::Map::new();
    let mut catalog = [0u64; 2];
    let mut lexical_index = None;
    // Words of the first passages (with their Zipf frequencies): what queries draw from, so
    // that every query word occurs in the index at any size.
    let mut seen: Vec<usize> = Vec::new();
    for (slot, lexical) in [(1, false), (0, true)] {
        let dir = tmp.path().join(if lexical { "lexical" } else { "plain" });
        let mut b = Index::builder().dim(DIM).metric(Metric::Dot).threads(2);
        if lexical {
            b = b.lexical(LexicalSettings::default());
        }
        let index = b.create(&dir).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut w = index.writer().unwrap();
        let start = Instant::now();
        seen.clear();
        for i in 0..rows {
            let drawn: Vec<usize> = (0..WORDS).map(|_| zipf.sample(&mut rng)).collect();
            if i < 2_000 {
                seen.extend(&drawn);
            }
            let text: Vec<&str> = drawn.iter().map(|&d| words[d].as_str()).collect();
            let v: Vec<f32> = (0..DIM).map(|_| rng.random::<f32>() - 0.5).collect();
            w.insert(Passage::new(format!("p{i}"), text.join(" ")), &v)
                .unwrap();
            if (i + 1) % BATCH == 0 {
                w.commit().unwrap();
            }
        }
        w.commit().unwrap();
        let secs = start.elapsed().as_secs_f64();
        drop(w);
        catalog[slot] = dir_bytes(&dir);
        let name = if lexical {
            "with_lexical"
        } else {
            "without_lexical"
        };
        println!(
            "insert {rows} passages {name}: {secs:.1} s ({:.0} passages/s), catalog {:.1} MB",
            rows as f64 / secs,
            catalog[slot] as f64 / 1e6
        );
        figures.insert(
            format!("insert_passages_per_s_{name}"),
            (rows as f64 / secs).into(),
        );
        if lexical {
            lexical_index = Some(index);
        }
    }
    let per_passage = (catalog[0] as f64 - catalog[1] as f64) / rows as f64;
    println!("lexical index: {per_passage:.0} bytes per passage (catalog difference)");
    figures.insert("lexical_bytes_per_passage".into(), per_passage.into());
    let index = lexical_index.unwrap();
    let snap = index.snapshot();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let queries: Vec<(String, Vec<f32>)> = (0..200)
        .map(|_| {
            let n = rng.random_range(1..=3);
            let q: Vec<&str> = (0..n)
                .map(|_| words[seen[rng.random_range(0..seen.len())]].as_str())
                .collect();
            let v: Vec<f32> = (0..DIM).map(|_| rng.random::<f32>() - 0.5).collect();
            (q.join(" "), v)
        })
        .collect();
    let options = SearchOptions::new(10).threads(2);
    let hybrid = options
        .clone()
        .mode(SearchMode::Hybrid)
        .fusion(Fusion::default());
    let mut lat: [Vec<f64>; 3] = Default::default();
    let mut matched = 0;
    for (text, v) in &queries {
        let t = Instant::now();
        snap.search_with(v, &options).unwrap();
        lat[0].push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        matched += !snap.search_lexical(text, &options).unwrap().is_empty() as usize;
        lat[1].push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        snap.search_hybrid(text, v, &hybrid).unwrap();
        lat[2].push(t.elapsed().as_secs_f64() * 1e3);
    }
    assert_eq!(matched, queries.len(), "every query word occurs somewhere");
    for (name, l) in ["dense", "lexical", "hybrid"].iter().zip(lat.iter_mut()) {
        let mean = l.iter().sum::<f64>() / l.len() as f64;
        let (p50, p95) = (percentile(l, 0.5), percentile(l, 0.95));
        println!(
            "{name:<8} search over {rows}: mean {mean:.2} ms, p50 {p50:.2} ms, p95 {p95:.2} ms"
        );
        figures.insert(
            format!("{name}_ms"),
            serde_json::json!({"mean": mean, "p50": p50, "p95": p95}),
        );
    }
    figures.insert("rows".into(), rows.into());
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-lexical.json");
    std::fs::write(&out, serde_json::to_string_pretty(&figures).unwrap()).unwrap();
    println!("wrote {}", out.display());
}
