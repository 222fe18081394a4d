//! Model-based test of the store: random sequences of insert / upsert / delete / commit /
//! rollback / seal / compact / reopen / search, checked step by step against an in-memory
//! oracle of what was committed. Vectors have small integer components so that scores are
//! exact and ties (broken by insertion order) are common; segments are small and merge
//! automatically three at a time; every search must equal the
//! brute-force answer, every reopen the last committed state, and every store must verify
//! with no orphan file at the end. Stores that keep binary and i8 codes run their searches
//! through a random first pass with oversampling that covers every row, so that the
//! rescored answer must equal the brute-force one too. Every store keeps a lexical index:
//! keyword searches (with filters) must equal a brute-force BM25 over the committed texts
//! (`xqdb::lexical::Postings`), and verification checks the postings against the passages.

use proptest::prelude::*;
use std::collections::BTreeMap;
use xqdb::lexical::{Analyzer, Bm25, Postings};
use xqdb::{
    Codes, Dtype, Filter, FirstPass, Index, LexicalSettings, Metric, Passage, ReadMode,
    SearchOptions, Writer,
};

const DIM: usize = 4;
const LANGS: [&str; 3] = ["en", "ja", "fi"];
/// Words of passage texts and keyword queries (one component of the vector picks each).
const WORDS: [&str; 7] = [
    "alpha",
    "beta",
    "東京タワー",
    "gamma",
    "beta",
    "Helsinki",
    "E1234",
];

