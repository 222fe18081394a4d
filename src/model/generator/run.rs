//! `Generator`: the ONNX Runtime sessions, the checks of their graphs, tokenising, and one
//! encoder run and one decoder step.

use super::cache::{gather_rows, Pasts};
use super::manifest::{
    model_err, read_config, read_manifest, DecoderLayout, Seq2SeqConfig, TargetVocab, DECODER,
    DECODER_MERGED, DECODER_WITH_PAST, ENCODER,
};
use super::schedule::{EncodedPrompts, Schedule, DEFAULT_MAX_ROWS};
use crate::error::{Error, Result};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorRef};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokenizers::{Tokenizer, TruncationParams};

/// Settings for loading a [`Generator`].
#[derive(Clone, Debug)]
pub struct GeneratorOptions {
    /// Intra-op threads of each ONNX session (default: all cores).
    pub threads: usize,
    /// Force a layout (default: split when its files exist, else merged).
    pub layout: Option<DecoderLayout>,
    /// Explicit path of `libonnxruntime` (otherwise `ORT_DYLIB_PATH`, then the set-up cache).
    pub runtime: Option<PathBuf>,
    /// How rows are batched (default: [`Schedule::Joint`] with [`DEFAULT_MAX_ROWS`]).
    pub schedule: Schedule,
    /// Sample only from the folder's target vocabulary when it has one (default true). A
    /// folder whose output projection was trimmed to that vocabulary always uses it.
    pub target_vocab: bool,
    /// Sets of sessions that decode waves of a [`Schedule::Joint`] call in parallel, each
    /// with `threads` intra-op threads (default 1). They share ONNX Runtime's prepacked
    /// weights; the rest of each graph is loaded once per set.
    pub workers: usize,
    /// Write ONNX Runtime's per-operator profile of each session to
    /// `{profile}-{onnx file stem}_{time}.json` (written when the generator is dropped).
    pub profile: Option<PathBuf>,
}

/// Where a generator's time went since it was opened (seconds, all calls together).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GenerationTimings {
    /// Inside `generate` calls, wall clock.
    pub total: f64,
    /// Inside ONNX Runtime running the encoder.
    pub encoder: f64,
    /// Inside ONNX Runtime running the decoders.
    pub decoder: f64,
    /// Choosing tokens from the logits.
    pub sampling: f64,
    /// Copying key/value rows (expanding the first step, dropping finished rows).
    pub copying: f64,
}

/// Nanosecond counters behind [`GenerationTimings`].
#[derive(Default)]
pub(super) struct Timers {
    pub(super) total: std::sync::atomic::AtomicU64,
    pub(super) encoder: std::sync::atomic::AtomicU64,
    pub(super) decoder: std::sync::atomic::AtomicU64,
    pub(super) sampling: std::sync::atomic::AtomicU64,
    pub(super) copying: std::sync::atomic::AtomicU64,
}

impl Timers {
    pub(super) fn add(counter: &std::sync::atomic::AtomicU64, since: std::time::Instant) {
        counter.fetch_add(
            since.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        GeneratorOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            layout: None,
            runtime: None,
            schedule: Schedule::Joint {
                max_rows: DEFAULT_MAX_ROWS,
            },
            target_vocab: true,
            workers: 1,
            profile: None,
        }
    }
}

pub(super) struct Sessions {
    pub(super) encoder: Session,
    pub(super) first: Session,
    pub(super) with_past: Option<Session>,
}

