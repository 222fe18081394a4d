//! Hamming distances between 1-bit codes: the binary first pass.
//!
//! A code is one bit per dimension (bit `d % 64` of word `d / 64`; padding bits are zero),
//! `words = dim.div_ceil(64)` words a row. Codes are stored in blocks of [`BLOCK`] rows,
//! word-interleaved: word `j` of row `r` sits at `(r / 8) · 8 · words + j · 8 + r % 8`, so
//! that one 512-bit load holds the same word of eight rows (the last block is padded with
//! zero rows). Every variant counts the same integers; the score of a row is minus its
//! distance, so higher is better as for dot products.

use std::ops::Range;

/// Rows per interleaved block.
pub const BLOCK: usize = 8;

/// Words of a whole number of blocks holding `rows` rows of `words` words.
pub(crate) fn blocked_len(rows: usize, words: usize) -> Option<usize> {
    rows.div_ceil(BLOCK).checked_mul(BLOCK)?.checked_mul(words)
}

/// Appends one block: `codes` holds up to 8 rows of `words` words, row after row; missing
/// rows are zero.
pub(crate) fn interleave_block(codes: &[u64], words: usize, out: &mut Vec<u64>) {
    let at = out.len();
    out.resize(at + BLOCK * words, 0);
    for (r, row) in codes.chunks_exact(words).enumerate().take(BLOCK) {
        for (j, &w) in row.iter().enumerate() {
            out[at + j * BLOCK + r] = w;
        }
    }
}

/// One implementation of the row · query Hamming distance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitsKernel {
    /// AVX-512 with VPOPCNTDQ: one word of eight rows per instruction.
    Avx512,
    /// x86-64 `popcnt` on 64-bit words.
    Popcnt,
    /// Plain Rust (`count_ones`), any CPU.
    Portable,
}

impl BitsKernel {
    /// Every variant this build knows, fastest first.
    pub const ALL: [BitsKernel; 3] = [BitsKernel::Avx512, BitsKernel::Popcnt, BitsKernel::Portable];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            BitsKernel::Avx512 => "binary avx512 vpopcntdq (8 rows at a time)",
            BitsKernel::Popcnt => "binary popcnt (64-bit words)",
            BitsKernel::Portable => "binary portable (count_ones)",
        }
    }

    /// Whether the running CPU can execute this variant.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            BitsKernel::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            }
            #[cfg(target_arch = "x86_64")]
            BitsKernel::Popcnt => std::arch::is_x86_feature_detected!("popcnt"),
            #[cfg(not(target_arch = "x86_64"))]
            BitsKernel::Avx512 | BitsKernel::Popcnt => false,
            BitsKernel::Portable => true,
        }
    }

    /// The fastest variant this CPU runs.
    pub fn best() -> BitsKernel {
        static BEST: std::sync::OnceLock<BitsKernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            BitsKernel::ALL
                .into_iter()
                .find(|k| k.available())
                .unwrap_or(BitsKernel::Portable)
        })
    }

    /// Writes minus the Hamming distance to `q` of each row in `range` of the blocked
    /// `codes` (rows of `q.len()` words) into `out` (`range.len()` scores).
    pub fn scores(self, codes: &[u64], range: Range<usize>, q: &[u64], out: &mut [f32]) {
        let words = q.len();
        assert_eq!(out.len(), range.len(), "one score per row");
        assert!(
            blocked_len(range.end, words).is_some_and(|n| n <= codes.len()),
            "codes shorter than the rows asked for"
        );
        match self {
            #[cfg(target_arch = "x86_64")]
            BitsKernel::Avx512 if self.available() => {
                // SAFETY: `available` checked that this CPU has AVX-512F and VPOPCNTDQ; the
                // assert above keeps every block of the range inside `codes`.
                unsafe { avx512::scores(codes, range, q, out) }
            }
            #[cfg(target_arch = "x86_64")]
            BitsKernel::Popcnt if self.available() => {
                // SAFETY: `available` checked that this CPU has popcnt.
                unsafe { scores_popcnt(codes, range, q, out) }
            }
            _ => scores_generic(codes, range, q, out),
        }
    }
}

