//! A self-check of every scoring kernel the running CPU can execute against exact sums.
//!
//! Each kernel scores fixed pseudo-random rows and queries of many lengths; the result must
//! lie within the worst-case rounding bound of f32 summation in any order,
//! `(dim + 2) · 2⁻²⁴ · Σ|aᵢbᵢ|`, of the exact (f64) dot product of the same stored values.
//! Half-precision accumulation misses that bound by two orders of magnitude, so a kernel that
//! computes in f16 fails here. i8 and binary kernels must return the exact integer.

use super::batch;
use super::f16::F16Kernel;
use serde::Serialize;
use simsimd::SpatialSimilarity;

/// The outcome of checking one kernel.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct KernelCheck {
    /// The kernel's name (as in [`KernelReport`](super::KernelReport)).
    pub kernel: &'static str,
    /// Dot products compared.
    pub cases: usize,
    /// The largest error seen, as a fraction of the allowed bound (0 for exact kernels).
    pub worst: f64,
    /// Whether every case was within the bound.
    pub passed: bool,
}

/// Runs every kernel this CPU can execute (f16 variants, the dispatched f32 and i8 kernels,
/// the batch tile, and f16 widening of all 65,536 bit patterns) against exact references.
pub fn kernel_self_check() -> Vec<KernelCheck> {
    let report = super::kernel_report();
    let mut out = Vec::new();
    out.push(check_widening());
    for k in F16Kernel::ALL.into_iter().filter(|k| k.available()) {
        out.push(check_f16(k));
    }
    out.push(check_f32(report.f32));
    out.push(check_i8(report.i8));
    for k in super::BitsKernel::ALL.into_iter().filter(|k| k.available()) {
        out.push(check_bits(k));
    }
    if batch::available() {
        out.push(check_tile());
    }
    out
}

/// Dimensions checked: every length up to 70 (all tails), then typical model sizes.
fn dims() -> impl Iterator<Item = usize> {
    (1..=70).chain([127, 128, 255, 256, 300, 384, 768, 1024])
}

/// A small deterministic generator (xorshift64) of values in [-1, 1].
struct Values(u64);

impl Values {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 20001) as f32 / 10000.0 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// Tracks the worst error against the f32 summation bound.
struct Tally {
    kernel: &'static str,
    cases: usize,
    worst: f64,
}

impl Tally {
    fn new(kernel: &'static str) -> Self {
        Tally {
            kernel,
            cases: 0,
            worst: 0.0,
        }
    }

    /// Records `got` against the exact products' sum.
    fn add(&mut self, got: f32, a: &[f32], b: &[f32]) {
        let exact: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let magnitude: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 * y as f64).abs())
            .sum();
        let bound = (a.len() + 2) as f64 * f64::from(f32::EPSILON) / 2.0 * magnitude + 1e-30;
        let err = if got.is_finite() {
            (got as f64 - exact).abs() / bound
        } else {
            f64::INFINITY
        };
        self.worst = self.worst.max(err);
        self.cases += 1;
    }

    fn finish(self) -> KernelCheck {
        KernelCheck {
            kernel: self.kernel,
            cases: self.cases,
            worst: self.worst,
            passed: self.worst <= 1.0,
        }
    }
}

fn to_f16(v: &[f32]) -> (Vec<u16>, Vec<f32>) {
    let bits: Vec<u16> = v
        .iter()
        .map(|&x| half::f16::from_f32(x).to_bits())
        .collect();
    let wide = bits
        .iter()
        .map(|&b| half::f16::from_bits(b).to_f32())
        .collect();
    (bits, wide)
}

