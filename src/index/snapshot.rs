//! Snapshots: what one commit made visible, and the searches and reads over it.

use super::Inner;
use crate::error::{Error, Result};
use crate::scan::{self, mark_sorted, Bitmap, Kernel, PreparedQuery, Rows, ScanUnit, TopK};
use crate::segment::SegmentHandle;
use crate::store::{self, Counters, StoreConfig};
use crate::types::{Dtype, Filter, FirstPass, Hit, Metric, Passage, Stats};
use crate::xqg::{Augmentation, XqgProfile};
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rows not yet sealed, mirrored in memory from the catalog's tail table, sorted by row id.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    pub rids: Vec<u64>,
    pub vectors: Vec<f32>,
}

impl Tail {
    pub fn load(txn: &ReadTransaction, dim: usize) -> std::result::Result<Tail, String> {
        let t = txn.open_table(store::TAIL).map_err(|e| e.to_string())?;
        let mut tail = Tail::default();
        for row in t.iter().map_err(|e| e.to_string())? {
            let (rid, bytes) = row.map_err(|e| e.to_string())?;
            let bytes = bytes.value();
            if bytes.len() != dim * 4 {
                return Err(format!(
                    "tail row {} has {} bytes, expected {}",
                    rid.value(),
                    bytes.len(),
                    dim * 4
                ));
            }
            tail.rids.push(rid.value());
            tail.vectors.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
            );
        }
        Ok(tail)
    }

    /// A copy without the `removed` rows and with `added` appended (ids above all others).
    pub fn with_changes(&self, dim: usize, removed: &[u64], added: &[(u64, Vec<f32>)]) -> Tail {
        let removed: std::collections::HashSet<u64> = removed.iter().copied().collect();
        let mut out = Tail::default();
        for (i, &rid) in self.rids.iter().enumerate() {
            if !removed.contains(&rid) {
                out.rids.push(rid);
                out.vectors
                    .extend_from_slice(&self.vectors[i * dim..(i + 1) * dim]);
            }
        }
        for (rid, v) in added {
            out.rids.push(*rid);
            out.vectors.extend_from_slice(v);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.rids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rids.is_empty()
    }
}

/// A segment as one snapshot sees it: the shared mapping plus this commit's deletions.
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    pub handle: Arc<SegmentHandle>,
    pub dead: Option<Arc<Bitmap>>,
    pub dead_count: usize,
}

/// Everything one commit made visible.
pub(crate) struct SnapshotData {
    txn: Option<ReadTransaction>,
    pub config: StoreConfig,
    pub counters: Counters,
    pub segments: Vec<SegmentView>,
    pub tail: Arc<Tail>,
    pub live: u64,
    /// The shared query adapter applied to encoded text queries, if one is stored.
    pub adapter: Option<Arc<crate::adapter::StoredAdapter>>,
    /// The query adapters of query languages (format version 6).
    pub lang_adapters: BTreeMap<String, Arc<crate::adapter::StoredAdapter>>,
}

