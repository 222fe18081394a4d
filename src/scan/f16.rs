//! Dot products of f16 rows with an f32 query, accumulated in f32 on every CPU.
//!
//! Each f16 value is widened to f32 (exact) before it is multiplied; products and sums are
//! f32 fused multiply-adds. The kernel is chosen here, not by simsimd's dispatcher: simsimd's
//! own f16 dot product accumulates in half precision on CPUs with AVX512-FP16 (Sapphire
//! Rapids and later) and on Arm SVE with FP16, which made f16 scores depend on the
//! processor. All variants below keep 16 (AVX-512), 8 (AVX2) or 8 (portable) running f32
//! sums over the dimensions and add them with a fixed halving tree, so a row's score does
//! not depend on how many rows are scored together.

use std::sync::OnceLock;

/// One implementation of the f16 row · f32 query dot product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F16Kernel {
    /// AVX-512F: 16 lanes, `vcvtph2ps` widening, f32 FMA.
    Avx512,
    /// AVX2 + FMA + F16C: 8 lanes, `vcvtph2ps` widening, f32 FMA.
    Avx2,
    /// Plain Rust (any CPU, Arm included): widening through the `half` crate, eight f32
    /// running sums that the compiler vectorises.
    Portable,
}

impl F16Kernel {
    /// Every variant this build knows, fastest first.
    pub const ALL: [F16Kernel; 3] = [F16Kernel::Avx512, F16Kernel::Avx2, F16Kernel::Portable];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            F16Kernel::Avx512 => "f16 avx512f (widen, f32 fma)",
            F16Kernel::Avx2 => "f16 avx2+fma+f16c (widen, f32 fma)",
            F16Kernel::Portable => "f16 portable (widen, f32)",
        }
    }

    /// Whether the running CPU can execute this variant.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            F16Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            F16Kernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(not(target_arch = "x86_64"))]
            F16Kernel::Avx512 | F16Kernel::Avx2 => false,
            F16Kernel::Portable => true,
        }
    }

    /// The variant scans use on this CPU (decided once).
    pub fn best() -> F16Kernel {
        static BEST: OnceLock<F16Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            F16Kernel::ALL
                .into_iter()
                .find(|k| k.available())
                .unwrap_or(F16Kernel::Portable)
        })
    }

    /// Scores each `dim`-long row of `rows` (f16 bits) against `q` (`dim` f32 values) into
    /// `out`, one score per row.
    ///
    /// # Panics
    /// If this variant is not [`available`](Self::available), or `rows` does not hold
    /// `out.len()` rows of `q.len()` values.
    pub fn scores(self, rows: &[u16], q: &[f32], out: &mut [f32]) {
        let dim = q.len();
        assert_eq!(rows.len(), dim * out.len(), "row/query lengths disagree");
        if dim == 0 {
            out.fill(0.0);
            return;
        }
        assert!(
            self.available(),
            "{} is not available on this CPU",
            self.name()
        );
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F was checked just above; lengths were checked above.
            F16Kernel::Avx512 => unsafe { x86::scores_avx512(rows, q, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2, FMA and F16C were checked just above; lengths were checked above.
            F16Kernel::Avx2 => unsafe { x86::scores_avx2(rows, q, out) },
            #[cfg(not(target_arch = "x86_64"))]
            F16Kernel::Avx512 | F16Kernel::Avx2 => unreachable!("checked by available()"),
            F16Kernel::Portable => scores_portable(rows, q, out),
        }
    }
}

/// Lanes of the portable kernel.
const PORTABLE_LANES: usize = 8;

