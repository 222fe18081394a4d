//! The lexical index inside a commit and a snapshot: keeping postings in step with the
//! rows (feature `lexical`; without it an index that keeps postings can be searched by
//! vector and read, not written).

use super::Inner;
use crate::error::{Error, Result};
use crate::store::{self, LexicalStats};
use crate::types::{LexicalSettings, Passage};
use redb::{Table, WriteTransaction};

/// Why a build without the `lexical` feature cannot change an index that keeps postings.
#[cfg_attr(feature = "lexical", allow(dead_code))]
pub(crate) fn missing_feature() -> Error {
    Error::InvalidArgument(
        "this index keeps a lexical index, which this build of xqdb cannot update (built \
         without the `lexical` feature)"
            .into(),
    )
}

/// The postings table and statistics of one write transaction.
pub(crate) struct LexWriter<'t> {
    #[cfg_attr(not(feature = "lexical"), allow(dead_code))]
    table: Table<'t, (&'static str, u64), &'static [u8]>,
    #[cfg_attr(not(feature = "lexical"), allow(dead_code))]
    settings: LexicalSettings,
    stats: LexicalStats,
    #[cfg(feature = "lexical")]
    pending: crate::lexical::store::Pending,
    inner: &'t Inner,
}

impl<'t> LexWriter<'t> {
    /// Opens the postings of `txn` (created when absent).
    pub fn open(
        inner: &'t Inner,
        txn: &'t WriteTransaction,
        settings: LexicalSettings,
    ) -> Result<Self> {
        if !cfg!(feature = "lexical") {
            return Err(missing_feature());
        }
        let (stats, table) = store::in_catalog(&inner.catalog_path, || {
            let meta = txn.open_table(store::META)?;
            let stats = LexicalStats::read(&meta).map_err(|e| inner.meta_err(e))?;
            Ok((stats, txn.open_table(store::LEX_POSTINGS)?))
        })?;
        Ok(LexWriter {
            table,
            settings,
            stats,
            #[cfg(feature = "lexical")]
            pending: Default::default(),
            inner,
        })
    }

    #[cfg(feature = "lexical")]
    fn err(&self, e: crate::lexical::store::LexError) -> Error {
        match e {
            crate::lexical::store::LexError::Storage(e) => self.inner.catalog_err(e),
            crate::lexical::store::LexError::Corrupt(r) => {
                Error::corrupt(&self.inner.catalog_path, r)
            }
        }
    }

    /// Adds (`add`) or removes a row's postings.
    pub fn update(
        &mut self,
        add: bool,
        rid: u64,
        passage: &Passage,
        queries: &[(String, String)],
    ) -> Result<()> {
        #[cfg(feature = "lexical")]
        {
            use crate::lexical::store as lex;
            let doc = lex::analyze(
                &self.settings,
                passage.title.as_deref(),
                &passage.text,
                passage.lang.as_deref(),
                queries,
            );
            if add {
                self.pending.add(&mut self.stats, rid, &doc);
                Ok(())
            } else {
                let r = self.pending.remove(&mut self.stats, rid, &doc);
                r.map_err(|e| self.err(e))
            }
        }
        #[cfg(not(feature = "lexical"))]
        {
            let _ = (add, rid, passage, queries);
            Err(missing_feature())
        }
    }

    /// Writes the postings, then the statistics into `txn`'s meta table.
    #[cfg_attr(not(feature = "lexical"), allow(unused_mut))]
    pub fn finish(mut self, txn: &WriteTransaction) -> Result<()> {
        let inner = self.inner;
        #[cfg(feature = "lexical")]
        {
            let pending = std::mem::take(&mut self.pending);
            if let Err(e) = pending.apply(&mut self.table) {
                return Err(self.err(e));
            }
        }
        drop(self.table);
        let stats = self.stats;
        store::in_catalog(&inner.catalog_path, || {
            let mut meta = txn.open_table(store::META)?;
            Ok(stats.write(&mut meta)?)
        })
    }
}

