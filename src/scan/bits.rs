//! Hamming distances between 1-bit codes: the binary first pass.
//!
//! A code is one bit per dimension (bit `d % 64` of word `d / 64`; padding bits are zero),
//! so a row of `dim` components takes `dim.div_ceil(64)` words. Every variant counts the
//! same integers; the score of a row is minus its distance, so higher is better as for dot
//! products.

/// One implementation of the row · query Hamming distance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitsKernel {
    /// x86-64 `popcnt` on 64-bit words.
    Popcnt,
    /// Plain Rust (`count_ones`), any CPU.
    Portable,
}

impl BitsKernel {
    /// Every variant this build knows, fastest first.
    pub const ALL: [BitsKernel; 2] = [BitsKernel::Popcnt, BitsKernel::Portable];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            BitsKernel::Popcnt => "binary popcnt (64-bit words)",
            BitsKernel::Portable => "binary portable (count_ones)",
        }
    }

    /// Whether the running CPU can execute this variant.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            BitsKernel::Popcnt => std::arch::is_x86_feature_detected!("popcnt"),
            #[cfg(not(target_arch = "x86_64"))]
            BitsKernel::Popcnt => false,
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

    /// Writes minus the Hamming distance of each row of `rows` (`out.len()` rows of
    /// `q.len()` words) to `q` into `out`.
    pub fn scores(self, rows: &[u64], q: &[u64], out: &mut [f32]) {
        let words = q.len();
        assert!(rows.len() >= out.len() * words, "rows shorter than out");
        match self {
            #[cfg(target_arch = "x86_64")]
            BitsKernel::Popcnt if self.available() => {
                // SAFETY: `available` checked that this CPU has popcnt.
                unsafe { scores_popcnt(rows, q, out) }
            }
            _ => scores_portable(rows, q, out),
        }
    }
}

#[inline(always)]
fn scores_generic(rows: &[u64], q: &[u64], out: &mut [f32]) {
    let words = q.len();
    if words == 6 {
        // The default model's 384 dimensions: a fixed trip count the compiler unrolls.
        let q: &[u64; 6] = q.try_into().expect("6 words");
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(6)) {
            let mut d = 0u32;
            for i in 0..6 {
                d += (row[i] ^ q[i]).count_ones();
            }
            *o = -(d as f32);
        }
        return;
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(words)) {
        let d: u32 = row.iter().zip(q).map(|(a, b)| (a ^ b).count_ones()).sum();
        *o = -(d as f32);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn scores_popcnt(rows: &[u64], q: &[u64], out: &mut [f32]) {
    scores_generic(rows, q, out)
}

fn scores_portable(rows: &[u64], q: &[u64], out: &mut [f32]) {
    scores_generic(rows, q, out)
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
            seed in any::<u64>(),
        ) {
            let mut x = seed | 1;
            let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
            let n = 37;
            let rows: Vec<u64> = (0..n * words).map(|_| next()).collect();
            let q: Vec<u64> = (0..words).map(|_| next()).collect();
            let reference: Vec<f32> = rows
                .chunks_exact(words)
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
                let mut out = vec![0f32; n];
                k.scores(&rows, &q, &mut out);
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
