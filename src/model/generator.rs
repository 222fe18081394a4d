//! Seq2seq generation (T5/mT5 exported by optimum) with a real KV cache and seeded sampling.
//!
//! A generator bundle is an optimum export folder: `encoder_model.onnx`, either
//! `decoder_model.onnx` + `decoder_with_past_model.onnx` (split layout) or
//! `decoder_model_merged.onnx` (merged layout, with a `use_cache_branch` input), plus
//! `config.json` and `tokenizer.json`. Every prompt is encoded once; its samples are
//! decoded together, one token per step, feeding the previous step's key/value tensors
//! back into the decoder (the cross-attention keys/values come from the first step).

use crate::error::{Error, Result};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};
use rand::Rng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokenizers::{Tokenizer, TruncationParams};

const ENCODER: &str = "encoder_model.onnx";
const DECODER: &str = "decoder_model.onnx";
const DECODER_WITH_PAST: &str = "decoder_with_past_model.onnx";
const DECODER_MERGED: &str = "decoder_model_merged.onnx";

/// Which decoder files a generator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderLayout {
    /// `decoder_model.onnx` for the first step, `decoder_with_past_model.onnx` after it.
    Split,
    /// `decoder_model_merged.onnx` for every step (`use_cache_branch` false, then true).
    Merged,
}

/// Settings for loading a [`Generator`].
#[derive(Clone, Debug)]
pub struct GeneratorOptions {
    /// Intra-op threads of each ONNX session (default: all cores).
    pub threads: usize,
    /// Force a layout (default: split when its files exist, else merged).
    pub layout: Option<DecoderLayout>,
    /// Explicit path of `libonnxruntime` (otherwise `ORT_DYLIB_PATH`, then the set-up cache).
    pub runtime: Option<PathBuf>,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        GeneratorOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            layout: None,
            runtime: None,
        }
    }
}

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

    fn is_greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == 1
    }
}

/// The model facts the decoding loop needs, from `config.json`.
#[derive(Clone, Debug)]
struct Seq2SeqConfig {
    decoder_start: i64,
    eos: i64,
    pad: i64,
    layers: usize,
    heads: usize,
    head_dim: usize,
    vocab: usize,
}

struct Sessions {
    encoder: Session,
    first: Session,
    with_past: Option<Session>,
}

/// A loaded seq2seq generator. `Send + Sync`; calls are serialised on its sessions.
pub struct Generator {
    dir: PathBuf,
    fingerprint: String,
    tokenizer: Tokenizer,
    /// A copy of `tokenizer` truncating to the given length, made on first use for that
    /// length (a large vocabulary makes a copy per prompt expensive).
    truncating: Mutex<Option<(usize, Tokenizer)>>,
    config: Seq2SeqConfig,
    layout: DecoderLayout,
    sessions: Mutex<Sessions>,
    /// Time spent inside `Session::run` (nanoseconds), for profiling.
    run_nanos: std::sync::atomic::AtomicU64,
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

fn model_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Model {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn config_usize(cfg: &serde_json::Value, keys: &[&str], path: &Path) -> Result<usize> {
    keys.iter()
        .find_map(|k| cfg.get(*k).and_then(|v| v.as_u64()))
        .map(|v| v as usize)
        .ok_or_else(|| model_err(path, format!("config.json has no {}", keys.join(" or "))))
}

fn read_config(path: &Path) -> Result<(Seq2SeqConfig, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        model_err(
            path,
            format!("cannot read ({e}); a generator folder is an optimum seq2seq export"),
        )
    })?;
    Ok((parse_config(&text, path)?, text))
}

/// Checks a seq2seq `config.json` text the way [`Generator::open`] does (for fuzzing).
#[doc(hidden)]
pub fn check_config(text: &str) -> Result<()> {
    parse_config(text, Path::new("config.json")).map(|_| ())
}

