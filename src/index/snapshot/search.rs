//! Ranking over one snapshot: filters to row sets, the first pass (exact, or codes with
//! oversampling and exact rescoring) over segments and tail, and hits fetched for the top k.

use super::data::SegmentView;
use super::options::SearchOptions;
use super::read::Snapshot;
use crate::error::{Error, Result};
use crate::scan::{self, mark_sorted, Bitmap, Kernel, PreparedQuery, Rows, ScanUnit, TopK};
use crate::store::{self, StoreConfig};
use crate::types::{Dtype, Filter, FirstPass, Hit, Metric};
use redb::ReadableTable;

/// Candidates from which rescoring is split over the search's threads.
pub(super) const RESCORE_PARALLEL_FROM: usize = 128;

/// Euclidean norm, with eight partial sums so that the loop vectorises.
pub(super) fn l2_norm(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().map(|x| x * x).sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x * x;
        }
    }
    (acc.iter().sum::<f32>() + rest).sqrt()
}

/// Checks a vector's length and values and normalises it for cosine indexes.
pub(crate) fn prepare_vector(config: &StoreConfig, what: &str, v: &[f32]) -> Result<Vec<f32>> {
    if v.len() != config.dim {
        return Err(Error::DimensionMismatch {
            id: what.to_string(),
            expected: config.dim,
            found: v.len(),
        });
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::InvalidVector {
            id: what.to_string(),
            reason: format!("component {i} is {}", v[i]),
        });
    }
    let mut out = v.to_vec();
    if config.metric == Metric::Cosine {
        let norm = l2_norm(&out);
        if norm == 0.0 || !norm.is_finite() {
            return Err(Error::InvalidVector {
                id: what.to_string(),
                reason: "a cosine index cannot store or search a zero vector".into(),
            });
        }
        // Normalising is idempotent: a vector already of unit length (within rounding) is
        // kept bit for bit, so that exported vectors import unchanged.
        if (norm - 1.0).abs() > 4.0 * f32::EPSILON {
            let inv = 1.0 / norm;
            out.iter_mut().for_each(|x| *x *= inv);
        }
    }
    Ok(out)
}