impl SnapshotData {
    /// A placeholder that is replaced before the index is handed out.
    pub fn empty() -> Self {
        SnapshotData {
            txn: None,
            config: StoreConfig {
                format_version: 0,
                uuid: [0; 16],
                dim: 1,
                dtype: Dtype::F32,
                metric: Metric::Dot,
                i8_scale: None,
                model_fingerprint: None,
                model_path: None,
                xqg: None,
                codes: None,
                codebook: None,
                lexical: None,
            },
            counters: Counters::default(),
            segments: Vec::new(),
            tail: Arc::new(Tail::default()),
            live: 0,
            adapter: None,
            lang_adapters: BTreeMap::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        inner: &Inner,
        txn: ReadTransaction,
        config: StoreConfig,
        counters: Counters,
        handles: Vec<Arc<SegmentHandle>>,
        tail: Arc<Tail>,
        prev: Option<&SnapshotData>,
        tombstones_changed: bool,
        (adapter, lang_adapters): (
            Option<Arc<crate::adapter::StoredAdapter>>,
            BTreeMap<String, Arc<crate::adapter::StoredAdapter>>,
        ),
    ) -> Result<Self> {
        store::in_catalog(&inner.catalog_path, || {
            let tombstones: Option<Vec<u64>> = if tombstones_changed || prev.is_none() {
                let t = txn.open_table(store::TOMBSTONES)?;
                let mut v = Vec::new();
                for row in t.iter()? {
                    v.push(row?.0.value());
                }
                Some(v)
            } else {
                None
            };
            let segments = handles
                .into_iter()
                .map(|handle| {
                    let (dead, dead_count) = match &tombstones {
                        Some(ts) => {
                            let r = &handle.record;
                            let lo = ts.partition_point(|&x| x < r.min_rid);
                            let hi = ts.partition_point(|&x| x <= r.max_rid);
                            let mut b = Bitmap::new(handle.rows());
                            mark_sorted(handle.rids(), &ts[lo..hi], &mut b);
                            let n = b.count();
                            ((n > 0).then(|| Arc::new(b)), n)
                        }
                        None => prev
                            .and_then(|p| p.segments.iter().find(|s| s.handle.id == handle.id))
                            .map_or((None, 0), |s| (s.dead.clone(), s.dead_count)),
                    };
                    SegmentView {
                        handle,
                        dead,
                        dead_count,
                    }
                })
                .collect();
            let live = txn.open_table(store::IDS)?.len()?;
            Ok(SnapshotData {
                txn: Some(txn),
                config,
                counters,
                segments,
                tail,
                live,
                adapter,
                lang_adapters,
            })
        })
    }

    pub fn segment(&self, id: u64) -> Option<Arc<SegmentHandle>> {
        self.segments
            .iter()
            .find(|s| s.handle.id == id)
            .map(|s| s.handle.clone())
    }

    pub fn txn(&self) -> &ReadTransaction {
        self.txn
            .as_ref()
            .expect("published snapshots hold a transaction")
    }

    pub fn tombstone_count(&self) -> usize {
        self.segments.iter().map(|s| s.dead_count).sum()
    }
}

/// Candidates from which rescoring is split over the search's threads.
const RESCORE_PARALLEL_FROM: usize = 128;

/// Per-search settings.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// How many hits to return.
    pub k: usize,
    /// Only rows that match this filter.
    pub filter: Option<Filter>,
    /// Threads to scan with (default: the index's setting, all cores unless changed).
    pub threads: Option<usize>,
    /// Which scoring kernel to use (the scalar one exists for tests and benchmarks).
    pub kernel: Kernel,
    /// Whether text searches apply the index's query adapter, if one is stored (default
    /// true; vector searches never do: apply [`Snapshot::adapter`] yourself).
    pub use_adapter: bool,
    /// Which codes the search scans first (default: the index's default, exact when it
    /// keeps no codes). Rows without codes (the tail) are always scored exactly.
    pub first_pass: Option<FirstPass>,
    /// The first pass keeps `k × oversample` candidates, rescored exactly with the rows
    /// (default: the index's setting, else [`FirstPass::default_oversample`]).
    pub oversample: Option<usize>,
    /// The language of text queries: they use that language's query adapter when one is
    /// stored (else the shared one). Not a filter on the passages' language. Lexical
    /// searches of an index that stems analyse the query with this language's stemmer.
    pub query_lang: Option<String>,
    /// Dense, lexical or hybrid (text searches; vector searches are dense only).
    pub mode: crate::types::SearchMode,
    /// How hybrid searches merge their two lists (default: reciprocal rank fusion, k 60).
    pub fusion: crate::types::Fusion,
    /// Candidates each list contributes to a hybrid search (default: max(k, 100)).
    pub depth: Option<usize>,
}

impl SearchOptions {
    /// Top `k`, no filter, default threads, SIMD kernels.
    pub fn new(k: usize) -> Self {
        SearchOptions {
            k,
            filter: None,
            threads: None,
            kernel: Kernel::Simd,
            use_adapter: true,
            first_pass: None,
            oversample: None,
            query_lang: None,
            mode: crate::types::SearchMode::Dense,
            fusion: crate::types::Fusion::default(),
            depth: None,
        }
    }