/// A loaded seq2seq generator. `Send + Sync`; calls are serialised on its sessions.
pub struct Generator {
    pub(super) dir: PathBuf,
    pub(super) fingerprint: String,
    pub(super) tokenizer: Tokenizer,
    /// A copy of `tokenizer` truncating to the given length, made on first use for that
    /// length (a large vocabulary makes a copy per prompt expensive).
    pub(super) truncating: Mutex<Option<(usize, Tokenizer)>>,
    pub(super) config: Seq2SeqConfig,
    pub(super) layout: DecoderLayout,
    pub(super) schedule: Schedule,
    pub(super) vocab: Option<TargetVocab>,
    /// `decoder_with_past_model.onnx` takes one row of cross-attention key/values per prompt.
    pub(super) shared_cross: bool,
    /// `decoder_with_past_model.onnx` reads its self-attention cache from buffers with spare
    /// room (`cache_length` filled) and returns only the new step's key/values.
    pub(super) in_place_cache: bool,
    /// Buffers of finished in-place caches, reused by the next (memory that is already
    /// mapped; fresh memory costs a page fault per 4 KiB).
    pub(super) cache_pool: Mutex<Vec<Vec<f32>>>,
    /// Intra-op threads per session (also the threads that sample a step's rows).
    pub(super) threads: usize,
    /// One set of sessions per worker (the first serves everything but parallel waves).
    pub(super) sessions: Vec<Mutex<Sessions>>,
    /// Where the time went (nanoseconds), for profiling.
    pub(super) timers: Timers,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("dir", &self.dir)
            .field("fingerprint", &self.fingerprint)
            .field("layout", &self.layout)
            .finish()
    }
}

impl Generator {
    /// Opens an optimum export folder.
    pub fn open(dir: impl AsRef<Path>, options: &GeneratorOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let config_path = dir.join("config.json");
        let (config, config_text) = read_config(&config_path)?;
        let tok_path = dir.join("tokenizer.json");
        let tok_text = std::fs::read(&tok_path).map_err(|e| {
            model_err(
                &tok_path,
                format!("cannot read ({e}); export the tokenizer too"),
            )
        })?;
        let mut tokenizer = crate::model::bundle::parse_tokenizer(&tok_text, &tok_path)?;
        tokenizer.with_padding(None);
        let has = |f: &str| dir.join(f).is_file();
        let layout = match options.layout {
            Some(l) => l,
            None if has(DECODER) && has(DECODER_WITH_PAST) => DecoderLayout::Split,
            None => DecoderLayout::Merged,
        };
        let files: &[&str] = match layout {
            DecoderLayout::Split => &[ENCODER, DECODER, DECODER_WITH_PAST],
            DecoderLayout::Merged => &[ENCODER, DECODER_MERGED],
        };
        let mut sizes = String::new();
        for f in files {
            let p = dir.join(f);
            let len = std::fs::metadata(&p)
                .map_err(|e| {
                    model_err(
                        &p,
                        format!("missing ({e}); export with optimum's text2text-generation-with-past task"),
                    )
                })?
                .len();
            sizes.push_str(&format!("{f}:{len};"));
        }
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(config_text.as_bytes());
        h.update(&tok_text);
        h.update(sizes.as_bytes());
        let manifest = read_manifest(&dir, &config)?;
        let shared_cross = manifest.shared_cross && layout == DecoderLayout::Split;
        if shared_cross {
            h.update(b"cross_attention:per_prompt");
        }
        let in_place_cache = manifest.in_place_cache && layout == DecoderLayout::Split;
        if in_place_cache {
            h.update(b"decoder_cache:in_place");
        }
        let vocab = match manifest.vocab {
            Some((v, bytes)) if v.trimmed || options.target_vocab => {
                // Queries depend on the vocabulary: it joins the fingerprint.
                h.update(b"target_vocab:");
                h.update(&bytes);
                h.update(if v.trimmed { b"trimmed" } else { b"masked " });
                Some(v)
            }
            _ => None,
        };
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("generator");
        let fingerprint = format!("{name}@{:016x}", h.digest());
        let rt = options.runtime.as_deref();
        let threads = options.threads;
        let no_config = std::collections::BTreeMap::new();
        // Sessions share prepacked weights (the container needs the runtime loaded).
        crate::model::runtime::init_runtime(rt)?;
        let prepacked = ort::session::builder::PrepackedWeights::new();
        let workers = options.workers.max(1);
        let mut sets = Vec::with_capacity(workers);
        for w in 0..workers {
            let session = |f: &str| {
                let profile = options.profile.as_ref().map(|p| {
                    let stem = f.trim_end_matches(".onnx");
                    PathBuf::from(format!("{}-{stem}-w{w}", p.display()))
                });
                crate::model::runtime::new_session(
                    rt,
                    &dir.join(f),
                    threads,
                    &no_config,
                    profile.as_deref(),
                    Some(&prepacked),
                )
            };
            sets.push(Mutex::new(match layout {
                DecoderLayout::Split => Sessions {
                    encoder: session(ENCODER)?,
                    first: session(DECODER)?,
                    with_past: Some(session(DECODER_WITH_PAST)?),
                },
                DecoderLayout::Merged => Sessions {
                    encoder: session(ENCODER)?,
                    first: session(DECODER_MERGED)?,
                    with_past: None,
                },
            }));
        }
        let g = Generator {
            dir,
            fingerprint,
            tokenizer,
            truncating: Mutex::new(None),
            config,
            layout,
            schedule: options.schedule,
            vocab,
            shared_cross,
            in_place_cache,
            cache_pool: Mutex::new(Vec::new()),
            threads: threads.max(1),
            sessions: sets,
            timers: Timers::default(),
        };
        g.check_graphs()?;
        Ok(g)
    }