fn check_f16(kernel: F16Kernel) -> KernelCheck {
    let mut t = Tally::new(kernel.name());
    let mut rng = Values(0x2545_f491_4f6c_dd1d);
    for dim in dims() {
        let rows = 9; // more than one group of rows, and a partial one
        let (bits, wide) = to_f16(&rng.vec(rows * dim));
        let (_, q) = to_f16(&rng.vec(dim));
        let mut out = vec![0f32; rows];
        kernel.scores(&bits, &q, &mut out);
        for (r, &got) in out.iter().enumerate() {
            t.add(got, &wide[r * dim..(r + 1) * dim], &q);
        }
    }
    t.finish()
}

fn check_f32(name: &'static str) -> KernelCheck {
    let mut t = Tally::new(name);
    let mut rng = Values(0x9e37_79b9_7f4a_7c15);
    for dim in dims() {
        for _ in 0..3 {
            let (a, b) = (rng.vec(dim), rng.vec(dim));
            let got = f32::dot(&a, &b).unwrap_or(f64::NAN) as f32;
            t.add(got, &a, &b);
        }
    }
    t.finish()
}

fn check_i8(name: &'static str) -> KernelCheck {
    let mut cases = 0;
    let mut exact = true;
    let mut rng = Values(0xd1b5_4a32_d192_ed03);
    for dim in dims() {
        for _ in 0..3 {
            let a: Vec<i8> = (0..dim).map(|_| (rng.next() * 127.0) as i8).collect();
            let b: Vec<i8> = (0..dim).map(|_| (rng.next() * 127.0) as i8).collect();
            let want: i64 = a.iter().zip(&b).map(|(&x, &y)| x as i64 * y as i64).sum();
            let got = i8::dot(&a, &b).unwrap_or(f64::NAN);
            exact &= got == want as f64;
            cases += 1;
        }
    }
    KernelCheck {
        kernel: name,
        cases,
        worst: if exact { 0.0 } else { f64::INFINITY },
        passed: exact,
    }
}

fn check_bits(k: super::BitsKernel) -> KernelCheck {
    let mut cases = 0;
    let mut exact = true;
    let mut rng = Values(0x3c6e_f372_fe94_f82b);
    for dim in dims() {
        let words = dim.div_ceil(64);
        let centre = vec![0f32; dim];
        let (a, b) = (rng.vec(dim), rng.vec(dim));
        let (mut ca, mut cb) = (vec![0u64; words], vec![0u64; words]);
        super::sign_bits(&a, &centre, &mut ca);
        super::sign_bits(&b, &centre, &mut cb);
        let want = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| (**x > 0.0) != (**y > 0.0))
            .count();
        let mut block = Vec::new();
        super::interleave_block(&ca, words, &mut block);
        let mut got = [0f32];
        k.scores(&block, 0..1, &cb, &mut got);
        exact &= got[0] == -(want as f32);
        cases += 1;
    }
    KernelCheck {
        kernel: k.name(),
        cases,
        worst: if exact { 0.0 } else { f64::INFINITY },
        passed: exact,
    }
}

fn check_tile() -> KernelCheck {
    let mut t = Tally::new("batch tile avx512f (f32; f16 rows widened)");
    let mut rng = Values(0x6a09_e667_f3bc_c909);
    for dim in dims() {
        let (nrows, nq) = (6, 37); // a partial 4-row group and a partial 32-query group
        for half_rows in [false, true] {
            let (mut rows, mut queries) = (rng.vec(nrows * dim), rng.vec(nq * dim));
            if half_rows {
                rows = to_f16(&rows).1;
                queries = to_f16(&queries).1;
            }
            let refs: Vec<&[f32]> = queries.chunks_exact(dim).collect();
            let tile = batch::QueryTile::new(&refs, dim);
            let mut out = vec![0f32; nq * nrows];
            batch::tile_scores(&rows, dim, 0..nrows, &tile, &mut out, nrows);
            for (qi, q) in refs.iter().enumerate() {
                for r in 0..nrows {
                    t.add(out[qi * nrows + r], &rows[r * dim..(r + 1) * dim], q);
                }
            }
        }
    }
    t.finish()
}

