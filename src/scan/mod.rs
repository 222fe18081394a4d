//! Exact top-k search over row blocks: SIMD kernels (simsimd), a scalar reference, a
//! bounded heap, row masks for tombstones and filters, and the parallel driver.

mod batch;
mod kernels;
mod topk;

pub(crate) use kernels::{scalar_scores, simd_scores, PreparedQuery};
pub(crate) use topk::TopK;

use crate::types::Dtype;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Typed view of a block of rows.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    I8(&'a [i8]),
}

impl<'a> Rows<'a> {
    /// Views `bytes` as rows of `dtype`. The bytes must be aligned for the type, which
    /// holds for segment bodies (64-byte offsets in a page-aligned map).
    pub fn from_bytes(dtype: Dtype, bytes: &'a [u8]) -> Self {
        match dtype {
            Dtype::F32 => Rows::F32(bytemuck::cast_slice(bytes)),
            Dtype::F16 => Rows::F16(bytemuck::cast_slice(bytes)),
            Dtype::I8 => Rows::I8(bytemuck::cast_slice(bytes)),
        }
    }
}

/// A set of row positions, one bit each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bitmap {
    words: Vec<u64>,
}

impl Bitmap {
    pub fn new(len: usize) -> Self {
        Bitmap {
            words: vec![0; len.div_ceil(64)],
        }
    }

    pub fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Flips every bit.
    pub fn invert(&mut self) {
        for w in &mut self.words {
            *w = !*w;
        }
    }

    /// Union with another bitmap of the same length.
    pub fn or(&mut self, other: &Bitmap) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }
}

/// Marks, in a bitmap over `rids` (sorted), the positions whose id is in `ids` (sorted).
pub(crate) fn mark_sorted(rids: &[u64], ids: &[u64], out: &mut Bitmap) {
    let (mut i, mut j) = (0, 0);
    while i < rids.len() && j < ids.len() {
        match rids[i].cmp(&ids[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.set(i);
                i += 1;
                j += 1;
            }
        }
    }
}

/// One piece of scan work: a range of rows of one segment (or of the tail).
#[derive(Clone, Debug)]
pub(crate) struct ScanUnit<'a> {
    pub rows: Rows<'a>,
    pub rids: &'a [u64],
    /// Rows to leave out (tombstones, rows a filter excludes).
    pub skip: Option<&'a Bitmap>,
    pub range: Range<usize>,
}

/// Rows per unit of parallel work.
pub(crate) const UNIT_ROWS: usize = 1 << 15;
/// Rows scored together before their scores enter the heaps (sized for L2).
const BLOCK_ROWS: usize = 256;

/// Splits `len` rows into unit ranges.
pub(crate) fn unit_ranges(len: usize) -> impl Iterator<Item = Range<usize>> {
    (0..len)
        .step_by(UNIT_ROWS)
        .map(move |s| s..(s + UNIT_ROWS).min(len))
}

/// Which kernel scores rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// simsimd's SIMD kernels (runtime-dispatched to the best the CPU has).
    Simd,
    /// Plain Rust loops; the reference the SIMD kernels are tested against.
    Scalar,
}

/// Batches at least this large score f32 rows with the multi-query tile kernel.
const TILE_FROM: usize = 4;

/// Exact top-`k` for every query over every unit, on `threads` threads. Results are
/// `(score, rid)` best first; ties go to the lower row id.
pub(crate) fn search(
    units: &[ScanUnit<'_>],
    dim: usize,
    queries: &[PreparedQuery],
    k: usize,
    threads: usize,
    kernel: Kernel,
) -> Vec<Vec<(f32, u64)>> {
    let threads = threads.clamp(1, units.len().max(1));
    let next = AtomicUsize::new(0);
    let tile =
        (kernel == Kernel::Simd && queries.len() >= TILE_FROM && batch::available()).then(|| {
            let refs: Vec<&[f32]> = queries.iter().map(PreparedQuery::as_f32).collect();
            batch::QueryTile::new(&refs, dim)
        });
    let work = || {
        let mut heaps: Vec<TopK> = queries.iter().map(|_| TopK::new(k)).collect();
        let mut scores = vec![0f32; BLOCK_ROWS * queries.len().max(1)];
        loop {
            let u = next.fetch_add(1, Ordering::Relaxed);
            let Some(unit) = units.get(u) else { break };
            match (&unit.rows, &tile) {
                (Rows::F32(rows), Some(tile)) => {
                    scan_unit_tiled(unit, rows, dim, tile, &mut heaps, &mut scores)
                }
                _ => scan_unit(unit, dim, queries, &mut heaps, &mut scores, kernel),
            }
        }
        heaps
    };
    let mut all: Vec<Vec<TopK>> = if threads == 1 {
        vec![work()]
    } else {
        crossbeam::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(|_| work())).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("scan worker panicked"))
                .collect()
        })
        .expect("scan scope panicked")
    };
    let mut merged = all.pop().unwrap_or_default();
    for other in all {
        for (m, o) in merged.iter_mut().zip(other) {
            m.merge(o);
        }
    }
    merged.into_iter().map(TopK::into_sorted).collect()
}

fn scan_unit_tiled(
    unit: &ScanUnit<'_>,
    rows: &[f32],
    dim: usize,
    tile: &batch::QueryTile,
    heaps: &mut [TopK],
    scores: &mut [f32],
) {
    let mut start = unit.range.start;
    while start < unit.range.end {
        let end = (start + BLOCK_ROWS).min(unit.range.end);
        let width = end - start;
        batch::tile_scores(rows, dim, start..end, tile, scores, width);
        for (q, heap) in heaps.iter_mut().enumerate() {
            for (i, &s) in scores[q * width..(q + 1) * width].iter().enumerate() {
                let row = start + i;
                if s < heap.threshold() || unit.skip.is_some_and(|m| m.get(row)) {
                    continue;
                }
                heap.push(s, unit.rids[row]);
            }
        }
        start = end;
    }
}

fn scan_unit(
    unit: &ScanUnit<'_>,
    dim: usize,
    queries: &[PreparedQuery],
    heaps: &mut [TopK],
    scores: &mut [f32],
    kernel: Kernel,
) {
    let mut start = unit.range.start;
    while start < unit.range.end {
        let end = (start + BLOCK_ROWS).min(unit.range.end);
        let block = &mut scores[..end - start];
        for (q, heap) in queries.iter().zip(heaps.iter_mut()) {
            match kernel {
                Kernel::Simd => simd_scores(&unit.rows, dim, start..end, q, block),
                Kernel::Scalar => scalar_scores(&unit.rows, dim, start..end, q, block),
            }
            for (i, &s) in block.iter().enumerate() {
                let row = start + i;
                if s < heap.threshold() || unit.skip.is_some_and(|m| m.get(row)) {
                    continue;
                }
                heap.push(s, unit.rids[row]);
            }
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_sorted_marks_exactly_the_common_ids() {
        let rids = [1, 4, 5, 9, 12];
        let mut b = Bitmap::new(rids.len());
        mark_sorted(&rids, &[0, 4, 9, 10, 13], &mut b);
        let set: Vec<usize> = (0..rids.len()).filter(|&i| b.get(i)).collect();
        assert_eq!(set, vec![1, 3]);
        assert_eq!(b.count(), 2);
    }
}