    pub(super) fn check_graphs(&self) -> Result<()> {
        let s = self.sessions[0].lock().unwrap_or_else(|e| e.into_inner());
        let need = |sess: &Session, file: &str, names: &[String]| -> Result<()> {
            let have: Vec<&str> = sess.inputs().iter().map(|i| i.name()).collect();
            for n in names {
                if !have.contains(&n.as_str()) {
                    return Err(model_err(
                        &self.dir.join(file),
                        format!("graph has no input {n:?} (it has {have:?})"),
                    ));
                }
            }
            Ok(())
        };
        need(
            &s.encoder,
            ENCODER,
            &["input_ids".into(), "attention_mask".into()],
        )?;
        let mut first = vec![
            "input_ids".to_string(),
            "encoder_attention_mask".into(),
            "encoder_hidden_states".into(),
        ];
        match self.layout {
            DecoderLayout::Split => {
                need(&s.first, DECODER, &first)?;
                let mut past = vec!["input_ids".to_string(), "encoder_attention_mask".into()];
                past.extend(self.past_names());
                if self.in_place_cache {
                    past.push("cache_length".into());
                }
                need(
                    s.with_past.as_ref().expect("split"),
                    DECODER_WITH_PAST,
                    &past,
                )?;
            }
            DecoderLayout::Merged => {
                first.extend(self.past_names());
                first.push("use_cache_branch".into());
                need(&s.first, DECODER_MERGED, &first)?;
            }
        }
        Ok(())
    }

