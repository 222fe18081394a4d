//! Scoring kernels: one query against a range of rows, for each storage type.
//!
//! Which code scores which rows, on every CPU (the dispatcher's choices were read from
//! simsimd 6.5's sources; none of them computes in less than f32):
//! - f32 rows: simsimd's f32 dot product, runtime-dispatched (serial, Haswell, Skylake, NEON
//!   or SVE), f32 lanes reduced in f32 or f64.
//! - f16 rows: [`F16Kernel`](super::f16::F16Kernel), this crate's own (AVX-512F, AVX2 + F16C
//!   or portable): rows widened to f32, f32 FMA. simsimd's f16 kernel is never called: on
//!   AVX512-FP16 and SVE-FP16 CPUs it accumulates in half precision.
//! - i8 rows: simsimd's i8 dot product (serial, Haswell, Ice Lake, NEON), integer sums, so
//!   every variant returns the same integer.

use super::f16::F16Kernel;
use super::{BitsKernel, Rows};
use simsimd::SpatialSimilarity;
use std::ops::Range;

/// A query converted once into every form the rows it meets may need.
#[derive(Clone, Debug)]
pub(crate) struct PreparedQuery {
    f32: Vec<f32>,
    /// The query rounded to f16 and widened back to f32 (exactly): what f16 rows meet.
    f16: Vec<f32>,
    i8: Vec<i8>,
    /// Divides an i8·i8 dot product back into the f32 scale.
    i8_divisor: f32,
    /// 1-bit code of the query (set by [`PreparedQuery::with_bits`]).
    bits: Vec<u64>,
}

impl PreparedQuery {
    /// Prepares `q` for f32 rows, and for f16/i8 rows when `quantized` is set.
    /// `i8_scale` is the index's row scale (stored = round(x · scale)).
    pub fn new(q: &[f32], quantized: bool, i8_scale: f32) -> Self {
        let (f16, i8, i8_divisor) = if quantized {
            let f16 = q.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
            let max = q.iter().fold(0f32, |m, x| m.max(x.abs()));
            let qs = if max > 0.0 { 127.0 / max } else { 1.0 };
            let i8 = q
                .iter()
                .map(|&x| (x * qs).round().clamp(-127.0, 127.0) as i8)
                .collect();
            (f16, i8, qs * i8_scale)
        } else {
            (Vec::new(), Vec::new(), 1.0)
        };
        PreparedQuery {
            f32: q.to_vec(),
            f16,
            i8,
            i8_divisor,
            bits: Vec::new(),
        }
    }

    /// Adds the query's 1-bit code: bit `d` set where component `d` exceeds `centre[d]`.
    pub fn with_bits(mut self, centre: &[f32]) -> Self {
        self.bits = vec![0; self.f32.len().div_ceil(64)];
        super::sign_bits(&self.f32, centre, &mut self.bits);
        self
    }

    /// The query as f32.
    pub fn as_f32(&self) -> &[f32] {
        &self.f32
    }

    /// The f16-rounded query, widened to f32 (what f16 rows are scored against).
    pub fn f16_as_f32(&self) -> &[f32] {
        &self.f16
    }

    /// The quantized query as f32 integers, and the divisor of its dot products.
    pub fn i8_as_f32(&self) -> (Vec<f32>, f32) {
        (self.i8.iter().map(|&x| x as f32).collect(), self.i8_divisor)
    }
}

/// Scores rows `range` against `q` with the SIMD kernels into `out` (one score per row).
pub(crate) fn simd_scores(
    rows: &Rows<'_>,
    dim: usize,
    range: Range<usize>,
    q: &PreparedQuery,
    out: &mut [f32],
) {
    match rows {
        Rows::F32(r) => {
            for (o, row) in out
                .iter_mut()
                .zip(r[range.start * dim..range.end * dim].chunks_exact(dim))
            {
                *o = f32::dot(row, &q.f32).unwrap_or(f64::NAN) as f32;
            }
        }
        Rows::F16(r) => {
            F16Kernel::best().scores(&r[range.start * dim..range.end * dim], &q.f16, out)
        }
        Rows::I8(r) => {
            for (o, row) in out
                .iter_mut()
                .zip(r[range.start * dim..range.end * dim].chunks_exact(dim))
            {
                *o = (i8::dot(row, &q.i8).unwrap_or(f64::NAN) as f32) / q.i8_divisor;
            }
        }
        Rows::Codes8(r) => super::codes8::scores(
            &r[range.start * dim..range.end * dim],
            &q.i8,
            q.i8_divisor,
            out,
        ),
        Rows::Bits(r) => BitsKernel::best().scores(r, range, &q.bits, out),
    }
}

