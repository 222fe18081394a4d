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

#[inline(always)]
fn madd<const FMA: bool>(acc: f32, x: f32, q: f32) -> f32 {
    if FMA {
        x.mul_add(q, acc)
    } else {
        acc + x * q
    }
}

/// Scores rows `range` of `rows` against every query of `tile`: `out[q * width + i]` is the
/// score of query q and row `range.start + i`.
#[inline(always)]
fn tile_body<const R: usize, const FMA: bool>(
    rows: &[f32],
    dim: usize,
    range: Range<usize>,
    tile: &QueryTile,
    out: &mut [f32],
    width: usize,
) {
    for (g, qt) in tile.groups.iter().enumerate() {
        let q0 = g * LANES;
        let qn = (tile.queries - q0).min(LANES);
        let mut r = range.start;
        while r < range.end {
            let take = (range.end - r).min(R);
            let row: [&[f32]; R] =
                std::array::from_fn(|i| &rows[(r + i.min(take - 1)) * dim..][..dim]);
            let mut acc = [[0f32; LANES]; R];
            for (d, q) in qt.chunks_exact(LANES).enumerate() {
                let q: &[f32; LANES] = q.try_into().expect("LANES wide");
                for i in 0..R {
                    let x = row[i][d];
                    for j in 0..LANES {
                        acc[i][j] = madd::<FMA>(acc[i][j], x, q[j]);
                    }
                }
            }
            for (i, a) in acc.iter().enumerate().take(take) {
                for (j, &s) in a.iter().enumerate().take(qn) {
                    out[(q0 + j) * width + (r - range.start + i)] = s;
                }
            }
            r += take;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn tile_avx512(
    rows: &[f32],
    dim: usize,
    range: Range<usize>,
    tile: &QueryTile,
    out: &mut [f32],
    width: usize,
) {
    tile_body::<4, true>(rows, dim, range, tile, out, width)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tile_avx2(
    rows: &[f32],
    dim: usize,
    range: Range<usize>,
    tile: &QueryTile,
    out: &mut [f32],
    width: usize,
) {
    tile_body::<2, true>(rows, dim, range, tile, out, width)
}

/// Scores `range` of `rows` against all queries of `tile` into `out` (`queries × width`),
/// with the widest kernel the CPU supports.
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
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU reports AVX-512F and FMA, the features tile_avx512 is compiled for.
            return unsafe { tile_avx512(rows, dim, range, tile, out, width) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU reports AVX2 and FMA, the features tile_avx2 is compiled for.
            return unsafe { tile_avx2(rows, dim, range, tile, out, width) };
        }
    }
    tile_body::<2, false>(rows, dim, range, tile, out, width)
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