    /// Sets the search mode (dense, lexical or hybrid).
    pub fn mode(mut self, mode: crate::types::SearchMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets how hybrid searches fuse their lists.
    pub fn fusion(mut self, fusion: crate::types::Fusion) -> Self {
        self.fusion = fusion;
        self
    }

    /// Sets the candidates each list contributes to a hybrid search.
    pub fn depth(mut self, depth: usize) -> Self {
        self.depth = Some(depth.max(1));
        self
    }

    /// Sets the language of text queries (selects a per-language query adapter).
    pub fn query_lang(mut self, lang: impl Into<String>) -> Self {
        self.query_lang = Some(lang.into());
        self
    }

    /// Sets the first pass (exact, i8 or binary codes).
    pub fn first_pass(mut self, pass: FirstPass) -> Self {
        self.first_pass = Some(pass);
        self
    }

    /// Sets the oversampling of a first pass over codes.
    pub fn oversample(mut self, oversample: usize) -> Self {
        self.oversample = Some(oversample);
        self
    }

    /// Whether text searches apply the stored query adapter.
    pub fn adapter(mut self, use_adapter: bool) -> Self {
        self.use_adapter = use_adapter;
        self
    }

    /// Sets the filter.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Sets the thread count.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// Sets the kernel.
    pub fn kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }
}

/// A consistent, read-only view of one commit. Cheap to clone and to keep; files it
/// uses stay on disk until the last snapshot using them is dropped.
#[derive(Clone)]
pub struct Snapshot {
    inner: Arc<Inner>,
    data: Arc<SnapshotData>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("commit_seq", &self.data.counters.commit_seq)
            .field("passages", &self.data.live)
            .finish()
    }
}

