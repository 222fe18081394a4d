//! Dot products of i8 codes stored offset by 128 (as u8) with an i8 query: the i8 first pass.
//!
//! `Σ (u[d] - 128)·q[d] = Σ u[d]·q[d] - 128·Σ q[d]`: the first sum is what VNNI's `vpdpbusd`
//! (u8 × i8) computes, the second is one number per query. Every variant returns the same
//! integer.

/// Writes the integer dot product of each row (`q.len()` bytes) with `q`, minus
/// `128·Σq`, divided by `divisor`, into `out`.
pub(crate) fn scores(rows: &[u8], q: &[i8], divisor: f32, out: &mut [f32]) {
    let dim = q.len();
    assert!(rows.len() >= out.len() * dim, "rows shorter than out");
    let correction: i32 = 128 * q.iter().map(|&x| x as i32).sum::<i32>();
    #[cfg(target_arch = "x86_64")]
    if vnni_available() {
        // SAFETY: the CPU has AVX-512F/BW and AVX-512 VNNI (checked above); the assert
        // keeps every row inside `rows`.
        unsafe { avx512::scores(rows, q, correction, divisor, out) };
        return;
    }
    portable(rows, q, divisor, out);
}

/// The reference: plain integer loops.
pub(crate) fn portable(rows: &[u8], q: &[i8], divisor: f32, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(q.len())) {
        let dot: i32 = row
            .iter()
            .zip(q)
            .map(|(&u, &b)| (u as i32 - 128) * b as i32)
            .sum();
        *o = dot as f32 / divisor;
    }
}

/// Whether the AVX-512 VNNI kernel runs on this CPU.
pub(crate) fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OK.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn scores(
        rows: &[u8],
        q: &[i8],
        correction: i32,
        divisor: f32,
        out: &mut [f32],
    ) {
        let dim = q.len();
        let full = dim / 64;
        let rest = dim % 64;
        let tail_mask: __mmask64 = if rest == 0 { 0 } else { (1u64 << rest) - 1 };
        let qv: Vec<__m512i> = (0..full)
            .map(|c| _mm512_loadu_si512(q.as_ptr().add(c * 64) as *const __m512i))
            .collect();
        let qt = _mm512_maskz_loadu_epi8(tail_mask, q.as_ptr().add(full * 64));
        for (r, o) in out.iter_mut().enumerate() {
            let row = rows.as_ptr().add(r * dim);
            let mut acc = _mm512_setzero_si512();
            for (c, &qc) in qv.iter().enumerate() {
                // SAFETY: row r has `dim` bytes inside `rows` (checked by the caller).
                let x = _mm512_loadu_si512(row.add(c * 64) as *const __m512i);
                acc = _mm512_dpbusd_epi32(acc, x, qc);
            }
            if rest != 0 {
                // SAFETY: the mask reads only the row's last `rest` bytes.
                let x = _mm512_maskz_loadu_epi8(tail_mask, row.add(full * 64) as *const i8);
                acc = _mm512_dpbusd_epi32(acc, x, qt);
            }
            let dot = _mm512_reduce_add_epi32(acc) - correction;
            *o = dot as f32 / divisor;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_simd_kernel_returns_the_reference_integers(
            dim in 1usize..300,
            seed in any::<u64>(),
        ) {
            let mut x = seed | 1;
            let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
            let n = 9;
            // Codes of -127..=127 offset by 128, the query's full i8 range.
            let rows: Vec<u8> = (0..n * dim).map(|_| (next() % 255) as u8 + 1).collect();
            let q: Vec<i8> = (0..dim).map(|_| (next() % 255) as i8).collect();
            let mut a = vec![0f32; n];
            let mut b = vec![0f32; n];
            super::scores(&rows, &q, 3.0, &mut a);
            super::portable(&rows, &q, 3.0, &mut b);
            prop_assert_eq!(a, b);
        }
    }
}
