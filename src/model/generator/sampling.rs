//! Choosing the next token: greedy, top-k and top-p sampling with a seeded RNG, logits
//! restricted to the target vocabulary, and log-likelihoods of given continuations.

use super::manifest::{model_err, DecoderLayout, DECODER, DECODER_MERGED};
use super::run::{Generator, Timers};
use super::schedule::RowState;
use crate::error::{Error, Result};
use ort::session::SessionInputValue;
use ort::value::Tensor;
use rand::Rng;

/// How tokens are chosen at each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep only the k most likely tokens (ties with the k-th kept too); 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1.0 keeps all.
    pub top_p: f32,
    /// Longest output counted with the decoder start token (Hugging Face's `max_length`).
    pub max_length: usize,
}

impl Sampling {
    /// Greedy decoding up to `max_length`.
    pub fn greedy(max_length: usize) -> Self {
        Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            max_length,
        }
    }

    pub(super) fn is_greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == 1
    }
}

impl Generator {
    /// Whether logits `v` wide fit the target vocabulary: one column per kept id when the
    /// projection is trimmed, every kept id inside the width when it is not.
    pub(super) fn logits_fit(&self, v: usize) -> bool {
        match &self.vocab {
            Some(t) if t.trimmed => v == t.ids.len(),
            Some(t) => v > *t.ids.last().unwrap_or(&0) as usize,
            None => true,
        }
    }