/// The passage and queries of a stored row, from its `passages` record and its `augment`
/// record (if any): what its postings were made from.
pub(crate) fn stored_fields(
    inner: &Inner,
    rid: u64,
    record: &[u8],
    augmentation: Option<&[u8]>,
) -> Result<(Passage, Vec<(String, String)>)> {
    let corrupt = |r: String| Error::corrupt(&inner.catalog_path, format!("row {rid}: {r}"));
    let passage = store::decode_passage(record).map_err(corrupt)?;
    let queries = match augmentation {
        Some(a) => store::decode_augmentation(a).map_err(corrupt)?.queries,
        None => Vec::new(),
    };
    Ok((passage, queries))
}

/// Stores the settings (and zero statistics) of a newly enabled lexical index.
pub(crate) fn write_settings(
    inner: &Inner,
    txn: &WriteTransaction,
    settings: &LexicalSettings,
) -> Result<()> {
    store::in_catalog(&inner.catalog_path, || {
        let mut meta = txn.open_table(store::META)?;
        store::put_lexical(&mut meta, settings)?;
        LexicalStats::default().write(&mut meta)?;
        Ok(())
    })
}

use super::snapshot::{SearchOptions, Snapshot};
use crate::types::{Fusion, Hit};

/// (score, row id), best first.
type Ranked = Vec<(f32, u64)>;

/// Words a snippet shows at most.
const SNIPPET_WORDS: usize = 30;

impl Snapshot {
    /// The lexical index's settings, when the index keeps one.
    pub fn lexical_settings(&self) -> Option<LexicalSettings> {
        self.data().config.lexical
    }

    fn need_lexical(&self) -> Result<LexicalSettings> {
        self.lexical_settings().ok_or_else(|| {
            Error::InvalidArgument(
                "this index keeps no lexical index: create it with one (`xqdb init --lexical`, \
                 `IndexBuilder::lexical`) or add one (`xqdb lexical DIR`, \
                 `Writer::enable_lexical`)"
                    .into(),
            )
        })
    }

    /// Top hits by BM25 for a text query (whatever `options.mode` says), with their
    /// `lexical_score` and a snippet. The index must keep a lexical index.
    ///
    /// ```
    /// use xqdb::{Index, LexicalSettings, Passage, SearchOptions};
    /// # fn main() -> xqdb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let index = Index::builder().dim(2).lexical(LexicalSettings::default()).create(dir.path())?;
    /// let mut w = index.writer()?;
    /// w.insert(Passage::new("a", "Error E1234: disk full"), &[1.0, 0.0])?;
    /// w.insert(Passage::new("b", "All good"), &[0.0, 1.0])?;
    /// w.commit()?;
    /// let hits = index.snapshot().search_lexical("e1234", &SearchOptions::new(5))?;
    /// assert_eq!(hits.len(), 1);
    /// assert_eq!(hits[0].snippet.as_deref(), Some("Error <mark>E1234</mark>: disk full"));
    /// # Ok(()) }
    /// ```
    pub fn search_lexical(&self, query: &str, options: &SearchOptions) -> Result<Vec<Hit>> {
        let (ranked, terms, _) = self.rank_lexical(query, options, options.k)?;
        let mut hits = self.fetch_hits(&ranked)?;
        for hit in &mut hits {
            hit.lexical_score = Some(hit.score);
            hit.snippet = self.snippet(hit, &terms);
        }
        Ok(hits)
    }