/// Euclidean norm, with eight partial sums so that the loop vectorises.
fn l2_norm(v: &[f32]) -> f32 {
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
    pub(crate) fn new(inner: Arc<Inner>, data: Arc<SnapshotData>) -> Self {
        Snapshot { inner, data }
    }

    #[cfg_attr(not(feature = "lexical"), allow(dead_code))]
    pub(super) fn cerr(&self, e: impl Into<redb::Error>) -> Error {
        self.inner.catalog_err(e)
    }

    /// Sequence number of the commit this snapshot shows (0 for a new index).
    pub fn commit_seq(&self) -> u64 {
        self.data.counters.commit_seq
    }

    /// Number of live passages.
    pub fn len(&self) -> u64 {
        self.data.live
    }

    /// True when the index holds no passage.
    pub fn is_empty(&self) -> bool {
        self.data.live == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.data.config.dim
    }

    /// Similarity metric.
    pub fn metric(&self) -> Metric {
        self.data.config.metric
    }

    /// Storage type of segment rows.
    pub fn dtype(&self) -> Dtype {
        self.data.config.dtype
    }

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
    fn first_pass_of(&self, options: &SearchOptions) -> Result<(FirstPass, usize)> {
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
        super::check_oversample(oversample)?;
        Ok((pass, oversample))
    }

    /// The segment holding row `rid`, and the row's position in it.
    fn locate(&self, rid: u64) -> Option<(&SegmentView, usize)> {
        self.data.segments.iter().find_map(|s| {
            if rid < s.handle.record.min_rid || rid > s.handle.record.max_rid {
                return None;
            }
            s.handle.rids().binary_search(&rid).ok().map(|i| (s, i))
        })
    }

    /// Row ids (sorted) that pass `filter`.
    pub(super) fn allowed_rids(&self, filter: &Filter) -> Result<Vec<u64>> {
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

    pub(crate) fn passage_by_rid(&self, rid: u64) -> Result<Passage> {
        store::in_catalog(&self.inner.catalog_path, || {
            let t = self.data.txn().open_table(store::PASSAGES)?;
            let g = t.get(rid)?.ok_or_else(|| {
                Error::corrupt(
                    &self.inner.catalog_path,
                    format!("row {rid} has a vector but no passage"),
                )
            })?;
            Ok(store::decode_passage(g.value()).map_err(|r| {
                Error::corrupt(&self.inner.catalog_path, format!("passage row {rid}: {r}"))
            })?)
        })
    }

    pub(super) fn fetch_hits(&self, ranked: &[(f32, u64)]) -> Result<Vec<Hit>> {
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

    pub(crate) fn rid_of(&self, id: &str) -> Result<Option<u64>> {
        store::in_catalog(&self.inner.catalog_path, || {
            let t = self.data.txn().open_table(store::IDS)?;
            Ok(t.get(id)?.map(|g| g.value()))
        })
    }

    /// Up to `n` passage ids after `after` (from the first when `None`), in id order: a
    /// way to walk a large index with bounded memory.
    pub fn ids_after(&self, after: Option<&str>, n: usize) -> Result<Vec<String>> {
        Ok(self
            .id_rids_after(after, n)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Like [`Snapshot::ids_after`], with each id's row id.
    pub(crate) fn id_rids_after(
        &self,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, u64)>> {
        store::in_catalog(&self.inner.catalog_path, || {
            let t = self.data.txn().open_table(store::IDS)?;
            let range = match after {
                Some(a) => {
                    t.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                }
                None => t.range::<&str>(..),
            }?;
            let mut out = Vec::with_capacity(n.min(1 << 16));
            for row in range.take(n) {
                let (id, rid) = row?;
                out.push((id.value().to_string(), rid.value()));
            }
            Ok(out)
        })
    }

    /// The stored passage with this id.
    pub fn get(&self, id: &str) -> Result<Option<Passage>> {
        self.rid_of(id)?
            .map(|rid| self.passage_by_rid(rid))
            .transpose()
    }

    /// The xQG record of a passage: its queries, E(passage), the sum of query vectors and
    /// whether it still waits for deferred generation. `None` for an unknown id or a
    /// passage stored with a plain vector.
    pub fn augmentation(&self, id: &str) -> Result<Option<Augmentation>> {
        let Some(rid) = self.rid_of(id)? else {
            return Ok(None);
        };
        self.augmentation_by_rid(rid)
    }

    pub(crate) fn augmentation_by_rid(&self, rid: u64) -> Result<Option<Augmentation>> {
        store::in_catalog(&self.inner.catalog_path, || {
            let t = match self.data.txn().open_table(store::AUGMENT) {
                Ok(t) => t,
                // Format version 1 stores have no xQG table.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let Some(g) = t.get(rid)? else {
                return Ok(None);
            };
            let augmentation = store::decode_augmentation(g.value()).map_err(|r| {
                Error::corrupt(&self.inner.catalog_path, format!("xQG row {rid}: {r}"))
            })?;
            Ok(Some(augmentation))
        })
    }

    /// The synced-file table (path, raw record), in path order; empty before any sync.
    pub(crate) fn file_records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        store::in_catalog(&self.inner.catalog_path, || {
            let t = match self.data.txn().open_table(store::FILES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// The shared query adapter stored in this commit, if any: the one text queries use
    /// when their language has none of its own (or they name no language).
    pub fn adapter(&self) -> Option<&crate::adapter::StoredAdapter> {
        self.data.adapter.as_deref()
    }

    /// The query adapters of query languages stored in this commit, by language.
    pub fn lang_adapters(&self) -> impl Iterator<Item = (&str, &crate::adapter::StoredAdapter)> {
        self.data
            .lang_adapters
            .iter()
            .map(|(l, a)| (l.as_str(), a.as_ref()))
    }

    /// The adapter a text query in `lang` is mapped by: its language's, else the shared
    /// one, else none (searched as encoded).
    pub fn adapter_for(&self, lang: Option<&str>) -> Option<&crate::adapter::StoredAdapter> {
        lang.and_then(|l| self.data.lang_adapters.get(l))
            .map(|a| a.as_ref())
            .or(self.adapter())
    }

    /// The generated (or imported) queries of a passage, as (language, text).
    pub fn queries(&self, id: &str) -> Result<Option<Vec<(String, String)>>> {
        Ok(self.augmentation(id)?.map(|a| a.queries))
    }

    /// The index's xQG profile, if it has one.
    pub fn xqg_profile(&self) -> Option<&XqgProfile> {
        self.data.config.xqg.as_ref()
    }

    fn table_len(&self, t: TableDefinition<u64, impl redb::Value + 'static>) -> Result<u64> {
        store::in_catalog(&self.inner.catalog_path, || {
            match self.data.txn().open_table(t) {
                Ok(t) => Ok(t.len()?),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// True when a passage with this id exists.
    pub fn contains(&self, id: &str) -> Result<bool> {
        Ok(self.rid_of(id)?.is_some())
    }

    /// The stored vector of a passage, as f32 (normalised for cosine indexes; decoded
    /// from the segment's dtype once sealed).
    pub fn vector(&self, id: &str) -> Result<Option<Vec<f32>>> {
        self.rid_of(id)?
            .map(|rid| self.vector_by_rid(rid, id))
            .transpose()
    }

    /// The stored vector of row `rid` (passage `id`, named in the error if it has none).
    pub(crate) fn vector_by_rid(&self, rid: u64, id: &str) -> Result<Vec<f32>> {
        let d = &self.data;
        let dim = d.config.dim;
        if let Ok(i) = d.tail.rids.binary_search(&rid) {
            return Ok(d.tail.vectors[i * dim..(i + 1) * dim].to_vec());
        }
        if let Some((s, i)) = self.locate(rid) {
            let scale = d.config.i8_scale.unwrap_or(1.0);
            let v = match s.handle.vectors() {
                Rows::F32(r) => r[i * dim..(i + 1) * dim].to_vec(),
                Rows::F16(r) => r[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&b| half::f16::from_bits(b).to_f32())
                    .collect(),
                Rows::I8(r) => r[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&x| x as f32 / scale)
                    .collect(),
                Rows::Bits(_) | Rows::Codes8(_) => {
                    unreachable!("segment rows are never codes")
                }
            };
            return Ok(v);
        }
        Err(Error::corrupt(
            &self.inner.catalog_path,
            format!("passage {id:?} has no vector"),
        ))
    }

    /// All passage ids, in id order.
    pub fn ids(&self) -> Result<Vec<String>> {
        store::in_catalog(&self.inner.catalog_path, || {
            let t = self.data.txn().open_table(store::IDS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                out.push(row?.0.value().to_string());
            }
            Ok(out)
        })
    }

    /// Counts and sizes.
    pub fn stats(&self) -> Result<Stats> {
        let d = &self.data;
        let catalog_bytes = if self.inner.in_memory() {
            0
        } else {
            std::fs::metadata(&self.inner.catalog_path)
                .map_err(|e| Error::io(&self.inner.catalog_path, e))?
                .len()
        };
        let backlog = self.table_len(store::BACKLOG)?;
        let codes = d.config.codes;
        let (pass, oversample) = self.first_pass_of(&SearchOptions::new(1))?;
        Ok(Stats {
            passages: d.live,
            tail_rows: d.tail.len() as u64,
            segments: d.segments.len() as u64,
            segment_rows: d.segments.iter().map(|s| s.handle.rows() as u64).sum(),
            tombstones: d.tombstone_count() as u64,
            dim: d.config.dim,
            dtype: d.config.dtype,
            metric: d.config.metric,
            commit_seq: d.counters.commit_seq,
            segment_bytes: d.segments.iter().map(|s| s.handle.file_len()).sum(),
            catalog_bytes,
            store_uuid: uuid::Uuid::from_bytes(d.config.uuid).to_string(),
            model_fingerprint: d.config.model_fingerprint.clone(),
            augmented: self.table_len(store::AUGMENT)?.saturating_sub(backlog),
            augment_backlog: backlog,
            xqg_alpha: d.config.xqg.as_ref().map(|p| p.alpha),
            format_version: d.config.format_version,
            query_adapter: d.adapter.is_some(),
            query_adapter_langs: d.lang_adapters.keys().cloned().collect(),
            codes: codes
                .map(|c| c.names().into_iter().map(String::from).collect())
                .unwrap_or_default(),
            codes_centred: codes.map(|c| c.centred),
            first_pass: pass,
            oversample,
            code_bytes: d.segments.iter().map(|s| s.handle.code_bytes()).sum(),
            lexical: d.config.lexical,
        })
    }

    pub(crate) fn data(&self) -> &SnapshotData {
        &self.data
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

/// Bitmap over `rids` of the rows whose id is *not* in `allowed` (both sorted).
fn excluded(rids: &[u64], allowed: &[u64]) -> Bitmap {
    let mut keep = Bitmap::new(rids.len());
    mark_sorted(rids, allowed, &mut keep);
    keep.invert();
    keep
}