    /// The logits of one step as `[rows, width]` (the last position of each row), checked
    /// against the target vocabulary.
    pub(super) fn step_logits<'o>(
        &self,
        out: &'o ort::session::SessionOutputs<'_>,
        file: &str,
        rows: usize,
    ) -> Result<(&'o [f32], usize)> {
        let (lshape, logits) = out["logits"]
            .try_extract_tensor::<f32>()
            .map_err(|e| self.ort_err(e))?;
        let v = *lshape.last().unwrap_or(&0) as usize;
        let bad = lshape.len() != 3 || lshape[0] as usize != rows || v == 0;
        let width_ok = self.logits_fit(v);
        if bad || !width_ok {
            return Err(model_err(
                &self.dir.join(file),
                format!(
                    "logits have shape {:?}{}",
                    &lshape[..],
                    if width_ok {
                        ""
                    } else {
                        " (does not fit the target vocabulary)"
                    }
                ),
            ));
        }
        let t = lshape[1] as usize;
        if t == 1 {
            return Ok((logits, v));
        }
        Err(model_err(
            &self.dir.join(file),
            format!("one step gave {t} positions"),
        ))
    }

    /// Samples the next token of a row from its logits: over the target vocabulary when the
    /// generator has one (gathered when the logits are full width), mapped back to ids.
    pub(super) fn sample(
        &self,
        logits: &[f32],
        sampling: &Sampling,
        rng: &mut impl Rng,
        scratch: &mut Vec<f32>,
        file: &str,
    ) -> Result<u32> {
        let start = std::time::Instant::now();
        let (row, ids): (&[f32], Option<&[u32]>) = match &self.vocab {
            None => (logits, None),
            Some(t) if t.trimmed => (logits, Some(&t.ids)),
            Some(t) => {
                scratch.clear();
                scratch.extend(t.ids.iter().map(|&i| logits[i as usize]));
                (scratch.as_slice(), Some(&t.ids))
            }
        };
        let j = pick(row, sampling, rng);
        Timers::add(&self.timers.sampling, start);
        let j = j.ok_or_else(|| model_err(&self.dir.join(file), "non-finite logits"))?;
        Ok(ids.map_or(j as u32, |ids| ids[j]))
    }

    /// Samples the next token of each `(position, row)` from `logits` (`width` per position),
    /// on up to `threads` threads when there is enough to share (each row has its own
    /// generator, so the split changes nothing). A row that samples EOS is marked done.
    pub(super) fn sample_rows(
        &self,
        logits: &[f32],
        width: usize,
        mut jobs: Vec<(usize, &mut RowState)>,
        sampling: &Sampling,
        file: &str,
    ) -> Result<()> {
        let eos = self.config.eos;
        let run = |part: &mut [(usize, &mut RowState)]| -> Result<()> {
            let mut scratch = Vec::new();
            for (k, row) in part.iter_mut() {
                let tok = self.sample(
                    &logits[*k * width..(*k + 1) * width],
                    sampling,
                    &mut row.rng,
                    &mut scratch,
                    file,
                )?;
                row.tokens.push(tok);
                row.done = tok as i64 == eos;
            }
            Ok(())
        };
        let parts = self.threads.min(jobs.len());
        if parts <= 1 || jobs.len() * width < 1 << 18 {
            return run(&mut jobs);
        }
        let per = jobs.len().div_ceil(parts);
        std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .chunks_mut(per)
                .map(|part| scope.spawn(|| run(part)))
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })
    }

    /// Teacher-forced logits: for a prompt and a target (ids without the start token),
    /// the logits over the vocabulary at each target position (row i predicts `target[i]`).
    /// With a target vocabulary, pieces outside it get `-inf` (whether the projection was
    /// trimmed or not, so both give the same rows).
    pub fn target_logits(&self, prompt: &[u32], target: &[u32]) -> Result<Vec<Vec<f32>>> {
        if target.is_empty() {
            return Ok(Vec::new());
        }
        let p = self.pad_prompts(&[prompt.to_vec()])?;
        let mut guard = self.sessions[0].lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        let (hidden, mask) = self.encode(s, &p, &[1])?;
        let mut dec: Vec<i64> = vec![self.config.decoder_start];
        dec.extend(target[..target.len() - 1].iter().map(|&t| t as i64));
        let t = dec.len();
        let ids = Tensor::from_array(([1usize, t], dec)).map_err(|e| self.ort_err(e))?;
        let mut inputs: Vec<(String, SessionInputValue<'_>)> = vec![
            ("input_ids".into(), ids.into()),
            ("encoder_attention_mask".into(), (&mask).into()),
            ("encoder_hidden_states".into(), (&hidden).into()),
        ];
        let empty;
        let file = match self.layout {
            DecoderLayout::Split => DECODER,
            DecoderLayout::Merged => {
                empty = self.empty_pasts(1)?;
                for (n, v) in &empty {
                    inputs.push((n.clone(), v.into()));
                }
                let flag =
                    Tensor::from_array(([1usize], vec![false])).map_err(|e| self.ort_err(e))?;
                inputs.push(("use_cache_branch".into(), flag.into()));
                DECODER_MERGED
            }
        };
        let out = self.run(&mut s.first, file, inputs)?;
        let (lshape, logits) = out["logits"]
            .try_extract_tensor::<f32>()
            .map_err(|e| self.ort_err(e))?;
        let v = *lshape.last().unwrap_or(&0) as usize;
        if lshape.len() != 3
            || lshape[1] as usize != t
            || logits.len() != t * v
            || !self.logits_fit(v)
        {
            return Err(model_err(
                &self.dir.join(file),
                format!("logits have shape {:?}", &lshape[..]),
            ));
        }
        let rows = logits.chunks_exact(v);
        Ok(match &self.vocab {
            None => rows.map(<[f32]>::to_vec).collect(),
            Some(tv) => rows
                .map(|row| {
                    let width = v.max(self.config.vocab);
                    let mut full = vec![f32::NEG_INFINITY; width];
                    for (j, &id) in tv.ids.iter().enumerate() {
                        full[id as usize] = if tv.trimmed { row[j] } else { row[id as usize] };
                    }
                    full
                })
                .collect(),
        })
    }

    /// Log-likelihood of `target` given `prompt` (natural log, summed over target tokens;
    /// divide by the length for a length-normalised score).
    pub fn log_likelihood(&self, prompt: &[u32], target: &[u32]) -> Result<f64> {
        let logits = self.target_logits(prompt, target)?;
        let mut sum = 0f64;
        for (row, &t) in logits.iter().zip(target) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            let x = *row.get(t as usize).ok_or_else(|| {
                Error::InvalidArgument(format!("target token {t} is outside the vocabulary"))
            })? as f64;
            sum += x - lse;
        }
        Ok(sum)
    }
}

/// Indices of the `k` largest logits (and any further ones tied with the k-th), largest
/// first, ties by index: one pass with a small sorted buffer instead of a full sort. Blocks
/// of 16 logits none of which can enter the buffer are skipped with one vectorisable test.
/// `None` when a logit is NaN or +inf.
pub(super) fn top_k_indices(logits: &[f32], k: usize) -> Option<Vec<usize>> {
    let better = |a: (f32, usize), b: (f32, usize)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    // Below the k-th kept value nothing enters (an equal later index does not either).
    let mut floor = f32::NEG_INFINITY;
    const BLOCK: usize = 16;
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        if best.len() == k {
            // A NaN also takes the slow path, which reports it.
            let hit = block.iter().fold(0u32, |h, &x| {
                h | u32::from(x > floor) | u32::from(x.is_nan())
            });
            if hit == 0 {
                continue;
            }
        }
        for (j, &x) in block.iter().enumerate() {
            if x.is_nan() || x == f32::INFINITY {
                return None;
            }
            let i = b * BLOCK + j;
            if best.len() == k && !better((x, i), best[k - 1]) {
                continue;
            }
            let pos = best.partition_point(|&e| better(e, (x, i)));
            best.insert(pos, (x, i));
            best.truncate(k);
            if best.len() == k {
                floor = best[k - 1].0;
            }
        }
    }
    let kth = best[k - 1];
    let mut out: Vec<usize> = best.iter().map(|b| b.1).collect();
    out.extend(
        logits
            .iter()
            .enumerate()
            .filter(|&(i, &x)| x == kth.0 && i > kth.1)
            .map(|(i, _)| i),
    );
    Some(out)
}

