//! Exact top-k search over row blocks: SIMD kernels (simsimd for f32 and i8, this crate's
//! own for f16 and for batches), a scalar reference, a bounded heap, row masks for
//! tombstones and filters, and the parallel driver.

mod batch;
mod bits;
mod check;
mod codes8;
mod f16;
mod kernels;
pub mod microbench;
mod report;
mod topk;

pub use bits::BitsKernel;
pub(crate) use bits::{blocked_len, interleave_block, sign_bits, BLOCK as BITS_BLOCK};
pub use check::{kernel_self_check, KernelCheck};
pub(crate) use kernels::{scalar_scores, simd_scores, PreparedQuery};
pub use report::{kernel_report, KernelReport};
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
    /// i8 codes stored offset by 128 (`u = code + 128`), one byte per dimension.
    Codes8(&'a [u8]),
    /// 1-bit codes, `dim.div_ceil(64)` words per row in interleaved blocks of 8 rows (see
    /// [`BitsKernel`]).
    Bits(&'a [u64]),
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
    /// The SIMD kernels (chosen at run time for the CPU; see [`kernel_report`]).
    Simd,
    /// Plain Rust loops; the reference the SIMD kernels are tested against.
    Scalar,
}

/// Batches at least this large score rows with the multi-query tile kernel.
const TILE_FROM: usize = 4;

/// Largest dimension whose i8·i8 dot products stay exact in f32 (|sum| ≤ dim·127² < 2^24),
/// so that i8 batches through the f32 tile give the single-query kernel's integers.
const I8_TILE_MAX_DIM: usize = (1 << 24) / (127 * 127);

/// The query tiles of a batch: f32 queries, f16-rounded ones, and quantized ones with
/// their divisors.
struct Tiles {
    f32: batch::QueryTile,
    f16: batch::QueryTile,
    i8: Option<(batch::QueryTile, Vec<f32>)>,
}

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
    let quantized = units.iter().any(|u| !matches!(u.rows, Rows::F32(_)));
    let tile =
        (kernel == Kernel::Simd && queries.len() >= TILE_FROM && batch::available()).then(|| {
            let refs: Vec<&[f32]> = queries.iter().map(PreparedQuery::as_f32).collect();
            let (f16, i8) = if quantized {
                let h_refs: Vec<&[f32]> = queries.iter().map(PreparedQuery::f16_as_f32).collect();
                let i8 = (dim <= I8_TILE_MAX_DIM).then(|| {
                    let (q, div): (Vec<Vec<f32>>, Vec<f32>) =
                        queries.iter().map(PreparedQuery::i8_as_f32).unzip();
                    let refs: Vec<&[f32]> = q.iter().map(Vec::as_slice).collect();
                    (batch::QueryTile::new(&refs, dim), div)
                });
                (batch::QueryTile::new(&h_refs, dim), i8)
            } else {
                (batch::QueryTile::new(&[], dim), None)
            };
            Tiles {
                f32: batch::QueryTile::new(&refs, dim),
                f16,
                i8,
            }
        });
    let work = || {
        let mut heaps: Vec<TopK> = queries.iter().map(|_| TopK::new(k)).collect();
        let mut scores = vec![0f32; BLOCK_ROWS * queries.len().max(1)];
        let mut widened: Vec<f32> = Vec::new();
        loop {
            let u = next.fetch_add(1, Ordering::Relaxed);
            let Some(unit) = units.get(u) else { break };
            match (&unit.rows, &tile) {
                (Rows::F32(rows), Some(t)) => {
                    scan_unit_tiled(unit, rows, dim, &t.f32, None, &mut heaps, &mut scores)
                }
                (Rows::F16(_) | Rows::I8(_) | Rows::Codes8(_), Some(t))
                    if matches!(unit.rows, Rows::F16(_)) || t.i8.is_some() =>
                {
                    scan_unit_widened(unit, dim, t, &mut heaps, &mut scores, &mut widened)
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

/// Pushes one block's scores (`queries × width`, rows from `start`) into the heaps,
/// dividing each query's scores by its divisor when given.
fn push_block(
    unit: &ScanUnit<'_>,
    start: usize,
    width: usize,
    scores: &[f32],
    divisors: Option<&[f32]>,
    heaps: &mut [TopK],
) {
    for (q, heap) in heaps.iter_mut().enumerate() {
        let div = divisors.map_or(1.0, |d| d[q]);
        for (i, &s) in scores[q * width..(q + 1) * width].iter().enumerate() {
            let s = if divisors.is_some() { s / div } else { s };
            let row = start + i;
            if s < heap.threshold() || unit.skip.is_some_and(|m| m.get(row)) {
                continue;
            }
            heap.push(s, unit.rids[row]);
        }
    }
}

fn scan_unit_tiled(
    unit: &ScanUnit<'_>,
    rows: &[f32],
    dim: usize,
    tile: &batch::QueryTile,
    divisors: Option<&[f32]>,
    heaps: &mut [TopK],
    scores: &mut [f32],
) {
    let mut start = unit.range.start;
    while start < unit.range.end {
        let end = (start + BLOCK_ROWS).min(unit.range.end);
        let width = end - start;
        batch::tile_scores(rows, dim, start..end, tile, scores, width);
        push_block(unit, start, width, scores, divisors, heaps);
        start = end;
    }
}

/// f16 and i8 rows in a batch: each block is widened to f32 once, then scored by the f32
/// tile against the f16-rounded (or quantized) queries. Products of f16 values and of i8
/// values are exact in f32; i8 sums stay exact too (see [`I8_TILE_MAX_DIM`]), so i8
/// scores equal the single-query kernel's bit for bit.
fn scan_unit_widened(
    unit: &ScanUnit<'_>,
    dim: usize,
    tiles: &Tiles,
    heaps: &mut [TopK],
    scores: &mut [f32],
    widened: &mut Vec<f32>,
) {
    let mut start = unit.range.start;
    while start < unit.range.end {
        let end = (start + BLOCK_ROWS).min(unit.range.end);
        let width = end - start;
        widened.resize(width * dim, 0.0);
        let (tile, divisors) = match unit.rows {
            Rows::F16(r) => {
                use half::slice::HalfFloatSliceExt;
                let src: &[half::f16] = bytemuck::cast_slice(&r[start * dim..end * dim]);
                src.convert_to_f32_slice(widened);
                (&tiles.f16, None)
            }
            Rows::I8(r) => {
                for (d, &s) in widened.iter_mut().zip(&r[start * dim..end * dim]) {
                    *d = s as f32;
                }
                let (t, div) = tiles.i8.as_ref().expect("checked by the caller");
                (t, Some(div.as_slice()))
            }
            Rows::Codes8(r) => {
                for (d, &u) in widened.iter_mut().zip(&r[start * dim..end * dim]) {
                    *d = (u as i32 - 128) as f32;
                }
                let (t, div) = tiles.i8.as_ref().expect("checked by the caller");
                (t, Some(div.as_slice()))
            }
            Rows::F32(_) | Rows::Bits(_) => unreachable!("only f16 and i8 rows are widened"),
        };
        batch::tile_scores(widened, dim, 0..width, tile, scores, width);
        push_block(unit, start, width, scores, divisors, heaps);
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
    fn quantized_batches_equal_single_queries() {
        let dim = 48;
        let n = 700; // several blocks, a partial one at the end
        let mut x = 0x9e37_79b9_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2001) as f32 / 1000.0 - 1.0
        };
        let data: Vec<f32> = (0..n * dim).map(|_| next()).collect();
        let queries: Vec<Vec<f32>> = (0..9).map(|_| (0..dim).map(|_| next()).collect()).collect();
        let rids: Vec<u64> = (0..n as u64).map(|r| r * 3).collect();
        let mut skip = Bitmap::new(n);
        skip.set(5);
        skip.set(400);
        let f16: Vec<u16> = data
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        let scale = 127.0;
        let i8s: Vec<i8> = data
            .iter()
            .map(|&v| (v * scale).round().clamp(-127.0, 127.0) as i8)
            .collect();
        for rows in [Rows::F16(&f16), Rows::I8(&i8s)] {
            let units: Vec<ScanUnit> = [0..300, 300..n]
                .into_iter()
                .map(|range| ScanUnit {
                    rows,
                    rids: &rids,
                    skip: Some(&skip),
                    range,
                })
                .collect();
            let prepared: Vec<PreparedQuery> = queries
                .iter()
                .map(|q| PreparedQuery::new(q, true, scale))
                .collect();
            let batch = search(&units, dim, &prepared, 10, 2, Kernel::Simd);
            for (q, got) in prepared.iter().zip(&batch) {
                let one = search(&units, dim, std::slice::from_ref(q), 10, 1, Kernel::Simd);
                let ids = |v: &[(f32, u64)]| v.iter().map(|h| h.1).collect::<Vec<_>>();
                assert_eq!(ids(got), ids(&one[0]), "{rows:?}");
                for (a, b) in got.iter().zip(&one[0]) {
                    match rows {
                        // Integer dot products: bit-identical.
                        Rows::I8(_) => assert_eq!(a.0.to_bits(), b.0.to_bits()),
                        _ => assert!(
                            (a.0 - b.0).abs() <= 1e-6 * b.0.abs(),
                            "f16 batch {} vs single {}",
                            a.0,
                            b.0
                        ),
                    }
                }
                assert!(
                    got.iter().all(|h| h.1 != 15 && h.1 != 1200),
                    "skipped rows stay out"
                );
            }
        }
    }

    /// Unit vectors of a real model's size: every hit of a batch of f16 queries scores within
    /// 1e-6 (relative) of the same query searched alone, on whichever kernels this CPU runs.
    #[test]
    fn f16_batch_scores_equal_single_query_scores_within_1e_6() {
        let (dim, n, nq, k) = (384, 3000, 40, 50);
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut gauss = move || {
            // Sum of uniforms: close enough to normal for direction sampling.
            (0..4)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 100_001) as f32 / 100_000.0 - 0.5
                })
                .sum::<f32>()
        };
        let unit = |v: Vec<f32>| {
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            v.into_iter().map(|a| a / norm).collect::<Vec<f32>>()
        };
        let data: Vec<f32> = (0..n)
            .flat_map(|_| unit((0..dim).map(|_| gauss()).collect()))
            .collect();
        // Queries near stored rows, so that the top hits score high as in real searches.
        let queries: Vec<Vec<f32>> = (0..nq)
            .map(|i| {
                let row = &data[(i * 61 % n) * dim..][..dim];
                unit(row.iter().map(|&a| a + 0.05 * gauss()).collect())
            })
            .collect();
        let f16: Vec<u16> = data
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        let rids: Vec<u64> = (0..n as u64).collect();
        let units: Vec<ScanUnit> = unit_ranges(n)
            .map(|range| ScanUnit {
                rows: Rows::F16(&f16),
                rids: &rids,
                skip: None,
                range,
            })
            .collect();
        let prepared: Vec<PreparedQuery> = queries
            .iter()
            .map(|q| PreparedQuery::new(q, true, 1.0))
            .collect();
        let batch = search(&units, dim, &prepared, k, 2, Kernel::Simd);
        let mut worst = 0f32;
        for (q, got) in prepared.iter().zip(&batch) {
            let one = search(&units, dim, std::slice::from_ref(q), k, 1, Kernel::Simd);
            let one: std::collections::HashMap<u64, f32> =
                one[0].iter().map(|&(s, id)| (id, s)).collect();
            let common = got.iter().filter(|h| one.contains_key(&h.1)).count();
            assert!(
                common >= k - 1,
                "batch and single top-{k} share {common} rows"
            );
            for &(s, id) in got {
                // A hit at the cut-off may differ by a tie; compare the rows both returned.
                if let Some(&single) = one.get(&id) {
                    worst = worst.max((s - single).abs() / single.abs());
                }
            }
        }
        println!("f16 batch vs single: worst relative difference {worst:.2e}");
        assert!(worst <= 1e-6, "worst relative difference {worst:e}");
    }

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