#[derive(Clone, Debug)]
enum Op {
    Insert(u8, [i8; DIM], u8),
    Upsert(u8, [i8; DIM], u8),
    Delete(u8),
    Commit,
    Rollback,
    Seal,
    Compact,
    Reopen,
    Search([i8; DIM], usize, Option<u8>, Option<u8>, u8),
    SearchBatch(Vec<[i8; DIM]>, usize, u8),
    Keywords(Vec<u8>, usize, Option<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let v = prop::array::uniform4(-3i8..=3);
    prop_oneof![
        6 => (0u8..24, v.clone(), 0u8..6).prop_map(|(i, v, t)| Op::Insert(i, v, t)),
        3 => (0u8..24, v.clone(), 0u8..6).prop_map(|(i, v, t)| Op::Upsert(i, v, t)),
        3 => (0u8..24).prop_map(Op::Delete),
        4 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => Just(Op::Seal),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        4 => (v.clone(), 0usize..12, proptest::option::of(0u8..3), proptest::option::of(0u8..2), 0u8..3)
            .prop_map(|(q, k, l, g, p)| Op::Search(q, k, l, g, p)),
        1 => (proptest::collection::vec(v, 1..40), 1usize..12, 0u8..3)
            .prop_map(|(qs, k, p)| Op::SearchBatch(qs, k, p)),
        3 => (proptest::collection::vec(0u8..9, 1..4), 0usize..12, proptest::option::of(0u8..3))
            .prop_map(|(w, k, l)| Op::Keywords(w, k, l)),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct Row {
    order: u64,
    vector: Vec<f32>,
    lang: &'static str,
    group: u8,
    text: String,
}

/// A buffered change: the id, and its vector and tag (None for a delete).
type PendingOp = (String, Option<(Vec<f32>, u8)>);

#[derive(Clone, Debug, Default)]
struct Oracle {
    committed: BTreeMap<String, Row>,
    pending: Vec<PendingOp>,
    next_order: u64,
}

impl Oracle {
    fn view(&self) -> BTreeMap<String, bool> {
        let mut v: BTreeMap<String, bool> =
            self.committed.keys().map(|k| (k.clone(), true)).collect();
        for (id, put) in &self.pending {
            v.insert(id.clone(), put.is_some());
        }
        v
    }

    fn exists(&self, id: &str) -> bool {
        self.view().get(id).copied().unwrap_or(false)
    }

    fn commit(&mut self) {
        for (id, put) in std::mem::take(&mut self.pending) {
            match put {
                Some((vector, tag)) => {
                    let order = self.next_order;
                    self.next_order += 1;
                    let text = text(&id, &vector, tag);
                    self.committed.insert(
                        id,
                        Row {
                            order,
                            text,
                            vector,
                            lang: LANGS[tag as usize % 3],
                            group: tag / 3,
                        },
                    );
                }
                None => {
                    self.committed.remove(&id);
                }
            }
        }
    }

    fn search(
        &self,
        q: &[f32],
        k: usize,
        lang: Option<&str>,
        group: Option<u8>,
    ) -> Vec<(String, f32)> {
        let mut all: Vec<(f32, u64, String)> = self
            .committed
            .iter()
            .filter(|(_, r)| lang.is_none_or(|l| r.lang == l) && group.is_none_or(|g| r.group == g))
            .map(|(id, r)| {
                // Scores compare as numbers: -0.0 and +0.0 are the same score.
                let s: f32 = r.vector.iter().zip(q).map(|(a, b)| a * b).sum::<f32>() + 0.0;
                (s, r.order, id.clone())
            })
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(s, _, id)| (id, s)).collect()
    }
}

fn text(id: &str, vector: &[f32], tag: u8) -> String {
    let words: Vec<&str> = vector
        .iter()
        .map(|&x| WORDS[(x + 3.0) as usize % WORDS.len()])
        .collect();
    format!(
        "text of {id} {} {}",
        words.join(" "),
        "x".repeat(tag as usize * 40)
    )
}

impl Oracle {
    /// Brute-force BM25 over the committed texts: top `k` (f32 score, then insertion order).
    fn keywords(&self, query: &str, k: usize, lang: Option<&str>) -> Vec<(String, f32)> {
        let a = Analyzer::new();
        let mut postings = Postings::new();
        let rows: Vec<(&String, &Row)> = self.committed.iter().collect();
        for (_, r) in &rows {
            postings.add(&a.terms(&r.text));
        }
        let scores = postings.scores(&a.terms(query), &Bm25::default());
        // The tie rule is that of every search: the reported (f32) score, then insertion order.
        let mut all: Vec<(f32, u64, String)> = rows
            .iter()
            .zip(scores)
            .filter(|((_, r), s)| *s > 0.0 && lang.is_none_or(|l| r.lang == l))
            .map(|((id, r), s)| (s as f32, r.order, id.to_string()))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(s, _, id)| (id, s)).collect()
    }
}

fn passage(id: &str, vector: &[f32], tag: u8) -> Passage {
    Passage::new(id, text(id, vector, tag))
        .with_lang(LANGS[tag as usize % 3])
        .with_meta(serde_json::json!({ "group": tag / 3 }))
}

/// Oversampling that covers every row: k ≥ 1 times this exceeds the 24 ids.
const COVER_ALL: usize = 64;

/// The search options of a step: the first pass `pass` selects (exact without codes).
fn options(k: usize, pass: u8, codes: bool) -> SearchOptions {
    let pass = match pass {
        _ if !codes => FirstPass::Exact,
        0 => FirstPass::Exact,
        1 => FirstPass::I8,
        _ => FirstPass::Binary,
    };
    SearchOptions::new(k).first_pass(pass).oversample(COVER_ALL)
}

fn open(dir: &std::path::Path, dtype: Dtype, mode: ReadMode, codes: bool) -> Index {
    let mut b = Index::builder();
    if codes {
        b = b.codes(Codes::parse("binary,i8").unwrap());
    }
    b.read_mode(mode)
        .dim(DIM)
        .metric(Metric::Dot)
        .dtype(dtype)
        .seal_rows(5)
        .direct_segment_rows(4)
        .merge_fan_in(3)
        .threads(2)
        .lexical(LexicalSettings::default())
        .open(dir)
        .expect("open")
}

fn check_state(index: &Index, oracle: &Oracle) {
    let snap = index.snapshot();
    let ids = snap.ids().unwrap();
    let want: Vec<String> = oracle.committed.keys().cloned().collect();
    assert_eq!(ids, want, "ids after reopen");
    for (id, row) in &oracle.committed {
        assert_eq!(
            snap.vector(id).unwrap().as_ref(),
            Some(&row.vector),
            "vector of {id}"
        );
        let p = snap.get(id).unwrap().expect("passage present");
        assert_eq!(p.lang.as_deref(), Some(row.lang));
    }
}

fn run(ops: Vec<Op>, dtype: Dtype, mode: ReadMode, codes: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut index = open(dir.path(), dtype, mode, codes);
    let mut writer: Option<Writer> = Some(index.writer().unwrap());
    let mut oracle = Oracle::default();
    for op in ops {
        let w = writer.as_mut().unwrap();
        match op {
            Op::Insert(i, v, tag) | Op::Upsert(i, v, tag) => {
                let id = format!("p{i}");
                let vector: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                let upsert = matches!(op, Op::Upsert(..));
                let r = if upsert {
                    w.upsert(passage(&id, &vector, tag), &vector)
                } else {
                    w.insert(passage(&id, &vector, tag), &vector)
                };
                if !upsert && oracle.exists(&id) {
                    assert!(matches!(r, Err(xqdb::Error::DuplicateId { .. })), "{r:?}");
                } else {
                    r.unwrap();
                    oracle.pending.push((id, Some((vector, tag))));
                }
            }
            Op::Delete(i) => {
                let id = format!("p{i}");
                let existed = w.delete(&id).unwrap();
                assert_eq!(existed, oracle.exists(&id));
                if existed {
                    oracle.pending.push((id, None));
                }
            }
            Op::Commit => {
                w.commit().unwrap();
                oracle.commit();
            }
            Op::Rollback => {
                w.rollback();
                oracle.pending.clear();
            }
            Op::Seal => {
                w.seal().unwrap();
                oracle.commit();
            }
            Op::Compact => {
                w.compact().unwrap();
                oracle.commit();
                let stats = index.stats().unwrap();
                assert_eq!(stats.tombstones, 0);
                assert!(stats.segments <= 1);
                assert_eq!(stats.tail_rows, 0);
            }
            Op::Reopen => {
                drop(writer.take());
                drop(index);
                index = open(dir.path(), dtype, mode, codes);
                oracle.pending.clear();
                check_state(&index, &oracle);
                index.verify().unwrap();
                writer = Some(index.writer().unwrap());
            }
            Op::SearchBatch(qs, k, pass) => {
                let qs: Vec<Vec<f32>> = qs
                    .iter()
                    .map(|q| q.iter().map(|&x| x as f32).collect())
                    .collect();
                let all = index.search_batch(&qs, &options(k, pass, codes)).unwrap();
                assert_eq!(all.len(), qs.len());
                for (q, hits) in qs.iter().zip(all) {
                    let got: Vec<(String, f32)> =
                        hits.into_iter().map(|h| (h.id, h.score)).collect();
                    assert_eq!(
                        got,
                        oracle.search(q, k, None, None),
                        "batch of {}",
                        qs.len()
                    );
                }
            }
            Op::Keywords(words, k, lang) => {
                let query: Vec<&str> = words
                    .iter()
                    .map(|&w| WORDS.get(w as usize).copied().unwrap_or("absent"))
                    .collect();
                let query = query.join(" ");
                let lang = lang.map(|l| LANGS[l as usize]);
                let mut options = SearchOptions::new(k);
                if let Some(l) = lang {
                    options = options.filter(Filter::new().lang(l));
                }
                let hits = index.snapshot().search_lexical(&query, &options).unwrap();
                let got: Vec<(String, f32)> = hits
                    .iter()
                    .map(|h| (h.id.clone(), h.lexical_score.unwrap()))
                    .collect();
                // The store and the oracle sum the same terms in the same order: the same bits.
                let want = oracle.keywords(&query, k, lang);
                assert_eq!(got, want, "{query}");
                for h in &hits {
                    assert!(h.snippet.as_ref().is_some_and(|s| s.contains("<mark>")));
                }
            }
            Op::Search(q, k, lang, group, pass) => {
                let q: Vec<f32> = q.iter().map(|&x| x as f32).collect();
                let lang = lang.map(|l| LANGS[l as usize]);
                let mut filter = Filter::new();
                if let Some(l) = lang {
                    filter = filter.lang(l);
                }
                if let Some(g) = group {
                    filter = filter.meta_eq("group", serde_json::json!(g));
                }
                let hits = index
                    .search_with(&q, &options(k, pass, codes).filter(filter))
                    .unwrap();
                let got: Vec<(String, f32)> = hits.into_iter().map(|h| (h.id, h.score)).collect();
                let want = oracle.search(&q, k, lang, group);
                assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
                for ((gi, gs), (wi, ws)) in got.iter().zip(&want) {
                    assert_eq!(gi, wi, "{got:?} vs {want:?}");
                    assert!((gs - ws).abs() <= 1e-5, "{got:?} vs {want:?}");
                }
            }
        }
    }
    drop(writer);
    check_state(&index, &oracle);
    let report = index.verify().unwrap();
    assert_eq!(report.passages, oracle.committed.len() as u64);
    drop(index);
    let index = open(dir.path(), dtype, mode, codes);
    check_state(&index, &oracle);
    index.verify().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn f32_store_matches_the_oracle(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops, Dtype::F32, ReadMode::Mmap, false);
    }

    #[test]
    fn f32_store_with_codes_matches_the_oracle_through_every_first_pass(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops, Dtype::F32, ReadMode::Mmap, true);
    }

    #[test]
    fn f16_store_with_codes_matches_the_oracle_through_every_first_pass(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops, Dtype::F16, ReadMode::Read, true);
    }

    #[test]
    fn f32_store_read_into_memory_matches_the_oracle(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops, Dtype::F32, ReadMode::Read, false);
    }

    #[test]
    fn f16_store_matches_the_oracle(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops, Dtype::F16, ReadMode::Mmap, false);
    }
}
