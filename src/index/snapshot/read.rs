//! `Snapshot`: a consistent view of one commit, and its reads — passages by id or row,
//! vectors, xQG records, file records, adapters, statistics.

use super::data::SnapshotData;
use super::options::SearchOptions;
use crate::error::{Error, Result};
use crate::index::Inner;
use crate::scan::Rows;
use crate::store;
use crate::types::{Dtype, Metric, Passage, Stats};
use crate::xqg::{Augmentation, XqgProfile};
use redb::{ReadableMultimapTable, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::sync::Arc;

/// A consistent, read-only view of one commit. Cheap to clone and to keep; files it
/// uses stay on disk until the last snapshot using them is dropped.
#[derive(Clone)]
pub struct Snapshot {
    pub(super) inner: Arc<Inner>,
    pub(super) data: Arc<SnapshotData>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("commit_seq", &self.data.counters.commit_seq)
            .field("passages", &self.data.live)
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(inner: Arc<Inner>, data: Arc<SnapshotData>) -> Self {
        Snapshot { inner, data }
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

    pub(super) fn table_len(
        &self,
        t: TableDefinition<u64, impl redb::Value + 'static>,
    ) -> Result<u64> {
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

    /// The languages of the live passages and how many passages each has (sorted by tag);
    /// passages without a language are not counted (they are `len()` minus the sum).
    pub fn languages(&self) -> Result<Vec<(String, u64)>> {
        store::in_catalog(&self.inner.catalog_path, || {
            let t = match self.data.txn().open_multimap_table(store::LANGS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for entry in t.iter()? {
                let (lang, rids) = entry?;
                // The value list knows its length: one read per language, not per passage.
                let n = rids.len();
                if n > 0 {
                    out.push((lang.value().to_string(), n));
                }
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
