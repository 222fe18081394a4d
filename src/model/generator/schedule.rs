//! Scheduling prompts through the decoder: a wave of rows decoded in lockstep, rows
//! refilled from waiting prompts as others finish, within a row budget.

use super::cache::Pasts;
use super::manifest::DecoderLayout;
use super::run::{Generator, Sessions, Timers};
use super::sampling::Sampling;
use crate::error::{Error, Result};
use ort::value::Tensor;
use rand::SeedableRng;
use std::sync::Mutex;

/// Rows one joint wave decodes together at most (35 rows are one passage of the paper's
/// profile: 7 languages × 5 samples; per row, a decoder step at 140 rows costs ~0.65× what
/// it costs at 35 on the benchmark's mT5-base-sized model, BENCHMARKS.md).
pub const DEFAULT_MAX_ROWS: usize = 140;

/// How the rows of a generation call share the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// All prompts of a call in one batch: the encoder over the prompts padded to the longest,
    /// every sample row from the first step to the last, finished rows fed padding (the
    /// schedule of earlier releases; the reference the joint schedule is tested against).
    Lockstep,
    /// Waves of whole prompts holding up to `max_rows` sample rows: each prompt encoded alone
    /// at its own length, the first decoder step run once per prompt (its samples share
    /// those logits), then every row of the wave decoded together, finished rows dropped
    /// from the batch once carrying them costs more than copying the others' key/values.
    /// A row's tokens are the ones [`Schedule::Lockstep`] gives it for the same prompt and
    /// seed, whatever else shares the wave.
    Joint {
        /// Sample rows per wave (a prompt with more samples gets a wave of its own).
        max_rows: usize,
    },
}

/// One prompt to continue, once per seed.
#[derive(Clone, Copy, Debug)]
pub struct GenerationRequest<'a> {
    /// Token ids of the prompt (with the tokenizer's special tokens).
    pub prompt: &'a [u32],
    /// One seed per sampled row.
    pub seeds: &'a [u64],
}

/// Token ids of a batch of prompts, padded.
pub(super) struct EncodedPrompts {
    pub(super) rows: usize,
    pub(super) len: usize,
    pub(super) ids: Vec<i64>,
    pub(super) mask: Vec<i64>,
}

/// Per-row sampler state.
pub(super) struct RowState {
    pub(super) rng: rand_chacha::ChaCha8Rng,
    pub(super) tokens: Vec<u32>,
    pub(super) done: bool,
}

