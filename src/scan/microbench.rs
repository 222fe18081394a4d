//! Entry points for the criterion microbenchmarks of the scoring kernels
//! (`benches/kernels.rs`): rows of every storage type built from the same random unit vectors,
//! and one call per kernel that scores every row once. Hidden from the documentation; not part
//! of the API.

use super::batch::{self, QueryTile};
use super::bits::{interleave_block, sign_bits, BLOCK as BITS_BLOCK};
use super::kernels::{scalar_scores, simd_scores, PreparedQuery};
use super::Rows;
use rand::{Rng, SeedableRng};

/// The stored i8 scale of the rows (`stored = round(x · scale)`; unit vectors fit).
const I8_SCALE: f32 = 127.0;
/// Queries of the batch tile.
const TILE_QUERIES: usize = 32;

/// `rows` unit vectors of `dim` components in every form a scan reads, and a query.
pub struct KernelBench {
    dim: usize,
    rows: usize,
    f32_rows: Vec<f32>,
    f16_rows: Vec<u16>,
    i8_rows: Vec<i8>,
    codes8: Vec<u8>,
    bits: Vec<u64>,
    query: PreparedQuery,
    tile: QueryTile,
    out: Vec<f32>,
    tile_out: Vec<f32>,
}

impl KernelBench {
    /// Random unit rows and queries from `seed`.
    pub fn new(rows: usize, dim: usize, seed: u64) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut unit = |n: usize| -> Vec<f32> {
            let mut v: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>() - 0.5).collect();
            for row in v.chunks_exact_mut(dim) {
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                row.iter_mut().for_each(|x| *x /= norm);
            }
            v
        };
        let f32_rows = unit(rows);
        let queries = unit(TILE_QUERIES);
        let f16_rows = f32_rows
            .iter()
            .map(|&x| half::f16::from_f32(x).to_bits())
            .collect();
        let i8_rows: Vec<i8> = f32_rows
            .iter()
            .map(|&x| (x * I8_SCALE).round().clamp(-127.0, 127.0) as i8)
            .collect();
        let codes8 = i8_rows.iter().map(|&x| (x as i16 + 128) as u8).collect();
        let words = dim.div_ceil(64);
        let centre = vec![0f32; dim];
        let mut bits = Vec::with_capacity(rows * words);
        let (mut plain, mut block) = (Vec::new(), Vec::new());
        for start in (0..rows).step_by(BITS_BLOCK) {
            plain.clear();
            for row in f32_rows[start * dim..(start + BITS_BLOCK).min(rows) * dim].chunks_exact(dim)
            {
                let mut code = vec![0u64; words];
                sign_bits(row, &centre, &mut code);
                plain.extend_from_slice(&code);
            }
            block.clear();
            interleave_block(&plain, words, &mut block);
            bits.extend_from_slice(&block);
        }
        let query = PreparedQuery::new(&queries[..dim], true, I8_SCALE).with_bits(&centre);
        let refs: Vec<&[f32]> = queries.chunks_exact(dim).collect();
        KernelBench {
            dim,
            rows,
            f32_rows,
            f16_rows,
            i8_rows,
            codes8,
            bits,
            query,
            tile: QueryTile::new(&refs, dim),
            out: vec![0f32; rows],
            tile_out: vec![0f32; rows * TILE_QUERIES],
        }
    }

    /// Rows scored per call (the tile scores each row against 32 queries).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// f32 rows, the SIMD kernel (simsimd).
    pub fn f32(&mut self) -> f32 {
        score(
            Rows::F32(&self.f32_rows),
            self.dim,
            &self.query,
            &mut self.out,
            true,
        )
    }

    /// f32 rows, plain Rust (the reference every kernel is checked against).
    pub fn f32_scalar(&mut self) -> f32 {
        score(
            Rows::F32(&self.f32_rows),
            self.dim,
            &self.query,
            &mut self.out,
            false,
        )
    }

    /// f16 rows, widened and accumulated in f32.
    pub fn f16(&mut self) -> f32 {
        score(
            Rows::F16(&self.f16_rows),
            self.dim,
            &self.query,
            &mut self.out,
            true,
        )
    }

    /// i8 rows (simsimd's i8 dot product).
    pub fn i8(&mut self) -> f32 {
        score(
            Rows::I8(&self.i8_rows),
            self.dim,
            &self.query,
            &mut self.out,
            true,
        )
    }

    /// i8 codes stored offset by 128 (VNNI where the CPU has it).
    pub fn codes8(&mut self) -> f32 {
        score(
            Rows::Codes8(&self.codes8),
            self.dim,
            &self.query,
            &mut self.out,
            true,
        )
    }

    /// 1-bit codes (Hamming distance, the binary first pass).
    pub fn bits(&mut self) -> f32 {
        score(
            Rows::Bits(&self.bits),
            self.dim,
            &self.query,
            &mut self.out,
            true,
        )
    }

    /// The batch tile: every f32 row against 32 queries; `None` on CPUs without it
    /// (AVX-512F), where batches use the single-query kernels.
    pub fn tile(&mut self) -> Option<f32> {
        if !batch::available() {
            return None;
        }
        let (dim, n) = (self.dim, self.rows);
        batch::tile_scores(&self.f32_rows, dim, 0..n, &self.tile, &mut self.tile_out, n);
        Some(self.tile_out[n / 2])
    }
}

/// Scores every row of `rows` into `out` with the SIMD kernel or the scalar reference; returns
/// one score, so that the work cannot be optimised away.
fn score(rows: Rows<'_>, dim: usize, query: &PreparedQuery, out: &mut [f32], simd: bool) -> f32 {
    let n = out.len();
    if simd {
        simd_scores(&rows, dim, 0..n, query, out);
    } else {
        scalar_scores(&rows, dim, 0..n, query, out);
    }
    out[n / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_scores_the_same_rows_alike() {
        let mut b = KernelBench::new(100, 96, 7);
        let exact = b.f32_scalar();
        for (name, got) in [
            ("f32", b.f32()),
            ("f16", b.f16()),
            ("i8", b.i8()),
            ("codes8", b.codes8()),
        ] {
            assert!((got - exact).abs() < 0.05, "{name}: {got} against {exact}");
        }
        // Hamming scores are counts of differing bits, not dot products: in range.
        let bits = b.bits();
        assert!(bits.is_finite() && bits.abs() <= 96.0, "bits: {bits}");
        if let Some(tile) = b.tile() {
            // Row 50 against query 0, the query the single-query kernels score.
            assert!((tile - exact).abs() < 1e-4, "tile: {tile} against {exact}");
        }
    }
}
