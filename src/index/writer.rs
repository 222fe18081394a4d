//! The single writer: buffered changes, the commit protocol, sealing and compaction.

use super::snapshot::{prepare_vector, SegmentView, SnapshotData, Tail};
use super::Inner;
use super::Snapshot;
use crate::error::{Error, Result};
use crate::ingest::{IngestItem, Pipeline, Progress, Row, RowData, RowError, WriteMode};
use crate::segment::{
    decode_row, encode_rows, write_segment, Codebook, RowSource, SegmentCodes, SegmentRecord,
};

/// Rows of the first coded segment the codebook is fitted on (evenly spaced).
const CODEBOOK_SAMPLE: usize = 65_536;
use crate::store::{self, CatalogResult, Counters, MetaKey};
use crate::types::{Dtype, Passage};
use crate::xqg::Augmentation;
use redb::{ReadableTable, WriteTransaction};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a successful commit made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    /// Sequence number of the commit (visible to new snapshots).
    pub commit_seq: u64,
    /// Passages written (inserted or replaced).
    pub written: usize,
    /// Passages deleted.
    pub deleted: usize,
    /// Whether an automatic merge ran after the commit (see
    /// [`IndexBuilder::merge_fan_in`](crate::IndexBuilder::merge_fan_in)).
    pub merged: bool,
}

enum Op {
    Put {
        passage: Passage,
        meta_json: Option<String>,
        vector: Vec<f32>,
        aug: Option<Box<Augmentation>>,
    },
    Delete(String),
}

/// The one writer of an index. Changes are buffered and become durable and visible
/// together when [`Writer::commit`] returns `Ok`; dropping the writer discards them.
pub struct Writer {
    inner: Arc<Inner>,
    ops: Vec<Op>,
    /// For ids touched by buffered ops: whether the id exists after them.
    pending: HashMap<String, bool>,
    /// Buffered file-table changes: path → new record, or `None` to remove it.
    files: Vec<(String, Option<Vec<u8>>)>,
    /// The committed id table, opened once per snapshot.
    ids: Option<(Arc<SnapshotData>, redb::ReadOnlyTable<&'static str, u64>)>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("pending_ops", &self.ops.len())
            .finish()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.inner.release_writer();
    }
}

/// Records format version `to` in the catalog if it holds an older one.
fn raise_version(
    meta: &mut redb::Table<&str, &[u8]>,
    current: u32,
    to: u32,
) -> std::result::Result<(), redb::StorageError> {
    if current < to {
        store::put(meta, MetaKey::FormatVersion, &to.to_le_bytes())?;
    }
    Ok(())
}

fn check_augmentation(config: &store::StoreConfig, id: &str, a: &Augmentation) -> Result<()> {
    let dim = config.dim;
    let vectors = std::iter::once(&a.passage_vector)
        .chain(std::iter::once(&a.query_sum))
        .chain(a.query_vectors.iter().flatten());
    for v in vectors {
        if v.len() != dim {
            return Err(Error::DimensionMismatch {
                id: id.to_string(),
                expected: dim,
                found: v.len(),
            });
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidVector {
                id: id.to_string(),
                reason: format!("component {i} is {}", v[i]),
            });
        }
    }
    if a.query_vectors
        .as_ref()
        .is_some_and(|q| q.len() != a.queries.len())
    {
        return Err(Error::InvalidArgument(format!(
            "{id}: {} query vectors for {} queries",
            a.query_vectors.as_ref().map_or(0, Vec::len),
            a.queries.len()
        )));
    }
    crate::ingest::check_queries(id, &a.queries)
}

/// New rows (of a commit, or the sealed tail), in row-id order, as a segment source. f32
/// rows are written straight from the vectors; f16 and i8 rows are encoded once.
struct NewRows<'a> {
    rids: Vec<u64>,
    vectors: Vec<&'a [f32]>,
    encoded: Option<Vec<u8>>,
    width: usize,
}

impl RowSource for NewRows<'_> {
    fn len(&self) -> usize {
        self.rids.len()
    }
    fn rid(&self, i: usize) -> u64 {
        self.rids[i]
    }
    fn row(&self, i: usize) -> &[u8] {
        match &self.encoded {
            Some(e) => &e[i * self.width..(i + 1) * self.width],
            None => bytemuck::cast_slice(self.vectors[i]),
        }
    }
}

/// Rows for a re-fused segment: copied bytes, or new vectors encoded for the segment.
struct ReFusedRows<'a> {
    picks: Vec<(u64, std::borrow::Cow<'a, [u8]>)>,
}

impl RowSource for ReFusedRows<'_> {
    fn len(&self) -> usize {
        self.picks.len()
    }
    fn rid(&self, i: usize) -> u64 {
        self.picks[i].0
    }
    fn row(&self, i: usize) -> &[u8] {
        &self.picks[i].1
    }
}

/// What [`Writer::re_fuse`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReFuseReport {
    /// Passages whose vector was recomputed.
    pub re_fused: usize,
    /// Passages with plain vectors, left as they were.
    pub unchanged: usize,
}

/// Limits of one [`Writer::augment`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AugmentBudget {
    /// Stop after this many passages.
    pub max_passages: usize,
    /// Stop once this much time has passed (the passage in progress is finished).
    pub max_time: std::time::Duration,
    /// Passages per commit (each commit is durable progress).
    pub per_commit: usize,
}

impl Default for AugmentBudget {
    fn default() -> Self {
        AugmentBudget {
            max_passages: usize::MAX,
            max_time: std::time::Duration::MAX,
            per_commit: 8,
        }
    }
}

/// What [`Writer::augment`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AugmentReport {
    /// Passages that got their queries in this call.
    pub augmented: usize,
    /// Queries generated.
    pub queries: usize,
    /// Passages still waiting.
    pub remaining: u64,
}

/// Which segments (positions, oldest first) one step of size-tiered merging merges, given
/// each segment's live rows: the oldest `fan_in` of the smallest tier that has `fan_in`.
/// Tier `t` holds `[base · fan_in^t, base · fan_in^(t+1))` live rows (tier 0 also smaller).
pub(crate) fn merge_pick(
    live: impl Iterator<Item = u64>,
    base: u64,
    fan_in: usize,
) -> Option<Vec<usize>> {
    let f = fan_in.max(2) as u64;
    let mut tiers: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (i, rows) in live.enumerate() {
        let mut tier = 0;
        let mut bound = base.max(1).saturating_mul(f);
        while rows >= bound && bound < u64::MAX {
            tier += 1;
            bound = bound.saturating_mul(f);
        }
        tiers.entry(tier).or_default().push(i);
    }
    tiers
        .into_values()
        .find(|v| v.len() >= fan_in)
        .map(|mut v| {
            v.truncate(fan_in);
            v
        })
}