fn parse_config(text: &str, path: &Path) -> Result<Seq2SeqConfig> {
    let cfg: serde_json::Value =
        serde_json::from_str(text).map_err(|e| model_err(path, format!("bad JSON: {e}")))?;
    let model_type = cfg
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    if !matches!(model_type.as_str(), "t5" | "mt5" | "umt5") {
        return Err(model_err(
            path,
            format!("model_type {model_type:?} is not supported (t5, mt5, umt5 are)"),
        ));
    }
    let layers = config_usize(&cfg, &["num_decoder_layers", "num_layers"], path)?;
    let c = Seq2SeqConfig {
        decoder_start: config_usize(&cfg, &["decoder_start_token_id"], path)? as i64,
        eos: config_usize(&cfg, &["eos_token_id"], path)? as i64,
        pad: config_usize(&cfg, &["pad_token_id"], path)? as i64,
        layers,
        heads: config_usize(&cfg, &["num_heads"], path)?,
        head_dim: config_usize(&cfg, &["d_kv"], path)?,
        vocab: config_usize(&cfg, &["vocab_size"], path)?,
    };
    if c.layers == 0 || c.layers > 256 || c.heads == 0 || c.head_dim == 0 || c.vocab < 2 {
        return Err(model_err(
            path,
            "implausible layer, head or vocabulary sizes",
        ));
    }
    Ok(c)
}

/// Token ids of a batch of prompts, padded.
struct EncodedPrompts {
    rows: usize,
    len: usize,
    ids: Vec<i64>,
    mask: Vec<i64>,
}

