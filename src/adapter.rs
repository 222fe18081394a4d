//! The query adapter record: a linear map applied to query vectors, its stored form
//! (FORMAT.md, "Query adapter") and what is recorded with it. A leaf that the catalog
//! (`store`) and the index read; training it lives in `distill`, above the index.

use crate::error::{Error, Result};
use rand::SeedableRng;
use std::collections::BTreeMap;

/// A linear query adapter: either a full d × d matrix W, or W = I + A·B with A (d × r) and
/// B (r × d) when trained low-rank.
#[derive(Clone, Debug, PartialEq)]
pub struct Adapter {
    pub(crate) dim: usize,
    /// 0 for a full matrix, r for the low-rank form.
    pub(crate) rank: usize,
    /// Full: W row-major (d·d). Low-rank: A row-major (d·r) then B row-major (r·d).
    pub(crate) w: Vec<f32>,
}

/// Dot product with eight partial sums, so that the loop vectorises.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + rest
}

pub(crate) fn matvec(m: &[f32], cols: usize, x: &[f32]) -> Vec<f32> {
    m.chunks_exact(cols).map(|row| dot(row, x)).collect()
}

impl Adapter {
    /// The identity map (searching with it changes nothing).
    pub fn identity(dim: usize) -> Self {
        let mut w = vec![0f32; dim * dim];
        for i in 0..dim {
            w[i * dim + i] = 1.0;
        }
        Adapter { dim, rank: 0, w }
    }