impl Generator {
    /// Generates continuations of already tokenised prompts: `samples` sequences per
    /// prompt. `seeds[i]` seeds row i (prompt i / samples, sample i % samples). Returns the
    /// generated ids of each row, without the decoder start token, ending with EOS when the
    /// model stopped before `max_length`. A row's tokens depend on its prompt and seed only,
    /// not on the other rows of the call (see [`Schedule`]).
    pub fn generate_ids(
        &self,
        prompts: &[Vec<u32>],
        samples: usize,
        sampling: &Sampling,
        seeds: &[u64],
    ) -> Result<Vec<Vec<u32>>> {
        let samples = samples.max(1);
        let b = prompts.len() * samples;
        if seeds.len() != b {
            return Err(Error::InvalidArgument(format!(
                "{} seeds for {b} rows",
                seeds.len()
            )));
        }
        let requests: Vec<GenerationRequest<'_>> = prompts
            .iter()
            .zip(seeds.chunks(samples))
            .map(|(p, s)| GenerationRequest {
                prompt: p,
                seeds: s,
            })
            .collect();
        Ok(self
            .generate(&requests, sampling)?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Generates `request.seeds.len()` sequences for each request, scheduled as the
    /// generator's [`Schedule`] says. `result[i][j]` is request i's row seeded by `seeds[j]`.
    pub fn generate(
        &self,
        requests: &[GenerationRequest<'_>],
        sampling: &Sampling,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        if sampling.max_length < 2 {
            return Err(Error::InvalidArgument(
                "max_length must be at least 2 (the start token and one more)".into(),
            ));
        }
        if requests.iter().any(|r| r.prompt.is_empty()) {
            return Err(Error::InvalidArgument(
                "a prompt has no tokens after tokenisation".into(),
            ));
        }
        let began = std::time::Instant::now();
        let mut out: Vec<Vec<Vec<u32>>> = requests
            .iter()
            .map(|r| vec![Vec::new(); r.seeds.len()])
            .collect();
        match self.schedule {
            Schedule::Lockstep => {
                let mut guard = self.sessions[0].lock().unwrap_or_else(|e| e.into_inner());
                let live: Vec<usize> = (0..requests.len())
                    .filter(|&i| !requests[i].seeds.is_empty())
                    .collect();
                if !live.is_empty() {
                    let reqs: Vec<&GenerationRequest<'_>> =
                        live.iter().map(|&i| &requests[i]).collect();
                    let rows = self.lockstep(&mut guard, &reqs, sampling)?;
                    let mut rows = rows.into_iter();
                    for &i in &live {
                        for slot in out[i].iter_mut() {
                            *slot = rows.next().expect("one row per seed");
                        }
                    }
                }
            }
            Schedule::Joint { max_rows } => {
                let mut waves = Vec::new();
                let mut start = 0;
                while start < requests.len() {
                    let mut end = start;
                    let mut rows = 0;
                    while end < requests.len()
                        && (end == start || rows + requests[end].seeds.len() <= max_rows)
                    {
                        rows += requests[end].seeds.len();
                        end += 1;
                    }
                    waves.push(start..end);
                    start = end;
                }
                // Each wave writes only its own requests' rows: hand out disjoint slices.
                let mut queue = Vec::with_capacity(waves.len());
                let mut rest = out.as_mut_slice();
                for w in &waves {
                    let (part, tail) = rest.split_at_mut(w.len());
                    queue.push((&requests[w.clone()], part));
                    rest = tail;
                }
                let queue = Mutex::new(queue.into_iter());
                let failed = std::sync::atomic::AtomicBool::new(false);
                // One worker's loop: take the next wave until none is left or one failed.
                let work = |w: usize| -> Result<()> {
                    let mut guard = self.sessions[w].lock().unwrap_or_else(|e| e.into_inner());
                    while !failed.load(std::sync::atomic::Ordering::Relaxed) {
                        let Some((reqs, part)) =
                            queue.lock().unwrap_or_else(|e| e.into_inner()).next()
                        else {
                            break;
                        };
                        if let Err(e) = self.wave(&mut guard, reqs, sampling, part) {
                            failed.store(true, std::sync::atomic::Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                    Ok(())
                };
                let workers = self.sessions.len().min(waves.len());
                if workers <= 1 {
                    work(0)?;
                } else {
                    std::thread::scope(|scope| {
                        let handles: Vec<_> = (0..workers)
                            .map(|w| {
                                let work = &work;
                                scope.spawn(move || work(w))
                            })
                            .collect();
                        handles.into_iter().try_for_each(|h| {
                            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
                        })
                    })?;
                }
            }
        }
        Timers::add(&self.timers.total, began);
        Ok(out)
    }

    /// [`Schedule::Lockstep`]: every row from the first step to the last, in one batch.
    pub(super) fn lockstep(
        &self,
        s: &mut Sessions,
        requests: &[&GenerationRequest<'_>],
        sampling: &Sampling,
    ) -> Result<Vec<Vec<u32>>> {
        let prompts: Vec<Vec<u32>> = requests.iter().map(|r| r.prompt.to_vec()).collect();
        let copies: Vec<usize> = requests.iter().map(|r| r.seeds.len()).collect();
        let p = self.pad_prompts(&prompts)?;
        let (hidden, mask) = self.encode(s, &p, &copies)?;
        let mut rows: Vec<RowState> = requests
            .iter()
            .flat_map(|r| r.seeds.iter())
            .map(|&seed| RowState {
                rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
                tokens: Vec::new(),
                done: false,
            })
            .collect();
        let b = rows.len();
        let c = self.config.clone();
        let mut next: Vec<i64> = vec![c.decoder_start; b];
        let mut pasts: Option<Pasts> = None;
        let mut scratch = Vec::new();
        for _ in 0..sampling.max_length - 1 {
            let (mut out, file) =
                self.decoder_step(s, next.clone(), &mask, Some(&hidden), pasts.as_ref())?;
            {
                let (logits, v) = self.step_logits(&out, file, b)?;
                for (r, row) in rows.iter_mut().enumerate() {
                    if row.done {
                        next[r] = c.pad;
                        continue;
                    }
                    let last = &logits[r * v..(r + 1) * v];
                    let tok = self.sample(last, sampling, &mut row.rng, &mut scratch, file)?;
                    row.tokens.push(tok);
                    next[r] = tok as i64;
                    if tok as i64 == c.eos {
                        row.done = true;
                    }
                }
            }
            if rows.iter().all(|r| r.done) {
                break;
            }
            let first = pasts.is_none();
            let (decoder, encoder) = self.take_presents(&mut out, file, first)?;
            drop(out);
            pasts = Some(match pasts {
                // The merged graph's cached branch returns dummy cross-attention tensors:
                // the first step's are kept for the whole sequence.
                Some(mut p) => {
                    self.advance_cache(&mut p, decoder)?;
                    p
                }
                None => self.start_cache(decoder, encoder, sampling.max_length)?,
            });
        }
        if let Some(p) = pasts {
            self.release_cache(p);
        }
        Ok(rows.into_iter().map(|r| r.tokens).collect())
    }

    /// [`Schedule::Joint`] for one wave of requests: each prompt encoded alone at its own
    /// length, the first step run once per prompt (its samples share those logits), then all
    /// rows decoded together, finished rows dropped from the batch when that saves work.
    pub(super) fn wave(
        &self,
        s: &mut Sessions,
        requests: &[GenerationRequest<'_>],
        sampling: &Sampling,
        out: &mut [Vec<Vec<u32>>],
    ) -> Result<()> {
        let live: Vec<usize> = (0..requests.len())
            .filter(|&i| !requests[i].seeds.is_empty())
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        let c = self.config.clone();
        // Encoder: one prompt at a time, at its real length (so a prompt's states, and with a
        // fixed seed its queries, do not depend on which prompts share its wave); then padded
        // into one batch for the decoder, whose cross-attention mask hides the padding.
        let mut states = Vec::with_capacity(live.len());
        let mut d = 0;
        for &i in &live {
            let p = self.pad_prompts(&[requests[i].prompt.to_vec()])?;
            let (h, width) = self.encoder_states(s, &p)?;
            d = width;
            states.push(h);
        }
        let lens: Vec<usize> = live.iter().map(|&i| requests[i].prompt.len()).collect();
        let lmax = lens.iter().copied().max().unwrap_or(1);
        let np = live.len();
        let mut hidden = vec![0f32; np * lmax * d];
        let mut mask = vec![0i64; np * lmax];
        for (k, h) in states.iter().enumerate() {
            hidden[k * lmax * d..k * lmax * d + h.len()].copy_from_slice(h);
            mask[k * lmax..k * lmax + lens[k]].fill(1);
        }
        drop(states);
        let hidden_p = Tensor::from_array(([np, lmax, d], hidden))
            .map_err(|e| self.ort_err(e))?
            .into_dyn();
        let mask_p = Tensor::from_array(([np, lmax], mask))
            .map_err(|e| self.ort_err(e))?
            .into_dyn();
        // First step: one row per prompt.
        let (mut first_out, file) =
            self.decoder_step(s, vec![c.decoder_start; np], &mask_p, Some(&hidden_p), None)?;
        let mut rows: Vec<(usize, usize, RowState)> = Vec::new();
        let mut scratch = Vec::new();
        {
            let (logits, v) = self.step_logits(&first_out, file, np)?;
            for (k, &i) in live.iter().enumerate() {
                let last = &logits[k * v..(k + 1) * v];
                for (j, &seed) in requests[i].seeds.iter().enumerate() {
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                    let tok = self.sample(last, sampling, &mut rng, &mut scratch, file)?;
                    let state = RowState {
                        rng,
                        tokens: vec![tok],
                        done: tok as i64 == c.eos,
                    };
                    rows.push((k, j, state));
                }
            }
        }
        // The batch: groups of `width` positions, one row of cross-attention key/values and
        // mask per group. Without shared cross-attention a group is one row; with it, a group
        // is one prompt's samples (positions past its seed count, and finished rows, ride
        // along fed padding until their whole group can be dropped).
        // `shared_cross` is only ever set for the split layout.
        let shared = self.shared_cross;
        let width = if shared {
            live.iter()
                .map(|&i| requests[i].seeds.len())
                .max()
                .unwrap_or(1)
        } else {
            1
        };
        let mut groups: Vec<usize> = Vec::new(); // prompt (index into `live`) of each group
        let mut slots: Vec<Option<usize>> = Vec::new(); // row of each position
        if shared {
            let mut r = 0;
            for (k, &i) in live.iter().enumerate() {
                let n = requests[i].seeds.len();
                if (r..r + n).any(|x| !rows[x].2.done) {
                    groups.push(k);
                    slots.extend((0..width).map(|j| (j < n).then_some(r + j)));
                }
                r += n;
            }
        } else {
            for (r, row) in rows.iter().enumerate() {
                if !row.2.done {
                    groups.push(row.0);
                    slots.push(Some(r));
                }
            }
        }
        if !groups.is_empty() && sampling.max_length > 2 {
            let (dec, enc) = self.take_presents(&mut first_out, file, true)?;
            drop(first_out);
            // Decoder key/values: from each position's prompt (one per prompt after step 1).
            let pos_src: Vec<usize> = groups
                .iter()
                .flat_map(|&k| std::iter::repeat_n(k, width))
                .collect();
            let identity =
                |v: &[usize]| v.len() == np && v.iter().enumerate().all(|(a, &b)| a == b);
            let mut pasts = self.start_cache(
                if identity(&pos_src) {
                    dec
                } else {
                    self.gather_all(&dec, &pos_src)?
                },
                if identity(&groups) {
                    enc
                } else {
                    self.gather_all(&enc, &groups)?
                },
                sampling.max_length,
            )?;
            let mut mask_b = self.gather_value::<i64>(&mask_p, &groups)?;
            let mut hidden_b = match self.layout {
                DecoderLayout::Merged => Some(self.gather_value::<f32>(&hidden_p, &groups)?),
                DecoderLayout::Split => None,
            };
            drop(hidden_p);
            // A position decodes while it holds a row that has not ended.
            let live_row = |rows: &[(usize, usize, RowState)], slot: &Option<usize>| {
                slot.is_some_and(|r| !rows[r].2.done)
            };
            for step in 1..sampling.max_length - 1 {
                let ids: Vec<i64> = slots
                    .iter()
                    .map(|slot| match slot {
                        Some(r) if live_row(&rows, slot) => {
                            *rows[*r].2.tokens.last().expect("sampled") as i64
                        }
                        _ => c.pad,
                    })
                    .collect();
                let (mut o, file) =
                    self.decoder_step(s, ids, &mask_b, hidden_b.as_ref(), Some(&pasts))?;
                {
                    let (logits, v) = self.step_logits(&o, file, slots.len())?;
                    // Positions in row order (slots keep the rows' order), so the rows can
                    // be handed out by one pass over them.
                    let mut jobs: Vec<(usize, &mut RowState)> = Vec::with_capacity(slots.len());
                    let mut it = rows.iter_mut().enumerate();
                    for (k, slot) in slots.iter().enumerate() {
                        let Some(r) = *slot else { continue };
                        let row = it
                            .by_ref()
                            .find(|(i, _)| *i == r)
                            .expect("slots in row order");
                        if !row.1 .2.done {
                            jobs.push((k, &mut row.1 .2));
                        }
                    }
                    self.sample_rows(logits, v, jobs, sampling, file)?;
                }
                if !slots.iter().any(|slot| live_row(&rows, slot)) {
                    break;
                }
                let (dec, _) = self.take_presents(&mut o, file, false)?;
                drop(o);
                self.advance_cache(&mut pasts, dec)?;
                let remaining = sampling.max_length - 2 - step;
                let keep: Vec<usize> = (0..groups.len())
                    .filter(|&g| {
                        slots[g * width..(g + 1) * width]
                            .iter()
                            .any(|slot| live_row(&rows, slot))
                    })
                    .collect();
                let idle = (groups.len() - keep.len()) * width;
                // Drop finished groups when the row-steps they would still cost exceed about
                // one step of the whole batch (what copying the key/values costs).
                if idle > 0 && remaining > 0 && idle * remaining >= slots.len() {
                    let positions: Vec<usize> = keep
                        .iter()
                        .flat_map(|&g| g * width..(g + 1) * width)
                        .collect();
                    match pasts.cache.as_mut() {
                        Some(c) => c.keep_rows(&positions),
                        None => pasts.decoder = self.gather_all(&pasts.decoder, &positions)?,
                    }
                    pasts.encoder = self.gather_all(&pasts.encoder, &keep)?;
                    mask_b = self.gather_value::<i64>(&mask_b, &keep)?;
                    if let Some(h) = hidden_b.as_mut() {
                        *h = self.gather_value::<f32>(h, &keep)?;
                    }
                    slots = positions.iter().map(|&p| slots[p]).collect();
                    groups = keep.iter().map(|&g| groups[g]).collect();
                }
            }
            self.release_cache(pasts);
        }
        for (k, j, state) in rows {
            out[live[k]][j] = state.tokens;
        }
        Ok(())
    }
}
