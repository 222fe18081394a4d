//! The codebook: how an index turns rows into the codes segments keep beside them.
//!
//! Fitted on the rows of the index's first segment with codes, and again on all rows by a
//! full compaction (which rewrites every code), and stored in the catalog (meta key
//! `codebook`, FORMAT.md); every segment's codes use the same one, so first-pass scores are
//! comparable across segments.
//!
//! - centre: the per-dimension mean of those rows (zeros when the index keeps codes
//!   uncentred);
//! - binary code: bit `d` set where `x[d] > centre[d]`;
//! - i8 code: `round(clamp((x[d] - centre[d]) / scale[d], -1, 1) · 127)`, stored plus 128 as a
//!   byte (so that VNNI's u8 × i8 products apply directly), with `scale[d]` the
//!   largest `|x[d] - centre[d]|` of those rows. A query `q` meets i8 codes as `q ∘ scale`:
//!   `Σ q[d]·(x[d] - centre[d]) ≈ Σ (q[d]·scale[d])·code[d] / 127`, and the missing `q·centre`
//!   is the same for every row, so the order is kept.

use xxhash_rust::xxh3::xxh3_64;

const MAGIC: [u8; 4] = *b"XQCB";
const VERSION: u32 = 1;

/// The index-wide centre and i8 scales (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Codebook {
    pub centre: Vec<f32>,
    pub scale: Vec<f32>,
    /// Identifies this codebook in segment footers: xxh3-64 of its record, lowest bit set
    /// (so that it is never 0, which means "no codes").
    pub id: u64,
}

impl Codebook {
    /// Fits a codebook on `rows` (`n × dim`, row-major, `n ≥ 1`).
    pub fn fit(rows: &[f32], dim: usize, centred: bool) -> Codebook {
        let n = (rows.len() / dim).max(1);
        let mut centre = vec![0f64; dim];
        if centred {
            for row in rows.chunks_exact(dim) {
                for (c, &x) in centre.iter_mut().zip(row) {
                    *c += x as f64;
                }
            }
        }
        let centre: Vec<f32> = centre.iter().map(|&c| (c / n as f64) as f32).collect();
        let mut scale = vec![0f32; dim];
        for row in rows.chunks_exact(dim) {
            for ((s, &x), &c) in scale.iter_mut().zip(row).zip(&centre) {
                *s = s.max((x - c).abs());
            }
        }
        for s in &mut scale {
            if !(s.is_finite() && *s > 0.0) {
                *s = 1.0;
            }
        }
        Codebook::new(centre, scale)
    }

    fn new(centre: Vec<f32>, scale: Vec<f32>) -> Codebook {
        let mut c = Codebook {
            centre,
            scale,
            id: 0,
        };
        let bytes = c.body();
        c.id = xxh3_64(&bytes) | 1;
        c
    }

    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12 + 8 * self.centre.len());
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(self.centre.len() as u32).to_le_bytes());
        b.extend_from_slice(bytemuck::cast_slice(&self.centre));
        b.extend_from_slice(bytemuck::cast_slice(&self.scale));
        b
    }

    /// The catalog record: the body, then its xxh3-64.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.body();
        let sum = xxh3_64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    /// Reads a catalog record for an index of dimension `dim`.
    pub fn decode(b: &[u8], dim: usize) -> Result<Codebook, String> {
        let want = 12 + 8 * dim + 8;
        if b.len() != want {
            return Err(format!("codebook is {} bytes; expected {want}", b.len()));
        }
        let (body, sum) = b.split_at(want - 8);
        if xxh3_64(body).to_le_bytes() != sum {
            return Err("codebook checksum mismatch".into());
        }
        if body[0..4] != MAGIC {
            return Err("codebook has a bad magic".into());
        }
        let version = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(format!("codebook version {version} is not supported"));
        }
        if u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize != dim {
            return Err("codebook dimension differs from the index".into());
        }
        let floats = |at: usize| -> Vec<f32> {
            body[at..at + 4 * dim]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect()
        };
        let (centre, scale) = (floats(12), floats(12 + 4 * dim));
        if centre.iter().any(|x| !x.is_finite())
            || scale.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err("codebook holds a non-finite centre or a non-positive scale".into());
        }
        Ok(Codebook::new(centre, scale))
    }

    /// Words of one binary code.
    pub fn words(&self) -> usize {
        self.centre.len().div_ceil(64)
    }

    /// Appends the binary code of `v`.
    pub fn push_bits(&self, v: &[f32], out: &mut Vec<u64>) {
        let at = out.len();
        out.resize(at + self.words(), 0);
        crate::scan::sign_bits(v, &self.centre, &mut out[at..]);
    }

    /// Appends the i8 code of `v`, stored offset by 128 (`code + 128`, 1..=255).
    pub fn push_i8(&self, v: &[f32], out: &mut Vec<u8>) {
        out.extend(
            v.iter()
                .zip(&self.centre)
                .zip(&self.scale)
                .map(|((&x, &c), &s)| {
                    ((((x - c) / s).clamp(-1.0, 1.0) * 127.0).round() as i32 + 128) as u8
                }),
        );
    }

    /// The query as i8 codes meet it (`q ∘ scale`).
    pub fn i8_query(&self, q: &[f32]) -> Vec<f32> {
        q.iter().zip(&self.scale).map(|(a, s)| a * s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_every_flipped_byte_is_refused() {
        let rows: Vec<f32> = (0..40)
            .map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0)
            .collect();
        let cb = Codebook::fit(&rows, 5, true);
        let bytes = cb.encode();
        assert_eq!(Codebook::decode(&bytes, 5).unwrap(), cb);
        assert!(Codebook::decode(&bytes, 6).is_err());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Codebook::decode(&b, 5).is_err(), "flip at {i} accepted");
        }
        assert_eq!(cb.id & 1, 1);
    }

    #[test]
    fn codes_follow_the_centre_and_the_scale() {
        // Two dimensions: one centred at 10 with spread 2, one at 0 with spread 0.5.
        let rows = [8.0, 0.5, 12.0, -0.5, 10.0, 0.0];
        let cb = Codebook::fit(&rows, 2, true);
        assert_eq!(cb.centre, vec![10.0, 0.0]);
        assert_eq!(cb.scale, vec![2.0, 0.5]);
        let mut bits = Vec::new();
        cb.push_bits(&[11.0, -0.1], &mut bits);
        assert_eq!(bits, vec![0b01]);
        let mut i8s = Vec::new();
        cb.push_i8(&[11.0, -0.25], &mut i8s);
        assert_eq!(i8s, vec![128 + 64, 128 - 64]);
        // Out of range clamps.
        i8s.clear();
        cb.push_i8(&[20.0, -9.0], &mut i8s);
        assert_eq!(i8s, vec![255, 1]);
        let uncentred = Codebook::fit(&rows, 2, false);
        assert_eq!(uncentred.centre, vec![0.0, 0.0]);
        assert_eq!(uncentred.scale, vec![12.0, 0.5]);
    }
}
