//! The decoder's key/value cache: tensors kept between steps, grown in chunks, compacted
//! when prompts finish, and buffers pooled across waves.

use super::manifest::{model_err, DECODER, DECODER_WITH_PAST};
use super::run::{Generator, Timers};
use crate::error::Result;
use ort::value::{DynValue, Tensor};

/// Key/value tensors carried between decoder steps.
pub(super) struct Pasts {
    /// Self-attention key/value per layer (`2 * layers`, key then value).
    pub(super) decoder: Vec<DynValue>,
    /// Cross-attention key/value per layer, from the first step.
    pub(super) encoder: Vec<DynValue>,
    /// With an in-place cache (`decoder` then empty): the self-attention key/values.
    pub(super) cache: Option<CacheBuffers>,
    /// Positions of the self-attention cache that hold key/values.
    pub(super) filled: usize,
}

/// An in-place self-attention cache: one buffer per layer and key/value (key then value),
/// each `[rows, heads, cap, d]`, the first `filled` positions of every (row, head) in use
/// and the rest zeros. Each buffer's allocation holds the longest query, so growing lays
/// it out again in place; buffers come from, and go back to, the generator's pool.
pub(super) struct CacheBuffers {
    pub(super) rows: usize,
    pub(super) heads: usize,
    pub(super) d: usize,
    pub(super) cap: usize,
    pub(super) data: Vec<Vec<f32>>,
}

impl CacheBuffers {
    /// Lays every buffer out again for `cap` positions per (row, head), in place: blocks
    /// move back to front (each lands at or after where it was), the new room is zeroed.
    pub(super) fn grow(&mut self, cap: usize) {
        let (old, d, blocks) = (self.cap, self.d, self.rows * self.heads);
        for buf in &mut self.data {
            buf.resize(blocks * cap * d, 0.0);
            for i in (0..blocks).rev() {
                buf.copy_within(i * old * d..(i + 1) * old * d, i * cap * d);
                buf[(i * cap + old) * d..(i + 1) * cap * d].fill(0.0);
            }
        }
        self.cap = cap;
    }

    /// Keeps the rows `keep` (ascending), in that order, in place.
    pub(super) fn keep_rows(&mut self, keep: &[usize]) {
        let block = self.heads * self.cap * self.d;
        for buf in &mut self.data {
            for (k, &r) in keep.iter().enumerate() {
                if k != r {
                    buf.copy_within(r * block..(r + 1) * block, k * block);
                }
            }
            buf.truncate(keep.len() * block);
        }
        self.rows = keep.len();
    }
}

/// Positions an in-place self-attention cache grows by when it is full: a 31-token query
/// moves 8 + 16 + 24 positions instead of copying the whole cache every step, and the
/// attention reads at most 7 spare positions.
pub(super) const CACHE_CHUNK: usize = 8;

/// Copies the given rows (first dimension) of a contiguous tensor into a new tensor.
pub(super) fn gather_rows<T>(
    data: &[T],
    shape: impl Into<Vec<usize>>,
    rows: &[usize],
) -> ort::Result<DynValue>
where
    T: ort::value::PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static,
{
    let mut shape: Vec<usize> = shape.into();
    let per = shape[1..].iter().product::<usize>();
    let mut out = Vec::with_capacity(rows.len() * per);
    for &r in rows {
        out.extend_from_slice(&data[r * per..(r + 1) * per]);
    }
    shape[0] = rows.len();
    Ok(Tensor::from_array((shape, out))?.into_dyn())
}

impl Generator {
    pub(super) fn empty_pasts(&self, b: usize) -> Result<Vec<(String, DynValue)>> {
        let c = &self.config;
        self.past_names()
            .into_iter()
            .map(|n| {
                let t = Tensor::from_array(([b, c.heads, 0, c.head_dim], Vec::<f32>::new()))
                    .map_err(|e| self.ort_err(e))?;
                Ok((n, t.into_dyn()))
            })
            .collect()
    }

    /// Takes the `present.*` outputs of a step: decoder key/values, and on the first step the
    /// encoder (cross-attention) ones.
    pub(super) fn take_presents(
        &self,
        out: &mut ort::session::SessionOutputs<'_>,
        file: &str,
        encoder: bool,
    ) -> Result<(Vec<DynValue>, Vec<DynValue>)> {
        let layers = self.config.layers;
        let mut dec = Vec::with_capacity(2 * layers);
        let mut enc = Vec::with_capacity(if encoder { 2 * layers } else { 0 });
        for l in 0..layers {
            for kv in ["key", "value"] {
                let name = format!("present.{l}.decoder.{kv}");
                dec.push(
                    out.remove(&name).ok_or_else(|| {
                        model_err(&self.dir.join(file), format!("no output {name}"))
                    })?,
                );
                if encoder {
                    let name = format!("present.{l}.encoder.{kv}");
                    enc.push(out.remove(&name).ok_or_else(|| {
                        model_err(&self.dir.join(file), format!("no output {name}"))
                    })?);
                }
            }
        }
        Ok((dec, enc))
    }