    /// Row ids and BM25 scores of the top `n` rows for `query`, the query's terms and the
    /// bound of its scores.
    pub(crate) fn rank_lexical(
        &self,
        query: &str,
        options: &SearchOptions,
        n: usize,
    ) -> Result<(Ranked, Vec<String>, f64)> {
        options.check()?;
        crate::types::check_query_text(query)?;
        let settings = self.need_lexical()?;
        #[cfg(feature = "lexical")]
        {
            use crate::lexical::store as lex;
            let terms = lex::query_terms(&settings, query, options.query_lang.as_deref());
            let allowed = match &options.filter {
                Some(f) if !f.is_empty() => Some(self.allowed_rids(f)?),
                _ => None,
            };
            let txn = self.data().txn();
            let stats = {
                let meta = txn
                    .open_table(store::META)
                    .map_err(|e| self.inner().catalog_err(e))?;
                LexicalStats::read(&meta).map_err(|e| self.inner().meta_err(e))?
            };
            let (ranked, bound) =
                lex::search(txn, &settings, &stats, &terms, allowed.as_deref(), n).map_err(
                    |e| match e {
                        lex::LexError::Storage(e) => self.inner().catalog_err(e),
                        lex::LexError::Corrupt(r) => Error::corrupt(&self.inner().catalog_path, r),
                    },
                )?;
            Ok((ranked, terms, bound))
        }
        #[cfg(not(feature = "lexical"))]
        {
            let _ = (settings, query, options, n);
            Err(Error::InvalidArgument(
                "lexical search needs the `lexical` feature of xqdb".into(),
            ))
        }
    }

    fn snippet(&self, hit: &Hit, terms: &[String]) -> Option<String> {
        #[cfg(feature = "lexical")]
        {
            let stem = self.lexical_settings().is_some_and(|s| s.stem);
            let analyzer = if stem {
                crate::lexical::Analyzer::for_lang(hit.passage.lang.as_deref())
            } else {
                crate::lexical::Analyzer::new()
            };
            analyzer.highlight(&hit.passage.text, terms, SNIPPET_WORDS)
        }
        #[cfg(not(feature = "lexical"))]
        {
            let _ = (hit, terms, SNIPPET_WORDS);
            None
        }
    }

    /// Hybrid search with a query's text and its vector (encoded by the caller, adapter
    /// applied if wanted): the top `options.depth` of the dense and of the lexical list,
    /// fused by `options.fusion`; hits carry both scores where computed.
    pub fn search_hybrid(
        &self,
        text: &str,
        vector: &[f32],
        options: &SearchOptions,
    ) -> Result<Vec<Hit>> {
        let mut all = self.search_hybrid_batch(&[text], &[vector.to_vec()], options)?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`Snapshot::search_hybrid`] for a batch of (text, vector) queries; the dense lists
    /// come from one scan.
    pub fn search_hybrid_batch(
        &self,
        texts: &[&str],
        vectors: &[Vec<f32>],
        options: &SearchOptions,
    ) -> Result<Vec<Vec<Hit>>> {
        if texts.len() != vectors.len() {
            return Err(Error::InvalidArgument(format!(
                "{} query texts but {} vectors",
                texts.len(),
                vectors.len()
            )));
        }
        options.fusion.validate()?;
        options.check()?;
        for text in texts {
            crate::types::check_query_text(text)?;
        }
        self.need_lexical()?;
        let depth = options.depth.unwrap_or(options.k.max(100)).max(options.k);
        let mut dense_options = options.clone();
        dense_options.mode = crate::types::SearchMode::Dense;
        dense_options.k = depth;
        let dense = self.rank(vectors, &dense_options)?;
        texts
            .iter()
            .zip(&dense)
            .map(|(q, d)| self.hybrid_hits(q, d, options, depth))
            .collect()
    }

    /// A hybrid search's hits: `dense` (the dense list, best first) fused with the lexical
    /// list of `query`.
    fn hybrid_hits(
        &self,
        query: &str,
        dense: &[(f32, u64)],
        options: &SearchOptions,
        depth: usize,
    ) -> Result<Vec<Hit>> {
        let (lexical, terms, bound) = self.rank_lexical(query, options, depth)?;
        let fused = fuse(dense, &lexical, bound as f32, options.fusion, options.k);
        let ranked: Vec<(f32, u64)> = fused.iter().map(|f| (f.score, f.rid)).collect();
        let mut hits = self.fetch_hits(&ranked)?;
        for (hit, f) in hits.iter_mut().zip(&fused) {
            hit.dense_score = f.dense;
            hit.lexical_score = f.lexical;
            if f.lexical.is_some() {
                hit.snippet = self.snippet(hit, &terms);
            }
        }
        Ok(hits)
    }
}