/// The scalar reference of [`simd_scores`]: same inputs, same outputs up to rounding.
pub(crate) fn scalar_scores(
    rows: &Rows<'_>,
    dim: usize,
    range: Range<usize>,
    q: &PreparedQuery,
    out: &mut [f32],
) {
    match rows {
        Rows::F32(r) => {
            for (o, row) in out
                .iter_mut()
                .zip(r[range.start * dim..range.end * dim].chunks_exact(dim))
            {
                *o = row.iter().zip(&q.f32).map(|(a, b)| a * b).sum();
            }
        }
        Rows::F16(r) => {
            for (o, row) in out
                .iter_mut()
                .zip(r[range.start * dim..range.end * dim].chunks_exact(dim))
            {
                *o = row
                    .iter()
                    .zip(&q.f16)
                    .map(|(&a, &b)| half::f16::from_bits(a).to_f32() * b)
                    .sum();
            }
        }
        Rows::I8(r) => {
            for (o, row) in out
                .iter_mut()
                .zip(r[range.start * dim..range.end * dim].chunks_exact(dim))
            {
                let dot: i32 = row
                    .iter()
                    .zip(&q.i8)
                    .map(|(&a, &b)| a as i32 * b as i32)
                    .sum();
                *o = dot as f32 / q.i8_divisor;
            }
        }
        Rows::Codes8(r) => super::codes8::portable(
            &r[range.start * dim..range.end * dim],
            &q.i8,
            q.i8_divisor,
            out,
        ),
        Rows::Bits(r) => BitsKernel::Portable.scores(r, range, &q.bits, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::encode_rows;
    use crate::types::Dtype;
    use proptest::prelude::*;

    fn check(
        dtype: Dtype,
        dim: usize,
        data: &[f32],
        query: &[f32],
        tol: f32,
    ) -> Result<(), TestCaseError> {
        let n = data.len() / dim;
        let scale = 100.0;
        let bytes = encode_rows(data, dtype, scale);
        let aligned: Vec<u64> = {
            let mut v = vec![0u64; bytes.len().div_ceil(8)];
            bytemuck::cast_slice_mut::<u64, u8>(&mut v)[..bytes.len()].copy_from_slice(&bytes);
            v
        };
        let rows = Rows::from_bytes(
            dtype,
            &bytemuck::cast_slice::<u64, u8>(&aligned)[..bytes.len()],
        );
        let q = PreparedQuery::new(query, true, scale);
        let mut a = vec![0f32; n];
        let mut b = vec![0f32; n];
        simd_scores(&rows, dim, 0..n, &q, &mut a);
        scalar_scores(&rows, dim, 0..n, &q, &mut b);
        for (x, y) in a.iter().zip(&b) {
            prop_assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{dtype}: simd {x} vs scalar {y}"
            );
        }
        Ok(())
    }

    fn case() -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>)> {
        (1usize..300).prop_flat_map(|dim| {
            (
                Just(dim),
                proptest::collection::vec(-1f32..1.0, dim * 3),
                proptest::collection::vec(-1f32..1.0, dim),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn simd_matches_scalar_for_every_dtype((dim, data, query) in case()) {
            check(Dtype::F32, dim, &data, &query, 1e-5)?;
            // f16 rows are widened and summed in f32, like f32 rows (it was 1e-3 while the
            // f16 kernel could accumulate in half precision).
            check(Dtype::F16, dim, &data, &query, 1e-5)?;
            check(Dtype::I8, dim, &data, &query, 1e-5)?;
        }
    }
}