/// Picks the next token from one row of logits. `None` when a logit is NaN or +inf.
pub fn pick(logits: &[f32], sampling: &Sampling, rng: &mut impl Rng) -> Option<usize> {
    let top_k = !sampling.is_greedy() && sampling.top_k > 0 && sampling.top_k < logits.len();
    if !top_k && logits.iter().any(|x| x.is_nan() || *x == f32::INFINITY) {
        return None;
    }
    if sampling.is_greedy() {
        let mut best = 0;
        for (i, &x) in logits.iter().enumerate() {
            if x > logits[best] {
                best = i;
            }
        }
        return Some(best);
    }
    // Temperature, then top-k (ties with the k-th kept), then top-p; as Hugging Face.
    let order = if top_k {
        top_k_indices(logits, sampling.top_k)?
    } else {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        order
    };
    let keep = order.len();
    let t = sampling.temperature as f64;
    let max = logits[order[0]] as f64;
    let mut probs: Vec<f64> = order[..keep]
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / t).exp())
        .collect();
    if sampling.top_p < 1.0 {
        let total: f64 = probs.iter().sum();
        let mut cum = 0.0;
        let mut n = 0;
        for p in &probs {
            n += 1;
            cum += p / total;
            if cum >= sampling.top_p as f64 {
                break;
            }
        }
        probs.truncate(n.max(1));
    }
    let total: f64 = probs.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (j, p) in probs.iter().enumerate() {
        if u < *p {
            return Some(order[j]);
        }
        u -= p;
    }
    Some(order[probs.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn greedy_picks_the_first_maximum() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let s = Sampling::greedy(8);
        assert_eq!(pick(&[0.1, 0.5, 0.5, -1.0], &s, &mut rng), Some(1));
        assert_eq!(pick(&[0.1, f32::NAN], &s, &mut rng), None);
    }

    #[test]
    fn top_k_never_leaves_the_top_k() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 100) as f32 / 10.0).collect();
        let mut top: Vec<usize> = (0..100).collect();
        top.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let top3 = &top[..3];
        let s = Sampling {
            temperature: 5.0,
            top_k: 3,
            top_p: 1.0,
            max_length: 8,
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5000 {
            let t = pick(&logits, &s, &mut rng).unwrap();
            assert!(top3.contains(&t), "picked {t}, outside the top 3 {top3:?}");
            seen.insert(t);
        }
        assert_eq!(seen.len(), 3, "a high temperature reaches all three");
    }

    #[test]
    fn top_k_selection_equals_a_full_sort() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for k in [1, 3, 10, 50] {
            let logits: Vec<f32> = (0..500)
                .map(|_| (rng.random::<f32>() * 20.0).round())
                .collect();
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            let kth = logits[order[k - 1]];
            let want: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&i| logits[i] >= kth)
                .collect();
            assert_eq!(top_k_indices(&logits, k), Some(want), "k {k}");
            // A NaN or +inf anywhere (also in a block the fast test would skip) is reported.
            for bad in [f32::NAN, f32::INFINITY] {
                for at in [0, 7, 250, 499] {
                    let mut l = logits.clone();
                    l[at] = bad;
                    assert_eq!(top_k_indices(&l, k), None, "k {k}, {bad} at {at}");
                }
            }
            let mut l = logits.clone();
            l[3] = f32::NEG_INFINITY;
            assert!(top_k_indices(&l, k).is_some());
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // Probabilities ~0.64, 0.24, 0.09, 0.03: p = 0.8 keeps the first two.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.8,
            max_length: 8,
        };
        for _ in 0..2000 {
            assert!(pick(&logits, &s, &mut rng).unwrap() < 2);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let logits = [0.0f32, (3.0f32).ln()];
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            max_length: 8,
        };
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| pick(&logits, &s, &mut rng) == Some(1))
            .count();
        let share = ones as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "share {share}");
    }
}
