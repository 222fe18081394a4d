//! Re-fusion: every xQG row's vector recomputed from its stored E(p) and Σ E(q) under a new
//! α, without generating or encoding again (crash-safe like compaction).

use super::stage::Writer;
use crate::error::{Error, Result};
use crate::index::snapshot::{prepare_vector, SnapshotData};
use crate::segment::{encode_rows, RowSource};
use crate::store;
use crate::xqg::Augmentation;
use redb::ReadableTable;
use std::collections::HashMap;
use std::sync::Arc;

/// Rows for a re-fused segment: copied bytes, or new vectors encoded for the segment.
pub(super) struct ReFusedRows<'a> {
    pub(super) picks: Vec<(u64, std::borrow::Cow<'a, [u8]>)>,
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

impl Writer {
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

    pub(super) fn re_fuse_all(&self, profile: crate::xqg::XqgProfile) -> Result<ReFuseReport> {
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
}