/// Widening of every f16 bit pattern, through the slice conversion the scans use, against
/// a decoding of the bits by hand.
fn check_widening() -> KernelCheck {
    use half::slice::HalfFloatSliceExt;
    let bits: Vec<u16> = (0..=u16::MAX).collect();
    let src: &[half::f16] = bytemuck::cast_slice(&bits);
    let mut wide = vec![0f32; bits.len()];
    src.convert_to_f32_slice(&mut wide);
    let exact = bits.iter().zip(&wide).all(|(&b, &w)| {
        let want = decode_f16(b);
        (want.is_nan() && w.is_nan()) || want.to_bits() == w.to_bits()
    });
    KernelCheck {
        kernel: "f16 -> f32 widening (all 65,536 patterns)",
        cases: bits.len(),
        worst: if exact { 0.0 } else { f64::INFINITY },
        passed: exact,
    }
}

/// IEEE 754 binary16 to f32, from the bits.
fn decode_f16(b: u16) -> f32 {
    let sign = if b >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = i32::from((b >> 10) & 0x1f);
    let man = f32::from(b & 0x3ff);
    match exp {
        0 => sign * man * 2f32.powi(-24),
        31 if man == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + man / 1024.0) * 2f32.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runnable_kernel_is_within_the_f32_bound() {
        let report = super::super::kernel_report();
        println!("{report}");
        let checks = kernel_self_check();
        for c in &checks {
            println!(
                "ran {:<55} {:>6} cases, worst {:.3} of the bound: {}",
                c.kernel,
                c.cases,
                c.worst,
                if c.passed { "ok" } else { "FAILED" }
            );
        }
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
        // The portable f16 kernel runs everywhere; the best one is among those checked.
        let names: Vec<&str> = checks.iter().map(|c| c.kernel).collect();
        assert!(names.contains(&F16Kernel::Portable.name()));
        assert!(names.contains(&report.f16));
        assert_eq!(
            names.contains(&"batch tile avx512f (f32; f16 rows widened)"),
            batch::available()
        );
    }

    /// simsimd's dispatched f16 kernel, which the scans no longer call: where it accumulates
    /// in half precision (AVX512-FP16, SVE-FP16) it breaks the f32 bound the check enforces;
    /// elsewhere it meets it. Either way this shows the check can tell the two apart.
    #[test]
    fn the_check_catches_half_precision_accumulation() {
        use simsimd::capabilities as caps;
        let mut t = Tally::new("simsimd f16 (dispatched)");
        let mut rng = Values(0x1234_5678_9abc_def1);
        for dim in dims() {
            let (a_bits, a) = to_f16(&rng.vec(dim));
            let (b_bits, b) = to_f16(&rng.vec(dim));
            let cast =
                |v: &[u16]| -> Vec<simsimd::f16> { v.iter().map(|&x| simsimd::f16(x)).collect() };
            let got = simsimd::f16::dot(&cast(&a_bits), &cast(&b_bits)).unwrap_or(f64::NAN);
            t.add(got as f32, &a, &b);
        }
        let half_precision = caps::uses_sapphire() || caps::uses_sve_f16();
        println!(
            "simsimd f16 on this CPU: worst {:.1} of the f32 bound (half precision: {half_precision})",
            t.worst
        );
        if half_precision {
            assert!(t.worst > 10.0, "worst {}", t.worst);
        } else {
            assert!(t.worst <= 1.0, "worst {}", t.worst);
        }
    }

    #[test]
    fn decode_matches_known_values() {
        assert_eq!(decode_f16(0x3c00), 1.0);
        assert_eq!(decode_f16(0xc000), -2.0);
        assert_eq!(decode_f16(0x0001), 2f32.powi(-24));
        assert_eq!(decode_f16(0x7bff), 65504.0);
        assert!(decode_f16(0x7e00).is_nan());
        assert_eq!(decode_f16(0xfc00), f32::NEG_INFINITY);
    }
}