    /// A low-rank adapter W = I + A·B that starts as the identity: A is zero and B is small
    /// and random (seeded), so that training can move A at once.
    pub fn low_rank(dim: usize, rank: usize, seed: u64) -> Self {
        use rand::Rng;
        let rank = rank.clamp(1, dim.max(1));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let scale = 1.0 / (dim as f32).sqrt();
        let mut w = vec![0f32; dim * rank];
        w.extend((0..rank * dim).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale));
        Adapter { dim, rank, w }
    }

    /// A full adapter from a row-major d × d matrix.
    pub fn from_matrix(dim: usize, w: Vec<f32>) -> Result<Self> {
        if w.len() != dim * dim || dim == 0 {
            return Err(Error::InvalidArgument(format!(
                "an adapter of dimension {dim} needs {} weights, got {}",
                dim * dim,
                w.len()
            )));
        }
        let a = Adapter { dim, rank: 0, w };
        a.check_finite()?;
        Ok(a)
    }

    pub(crate) fn check_finite(&self) -> Result<()> {
        match self.w.iter().position(|x| !x.is_finite()) {
            Some(i) => Err(Error::InvalidArgument(format!(
                "adapter weight {i} is {}",
                self.w[i]
            ))),
            None => Ok(()),
        }
    }

    /// Dimension d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rank r of a low-rank adapter; `None` for a full matrix.
    pub fn rank(&self) -> Option<usize> {
        (self.rank > 0).then_some(self.rank)
    }

    /// The trainable parameters: W row-major, or A then B for the low-rank form.
    pub fn weights(&self) -> &[f32] {
        &self.w
    }

    /// The full d × d matrix W, row-major (built from A and B for the low-rank form).
    pub fn matrix(&self) -> Vec<f32> {
        if self.rank == 0 {
            return self.w.clone();
        }
        let (d, r) = (self.dim, self.rank);
        let (a, b) = self.w.split_at(d * r);
        let mut m = Adapter::identity(d).w;
        for i in 0..d {
            for k in 0..r {
                let aik = a[i * r + k];
                m[i * d..(i + 1) * d]
                    .iter_mut()
                    .zip(&b[k * d..(k + 1) * d])
                    .for_each(|(x, bk)| *x += aik * bk);
            }
        }
        m
    }

    /// Frobenius distance of W from the identity (0 for an untrained adapter).
    pub fn distance_from_identity(&self) -> f64 {
        let m = self.matrix();
        let d = self.dim;
        m.iter()
            .enumerate()
            .map(|(k, &x)| {
                let id = if k / d == k % d { 1.0 } else { 0.0 };
                (x as f64 - id).powi(2)
            })
            .sum::<f64>()
            .sqrt()
    }

    /// W q.
    pub fn apply(&self, q: &[f32]) -> Vec<f32> {
        if self.rank == 0 {
            return matvec(&self.w, self.dim, q);
        }
        let (a, b) = self.w.split_at(self.dim * self.rank);
        let bq = matvec(b, self.dim, q);
        let abq = matvec(a, self.rank, &bq);
        q.iter().zip(abq).map(|(x, y)| x + y).collect()
    }

    /// The stored form (FORMAT.md, "Query adapter"): a header, the JSON `info`, the weights
    /// as little-endian f32 and an xxh3-64 checksum of everything before it.
    pub fn to_bytes(&self, info: &AdapterInfo) -> Vec<u8> {
        let json = serde_json::to_vec(info).expect("adapter info serialises");
        let mut out = Vec::with_capacity(32 + json.len() + self.w.len() * 4 + 8);
        out.extend_from_slice(ADAPTER_MAGIC);
        out.extend_from_slice(&ADAPTER_VERSION.to_le_bytes());
        out.push(u8::from(self.rank > 0));
        out.push(0);
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.rank as u32).to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(bytemuck::cast_slice(&self.w));
        let sum = xxhash_rust::xxh3::xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Parses [`Adapter::to_bytes`]; the reason on failure names what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<(Adapter, AdapterInfo), String> {
        if bytes.len() < 28 {
            return Err(format!(
                "query adapter record of {} bytes is too short",
                bytes.len()
            ));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        if &body[..4] != ADAPTER_MAGIC {
            return Err("query adapter record has a foreign magic".into());
        }
        let stored = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
        if xxhash_rust::xxh3::xxh3_64(body) != stored {
            return Err("query adapter record fails its checksum".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().expect("4 bytes"));
        let version = u16::from_le_bytes([body[4], body[5]]);
        if version != ADAPTER_VERSION {
            return Err(format!(
                "query adapter version {version} is not supported (this build reads {ADAPTER_VERSION})"
            ));
        }
        let low_rank = body[6] == 1;
        let (dim, rank, json_len) = (u32_at(8) as usize, u32_at(12) as usize, u32_at(16) as usize);
        if dim == 0 || dim > crate::types::MAX_DIM || (low_rank != (rank > 0)) || rank > dim {
            return Err(format!("query adapter has dimension {dim} and rank {rank}"));
        }
        let n = if low_rank { 2 * dim * rank } else { dim * dim };
        if body.len() != 20 + json_len + n * 4 {
            return Err("query adapter record has the wrong length".into());
        }
        let info: AdapterInfo = serde_json::from_slice(&body[20..20 + json_len])
            .map_err(|e| format!("query adapter info: {e}"))?;
        let w: Vec<f32> = body[20 + json_len..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let a = Adapter { dim, rank, w };
        a.check_finite().map_err(|e| e.to_string())?;
        Ok((a, info))
    }
}

/// The query adapters of an index: one per query language and/or one shared by all queries.
/// A query uses its language's adapter, else the shared one, else none (the identity).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryAdapters {
    /// For queries whose language has no adapter of its own, or that name no language.
    pub shared: Option<Adapter>,
    /// By query language.
    pub by_lang: BTreeMap<String, Adapter>,
}

impl QueryAdapters {
    /// The adapter a query in `lang` uses, if any.
    pub fn select(&self, lang: Option<&str>) -> Option<&Adapter> {
        lang.and_then(|l| self.by_lang.get(l))
            .or(self.shared.as_ref())
    }

    /// The query vector as searched: mapped by [`QueryAdapters::select`]'s adapter, or
    /// unchanged.
    pub fn apply(&self, lang: Option<&str>, q: &[f32]) -> Vec<f32> {
        match self.select(lang) {
            Some(a) => a.apply(q),
            None => q.to_vec(),
        }
    }

    /// True when no adapter is held (every query is searched as encoded).
    pub fn is_empty(&self) -> bool {
        self.shared.is_none() && self.by_lang.is_empty()
    }
}

/// An adapter as stored in an index, with what was recorded about it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredAdapter {
    /// The weights.
    pub adapter: Adapter,
    /// Where it came from.
    pub info: AdapterInfo,
    pub(crate) checksum: u64,
    pub(crate) len: usize,
}

const ADAPTER_MAGIC: &[u8; 4] = b"XQAD";
const ADAPTER_VERSION: u16 = 1;

/// What is recorded with a stored adapter: where it came from and how well it trained.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdapterInfo {
    /// The teacher that scored the training candidates (see [`Teacher::name`](crate::distill::Teacher::name)).
    pub teacher: String,
    /// The encoder fingerprint the adapter was trained for.
    pub model_fingerprint: Option<String>,
    /// Training examples used (before the held-out split).
    pub examples: usize,
    /// Held-out KL of the identity.
    pub initial_holdout_kl: f64,
    /// Held-out KL of the stored weights.
    pub holdout_kl: f64,
    /// The epoch whose weights were kept (0: none beat the identity).
    pub best_epoch: usize,
    /// Held-out MRR@10 (queries searched over the whole index) of the identity.
    #[serde(default)]
    pub initial_holdout_mrr: Option<f64>,
    /// Held-out MRR@10 with the stored weights.
    #[serde(default)]
    pub holdout_mrr: Option<f64>,
    /// `"scores"` (KL over candidates) or `"embedding"` (closed-form fit to the teacher's
    /// embedding); absent in records written before the choice existed (scores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    /// The identity-penalty weight of an embedding fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f32>,
    /// The query language the adapter serves (`None`: every query without its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Seconds since the Unix epoch when the adapter was stored.
    pub created_unix: u64,
}