fn scores_portable(rows: &[u16], q: &[f32], out: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    let dim = q.len();
    let mut wide = [0f32; 64];
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(dim)) {
        let mut acc = [0f32; PORTABLE_LANES];
        for (rc, qc) in row.chunks(wide.len()).zip(q.chunks(wide.len())) {
            let w = &mut wide[..rc.len()];
            let src: &[half::f16] = bytemuck::cast_slice(rc);
            src.convert_to_f32_slice(w);
            let mut wc = w.chunks_exact(PORTABLE_LANES);
            let mut qcc = qc.chunks_exact(PORTABLE_LANES);
            for (a, b) in (&mut wc).zip(&mut qcc) {
                for l in 0..PORTABLE_LANES {
                    acc[l] += a[l] * b[l];
                }
            }
            for (l, (a, b)) in wc.remainder().iter().zip(qcc.remainder()).enumerate() {
                acc[l] += a * b;
            }
        }
        // The same halving tree as the SIMD variants.
        let mut width = PORTABLE_LANES;
        while width > 1 {
            width /= 2;
            for l in 0..width {
                acc[l] += acc[l + width];
            }
        }
        *o = acc[0];
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Rows scored side by side, so that their FMA chains overlap.
    const GROUP: usize = 4;

    /// # Safety
    /// The CPU must support AVX-512F; `rows.len() == q.len() * out.len()`, `q` non-empty.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scores_avx512(rows: &[u16], q: &[f32], out: &mut [f32]) {
        let dim = q.len();
        // The query's tail padded with zeros to a whole register.
        let mut q_tail = [0f32; 16];
        q_tail[..dim % 16].copy_from_slice(&q[dim / 16 * 16..]);
        let whole = out.len() / GROUP * GROUP;
        let (head, rest) = out.split_at_mut(whole);
        for (g, o) in head.chunks_exact_mut(GROUP).enumerate() {
            let scores = rows_avx512::<GROUP>(&rows[g * GROUP * dim..], q, &q_tail);
            o.copy_from_slice(&scores);
        }
        for (i, o) in rest.iter_mut().enumerate() {
            *o = rows_avx512::<1>(&rows[(whole + i) * dim..], q, &q_tail)[0];
        }
    }

    /// Scores the first `N` rows of `rows` (each `q.len()` long).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn rows_avx512<const N: usize>(rows: &[u16], q: &[f32], q_tail: &[f32; 16]) -> [f32; N] {
        let dim = q.len();
        let full = dim / 16;
        let tail = dim % 16;
        debug_assert!(rows.len() >= N * dim);
        let mut acc = [_mm512_setzero_ps(); N];
        for c in 0..full {
            // SAFETY: c * 16 + 16 <= dim, so the query load is in bounds.
            let qv = _mm512_loadu_ps(q.as_ptr().add(c * 16));
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: row i < N lies inside `rows`, and c * 16 + 16 <= dim.
                let p = rows.as_ptr().add(i * dim + c * 16);
                let rv = _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()));
                *a = _mm512_fmadd_ps(rv, qv, *a);
            }
        }
        if tail > 0 {
            let qv = _mm512_loadu_ps(q_tail.as_ptr());
            let mut r_tail = [0u16; 16];
            for (i, a) in acc.iter_mut().enumerate() {
                let start = i * dim + full * 16;
                r_tail[..tail].copy_from_slice(&rows[start..start + tail]);
                let rv = _mm512_cvtph_ps(_mm256_loadu_si256(r_tail.as_ptr().cast()));
                *a = _mm512_fmadd_ps(rv, qv, *a);
            }
        }
        let mut scores = [0f32; N];
        for (s, a) in scores.iter_mut().zip(acc) {
            *s = reduce16(a);
        }
        scores
    }

    /// Halving tree over 16 lanes: 8 + 8, 4 + 4, 2 + 2, 1 + 1.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn reduce16(a: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(a);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
        reduce8(_mm256_add_ps(lo, hi))
    }

    /// Halving tree over 8 lanes: 4 + 4, 2 + 2, 1 + 1.
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn reduce8(a: __m256) -> f32 {
        let x = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        let x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
        _mm_cvtss_f32(x)
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `rows.len() == q.len() * out.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn scores_avx2(rows: &[u16], q: &[f32], out: &mut [f32]) {
        let dim = q.len();
        let mut q_tail = [0f32; 8];
        q_tail[..dim % 8].copy_from_slice(&q[dim / 8 * 8..]);
        let whole = out.len() / GROUP * GROUP;
        let (head, rest) = out.split_at_mut(whole);
        for (g, o) in head.chunks_exact_mut(GROUP).enumerate() {
            let scores = rows_avx2::<GROUP>(&rows[g * GROUP * dim..], q, &q_tail);
            o.copy_from_slice(&scores);
        }
        for (i, o) in rest.iter_mut().enumerate() {
            *o = rows_avx2::<1>(&rows[(whole + i) * dim..], q, &q_tail)[0];
        }
    }

    /// Scores the first `N` rows of `rows` (each `q.len()` long).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn rows_avx2<const N: usize>(rows: &[u16], q: &[f32], q_tail: &[f32; 8]) -> [f32; N] {
        let dim = q.len();
        let full = dim / 8;
        let tail = dim % 8;
        debug_assert!(rows.len() >= N * dim);
        let mut acc = [_mm256_setzero_ps(); N];
        for c in 0..full {
            // SAFETY: c * 8 + 8 <= dim, so the query load is in bounds.
            let qv = _mm256_loadu_ps(q.as_ptr().add(c * 8));
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: row i < N lies inside `rows`, and c * 8 + 8 <= dim.
                let p = rows.as_ptr().add(i * dim + c * 8);
                let rv = _mm256_cvtph_ps(_mm_loadu_si128(p.cast()));
                *a = _mm256_fmadd_ps(rv, qv, *a);
            }
        }
        if tail > 0 {
            let qv = _mm256_loadu_ps(q_tail.as_ptr());
            let mut r_tail = [0u16; 8];
            for (i, a) in acc.iter_mut().enumerate() {
                let start = i * dim + full * 8;
                r_tail[..tail].copy_from_slice(&rows[start..start + tail]);
                let rv = _mm256_cvtph_ps(_mm_loadu_si128(r_tail.as_ptr().cast()));
                *a = _mm256_fmadd_ps(rv, qv, *a);
            }
        }
        let mut scores = [0f32; N];
        for (s, a) in scores.iter_mut().zip(acc) {
            *s = reduce8(a);
        }
        scores
    }
}