/// Rows gathered from existing segments for compaction, in row-id order.
struct MergedRows<'a> {
    picks: Vec<(u64, &'a [u8])>,
}

impl RowSource for MergedRows<'_> {
    fn len(&self) -> usize {
        self.picks.len()
    }
    fn rid(&self, i: usize) -> u64 {
        self.picks[i].0
    }
    fn row(&self, i: usize) -> &[u8] {
        self.picks[i].1
    }
}

/// The i8 scale for new rows: the stored one, or one chosen from `vectors` (largest
/// magnitude maps to 127) when the index has none yet.
fn i8_scale_for(stored: Option<f32>, vectors: &[&[f32]]) -> f32 {
    stored.unwrap_or_else(|| {
        let max = vectors
            .iter()
            .flat_map(|v| v.iter())
            .fold(0f32, |m, x| m.max(x.abs()));
        if max > 0.0 {
            127.0 / max
        } else {
            1.0
        }
    })
}

impl Writer {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Writer {
            inner,
            ops: Vec::new(),
            pending: HashMap::new(),
            files: Vec::new(),
            ids: None,
        }
    }

    fn exists(&mut self, id: &str) -> Result<bool> {
        if let Some(&present) = self.pending.get(id) {
            return Ok(present);
        }
        let snap = self.inner.snapshot_data();
        let stale = !matches!(&self.ids, Some((s, _)) if Arc::ptr_eq(s, &snap));
        if stale {
            let t = snap
                .txn()
                .open_table(store::IDS)
                .map_err(|e| self.inner.catalog_err(e))?;
            self.ids = Some((snap, t));
        }
        let (_, t) = self.ids.as_ref().expect("set above");
        Ok(t.get(id).map_err(|e| self.inner.catalog_err(e))?.is_some())
    }

    fn stage(&mut self, passage: Passage, vector: &[f32], replace: bool) -> Result<()> {
        self.stage_with(passage, vector, None, replace)
    }

    fn stage_with(
        &mut self,
        passage: Passage,
        vector: &[f32],
        aug: Option<Augmentation>,
        replace: bool,
    ) -> Result<()> {
        self.inner.check_poison()?;
        let meta_json = passage.validate()?;
        let config = self.inner.snapshot_data().config.clone();
        let vector = prepare_vector(&config, &passage.id, vector)?;
        if !replace && self.exists(&passage.id)? {
            return Err(Error::DuplicateId { id: passage.id });
        }
        self.pending.insert(passage.id.clone(), true);
        self.ops.push(Op::Put {
            passage,
            meta_json,
            vector,
            aug: aug.map(Box::new),
        });
        Ok(())
    }

    /// Buffers a new passage. Fails with [`Error::DuplicateId`] if the id exists (committed
    /// or buffered); nothing is buffered when any check fails.
    pub fn insert(&mut self, passage: Passage, vector: &[f32]) -> Result<()> {
        self.stage(passage, vector, false)
    }

    /// Buffers a passage that replaces any passage with the same id.
    ///
    /// ```
    /// use xqdb::{Index, Passage};
    /// # fn main() -> xqdb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let index = Index::builder().dim(2).create(dir.path())?;
    /// let mut w = index.writer()?;
    /// w.insert(Passage::new("p", "first"), &[1.0, 0.0])?;
    /// assert!(w.insert(Passage::new("p", "again"), &[1.0, 0.0]).is_err()); // DuplicateId
    /// w.upsert(Passage::new("p", "second"), &[0.0, 1.0])?;
    /// w.commit()?;
    /// assert_eq!(index.get("p")?.unwrap().text, "second");
    /// # Ok(()) }
    /// ```
    pub fn upsert(&mut self, passage: Passage, vector: &[f32]) -> Result<()> {
        self.stage(passage, vector, true)
    }

    /// Encodes the passages with the index's encoder and buffers them as [`Writer::insert`]
    /// would. With an xQG profile, each passage first gets its queries generated (or is
    /// queued for deferred generation) and its stored vector is the fused one. Every
    /// passage is checked before anything runs; on error nothing of the call is buffered,
    /// and a passage's failure names its id. `progress` sees passages and queries so far.
    pub fn insert_texts(
        &mut self,
        passages: Vec<Passage>,
        progress: &dyn Fn(&Progress),
    ) -> Result<()> {
        self.stage_items(
            passages.into_iter().map(Into::into).collect(),
            false,
            progress,
        )
    }

    /// Like [`Writer::insert_texts`], replacing passages whose id exists.
    pub fn upsert_texts(
        &mut self,
        passages: Vec<Passage>,
        progress: &dyn Fn(&Progress),
    ) -> Result<()> {
        self.stage_items(
            passages.into_iter().map(Into::into).collect(),
            true,
            progress,
        )
    }

    /// Like [`Writer::insert_texts`] for passages that may bring queries generated
    /// elsewhere (e.g. a published xQG-augmented corpus): those are encoded and fused
    /// without running a generator. Needs an index with an xQG profile.
    pub fn insert_items(
        &mut self,
        items: Vec<IngestItem>,
        progress: &dyn Fn(&Progress),
    ) -> Result<()> {
        self.stage_items(items, false, progress)
    }

    /// Like [`Writer::insert_items`], replacing passages whose id exists.
    pub fn upsert_items(
        &mut self,
        items: Vec<IngestItem>,
        progress: &dyn Fn(&Progress),
    ) -> Result<()> {
        self.stage_items(items, true, progress)
    }

    /// Buffers a passage with vectors computed elsewhere: E(passage), its queries and their
    /// vectors. The stored vector is fused with the index's α. Needs an xQG profile.
    pub fn insert_augmented(&mut self, passage: Passage, augmentation: Augmentation) -> Result<()> {
        self.stage_augmented(passage, augmentation, false)
    }

    /// Like [`Writer::insert_augmented`], replacing a passage with the same id.
    pub fn upsert_augmented(&mut self, passage: Passage, augmentation: Augmentation) -> Result<()> {
        self.stage_augmented(passage, augmentation, true)
    }

    fn stage_augmented(&mut self, passage: Passage, a: Augmentation, replace: bool) -> Result<()> {
        let config = self.inner.snapshot_data().config.clone();
        let profile = config.xqg.as_ref().ok_or_else(|| {
            Error::InvalidArgument("the index has no xQG profile; create it with one".into())
        })?;
        let id = passage.id.clone();
        check_augmentation(&config, &id, &a)?;
        let fused = a.fused(profile.alpha, profile.normalize);
        self.stage_with(passage, &fused, Some(a), replace)
    }

    fn stage_items(
        &mut self,
        items: Vec<IngestItem>,
        replace: bool,
        progress: &dyn Fn(&Progress),
    ) -> Result<()> {
        self.inner.check_poison()?;
        let encoder = self.inner.encoder()?;
        let mut seen = HashSet::new();
        for i in &items {
            let p = &i.passage;
            p.validate()?;
            if !seen.insert(p.id.as_str()) || (!replace && self.exists(&p.id)?) {
                return Err(Error::DuplicateId { id: p.id.clone() });
            }
        }
        let config = self.inner.snapshot_data().config.clone();
        let generator = match &config.xqg {
            Some(p) if !p.deferred && p.generator.is_some() => {
                let needs = items.iter().any(|i| i.queries.is_none());
                if needs {
                    Some(self.inner.generator()?)
                } else {
                    None
                }
            }
            _ => None,
        };
        let done = Pipeline {
            encoder: &encoder,
            profile: config.xqg.as_ref(),
            generator: generator.as_deref(),
            progress,
        }
        .run(items)?;
        let (ops, pending) = (self.ops.len(), self.pending.clone());
        for d in done {
            if let Err(e) = self.stage_with(d.passage, &d.vector, d.augmentation, replace) {
                self.ops.truncate(ops);
                self.pending = pending;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Buffers rows of every kind in one call, the way the CLI's `add`, the HTTP server and
    /// Parquet/Arrow import do: rows with a vector or an xQG record are checked and staged in
    /// order; the others are then encoded (and augmented per the index's profile) together,
    /// with `progress` reporting on them. On error nothing of the call stays buffered and the
    /// error names the failing row's position in `rows`.
    ///
    /// ```
    /// use xqdb::ingest::{Row, WriteMode};
    /// use xqdb::{Index, Passage};
    /// # fn main() -> xqdb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let index = Index::builder().dim(2).create(dir.path())?;
    /// let mut w = index.writer()?;
    /// let rows = vec![
    ///     Row::with_vector(Passage::new("a", "first"), vec![1.0, 0.0]),
    ///     Row::with_vector(Passage::new("a", "again"), vec![0.0, 1.0]),
    /// ];
    /// let e = w.stage_rows(rows, WriteMode::Insert, &|_| {}).unwrap_err();
    /// assert_eq!(e.row, Some(1)); // the duplicate; row 0 was not kept either
    /// assert_eq!(w.pending(), 0);
    /// # Ok(()) }
    /// ```
    pub fn stage_rows(
        &mut self,
        rows: Vec<Row>,
        mode: WriteMode,
        progress: &dyn Fn(&Progress),
    ) -> std::result::Result<(), RowError> {
        let replace = mode == WriteMode::Upsert;
        let (ops, pending) = (self.ops.len(), self.pending.clone());
        let result = self.stage_rows_inner(rows, replace, progress);
        if result.is_err() {
            self.ops.truncate(ops);
            self.pending = pending;
        }
        result
    }

    fn stage_rows_inner(
        &mut self,
        rows: Vec<Row>,
        replace: bool,
        progress: &dyn Fn(&Progress),
    ) -> std::result::Result<(), RowError> {
        let at = |row: usize| {
            move |error: Error| RowError {
                row: Some(row),
                error,
            }
        };
        let mut items = Vec::new();
        let mut item_rows = Vec::new();
        for (i, Row { passage, data }) in rows.into_iter().enumerate() {
            match data {
                RowData::Vector(v) => self.stage(passage, &v, replace).map_err(at(i))?,
                RowData::Augmented(a) => {
                    self.stage_augmented(passage, a, replace).map_err(at(i))?
                }
                RowData::Text | RowData::Queries(_) => {
                    let queries = match data {
                        RowData::Queries(q) => Some(q),
                        _ => None,
                    };
                    item_rows.push((passage.id.clone(), i));
                    items.push(IngestItem { passage, queries });
                }
            }
        }
        if items.is_empty() {
            return Ok(());
        }
        self.stage_items(items, replace, progress).map_err(|error| {
            let row = error
                .passage_id()
                .and_then(|id| item_rows.iter().find(|(rid, _)| rid == id).map(|&(_, r)| r));
            RowError { row, error }
        })
    }

    /// Buffers the deletion of `id`; returns whether it existed.
    ///
    /// ```
    /// use xqdb::{Index, Passage};
    /// # fn main() -> xqdb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let index = Index::builder().dim(2).create(dir.path())?;
    /// let mut w = index.writer()?;
    /// w.insert(Passage::new("p", "text"), &[1.0, 0.0])?;
    /// w.commit()?;
    /// assert!(w.delete("p")?);
    /// assert!(!w.delete("missing")?);
    /// w.commit()?;
    /// w.compact()?; // drops the deleted row from the segments
    /// assert!(index.get("p")?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn delete(&mut self, id: &str) -> Result<bool> {
        self.inner.check_poison()?;
        if !self.exists(id)? {
            return Ok(false);
        }
        self.pending.insert(id.to_string(), false);
        self.ops.push(Op::Delete(id.to_string()));
        Ok(true)
    }

    /// Number of buffered changes.
    pub fn pending(&self) -> usize {
        self.ops.len() + self.files.len()
    }

    /// Buffers a change to the synced-file table, committed with the passages buffered
    /// beside it (see `xqdb::documents`).
    #[cfg_attr(not(feature = "documents"), allow(dead_code))]
    pub(crate) fn stage_file(&mut self, path: &str, record: Option<Vec<u8>>) {
        self.files.push((path.to_string(), record));
    }

    /// Discards buffered changes.
    pub fn rollback(&mut self) {
        self.ops.clear();
        self.pending.clear();
        self.files.clear();
    }

    /// Makes every buffered change durable and visible in one transaction. When it returns
    /// `Ok`, a crash cannot lose the changes. Afterwards the tail is sealed into a segment
    /// if it has grown past the index's `seal_rows`.
    pub fn commit(&mut self) -> Result<CommitInfo> {
        self.inner.check_poison()?;
        let ops = std::mem::take(&mut self.ops);
        let files = std::mem::take(&mut self.files);
        self.pending.clear();
        // Holding the old snapshot would keep retired files and old catalog pages alive.
        self.ids = None;
        let result = self.apply(ops, files);
        if let Err(e) = &result {
            self.inner.poison(e);
        }
        let info = result?;
        if self.inner.snapshot_data().tail.len() >= self.inner.options.seal_rows {
            self.seal()?;
        }
        let merged = self.guard(|w| w.merge_tier())?;
        Ok(CommitInfo { merged, ..info })
    }

    fn apply(&mut self, ops: Vec<Op>, files: Vec<(String, Option<Vec<u8>>)>) -> Result<CommitInfo> {
        let inner = &*self.inner;
        store::in_catalog(&inner.catalog_path, || {
            let snap = inner.snapshot_data();
            let mut config = snap.config.clone();
            let mut counters = snap.counters;
            let first_new_rid = counters.next_rid;
            let db = inner.database()?;
            let txn = db.begin_write()?;
            let mut new_rows: Vec<(u64, Vec<f32>)> = Vec::new();
            let mut dead_new: HashSet<u64> = HashSet::new();
            let mut tail_removed: Vec<u64> = Vec::new();
            let mut tombstoned = false;
            let (mut written, mut deleted) = (0, 0);
            {
                let mut ids = txn.open_table(store::IDS)?;
                let mut passages = txn.open_table(store::PASSAGES)?;
                let mut langs = txn.open_multimap_table(store::LANGS)?;
                let mut tail = txn.open_table(store::TAIL)?;
                let mut tombstones = txn.open_table(store::TOMBSTONES)?;
                let mut augment = txn.open_table(store::AUGMENT)?;
                let mut backlog = txn.open_table(store::BACKLOG)?;
                let mut lex = match config.lexical {
                    Some(settings) if !ops.is_empty() => {
                        Some(super::lexical::LexWriter::open(inner, &txn, settings)?)
                    }
                    _ => None,
                };
                for op in ops {
                    let id = match &op {
                        Op::Put { passage, .. } => passage.id.clone(),
                        Op::Delete(id) => id.clone(),
                    };
                    let old = ids.remove(id.as_str())?.map(|g| g.value());
                    if let Some(rid) = old {
                        let old_aug = augment.remove(rid)?;
                        backlog.remove(rid)?;
                        let record = passages.remove(rid)?;
                        if let Some(lex) = &mut lex {
                            let record = record.as_ref().ok_or_else(|| {
                                Error::corrupt(
                                    &inner.catalog_path,
                                    format!("row {rid} has no passage"),
                                )
                            })?;
                            let aug = old_aug.as_ref().map(|a| a.value());
                            let (passage, queries) =
                                super::lexical::stored_fields(inner, rid, record.value(), aug)?;
                            lex.update(false, rid, &passage, &queries)?;
                        }
                        drop(old_aug);
                        if let Some(lang) = record
                            .as_ref()
                            .and_then(|r| store::decode_passage_meta(r.value()).ok())
                            .and_then(|p| p.lang)
                        {
                            langs.remove(lang.as_str(), rid)?;
                        }
                        if rid >= first_new_rid {
                            dead_new.insert(rid);
                        } else if tail.remove(rid)?.is_some() {
                            tail_removed.push(rid);
                        } else {
                            tombstones.insert(rid, ())?;
                            tombstoned = true;
                        }
                    }
                    match op {
                        Op::Put {
                            passage,
                            meta_json,
                            vector,
                            aug,
                        } => {
                            let rid = counters.next_rid;
                            counters.next_rid += 1;
                            ids.insert(passage.id.as_str(), rid)?;
                            let record = store::encode_passage(&passage, meta_json.as_deref());
                            passages.insert(rid, record.as_slice())?;
                            if let Some(lang) = &passage.lang {
                                langs.insert(lang.as_str(), rid)?;
                            }
                            if let Some(lex) = &mut lex {
                                let queries = aug.as_ref().map_or(&[][..], |a| &a.queries[..]);
                                lex.update(true, rid, &passage, queries)?;
                            }
                            if let Some(a) = &aug {
                                augment.insert(rid, store::encode_augmentation(a).as_slice())?;
                                if a.pending {
                                    backlog.insert(rid, ())?;
                                }
                            }
                            new_rows.push((rid, vector));
                            written += 1;
                        }
                        Op::Delete(_) => deleted += old.is_some() as usize,
                    }
                }
                if !files.is_empty() {
                    let mut table = txn.open_table(store::FILES)?;
                    for (path, record) in &files {
                        match record {
                            Some(r) => table.insert(path.as_str(), r.as_slice()),
                            None => table.remove(path.as_str()),
                        }?;
                    }
                    let mut meta = txn.open_table(store::META)?;
                    raise_version(&mut meta, config.format_version, 4)?;
                    config.format_version = config.format_version.max(4);
                }
                if let Some(lex) = lex {
                    lex.finish(&txn)?;
                }
                new_rows.retain(|(rid, _)| !dead_new.contains(rid));
                if new_rows.len() < inner.options.direct_segment_rows {
                    for (rid, v) in &new_rows {
                        tail.insert(*rid, bytemuck::cast_slice::<f32, u8>(v))?;
                    }
                }
            }
            let direct = new_rows.len() >= inner.options.direct_segment_rows;
            if direct {
                let rids = new_rows.iter().map(|r| r.0).collect();
                let vectors = new_rows.iter().map(|r| r.1.as_slice()).collect();
                self.write_rows(&txn, &mut config, &mut counters, rids, vectors)?;
            }
            self.write_counters(&txn, &mut counters)?;
            txn.commit()?;
            let added: &[(u64, Vec<f32>)] = if direct { &[] } else { &new_rows };
            let tail = if tail_removed.is_empty() && added.is_empty() {
                snap.tail.clone()
            } else {
                Arc::new(snap.tail.with_changes(config.dim, &tail_removed, added))
            };
            let next = inner.load_snapshot(Some(&snap), Some(tail), tombstoned, false)?;
            inner.publish(next);
            Ok(CommitInfo {
                commit_seq: counters.commit_seq,
                written,
                deleted,
                merged: false,
            })
        })
    }

    /// Encodes rows into a new durable segment and lists it in `txn` (with the i8 scale
    /// when this is the index's first quantized segment).
    fn write_rows(
        &self,
        txn: &WriteTransaction,
        config: &mut store::StoreConfig,
        counters: &mut Counters,
        rids: Vec<u64>,
        vectors: Vec<&[f32]>,
    ) -> Result<(u64, SegmentRecord)> {
        let inner = &*self.inner;
        store::in_catalog(&inner.catalog_path, || {
            let scale = if config.dtype == Dtype::I8 {
                i8_scale_for(config.i8_scale, &vectors)
            } else {
                1.0
            };
            if config.dtype == Dtype::I8 && config.i8_scale.is_none() {
                let mut meta = txn.open_table(store::META)?;
                config.i8_scale = Some(scale);
                store::put(&mut meta, MetaKey::I8Scale, &scale.to_le_bytes())?;
            }
            let encoded = (config.dtype != Dtype::F32).then(|| {
                vectors
                    .iter()
                    .flat_map(|v| encode_rows(v, config.dtype, scale))
                    .collect()
            });
            let source = NewRows {
                rids,
                vectors,
                encoded,
                width: config.dim * config.dtype.size(),
            };
            Ok(self.add_segment(txn, config, counters, &source)?)
        })
    }

    /// Writes `rows` as the next segment (durable before it returns, I2) and lists it in `txn`.
    fn add_segment(
        &self,
        txn: &WriteTransaction,
        config: &mut store::StoreConfig,
        counters: &mut Counters,
        rows: &dyn RowSource,
    ) -> Result<(u64, SegmentRecord)> {
        let inner = &*self.inner;
        store::in_catalog(&self.inner.catalog_path, || {
            let id = counters.next_segment;
            counters.next_segment += 1;
            let dim = config.dim as u32;
            let codebook = self.codebook_for(txn, config, rows)?;
            let codes = config
                .codes
                .zip(codebook.as_deref())
                .map(|(c, codebook)| SegmentCodes {
                    flags: c.flags(),
                    codebook,
                });
            let rec = write_segment(&*inner.dir, config.uuid, id, dim, config.dtype, rows, codes)?;
            let mut segs = txn.open_table(store::SEGMENTS)?;
            segs.insert(id, store::SegmentRecordCodec::encode(&rec).as_slice())?;
            Ok((id, rec))
        })
    }

    /// The codebook for a new segment's codes: the index's, or (for its first segment with
    /// codes) one fitted on up to [`CODEBOOK_SAMPLE`] of `rows` and stored in `txn`.
    fn codebook_for(
        &self,
        txn: &WriteTransaction,
        config: &mut store::StoreConfig,
        rows: &dyn RowSource,
    ) -> Result<Option<Arc<Codebook>>> {
        store::in_catalog(&self.inner.catalog_path, || {
            let Some(codes) = config.codes else {
                return Ok(None);
            };
            if let Some(cb) = &config.codebook {
                return Ok(Some(cb.clone()));
            }
            let n = rows.len().min(CODEBOOK_SAMPLE);
            let step = (rows.len() / n.max(1)).max(1);
            let mut sample = Vec::with_capacity(n * config.dim);
            let mut row = Vec::with_capacity(config.dim);
            for i in (0..rows.len()).step_by(step).take(n) {
                decode_row(rows.row(i), config.dtype, &mut row);
                sample.extend_from_slice(&row);
            }
            let cb = Arc::new(Codebook::fit(&sample, config.dim, codes.centred));
            let mut meta = txn.open_table(store::META)?;
            store::put(&mut meta, MetaKey::Codebook, &cb.encode())?;
            config.codebook = Some(cb.clone());
            Ok(Some(cb))
        })
    }

    /// Advances the commit sequence and stores the counters in `txn`.
    fn write_counters(&self, txn: &WriteTransaction, counters: &mut Counters) -> Result<()> {
        store::in_catalog(&self.inner.catalog_path, || {
            counters.commit_seq += 1;
            let mut meta = txn.open_table(store::META)?;
            Ok(counters.write(&mut meta)?)
        })
    }

    fn guard<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.inner.check_poison()?;
        let r = f(self);
        if let Err(e) = &r {
            self.inner.poison(e);
        }
        r
    }

    /// Commits buffered changes, then moves every tail row into a new segment file
    /// (a crash-safe step of its own). Returns the new segment's id, if any.
    pub fn seal(&mut self) -> Result<Option<u64>> {
        if !self.ops.is_empty() {
            self.commit()?;
        }
        self.ids = None;
        self.guard(|w| w.seal_tail())
    }

    fn seal_tail(&self) -> Result<Option<u64>> {
        let inner = &*self.inner;
        store::in_catalog(&inner.catalog_path, || {
            let snap = inner.snapshot_data();
            if snap.tail.is_empty() {
                return Ok(None);
            }
            let mut config = snap.config.clone();
            let mut counters = snap.counters;
            let db = inner.database()?;
            let txn = db.begin_write()?;
            let dim = config.dim;
            let vectors = snap.tail.vectors.chunks_exact(dim).collect();
            let (id, _) = self.write_rows(
                &txn,
                &mut config,
                &mut counters,
                snap.tail.rids.clone(),
                vectors,
            )?;
            {
                let mut tail = txn.open_table(store::TAIL)?;
                for rid in &snap.tail.rids {
                    tail.remove(*rid)?;
                }
            }
            self.write_counters(&txn, &mut counters)?;
            txn.commit()?;
            let next =
                inner.load_snapshot(Some(&snap), Some(Arc::new(Tail::default())), false, false)?;
            inner.publish(next);
            Ok(Some(id))
        })
    }

    /// Seals the tail, then merges every segment into one, dropping deleted rows. The new
    /// segment is published by one commit; the old files are unlinked once no snapshot
    /// uses them. Returns whether anything was rewritten.
    pub fn compact(&mut self) -> Result<bool> {
        self.seal()?;
        self.guard(|w| w.merge_segments(None))
    }

    /// One step of automatic merging (see [`IndexBuilder::merge_fan_in`]): merges the
    /// oldest `fan_in` segments of the smallest size tier that has that many. Returns
    /// whether it merged.
    ///
    /// [`IndexBuilder::merge_fan_in`]: crate::IndexBuilder::merge_fan_in
    pub fn maintain(&mut self) -> Result<bool> {
        if !self.ops.is_empty() {
            self.commit()?;
        }
        self.ids = None;
        self.guard(|w| w.merge_tier())
    }

    fn merge_tier(&self) -> Result<bool> {
        let fan_in = self.inner.options.merge_fan_in;
        if fan_in == 0 {
            return Ok(false);
        }
        let snap = self.inner.snapshot_data();
        let pick = merge_pick(
            snap.segments
                .iter()
                .map(|s| (s.handle.rows() - s.dead_count) as u64),
            self.inner.options.seal_rows as u64,
            fan_in,
        );
        drop(snap);
        match pick {
            Some(chosen) => self.merge_segments(Some(&chosen)),
            None => Ok(false),
        }
    }

    /// Merges the segments at positions `only` (every segment when `None`) into one,
    /// dropping their deleted rows and those rows' tombstones.
    fn merge_segments(&self, only: Option<&[usize]>) -> Result<bool> {
        let inner = &*self.inner;
        store::in_catalog(&inner.catalog_path, || {
            let snap: Arc<SnapshotData> = inner.snapshot_data();
            if only.is_none() && snap.segments.len() <= 1 && snap.tombstone_count() == 0 {
                return Ok(false);
            }
            let chosen: Vec<&SegmentView> = match only {
                Some(p) => p.iter().map(|&i| &snap.segments[i]).collect(),
                None => snap.segments.iter().collect(),
            };
            let mut config = snap.config.clone();
            let mut counters = snap.counters;
            let width = config.dim * config.dtype.size();
            let mut picks: Vec<(u64, &[u8])> = Vec::new();
            let mut dropped: Vec<u64> = Vec::new();
            for s in &chosen {
                let bytes = s.handle.row_bytes();
                for (i, &rid) in s.handle.rids().iter().enumerate() {
                    if s.dead.as_ref().is_some_and(|d| d.get(i)) {
                        dropped.push(rid);
                    } else {
                        picks.push((rid, &bytes[i * width..(i + 1) * width]));
                    }
                }
            }
            picks.sort_unstable_by_key(|p| p.0);
            let db = inner.database()?;
            let txn = db.begin_write()?;
            {
                let mut segs = txn.open_table(store::SEGMENTS)?;
                for s in &chosen {
                    segs.remove(s.handle.id)?;
                }
                let mut tombstones = txn.open_table(store::TOMBSTONES)?;
                if only.is_none() {
                    tombstones.retain(|_, _| false)?;
                } else {
                    for rid in &dropped {
                        tombstones.remove(*rid)?;
                    }
                }
            }
            if only.is_none() {
                // A full compaction rewrites every code: the codebook is fitted again on a
                // sample of all rows (the first one saw only the first segment's).
                config.codebook = None;
            }
            if !picks.is_empty() {
                self.add_segment(&txn, &mut config, &mut counters, &MergedRows { picks })?;
            }
            self.write_counters(&txn, &mut counters)?;
            txn.commit()?;
            for s in &chosen {
                inner.retire(&s.handle);
            }
            let next = inner.load_snapshot(Some(&snap), Some(snap.tail.clone()), true, false)?;
            inner.publish(next);
            Ok(true)
        })
    }

    /// Recomputes every fused vector from the stored E(passage) and Σ E(query) with a new
    /// α (and normalisation), without generating anything again, and records them in the
    /// profile. Like compaction, the new vectors go into a new segment published by one
    /// commit: a crash leaves either all old or all new vectors. Deleted rows are dropped.
    ///
    /// ```
    /// use xqdb::{Augmentation, Index, Metric, Passage, XqgProfile};
    /// # fn main() -> xqdb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let profile = XqgProfile { alpha: 0.5, normalize: false, ..Default::default() };
    /// let index = Index::builder().dim(2).metric(Metric::Dot).xqg(profile).create(dir.path())?;
    /// let mut w = index.writer()?;
    /// // E(p) and one query vector computed elsewhere.
    /// let a = Augmentation::new(vec![1.0, 0.0], vec![("fi".into(), "kysymys".into())], &[vec![0.0, 1.0]], false);
    /// w.insert_augmented(Passage::new("p", "passage"), a)?;
    /// w.commit()?;
    /// assert_eq!(index.snapshot().vector("p")?, Some(vec![0.5, 0.5]));
    /// w.re_fuse(0.0, false)?; // back to E(p), nothing generated or encoded again
    /// assert_eq!(index.snapshot().vector("p")?, Some(vec![1.0, 0.0]));
    /// # Ok(()) }
    /// ```
    pub fn re_fuse(&mut self, alpha: f32, normalize: bool) -> Result<ReFuseReport> {
        if !self.ops.is_empty() {
            self.commit()?;
        }
        self.ids = None;
        let snap = self.inner.snapshot_data();
        let mut profile = snap.config.xqg.clone().ok_or_else(|| {
            Error::InvalidArgument("the index has no xQG profile; nothing to re-fuse".into())
        })?;
        profile.alpha = alpha;
        profile.normalize = normalize;
        profile.validate()?;
        drop(snap);
        self.guard(|w| w.re_fuse_all(profile))
    }

    /// The former name of [`Writer::re_fuse`].
    #[deprecated(since = "0.2.0", note = "renamed to `re_fuse`")]
    pub fn refuse(&mut self, alpha: f32, normalize: bool) -> Result<ReFuseReport> {
        self.re_fuse(alpha, normalize)
    }

    fn re_fuse_all(&self, profile: crate::xqg::XqgProfile) -> Result<ReFuseReport> {
        let inner = &*self.inner;
        store::in_catalog(&inner.catalog_path, || {
            let snap: Arc<SnapshotData> = inner.snapshot_data();
            let mut config = snap.config.clone();
            let mut counters = snap.counters;
            let augs: HashMap<u64, Augmentation> = {
                let t = snap.txn().open_table(store::AUGMENT)?;
                let mut m = HashMap::new();
                for row in t.iter()? {
                    let (k, v) = row?;
                    let a = store::decode_augmentation(v.value()).map_err(|r| {
                        Error::corrupt(&inner.catalog_path, format!("xQG row {}: {r}", k.value()))
                    })?;
                    m.insert(k.value(), a);
                }
                m
            };
            let mut report = ReFuseReport {
                re_fused: 0,
                unchanged: 0,
            };
            let fused = |rid: u64, a: &Augmentation| {
                prepare_vector(
                    &config,
                    &format!("row {rid}"),
                    &a.fused(profile.alpha, profile.normalize),
                )
            };
            let width = config.dim * config.dtype.size();
            let scale = config.i8_scale.unwrap_or(1.0);
            let mut picks: Vec<(u64, std::borrow::Cow<[u8]>)> = Vec::new();
            for s in &snap.segments {
                let bytes = s.handle.row_bytes();
                for (i, &rid) in s.handle.rids().iter().enumerate() {
                    if s.dead.as_ref().is_some_and(|d| d.get(i)) {
                        continue;
                    }
                    match augs.get(&rid) {
                        Some(a) => {
                            let v = fused(rid, a)?;
                            picks.push((rid, encode_rows(&v, config.dtype, scale).into()));
                            report.re_fused += 1;
                        }
                        None => {
                            picks.push((rid, bytes[i * width..(i + 1) * width].into()));
                            report.unchanged += 1;
                        }
                    }
                }
            }
            picks.sort_unstable_by_key(|p| p.0);
            let db = inner.database()?;
            let txn = db.begin_write()?;
            {
                let mut tail = txn.open_table(store::TAIL)?;
                for &rid in &snap.tail.rids {
                    match augs.get(&rid) {
                        Some(a) => {
                            let v = fused(rid, a)?;
                            tail.insert(rid, bytemuck::cast_slice::<f32, u8>(&v))?;
                            report.re_fused += 1;
                        }
                        None => report.unchanged += 1,
                    }
                }
                let mut segs = txn.open_table(store::SEGMENTS)?;
                for s in &snap.segments {
                    segs.remove(s.handle.id)?;
                }
                let mut tombstones = txn.open_table(store::TOMBSTONES)?;
                tombstones.retain(|_, _| false)?;
                let mut meta = txn.open_table(store::META)?;
                store::put_profile(&mut meta, &profile)?;
            }
            config.xqg = Some(profile);
            if !picks.is_empty() {
                self.add_segment(&txn, &mut config, &mut counters, &ReFusedRows { picks })?;
            }
            self.write_counters(&txn, &mut counters)?;
            txn.commit()?;
            for s in &snap.segments {
                inner.retire(&s.handle);
            }
            let next = inner.load_snapshot(Some(&snap), None, true, false)?;
            inner.publish(next);
            Ok(report)
        })
    }

    /// Stores a query adapter in one durable commit (after committing the buffered changes),
    /// replacing the one in its slot:
    /// `info.lang` names the query language it serves (`None`: the shared adapter, used by
    /// queries whose language has none of its own). From then on text queries are encoded,
    /// multiplied by W and searched; passage vectors are not touched. A store of an older
    /// catalog version is marked as version 3 (shared) or 6 (per language) in the same
    /// commit, so that builds that would ignore the adapter refuse it.
    ///
    /// ```
    /// use xqdb::distill::{Adapter, AdapterInfo};
    /// # fn main() -> xqdb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let index = xqdb::Index::builder().dim(2).create(dir.path())?;
    /// let w = Adapter::from_matrix(2, vec![0.0, 1.0, 1.0, 0.0])?; // swaps the two axes
    /// index.writer()?.set_adapter(&w, &AdapterInfo::default())?;
    /// assert_eq!(index.snapshot().adapter().unwrap().adapter.apply(&[1.0, 0.0]), vec![0.0, 1.0]);
    /// assert!(index.writer()?.drop_adapter()?);
    /// # Ok(()) }
    /// ```
    pub fn set_adapter(
        &mut self,
        adapter: &crate::adapter::Adapter,
        info: &crate::adapter::AdapterInfo,
    ) -> Result<()> {
        let record = self.adapter_record(adapter, info)?;
        self.write_adapters(false, &[(info.lang.as_deref(), Some(&record))])
    }

    /// Replaces every stored query adapter (shared and per language) with `adapters` in one
    /// durable commit; each one's `info.lang` names its slot, and no slot may repeat. An
    /// empty list drops them all.
    pub fn replace_adapters(
        &mut self,
        adapters: &[(crate::adapter::Adapter, crate::adapter::AdapterInfo)],
    ) -> Result<()> {
        let mut records = Vec::with_capacity(adapters.len());
        for (i, (a, info)) in adapters.iter().enumerate() {
            if adapters[..i].iter().any(|(_, o)| o.lang == info.lang) {
                return Err(Error::InvalidArgument(format!(
                    "two query adapters for {}",
                    info.lang
                        .as_deref()
                        .map_or("the shared slot".to_string(), |l| format!("language {l:?}"))
                )));
            }
            records.push((info.lang.as_deref(), self.adapter_record(a, info)?));
        }
        let ops: Vec<(Option<&str>, Option<&[u8]>)> = records
            .iter()
            .map(|(l, r)| (*l, Some(r.as_slice())))
            .collect();
        self.write_adapters(true, &ops)
    }

    fn adapter_record(
        &self,
        adapter: &crate::adapter::Adapter,
        info: &crate::adapter::AdapterInfo,
    ) -> Result<Vec<u8>> {
        let dim = self.inner.snapshot_data().config.dim;
        if adapter.dim() != dim {
            return Err(Error::DimensionMismatch {
                id: "query adapter".into(),
                expected: dim,
                found: adapter.dim(),
            });
        }
        if let Some(l) = &info.lang {
            let ok = !l.is_empty()
                && l.len() <= 32
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(Error::InvalidArgument(format!(
                    "a query adapter's language must be 1 to 32 ASCII letters, digits, '-' or \
                     '_', not {l:?}"
                )));
            }
        }
        Ok(adapter.to_bytes(info))
    }

    /// Removes every stored query adapter, shared and per language (searches go back to
    /// the plain encoder); returns whether there was one. Like every adapter change, it
    /// commits the buffered changes first.
    pub fn drop_adapter(&mut self) -> Result<bool> {
        if !self.ops.is_empty() {
            self.commit()?;
        }
        let snap = self.inner.snapshot_data();
        if snap.adapter.is_none() && snap.lang_adapters.is_empty() {
            return Ok(false);
        }
        self.write_adapters(true, &[])?;
        Ok(true)
    }

    /// Adds a lexical (keyword) index to an index that has none, indexing every stored
    /// passage (with its generated queries) in one commit; buffered changes are committed
    /// first. Returns false (and changes nothing) when the index already keeps one.
    pub fn enable_lexical(&mut self, settings: crate::types::LexicalSettings) -> Result<bool> {
        settings.validate()?;
        if !self.ops.is_empty() {
            self.commit()?;
        }
        if self.inner.snapshot_data().config.lexical.is_some() {
            return Ok(false);
        }
        self.settings_commit(|inner, txn, snap| {
            super::lexical::write_settings(inner, txn, &settings)?;
            {
                let mut meta = txn.open_table(store::META)?;
                raise_version(&mut meta, snap.config.format_version, 7)?;
            }
            let mut lex = super::lexical::LexWriter::open(inner, txn, settings)?;
            let passages = txn.open_table(store::PASSAGES)?;
            let augment = txn.open_table(store::AUGMENT)?;
            for row in passages.iter()? {
                let (rid, record) = row?;
                let rid = rid.value();
                let aug = augment.get(rid)?;
                let (passage, queries) = super::lexical::stored_fields(
                    inner,
                    rid,
                    record.value(),
                    aug.as_ref().map(|a| a.value()),
                )?;
                lex.update(true, rid, &passage, &queries)?;
            }
            Ok(lex.finish(txn)?)
        })?;
        Ok(true)
    }

    /// One commit that changes settings rather than rows: buffered changes are committed
    /// first, `change` fills the transaction, the counters advance, and the snapshot after
    /// it is published.
    fn settings_commit(
        &mut self,
        change: impl FnOnce(&Inner, &WriteTransaction, &SnapshotData) -> CatalogResult<()>,
    ) -> Result<()> {
        if !self.ops.is_empty() {
            self.commit()?;
        }
        self.guard(|w| {
            let inner = &*w.inner;
            store::in_catalog(&inner.catalog_path, || {
                let snap = inner.snapshot_data();
                let mut counters = snap.counters;
                let db = inner.database()?;
                let txn = db.begin_write()?;
                change(inner, &txn, &snap)?;
                w.write_counters(&txn, &mut counters)?;
                txn.commit()?;
                let next =
                    inner.load_snapshot(Some(&snap), Some(snap.tail.clone()), false, false)?;
                inner.publish(next);
                Ok(())
            })
        })
    }

    /// One commit: with `clear`, every stored adapter is removed first; then each (slot,
    /// record) is written (`None` removes the slot).
    fn write_adapters(&mut self, clear: bool, ops: &[(Option<&str>, Option<&[u8]>)]) -> Result<()> {
        self.settings_commit(|_inner, txn, snap| {
            let mut meta = txn.open_table(store::META)?;
            if clear {
                let langs = snap.lang_adapters.keys().map(|l| Some(l.as_str()));
                for lang in std::iter::once(None).chain(langs) {
                    store::put_adapter(&mut meta, lang, None)?;
                }
            }
            for (lang, record) in ops {
                store::put_adapter(&mut meta, *lang, *record)?;
            }
            let needs = ops
                .iter()
                .filter(|(_, r)| r.is_some())
                .map(|(l, _)| if l.is_some() { 6 } else { 3 })
                .max();
            if let Some(v) = needs {
                raise_version(&mut meta, snap.config.format_version, v)?;
            }
            Ok(())
        })
    }

    /// Generates the queries of passages inserted for deferred generation, oldest first,
    /// and replaces their vectors with fused ones, within `budget`. Each group of
    /// `per_commit` passages is one durable commit, so an interrupted call (or a crash)
    /// keeps what it finished and the next call resumes with the rest. Searches see either
    /// a passage's old or new vector, never neither.
    pub fn augment(&mut self, budget: &AugmentBudget) -> Result<AugmentReport> {
        if !self.ops.is_empty() {
            self.commit()?;
        }
        let start = std::time::Instant::now();
        let mut report = AugmentReport::default();
        let generator = {
            let snap = self.inner.snapshot_data();
            match &snap.config.xqg {
                Some(p) if p.generator.is_some() => Some(self.inner.generator()?),
                _ => None,
            }
        };
        loop {
            let snap = Snapshot::new(self.inner.clone(), self.inner.snapshot_data());
            let rids: Vec<u64> = {
                let want = budget
                    .per_commit
                    .max(1)
                    .min(budget.max_passages - report.augmented);
                store::in_catalog(&self.inner.catalog_path, || {
                    let t = match snap.data().txn().open_table(store::BACKLOG) {
                        Ok(t) => t,
                        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                        Err(e) => return Err(e.into()),
                    };
                    let mut v = Vec::new();
                    for row in t.iter()? {
                        if v.len() >= want {
                            break;
                        }
                        v.push(row?.0.value());
                    }
                    Ok(v)
                })?
            };
            if rids.is_empty() {
                break;
            }
            let generator = generator.as_deref().ok_or(Error::NoGenerator)?;
            let profile = snap
                .data()
                .config
                .xqg
                .clone()
                .expect("a backlog needs a profile");
            let encoder = self.inner.encoder()?;
            let mut rows = Vec::with_capacity(rids.len());
            for &rid in &rids {
                let passage = snap.passage_by_rid(rid)?;
                let a = snap.augmentation_by_rid(rid)?.ok_or_else(|| {
                    Error::corrupt(
                        &self.inner.catalog_path,
                        format!("row {rid} is in the backlog without an xQG record"),
                    )
                })?;
                rows.push((passage, a));
            }
            // One generation call for the commit's passages (the joint schedule decodes
            // their rows together; each passage still gets its own seeded queries).
            let passages: Vec<&Passage> = rows.iter().map(|(p, _)| p).collect();
            let generated = crate::ingest::generate_queries_batch(generator, &profile, &passages)?;
            for ((passage, mut a), queries) in rows.into_iter().zip(generated) {
                let texts: Vec<&str> = queries.iter().map(|(_, t)| t.as_str()).collect();
                let vectors = encoder.encode_queries(&texts)?;
                report.queries += queries.len();
                a = Augmentation::new(
                    a.passage_vector,
                    queries,
                    &vectors,
                    profile.store_query_vectors,
                );
                let fused = a.fused(profile.alpha, profile.normalize);
                let meta_json = passage.validate()?;
                let vector = prepare_vector(&snap.data().config, &passage.id, &fused)?;
                self.ops.push(Op::Put {
                    passage,
                    meta_json,
                    vector,
                    aug: Some(Box::new(a)),
                });
                report.augmented += 1;
            }
            drop(snap);
            self.commit()?;
            if report.augmented >= budget.max_passages || start.elapsed() >= budget.max_time {
                break;
            }
        }
        report.remaining = self.inner.backlog_len()?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::merge_pick;

    #[test]
    fn merging_picks_the_oldest_fan_in_segments_of_the_smallest_full_tier() {
        // base 10, fan-in 3: tier 0 < 30 rows, tier 1 < 90, tier 2 < 270.
        let pick = |rows: &[u64]| merge_pick(rows.iter().copied(), 10, 3);
        assert_eq!(pick(&[10, 10]), None);
        assert_eq!(pick(&[10, 50, 10, 20, 5]), Some(vec![0, 2, 3]));
        assert_eq!(pick(&[40, 50, 10, 60, 200]), Some(vec![0, 1, 3]));
        assert_eq!(pick(&[100, 300, 10, 200, 260]), Some(vec![0, 3, 4]));
        assert_eq!(pick(&[]), None);
        // However many seals arrive, one merge per step keeps every tier below the fan-in.
        let mut segs: Vec<u64> = Vec::new();
        for seal in 0..1000u64 {
            segs.push(8 + seal % 5);
            while let Some(p) = merge_pick(segs.iter().copied(), 10, 3) {
                let merged: u64 = p.iter().map(|&i| segs[i]).sum();
                for &i in p.iter().rev() {
                    segs.remove(i);
                }
                segs.push(merged);
            }
        }
        assert_eq!(segs.iter().sum::<u64>(), 10_000);
        assert!(segs.len() <= 2 * 7, "{} segments: {segs:?}", segs.len());
    }
}