/// One fused candidate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Fused {
    pub rid: u64,
    pub score: f32,
    pub dense: Option<f32>,
    pub lexical: Option<f32>,
}

/// Min-max normalised scores of a list (all 1 when they are equal).
fn normalised(list: &[(f32, u64)]) -> Vec<f32> {
    let max = list.iter().map(|x| x.0).fold(f32::NEG_INFINITY, f32::max);
    let min = list.iter().map(|x| x.0).fold(f32::INFINITY, f32::min);
    list.iter()
        .map(|x| {
            if max > min {
                (x.0 - min) / (max - min)
            } else {
                1.0
            }
        })
        .collect()
}

/// Fuses two ranked lists (best first) into the top `k`, ties by row id; `bound` is the
/// score no lexical hit reaches.
pub(crate) fn fuse(
    dense: &[(f32, u64)],
    lexical: &[(f32, u64)],
    bound: f32,
    fusion: Fusion,
    k: usize,
) -> Vec<Fused> {
    let mut all: std::collections::HashMap<u64, Fused> = std::collections::HashMap::new();
    let (dense_part, lexical_part): (Vec<f32>, Vec<f32>) = match fusion {
        Fusion::Rrf { k, lexical_weight } => (
            (0..dense.len())
                .map(|r| 1.0 / (k + r as f32 + 1.0))
                .collect(),
            (0..lexical.len())
                .map(|r| lexical_weight / (k + r as f32 + 1.0))
                .collect(),
        ),
        Fusion::Weighted { lexical_weight } => (
            normalised(dense)
                .into_iter()
                .map(|x| (1.0 - lexical_weight) * x)
                .collect(),
            lexical
                .iter()
                .map(|x| lexical_weight * (x.0 / bound).min(1.0))
                .collect(),
        ),
    };
    for (is_dense, list, parts) in [(true, dense, dense_part), (false, lexical, lexical_part)] {
        for (&(s, rid), part) in list.iter().zip(parts) {
            let f = all.entry(rid).or_insert(Fused {
                rid,
                score: 0.0,
                dense: None,
                lexical: None,
            });
            *if is_dense {
                &mut f.dense
            } else {
                &mut f.lexical
            } = Some(s);
            f.score += part;
        }
    }
    let mut out: Vec<Fused> = all.into_values().collect();
    out.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.rid.cmp(&b.rid)));
    out.truncate(k);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_adds_reciprocal_ranks_and_weighted_adds_normalised_scores() {
        let dense = [(0.9, 1), (0.5, 2), (0.1, 3)];
        let lexical = [(7.0, 3), (2.0, 4)];
        let rrf = fuse(&dense, &lexical, 14.0, Fusion::rrf(), 10);
        let score = |v: &[Fused], rid| v.iter().find(|f| f.rid == rid).unwrap().score;
        assert!((score(&rrf, 3) - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert!((score(&rrf, 1) - 1.0 / 61.0).abs() < 1e-7);
        assert_eq!(rrf[0].rid, 3, "in both lists beats first in one");
        assert_eq!(rrf[0].dense, Some(0.1));
        assert_eq!(rrf[0].lexical, Some(7.0));
        assert_eq!(rrf.iter().find(|f| f.rid == 4).unwrap().dense, None);
        let w = fuse(
            &dense,
            &lexical,
            14.0,
            Fusion::Weighted {
                lexical_weight: 0.5,
            },
            3,
        );
        assert_eq!(w.len(), 3);
        // rid 1: 0.5 · 1; rid 2: 0.5 · 0.5; rid 3: 0.5 · 0 + 0.5 · 7/14; rid 4: 0.5 · 2/14.
        assert_eq!((w[0].rid, w[1].rid, w[2].rid), (1, 2, 3));
        assert!((w[0].score - 0.5).abs() < 1e-6 && (w[2].score - 0.25).abs() < 1e-6);
        assert!(w.iter().all(|f| f.rid != 4));
    }
}