/// Per-row sampler state.
struct RowState {
    rng: rand_chacha::ChaCha8Rng,
    tokens: Vec<u32>,
    done: bool,
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
        let mut tokenizer = super::bundle::parse_tokenizer(&tok_text, &tok_path)?;
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
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("generator");
        let fingerprint = format!("{name}@{:016x}", h.digest());
        let rt = options.runtime.as_deref();
        let threads = options.threads;
        let no_config = std::collections::BTreeMap::new();
        let session = |f: &str| super::runtime::new_session(rt, &dir.join(f), threads, &no_config);
        let sessions = match layout {
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
        };
        let g = Generator {
            dir,
            fingerprint,
            tokenizer,
            truncating: Mutex::new(None),
            config,
            layout,
            sessions: Mutex::new(sessions),
            run_nanos: Default::default(),
        };
        g.check_graphs()?;
        Ok(g)
    }

    fn check_graphs(&self) -> Result<()> {
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
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

    fn past_names(&self) -> Vec<String> {
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
        self.run_nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9
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

    fn pad_prompts(&self, prompts: &[Vec<u32>]) -> Result<EncodedPrompts> {
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

    fn run<'s>(
        &self,
        session: &'s mut Session,
        file: &str,
        inputs: Vec<(String, SessionInputValue<'_>)>,
    ) -> Result<ort::session::SessionOutputs<'s>> {
        let start = std::time::Instant::now();
        let out = session
            .run(inputs)
            .map_err(|e| model_err(&self.dir.join(file), format!("inference failed: {e}")));
        self.run_nanos.fetch_add(
            start.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        out
    }

    fn ort_err(&self, e: ort::Error) -> Error {
        model_err(&self.dir, format!("tensor error: {e}"))
    }

    /// Runs the encoder; returns `last_hidden_state` expanded so that each prompt's row
    /// repeats `copies` times, with the matching attention mask.
    fn encode(
        &self,
        s: &mut Sessions,
        p: &EncodedPrompts,
        copies: usize,
    ) -> Result<(DynValue, DynValue)> {
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
        if hshape.len() != 3 || hidden.len() != p.rows * p.len * d {
            return Err(model_err(
                &self.dir.join(ENCODER),
                format!("last_hidden_state has shape {:?}", &hshape[..]),
            ));
        }
        let b = p.rows * copies;
        let row = p.len * d;
        let mut h = Vec::with_capacity(b * row);
        let mut m = Vec::with_capacity(b * p.len);
        for r in 0..p.rows {
            for _ in 0..copies {
                h.extend_from_slice(&hidden[r * row..(r + 1) * row]);
                m.extend_from_slice(&p.mask[r * p.len..(r + 1) * p.len]);
            }
        }
        let hv = Tensor::from_array(([b, p.len, d], h)).map_err(|e| self.ort_err(e))?;
        let mv = Tensor::from_array(([b, p.len], m)).map_err(|e| self.ort_err(e))?;
        Ok((hv.into_dyn(), mv.into_dyn()))
    }

    fn empty_pasts(&self, b: usize) -> Result<Vec<(String, DynValue)>> {
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

    /// Generates continuations of already tokenised prompts: `samples` sequences per
    /// prompt, all decoded in one batch. `seeds[i]` seeds row i (prompt i / samples,
    /// sample i % samples). Returns the generated ids of each row, without the decoder
    /// start token, ending with EOS when the model stopped before `max_length`.
    pub fn generate_ids(
        &self,
        prompts: &[Vec<u32>],
        samples: usize,
        sampling: &Sampling,
        seeds: &[u64],
    ) -> Result<Vec<Vec<u32>>> {
        let samples = samples.max(1);
        let b = prompts.len() * samples;
        if b == 0 {
            return Ok(Vec::new());
        }
        if seeds.len() != b {
            return Err(Error::InvalidArgument(format!(
                "{} seeds for {b} rows",
                seeds.len()
            )));
        }
        if sampling.max_length < 2 {
            return Err(Error::InvalidArgument(
                "max_length must be at least 2 (the start token and one more)".into(),
            ));
        }
        let p = self.pad_prompts(prompts)?;
        let mut guard = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        let (hidden, mask) = self.encode(s, &p, samples)?;
        let mut rows: Vec<RowState> = seeds
            .iter()
            .map(|&seed| RowState {
                rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
                tokens: Vec::new(),
                done: false,
            })
            .collect();
        let c = self.config.clone();
        let mut next: Vec<i64> = vec![c.decoder_start; b];
        let mut decoder_past: Vec<DynValue> = Vec::new();
        let mut encoder_past: Vec<DynValue> = Vec::new();
        for step in 0..sampling.max_length - 1 {
            let ids =
                Tensor::from_array(([b, 1usize], next.clone())).map_err(|e| self.ort_err(e))?;
            let mut inputs: Vec<(String, SessionInputValue<'_>)> = vec![
                ("input_ids".into(), ids.into()),
                ("encoder_attention_mask".into(), (&mask).into()),
            ];
            let first = step == 0;
            let (session, file) = match (self.layout, first) {
                (DecoderLayout::Split, true) => (&mut s.first, DECODER),
                (DecoderLayout::Split, false) => (
                    s.with_past.as_mut().expect("split layout"),
                    DECODER_WITH_PAST,
                ),
                (DecoderLayout::Merged, _) => (&mut s.first, DECODER_MERGED),
            };
            let empty;
            if first || self.layout == DecoderLayout::Merged {
                inputs.push(("encoder_hidden_states".into(), (&hidden).into()));
            }
            if self.layout == DecoderLayout::Merged {
                let flag =
                    Tensor::from_array(([1usize], vec![!first])).map_err(|e| self.ort_err(e))?;
                inputs.push(("use_cache_branch".into(), flag.into()));
            }
            if first && self.layout == DecoderLayout::Merged {
                empty = self.empty_pasts(b)?;
                for (n, v) in &empty {
                    inputs.push((n.clone(), v.into()));
                }
            } else if !first {
                for l in 0..c.layers {
                    for (kv, i) in [("key", 0), ("value", 1)] {
                        inputs.push((
                            format!("past_key_values.{l}.decoder.{kv}"),
                            (&decoder_past[2 * l + i]).into(),
                        ));
                        inputs.push((
                            format!("past_key_values.{l}.encoder.{kv}"),
                            (&encoder_past[2 * l + i]).into(),
                        ));
                    }
                }
            }
            let mut out = self.run(session, file, inputs)?;
            {
                let (lshape, logits) = out["logits"]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| self.ort_err(e))?;
                let v = *lshape.last().unwrap_or(&0) as usize;
                if lshape.len() != 3 || lshape[0] as usize != b || v == 0 {
                    return Err(model_err(
                        &self.dir.join(file),
                        format!("logits have shape {:?}", &lshape[..]),
                    ));
                }
                let t = lshape[1] as usize;
                for (r, row) in rows.iter_mut().enumerate() {
                    if row.done {
                        next[r] = c.pad;
                        continue;
                    }
                    let last = &logits[(r * t + t - 1) * v..(r * t + t) * v];
                    let tok = pick(last, sampling, &mut row.rng)
                        .ok_or_else(|| model_err(&self.dir.join(file), "non-finite logits"))?;
                    row.tokens.push(tok as u32);
                    next[r] = tok as i64;
                    if tok as i64 == c.eos {
                        row.done = true;
                    }
                }
            }
            if rows.iter().all(|r| r.done) {
                break;
            }
            let mut new_decoder = Vec::with_capacity(2 * c.layers);
            let mut new_encoder = Vec::with_capacity(2 * c.layers);
            for l in 0..c.layers {
                for kv in ["key", "value"] {
                    let name = format!("present.{l}.decoder.{kv}");
                    new_decoder.push(out.remove(&name).ok_or_else(|| {
                        model_err(&self.dir.join(file), format!("no output {name}"))
                    })?);
                    if first {
                        let name = format!("present.{l}.encoder.{kv}");
                        new_encoder.push(out.remove(&name).ok_or_else(|| {
                            model_err(&self.dir.join(file), format!("no output {name}"))
                        })?);
                    }
                }
            }
            drop(out);
            decoder_past = new_decoder;
            if first {
                // The merged graph's cached branch returns dummy cross-attention tensors:
                // the first step's are kept for the whole sequence.
                encoder_past = new_encoder;
            }
        }
        Ok(rows.into_iter().map(|r| r.tokens).collect())
    }

    /// Teacher-forced logits: for a prompt and a target (ids without the start token),
    /// the logits over the vocabulary at each target position (row i predicts `target[i]`).
    pub fn target_logits(&self, prompt: &[u32], target: &[u32]) -> Result<Vec<Vec<f32>>> {
        if target.is_empty() {
            return Ok(Vec::new());
        }
        let p = self.pad_prompts(&[prompt.to_vec()])?;
        let mut guard = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        let (hidden, mask) = self.encode(s, &p, 1)?;
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
        if lshape.len() != 3 || lshape[1] as usize != t || logits.len() != t * v {
            return Err(model_err(
                &self.dir.join(file),
                format!("logits have shape {:?}", &lshape[..]),
            ));
        }
        Ok(logits.chunks_exact(v).map(<[f32]>::to_vec).collect())
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

    /// Vocabulary size from `config.json`.
    pub fn vocab_size(&self) -> usize {
        self.config.vocab
    }

    /// The EOS token id.
    pub fn eos_id(&self) -> u32 {
        self.config.eos as u32
    }
}

/// Indices of the `k` largest logits (and any further ones tied with the k-th), largest
/// first, ties by index: one pass with a small sorted buffer instead of a full sort.
fn top_k_indices(logits: &[f32], k: usize) -> Vec<usize> {
    let better = |a: (f32, usize), b: (f32, usize)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (i, &x) in logits.iter().enumerate() {
        if best.len() == k && !better((x, i), best[k - 1]) {
            continue;
        }
        let pos = best.partition_point(|&b| better(b, (x, i)));
        best.insert(pos, (x, i));
        best.truncate(k);
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
    out
}

/// Picks the next token from one row of logits. `None` when a logit is NaN or +inf.
pub fn pick(logits: &[f32], s: &Sampling, rng: &mut impl Rng) -> Option<usize> {
    if logits.iter().any(|x| x.is_nan() || *x == f32::INFINITY) {
        return None;
    }
    if s.is_greedy() {
        let mut best = 0;
        for (i, &x) in logits.iter().enumerate() {
            if x > logits[best] {
                best = i;
            }
        }
        return Some(best);
    }
    // Temperature, then top-k (ties with the k-th kept), then top-p; as Hugging Face.
    let order = if s.top_k > 0 && s.top_k < logits.len() {
        top_k_indices(logits, s.top_k)
    } else {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        order
    };
    let keep = order.len();
    let t = s.temperature as f64;
    let max = logits[order[0]] as f64;
    let mut probs: Vec<f64> = order[..keep]
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / t).exp())
        .collect();
    if s.top_p < 1.0 {
        let total: f64 = probs.iter().sum();
        let mut cum = 0.0;
        let mut n = 0;
        for p in &probs {
            n += 1;
            cum += p / total;
            if cum >= s.top_p as f64 {
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
            assert_eq!(top_k_indices(&logits, k), want, "k {k}");
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