#[inline(always)]
fn scores_generic(codes: &[u64], range: Range<usize>, q: &[u64], out: &mut [f32]) {
    let words = q.len();
    let mut r = range.start;
    let mut o = 0;
    while r < range.end {
        if r.is_multiple_of(BLOCK) && range.end - r >= BLOCK {
            // A whole block: the same word of its 8 rows is contiguous.
            let block = &codes[r * words..(r + BLOCK) * words];
            let mut d = [0u32; BLOCK];
            for (w, &qw) in block.chunks_exact(BLOCK).zip(q) {
                for (acc, &x) in d.iter_mut().zip(w) {
                    *acc += (x ^ qw).count_ones();
                }
            }
            for (s, &d) in out[o..o + BLOCK].iter_mut().zip(&d) {
                *s = -(d as f32);
            }
            r += BLOCK;
            o += BLOCK;
        } else {
            let base = (r / BLOCK) * BLOCK * words + r % BLOCK;
            let mut d = 0u32;
            for (j, &qw) in q.iter().enumerate() {
                d += (codes[base + j * BLOCK] ^ qw).count_ones();
            }
            out[o] = -(d as f32);
            r += 1;
            o += 1;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn scores_popcnt(codes: &[u64], range: Range<usize>, q: &[u64], out: &mut [f32]) {
    scores_generic(codes, range, q, out)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::BLOCK;
    use std::arch::x86_64::*;
    use std::ops::Range;

    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub(super) unsafe fn scores(codes: &[u64], range: Range<usize>, q: &[u64], out: &mut [f32]) {
        let words = q.len();
        let mut r = range.start;
        let mut o = 0;
        // A leading partial block row by row.
        while !r.is_multiple_of(BLOCK) && r < range.end {
            super::scores_generic(codes, r..r + 1, q, &mut out[o..o + 1]);
            r += 1;
            o += 1;
        }
        let mut lanes = [0f32; BLOCK];
        while r < range.end {
            let block = codes.as_ptr().add((r / BLOCK) * BLOCK * words);
            let mut acc = _mm512_setzero_si512();
            for (j, &qw) in q.iter().enumerate() {
                // SAFETY: the caller checked that whole blocks up to `range.end` lie in
                // `codes`; word j of this block's 8 rows is 8 contiguous words.
                let x = _mm512_loadu_epi64(block.add(j * BLOCK) as *const i64);
                let c = _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_set1_epi64(qw as i64)));
                acc = _mm512_add_epi64(acc, c);
            }
            let d = _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(acc));
            let neg = _mm256_sub_ps(_mm256_setzero_ps(), d);
            let n = (range.end - r).min(BLOCK);
            if n == BLOCK {
                // SAFETY: `o + 8 <= out.len()` since 8 rows of the range remain.
                _mm256_storeu_ps(out.as_mut_ptr().add(o), neg);
            } else {
                _mm256_storeu_ps(lanes.as_mut_ptr(), neg);
                out[o..o + n].copy_from_slice(&lanes[..n]);
            }
            r += n;
            o += n;
        }
    }
}

/// Sets bit `d` of the code where `v[d] > centre[d]`, into `out` (`dim.div_ceil(64)` words).
pub(crate) fn sign_bits(v: &[f32], centre: &[f32], out: &mut [u64]) {
    out.iter_mut().for_each(|w| *w = 0);
    for (d, (&x, &c)) in v.iter().zip(centre).enumerate() {
        if x > c {
            out[d / 64] |= 1 << (d % 64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_variant_counts_the_reference_distance(
            words in 1usize..9,
            n in 1usize..60,
            start in 0usize..20,
            seed in any::<u64>(),
        ) {
            let mut x = seed | 1;
            let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
            let start = start.min(n - 1);
            let plain: Vec<u64> = (0..n * words).map(|_| next()).collect();
            let q: Vec<u64> = (0..words).map(|_| next()).collect();
            let mut codes = Vec::new();
            for block in plain.chunks(BLOCK * words) {
                interleave_block(block, words, &mut codes);
            }
            prop_assert_eq!(codes.len(), blocked_len(n, words).unwrap());
            let reference: Vec<f32> = plain
                .chunks_exact(words)
                .skip(start)
                .map(|r| {
                    let mut d = 0;
                    for (a, b) in r.iter().zip(&q) {
                        for bit in 0..64 {
                            d += ((a >> bit) & 1 != (b >> bit) & 1) as i32;
                        }
                    }
                    -(d as f32)
                })
                .collect();
            for k in BitsKernel::ALL.into_iter().filter(|k| k.available()) {
                let mut out = vec![0f32; n - start];
                k.scores(&codes, start..n, &q, &mut out);
                prop_assert_eq!(&out, &reference, "{}", k.name());
            }
        }
    }

    #[test]
    fn sign_bits_sets_the_dimensions_above_the_centre() {
        let v: Vec<f32> = (0..70)
            .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
            .collect();
        let centre = vec![0.0; 70];
        let mut out = vec![u64::MAX; 2];
        sign_bits(&v, &centre, &mut out);
        for d in 0..128 {
            let set = out[d / 64] >> (d % 64) & 1 == 1;
            assert_eq!(set, d < 70 && d % 3 == 0, "bit {d}");
        }
    }
}