impl Snapshot {
    /// Top `k` passages for `query` (best first; ties go to the passage stored first).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search_with(query, &SearchOptions::new(k))
    }

    /// Top hits for `query` with the given options.
    ///
    /// ```
    /// use xqdb::{Filter, Index, Passage, SearchOptions};
    /// # fn main() -> xqdb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let index = Index::builder().dim(2).create(dir.path())?;
    /// let mut w = index.writer()?;
    /// w.insert(Passage::new("en", "English").with_lang("en"), &[1.0, 0.0])?;
    /// w.insert(Passage::new("fi", "Suomi").with_lang("fi").with_meta(serde_json::json!({"src": "wiki"})), &[0.9, 0.1])?;
    /// w.commit()?;
    /// let only_fi = SearchOptions::new(5).filter(Filter::new().lang("fi").meta_eq("src", "wiki".into()));
    /// let hits = index.snapshot().search_with(&[1.0, 0.0], &only_fi)?;
    /// assert_eq!(hits.len(), 1);
    /// assert_eq!(hits[0].id, "fi");
    /// # Ok(()) }
    /// ```
    pub fn search_with(&self, query: &[f32], options: &SearchOptions) -> Result<Vec<Hit>> {
        let mut all = self.search_batch(&[query.to_vec()], options)?;
        Ok(all.pop().unwrap_or_default())
    }

    /// Top hits for each query, scanning every segment once for the whole batch.
    pub fn search_batch(
        &self,
        queries: &[Vec<f32>],
        options: &SearchOptions,
    ) -> Result<Vec<Vec<Hit>>> {
        let ranked = self.rank(queries, options)?;
        ranked
            .into_iter()
            .map(|hits| self.fetch_hits(&hits))
            .collect()
    }

    /// Row ids and scores of the top hits for each query, without fetching passages.
    pub(crate) fn rank(
        &self,
        queries: &[Vec<f32>],
        options: &SearchOptions,
    ) -> Result<Vec<Vec<(f32, u64)>>> {
        if options.mode != crate::types::SearchMode::Dense {
            return Err(Error::InvalidArgument(format!(
                "a {:?} search needs a text query (vector searches are dense)",
                options.mode
            )));
        }
        let d = &self.data;
        let config = &d.config;
        let quantized = config.dtype != Dtype::F32;
        let prepared = queries
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let v = prepare_vector(config, &format!("query {i}"), q)?;
                Ok(PreparedQuery::new(
                    &v,
                    quantized,
                    config.i8_scale.unwrap_or(1.0),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        options.check()?;
        if options.k == 0 || queries.is_empty() {
            return Ok(vec![Vec::new(); queries.len()]);
        }
        let allowed = match &options.filter {
            Some(f) if !f.is_empty() => Some(self.allowed_rids(f)?),
            _ => None,
        };
        let masks: Vec<Option<Bitmap>> = d
            .segments
            .iter()
            .map(|s| {
                allowed.as_ref().map(|a| {
                    let mut m = excluded(s.handle.rids(), a);
                    if let Some(dead) = &s.dead {
                        m.or(dead);
                    }
                    m
                })
            })
            .collect();
        let tail_mask = allowed.as_ref().map(|a| excluded(&d.tail.rids, a));
        let (pass, oversample) = self.first_pass_of(options)?;
        let codebook = config
            .codebook
            .as_deref()
            .filter(|_| pass != FirstPass::Exact);
        // Units scored exactly, and units of codes for the first pass (with their segment).
        let mut units = Vec::new();
        let mut coded = Vec::new();
        for (s, mask) in d.segments.iter().zip(&masks) {
            let skip = mask.as_ref().or(s.dead.as_deref());
            let codes = match pass {
                FirstPass::Exact => None,
                FirstPass::I8 => s.handle.i8_codes(),
                FirstPass::Binary => s.handle.bits(),
            }
            .filter(|_| codebook.is_some());
            for range in scan::unit_ranges(s.handle.rows()) {
                let unit = ScanUnit {
                    rows: codes.unwrap_or_else(|| s.handle.vectors()),
                    rids: s.handle.rids(),
                    skip,
                    range,
                };
                match codes {
                    Some(_) => coded.push(unit),
                    None => units.push(unit),
                }
            }
        }
        for range in scan::unit_ranges(d.tail.len()) {
            units.push(ScanUnit {
                rows: Rows::F32(&d.tail.vectors),
                rids: &d.tail.rids,
                skip: tail_mask.as_ref(),
                range,
            });
        }
        let threads = options.threads.unwrap_or(self.inner.options.threads);
        let mut exact = scan::search(
            &units,
            config.dim,
            &prepared,
            options.k,
            threads,
            options.kernel,
        );
        let Some(codebook) = codebook.filter(|_| !coded.is_empty()) else {
            return Ok(exact);
        };
        let first: Vec<PreparedQuery> = prepared
            .iter()
            .map(|q| match pass {
                FirstPass::Binary => {
                    PreparedQuery::new(q.as_f32(), false, 1.0).with_bits(&codebook.centre)
                }
                _ => PreparedQuery::new(&codebook.i8_query(q.as_f32()), true, 1.0),
            })
            .collect();
        let coded_rows: usize = coded.iter().map(|u| u.range.len()).sum();
        let keep = options.k.saturating_mul(oversample).min(coded_rows);
        let candidates = scan::search(&coded, config.dim, &first, keep, threads, options.kernel);
        // Rescoring: every candidate of every query, scored exactly from its segment's rows
        // (on several threads when there are many: each row read may fault a page in).
        let jobs: Vec<(usize, u64)> = candidates
            .iter()
            .enumerate()
            .flat_map(|(qi, c)| c.iter().map(move |&(_, rid)| (qi, rid)))
            .collect();
        let score_jobs = |jobs: &[(usize, u64)]| -> Vec<f32> {
            let mut score = [0f32];
            jobs.iter()
                .map(|&(qi, rid)| {
                    let Some((seg, pos)) = self.locate(rid) else {
                        return f32::NEG_INFINITY;
                    };
                    let rows = seg.handle.vectors();
                    let q = &prepared[qi];
                    match options.kernel {
                        Kernel::Simd => {
                            scan::simd_scores(&rows, config.dim, pos..pos + 1, q, &mut score)
                        }
                        Kernel::Scalar => {
                            scan::scalar_scores(&rows, config.dim, pos..pos + 1, q, &mut score)
                        }
                    }
                    score[0]
                })
                .collect()
        };
        let scores: Vec<f32> = if threads > 1 && jobs.len() >= RESCORE_PARALLEL_FROM {
            let per = jobs.len().div_ceil(threads);
            crossbeam::scope(|s| {
                let handles: Vec<_> = jobs
                    .chunks(per)
                    .map(|chunk| s.spawn(move |_| score_jobs(chunk)))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("rescoring worker panicked"))
                    .collect()
            })
            .expect("rescoring scope panicked")
        } else {
            score_jobs(&jobs)
        };
        let mut tops: Vec<TopK> = exact
            .iter()
            .map(|hits| {
                let mut top = TopK::new(options.k);
                for &(s, rid) in hits {
                    top.push(s, rid);
                }
                top
            })
            .collect();
        for (&(qi, rid), &s) in jobs.iter().zip(&scores) {
            if s > f32::NEG_INFINITY {
                tops[qi].push(s, rid);
            }
        }
        for (e, top) in exact.iter_mut().zip(tops) {
            *e = top.into_sorted();
        }
        Ok(exact)
    }

    /// The first pass and oversampling a search runs with: its options, else the index's
    /// defaults. A first pass over codes the index does not keep is an error.
    pub(super) fn first_pass_of(&self, options: &SearchOptions) -> Result<(FirstPass, usize)> {
        let codes = self.data.config.codes;
        let pass = options
            .first_pass
            .or(codes.map(|c| c.default_first_pass))
            .unwrap_or_default();
        if !codes.unwrap_or_default().has(pass) {
            return Err(Error::InvalidArgument(format!(
                "this index keeps no {} codes (create it with --codes {})",
                pass.name(),
                pass.name()
            )));
        }
        let oversample = match options.oversample {
            Some(o) => o,
            None => codes
                .and_then(|c| c.default_oversample)
                .map_or(pass.default_oversample(), |o| o as usize),
        };
        crate::index::check_oversample(oversample)?;
        Ok((pass, oversample))
    }

    /// The segment holding row `rid`, and the row's position in it.
    pub(super) fn locate(&self, rid: u64) -> Option<(&SegmentView, usize)> {
        self.data.segments.iter().find_map(|s| {
            if rid < s.handle.record.min_rid || rid > s.handle.record.max_rid {
                return None;
            }
            s.handle.rids().binary_search(&rid).ok().map(|i| (s, i))
        })
    }

    /// Row ids (sorted) that pass `filter`.
    pub(in crate::index) fn allowed_rids(&self, filter: &Filter) -> Result<Vec<u64>> {
        store::in_catalog(&self.inner.catalog_path, || {
            let txn = self.data.txn();
            let mut candidates: Option<Vec<u64>> = None;
            if let Some(langs) = &filter.langs {
                let t = txn.open_multimap_table(store::LANGS)?;
                let mut v = Vec::new();
                for lang in langs {
                    for rid in t.get(lang.as_str())? {
                        v.push(rid?.value());
                    }
                }
                v.sort_unstable();
                v.dedup();
                candidates = Some(v);
            }
            if filter.meta.is_empty() {
                return Ok(candidates.unwrap_or_default());
            }
            let t = txn.open_table(store::PASSAGES)?;
            let mut out = Vec::new();
            let mut check = |rid: u64, bytes: &[u8]| -> Result<()> {
                let p = store::decode_passage_meta(bytes).map_err(|r| {
                    Error::corrupt(&self.inner.catalog_path, format!("passage row {rid}: {r}"))
                })?;
                if filter.matches_meta(p.meta.as_ref()) {
                    out.push(rid);
                }
                Ok(())
            };
            match candidates {
                Some(c) => {
                    for rid in c {
                        if let Some(g) = t.get(rid)? {
                            check(rid, g.value())?;
                        }
                    }
                }
                None => {
                    for row in t.iter()? {
                        let (rid, bytes) = row?;
                        check(rid.value(), bytes.value())?;
                    }
                }
            }
            Ok(out)
        })
    }

    pub(in crate::index) fn fetch_hits(&self, ranked: &[(f32, u64)]) -> Result<Vec<Hit>> {
        ranked
            .iter()
            .map(|&(score, rid)| {
                let passage = self.passage_by_rid(rid)?;
                Ok(Hit {
                    id: passage.id.clone(),
                    score,
                    passage,
                    dense_score: None,
                    lexical_score: None,
                    snippet: None,
                })
            })
            .collect()
    }
}

/// Bitmap over `rids` of the rows whose id is *not* in `allowed` (both sorted).
pub(super) fn excluded(rids: &[u64], allowed: &[u64]) -> Bitmap {
    let mut keep = Bitmap::new(rids.len());
    mark_sorted(rids, allowed, &mut keep);
    keep.invert();
    keep
}
