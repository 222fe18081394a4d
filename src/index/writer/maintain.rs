//! Sealing the tail into a segment, tiered merges after commits, and compaction.

use super::stage::Writer;
use crate::error::Result;
use crate::index::snapshot::{SegmentView, SnapshotData, Tail};
use crate::segment::RowSource;
use crate::store;
use std::sync::Arc;

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
pub(super) struct MergedRows<'a> {
    pub(super) picks: Vec<(u64, &'a [u8])>,
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

impl Writer {
    /// Commits buffered changes, then moves every tail row into a new segment file
    /// (a crash-safe step of its own). Returns the new segment's id, if any.
    pub fn seal(&mut self) -> Result<Option<u64>> {
        if !self.ops.is_empty() {
            self.commit()?;
        }
        self.ids = None;
        self.guard(|w| w.seal_tail())
    }

    pub(super) fn seal_tail(&self) -> Result<Option<u64>> {
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
        let sealed = self.seal()?.is_some();
        let merged = self.guard(|w| w.merge_segments(None))?;
        Ok(sealed || merged)
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

    pub(super) fn merge_tier(&self) -> Result<bool> {
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
    pub(super) fn merge_segments(&self, only: Option<&[usize]>) -> Result<bool> {
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
            // Rows keep their ids; a merged segment lists them ascending, which the snapshot's
            // `locate` (a binary search over a segment's rids) relies on.
            picks.sort_unstable_by_key(|p| p.0);
            let db = inner.database()?;
            let txn = db.begin_write()?;
            {
                let mut segs = txn.open_table(store::SEGMENTS)?;
                for s in &chosen {
                    segs.remove(s.handle.id)?;
                }
                // The tombstones of the rows left out go in the same transaction that drops
                // their segments: a crash leaves both or neither (a tombstone without its row
                // would fail verification; a row without its tombstone would come back).
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
            // The new segment is durable (add_segment fsyncs it, I2) before this commit lists
            // it; the old files are only retired, and unlinked once no snapshot holds them (I4).
            txn.commit()?;
            for s in &chosen {
                inner.retire(&s.handle);
            }
            let next = inner.load_snapshot(Some(&snap), Some(snap.tail.clone()), true, false)?;
            inner.publish(next);
            Ok(true)
        })
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