    pub(super) fn past_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for l in 0..self.config.layers {
            for part in ["decoder", "encoder"] {
                for kv in ["key", "value"] {
                    v.push(format!("past_key_values.{l}.{part}.{kv}"));
                }
            }
        }
        v
    }

    /// The export folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A short id of the config, tokenizer and ONNX file sizes; indexes record it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The decoder layout in use.
    pub fn layout(&self) -> DecoderLayout {
        self.layout
    }

    /// Seconds spent inside ONNX Runtime's `run` since the generator was opened.
    pub fn run_seconds(&self) -> f64 {
        let t = self.timings();
        t.encoder + t.decoder
    }

    /// Where the time of `generate` calls went since the generator was opened.
    pub fn timings(&self) -> GenerationTimings {
        let s = |c: &std::sync::atomic::AtomicU64| {
            c.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9
        };
        GenerationTimings {
            total: s(&self.timers.total),
            encoder: s(&self.timers.encoder),
            decoder: s(&self.timers.decoder),
            sampling: s(&self.timers.sampling),
            copying: s(&self.timers.copying),
        }
    }

    /// Tokenises a prompt (with the tokenizer's special tokens) truncated to `max_tokens`.
    pub fn tokenize(&self, prompt: &str, max_tokens: usize) -> Result<Vec<u32>> {
        let max_tokens = max_tokens.max(1);
        let mut slot = self.truncating.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|(n, _)| *n != max_tokens) {
            let mut tok = self.tokenizer.clone();
            tok.with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| model_err(&self.dir, format!("cannot set truncation: {e}")))?;
            *slot = Some((max_tokens, tok));
        }
        let (_, tok) = slot.as_ref().expect("set above");
        let enc = tok
            .encode(prompt, true)
            .map_err(|e| model_err(&self.dir, format!("tokenisation failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes generated ids to text (special tokens dropped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| model_err(&self.dir, format!("detokenisation failed: {e}")))
    }

    pub(super) fn pad_prompts(&self, prompts: &[Vec<u32>]) -> Result<EncodedPrompts> {
        if prompts.iter().any(|p| p.is_empty()) {
            return Err(Error::InvalidArgument(
                "a prompt has no tokens after tokenisation".into(),
            ));
        }
        let len = prompts.iter().map(Vec::len).max().unwrap_or(1);
        let rows = prompts.len();
        let mut ids = vec![self.config.pad; rows * len];
        let mut mask = vec![0i64; rows * len];
        for (r, p) in prompts.iter().enumerate() {
            for (j, &t) in p.iter().enumerate() {
                ids[r * len + j] = t as i64;
                mask[r * len + j] = 1;
            }
        }
        Ok(EncodedPrompts {
            rows,
            len,
            ids,
            mask,
        })
    }

    pub(super) fn run<'s>(
        &self,
        session: &'s mut Session,
        file: &str,
        inputs: Vec<(String, SessionInputValue<'_>)>,
    ) -> Result<ort::session::SessionOutputs<'s>> {
        let start = std::time::Instant::now();
        let out = session
            .run(inputs)
            .map_err(|e| model_err(&self.dir.join(file), format!("inference failed: {e}")));
        let timer = if file == ENCODER {
            &self.timers.encoder
        } else {
            &self.timers.decoder
        };
        Timers::add(timer, start);
        out
    }

    pub(super) fn ort_err(&self, e: ort::Error) -> Error {
        model_err(&self.dir, format!("tensor error: {e}"))
    }

    /// Runs the encoder on a padded batch; returns `last_hidden_state` with each prompt's row
    /// repeated `copies[r]` times, and the matching attention mask.
    pub(super) fn encode(
        &self,
        s: &mut Sessions,
        p: &EncodedPrompts,
        copies: &[usize],
    ) -> Result<(DynValue, DynValue)> {
        let (hidden, d) = self.encoder_states(s, p)?;
        let src: Vec<usize> = copies
            .iter()
            .enumerate()
            .flat_map(|(r, &n)| std::iter::repeat_n(r, n))
            .collect();
        let hv = gather_rows(&hidden, [p.rows, p.len, d], &src).map_err(|e| self.ort_err(e))?;
        let mv = gather_rows(&p.mask, [p.rows, p.len], &src).map_err(|e| self.ort_err(e))?;
        Ok((hv, mv))
    }

    /// `last_hidden_state` of a padded batch of prompts, and the model width.
    pub(super) fn encoder_states(
        &self,
        s: &mut Sessions,
        p: &EncodedPrompts,
    ) -> Result<(Vec<f32>, usize)> {
        let shape = [p.rows, p.len];
        let inputs: Vec<(String, SessionInputValue<'_>)> = vec![
            (
                "input_ids".into(),
                Tensor::from_array((shape, p.ids.clone()))
                    .map_err(|e| self.ort_err(e))?
                    .into(),
            ),
            (
                "attention_mask".into(),
                Tensor::from_array((shape, p.mask.clone()))
                    .map_err(|e| self.ort_err(e))?
                    .into(),
            ),
        ];
        let out = self.run(&mut s.encoder, ENCODER, inputs)?;
        let (hshape, hidden) = out["last_hidden_state"]
            .try_extract_tensor::<f32>()
            .map_err(|e| self.ort_err(e))?;
        let d = *hshape.last().unwrap_or(&0) as usize;
        if hshape.len() != 3 || d == 0 || hidden.len() != p.rows * p.len * d {
            return Err(model_err(
                &self.dir.join(ENCODER),
                format!("last_hidden_state has shape {:?}", &hshape[..]),
            ));
        }
        Ok((hidden.to_vec(), d))
    }

    /// One decoder step over `ids` (one token per row). `first`: the step after the start
    /// token (no past yet); otherwise `pasts` holds the decoder and encoder key/values.
    /// `hidden` is needed on the first step and on every step of the merged layout.
    pub(super) fn decoder_step<'s>(
        &self,
        s: &'s mut Sessions,
        ids: Vec<i64>,
        mask: &DynValue,
        hidden: Option<&DynValue>,
        pasts: Option<&Pasts>,
    ) -> Result<(ort::session::SessionOutputs<'s>, &'static str)> {
        let b = ids.len();
        let first = pasts.is_none();
        let ids = Tensor::from_array(([b, 1usize], ids)).map_err(|e| self.ort_err(e))?;
        let mut inputs: Vec<(String, SessionInputValue<'_>)> = vec![
            ("input_ids".into(), ids.into()),
            ("encoder_attention_mask".into(), mask.into()),
        ];
        let (session, file) = match (self.layout, first) {
            (DecoderLayout::Split, true) => (&mut s.first, DECODER),
            (DecoderLayout::Split, false) => (
                s.with_past.as_mut().expect("split layout"),
                DECODER_WITH_PAST,
            ),
            (DecoderLayout::Merged, _) => (&mut s.first, DECODER_MERGED),
        };
        if first || self.layout == DecoderLayout::Merged {
            let hidden = hidden.ok_or_else(|| {
                Error::InvalidArgument("the decoder needs the encoder states".into())
            })?;
            inputs.push(("encoder_hidden_states".into(), hidden.into()));
        }
        if self.layout == DecoderLayout::Merged {
            let flag = Tensor::from_array(([1usize], vec![!first])).map_err(|e| self.ort_err(e))?;
            inputs.push(("use_cache_branch".into(), flag.into()));
        }
        let empty;
        match pasts {
            None if self.layout == DecoderLayout::Merged => {
                empty = self.empty_pasts(b)?;
                for (n, v) in &empty {
                    inputs.push((n.clone(), v.into()));
                }
            }
            None => {}
            Some(p) => {
                if self.in_place_cache {
                    let n = Tensor::from_array(([1usize], vec![p.filled as i64]))
                        .map_err(|e| self.ort_err(e))?;
                    inputs.push(("cache_length".into(), n.into()));
                }
                for l in 0..self.config.layers {
                    for (kv, i) in [("key", 0), ("value", 1)] {
                        let past: SessionInputValue<'_> = match &p.cache {
                            Some(c) => TensorRef::from_array_view((
                                [c.rows, c.heads, c.cap, c.d],
                                &c.data[2 * l + i][..],
                            ))
                            .map_err(|e| self.ort_err(e))?
                            .into(),
                            None => (&p.decoder[2 * l + i]).into(),
                        };
                        inputs.push((format!("past_key_values.{l}.decoder.{kv}"), past));
                        inputs.push((
                            format!("past_key_values.{l}.encoder.{kv}"),
                            (&p.encoder[2 * l + i]).into(),
                        ));
                    }
                }
            }
        }
        Ok((self.run(session, file, inputs)?, file))
    }

    /// Vocabulary size from `config.json`.
    pub fn vocab_size(&self) -> usize {
        self.config.vocab
    }

    /// The EOS token id.
    pub fn eos_id(&self) -> u32 {
        self.config.eos as u32
    }
}
