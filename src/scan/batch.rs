//! Multi-query f32 kernel: a register tile of R rows × 32 queries, so that each row is read
//! once per 32 queries and each query value once per R rows. Used for batches of f32 rows;
//! checked against the scalar reference in the tests below.

use std::ops::Range;

/// Queries per tile (two AVX-512 registers, four AVX2 registers).
pub(crate) const LANES: usize = 32;

/// Queries transposed into groups of [`LANES`]: in group g, `qt[d * LANES + j]` is
/// component d of query `g * LANES + j` (zero past the last query).
#[derive(Debug)]
pub(crate) struct QueryTile {
    groups: Vec<Vec<f32>>,
    queries: usize,
}

impl QueryTile {
    pub fn new(queries: &[&[f32]], dim: usize) -> Self {
        let groups = queries
            .chunks(LANES)
            .map(|group| {
                let mut qt = vec![0f32; dim * LANES];
                for (j, q) in group.iter().enumerate() {
                    for (d, &x) in q.iter().enumerate() {
                        qt[d * LANES + j] = x;
                    }
                }
                qt
            })
            .collect();
        QueryTile {
            groups,
            queries: queries.len(),
        }
    }
}

/// Components summed into fresh accumulators before they join the running totals. Two
/// levels keep each pair's rounding error near that of the single-query kernels (16 or 8
/// lanes over the components): a 384-long chain in one accumulator drifts ~4× further.
const CHUNK: usize = 16;

/// One 4-row × 32-query tile with AVX-512: eight accumulators, two query loads and four
/// broadcasts per component, summed in chunks of [`CHUNK`] components.
///
/// # Safety
/// The CPU must support AVX-512F; each `rows[i]` and `qt` must hold `dim` and `dim * LANES`
/// floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile4_avx512(rows: [&[f32]; 4], qt: &[f32], dim: usize, acc_out: &mut [[f32; LANES]; 4]) {
    use std::arch::x86_64::*;
    debug_assert!(rows.iter().all(|r| r.len() >= dim) && qt.len() >= dim * LANES);
    let mut total = [_mm512_setzero_ps(); 8];
    let q = qt.as_ptr();
    let r = rows.map(<[f32]>::as_ptr);
    let mut start = 0;
    while start < dim {
        let end = (start + CHUNK).min(dim);
        let mut acc = [_mm512_setzero_ps(); 8];
        for d in start..end {
            // SAFETY (whole loop): d < dim, so every read is inside the slices checked above.
            let q0 = _mm512_loadu_ps(q.add(d * LANES));
            let q1 = _mm512_loadu_ps(q.add(d * LANES + 16));
            for i in 0..4 {
                let x = _mm512_set1_ps(*r[i].add(d));
                acc[2 * i] = _mm512_fmadd_ps(x, q0, acc[2 * i]);
                acc[2 * i + 1] = _mm512_fmadd_ps(x, q1, acc[2 * i + 1]);
            }
        }
        for (t, a) in total.iter_mut().zip(acc) {
            *t = _mm512_add_ps(*t, a);
        }
        start = end;
    }
    for i in 0..4 {
        _mm512_storeu_ps(acc_out[i].as_mut_ptr(), total[2 * i]);
        _mm512_storeu_ps(acc_out[i].as_mut_ptr().add(16), total[2 * i + 1]);
    }
}

/// [`tile_scores`] with the AVX-512 tile.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_scores_avx512(
    rows: &[f32],
    dim: usize,
    range: Range<usize>,
    tile: &QueryTile,
    out: &mut [f32],
    width: usize,
) {
    let mut acc = [[0f32; LANES]; 4];
    for (g, qt) in tile.groups.iter().enumerate() {
        let q0 = g * LANES;
        let qn = (tile.queries - q0).min(LANES);
        let mut r = range.start;
        while r < range.end {
            let take = (range.end - r).min(4);
            let row: [&[f32]; 4] =
                std::array::from_fn(|i| &rows[(r + i.min(take - 1)) * dim..][..dim]);
            // SAFETY: AVX-512F is available (this function's contract); the slices have
            // `dim` and `dim * LANES` floats.
            unsafe { tile4_avx512(row, qt, dim, &mut acc) };
            for (i, a) in acc.iter().enumerate().take(take) {
                for (j, &s) in a.iter().enumerate().take(qn) {
                    out[(q0 + j) * width + (r - range.start + i)] = s;
                }
            }
            r += take;
        }
    }
}

/// Whether this CPU runs the tile kernel (AVX-512F). Without it, batches use the per-pair
/// single-query kernels, which beat a tile built from narrower registers.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Scores `range` of `rows` against all queries of `tile` into `out` (`queries × width`).
/// Call only when [`available`] is true.
pub(crate) fn tile_scores(
    rows: &[f32],
    dim: usize,
    range: Range<usize>,
    tile: &QueryTile,
    out: &mut [f32],
    width: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(available(), "tile kernel called without AVX-512F");
        // SAFETY: AVX-512F was checked just above.
        unsafe { tile_scores_avx512(rows, dim, range, tile, out, width) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (rows, dim, range, tile, out, width);
        unreachable!("tile kernel called without AVX-512F")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn tile_matches_the_scalar_dot_product(
            dim in 1usize..70,
            nrows in 1usize..11,
            nq in 1usize..70,
            seed in any::<u64>(),
        ) {
            let mut x = seed | 1;
            let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x % 2001) as f32 / 1000.0 - 1.0 };
            let rows: Vec<f32> = (0..nrows * dim).map(|_| next()).collect();
            let queries: Vec<Vec<f32>> = (0..nq).map(|_| (0..dim).map(|_| next()).collect()).collect();
            let refs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
            if !available() {
                // This CPU scans batches with the per-pair kernels, tested elsewhere.
                prop_assert!(!std::arch::is_x86_feature_detected!("avx512f"));
                return Ok(());
            }
            let tile = QueryTile::new(&refs, dim);
            // Score an inner range so that offsets are exercised.
            let range = (nrows / 3)..nrows;
            let width = range.len();
            let mut out = vec![f32::NAN; nq * width];
            tile_scores(&rows, dim, range.clone(), &tile, &mut out, width);
            for (q, query) in queries.iter().enumerate() {
                for (i, r) in range.clone().enumerate() {
                    let want: f32 = rows[r * dim..(r + 1) * dim].iter().zip(query).map(|(a, b)| a * b).sum();
                    let got = out[q * width + i];
                    prop_assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "q {q} row {r}: {got} vs {want}");
                }
            }
        }
    }
}