    /// The caches after the first step (one position): as they are, or with an in-place
    /// cache the self-attention key/values moved into buffers that can hold `max_length`
    /// positions.
    pub(super) fn start_cache(
        &self,
        first: Vec<DynValue>,
        encoder: Vec<DynValue>,
        max_length: usize,
    ) -> Result<Pasts> {
        if !self.in_place_cache {
            return Ok(Pasts {
                decoder: first,
                encoder,
                cache: None,
                filled: 1,
            });
        }
        let start = std::time::Instant::now();
        let (c, path) = (&self.config, self.dir.join(DECODER));
        let rows = match first.first() {
            Some(v) => v.shape()[0] as usize,
            None => 0,
        };
        let d = c.head_dim;
        let most = rows * c.heads * max_length.max(1).div_ceil(CACHE_CHUNK) * CACHE_CHUNK * d;
        let mut data = Vec::with_capacity(first.len());
        for v in &first {
            let (shape, src) = v.try_extract_tensor::<f32>().map_err(|e| self.ort_err(e))?;
            if shape[..] != [rows as i64, c.heads as i64, 1, d as i64] {
                return Err(model_err(
                    &path,
                    format!("a first-step key/value has shape {:?}", &shape[..]),
                ));
            }
            let mut buf = self.pooled(most);
            buf.resize(rows * c.heads * CACHE_CHUNK * d, 0.0);
            for (i, x) in src.chunks_exact(d).enumerate() {
                buf[i * CACHE_CHUNK * d..i * CACHE_CHUNK * d + d].copy_from_slice(x);
            }
            data.push(buf);
        }
        Timers::add(&self.timers.copying, start);
        Ok(Pasts {
            decoder: Vec::new(),
            encoder,
            cache: Some(CacheBuffers {
                rows,
                heads: c.heads,
                d,
                cap: CACHE_CHUNK,
                data,
            }),
            filled: 1,
        })
    }

    /// Takes a step's `present.*.decoder.*`: the whole cache, or with an in-place cache the
    /// new position's key/values, written into the buffers (grown by [`CACHE_CHUNK`]
    /// positions first when full).
    pub(super) fn advance_cache(&self, pasts: &mut Pasts, presents: Vec<DynValue>) -> Result<()> {
        let t = pasts.filled;
        pasts.filled += 1;
        let Some(c) = pasts.cache.as_mut() else {
            pasts.decoder = presents;
            return Ok(());
        };
        let start = std::time::Instant::now();
        if t == c.cap {
            c.grow(c.cap + CACHE_CHUNK);
        }
        let d = c.d;
        // Each buffer is laid out [row][head][position][d] with room for `cap` positions, so
        // that the decoder reads a row's past as one run; the new position `t` of every
        // (row, head) pair is written at its slot. The shape check guards the assumption that
        // the graph returns only the new position (the set-up's `--in-place-cache` rewrite).
        for (buf, new) in c.data.iter_mut().zip(&presents) {
            let (shape, src) = new
                .try_extract_tensor::<f32>()
                .map_err(|e| self.ort_err(e))?;
            if shape[..] != [c.rows as i64, c.heads as i64, 1, d as i64] {
                return Err(model_err(
                    &self.dir.join(DECODER_WITH_PAST),
                    format!(
                        "present key/values have shape {:?}, not one position",
                        &shape[..]
                    ),
                ));
            }
            for (i, x) in src.chunks_exact(d).enumerate() {
                let at = (i * c.cap + t) * d;
                buf[at..at + d].copy_from_slice(x);
            }
        }
        Timers::add(&self.timers.copying, start);
        Ok(())
    }

    /// A buffer from the pool that can hold `len` values without reallocating (empty).
    pub(super) fn pooled(&self, len: usize) -> Vec<f32> {
        let mut pool = self.cache_pool.lock().unwrap_or_else(|e| e.into_inner());
        let best = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= len)
            .min_by_key(|&i| pool[i].capacity());
        match best {
            Some(i) => {
                let mut v = pool.swap_remove(i);
                v.clear();
                v
            }
            None => Vec::with_capacity(len),
        }
    }

    /// Hands an in-place cache's buffers back to the pool, which keeps the largest few.
    pub(super) fn release_cache(&self, pasts: Pasts) {
        let Some(c) = pasts.cache else { return };
        let mut pool = self.cache_pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.extend(c.data);
        pool.sort_by_key(|v| std::cmp::Reverse(v.capacity()));
        pool.truncate(4 * self.config.layers);
    }

    pub(super) fn gather_all(&self, values: &[DynValue], rows: &[usize]) -> Result<Vec<DynValue>> {
        values
            .iter()
            .map(|v| self.gather_value::<f32>(v, rows))
            .collect()
    }

    pub(super) fn gather_value<T>(&self, v: &DynValue, rows: &[usize]) -> Result<DynValue>
    where
        T: ort::value::PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static,
    {
        let start = std::time::Instant::now();
        let (shape, data) = v.try_extract_tensor::<T>().map_err(|e| self.ort_err(e))?;
        let dims: Vec<usize> = shape.iter().map(|&x| x as usize).collect();
        let out = gather_rows(data, dims, rows).map_err(|e| self.ort_err(e));
        Timers::add(&self.timers.copying, start);
        out
    }
}
