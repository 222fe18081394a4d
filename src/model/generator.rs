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
use ort::value::{DynValue, Tensor, TensorRef};
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

/// Nanosecond counters behind [`GenerationTimings`].
#[derive(Default)]
struct Timers {
    total: std::sync::atomic::AtomicU64,
    encoder: std::sync::atomic::AtomicU64,
    decoder: std::sync::atomic::AtomicU64,
    sampling: std::sync::atomic::AtomicU64,
    copying: std::sync::atomic::AtomicU64,
}

impl Timers {
    fn add(counter: &std::sync::atomic::AtomicU64, since: std::time::Instant) {
        counter.fetch_add(
            since.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// Key/value tensors carried between decoder steps.
struct Pasts {
    /// Self-attention key/value per layer (`2 * layers`, key then value).
    decoder: Vec<DynValue>,
    /// Cross-attention key/value per layer, from the first step.
    encoder: Vec<DynValue>,
    /// With an in-place cache (`decoder` then empty): the self-attention key/values.
    cache: Option<CacheBuffers>,
    /// Positions of the self-attention cache that hold key/values.
    filled: usize,
}

/// An in-place self-attention cache: one buffer per layer and key/value (key then value),
/// each `[rows, heads, cap, d]`, the first `filled` positions of every (row, head) in use
/// and the rest zeros. Each buffer's allocation holds the longest query, so growing lays
/// it out again in place; buffers come from, and go back to, the generator's pool.
struct CacheBuffers {
    rows: usize,
    heads: usize,
    d: usize,
    cap: usize,
    data: Vec<Vec<f32>>,
}

impl CacheBuffers {
    /// Lays every buffer out again for `cap` positions per (row, head), in place: blocks
    /// move back to front (each lands at or after where it was), the new room is zeroed.
    fn grow(&mut self, cap: usize) {
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
    fn keep_rows(&mut self, keep: &[usize]) {
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
const CACHE_CHUNK: usize = 8;

/// The token ids a generator samples from (`target_vocab.json`), sorted ascending.
#[derive(Clone, Debug)]
struct TargetVocab {
    ids: Vec<u32>,
    /// The decoder's logits have one column per kept id (a trimmed output projection).
    trimmed: bool,
}

/// Copies the given rows (first dimension) of a contiguous tensor into a new tensor.
fn gather_rows<T>(data: &[T], shape: impl Into<Vec<usize>>, rows: &[usize]) -> ort::Result<DynValue>
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
    schedule: Schedule,
    vocab: Option<TargetVocab>,
    /// `decoder_with_past_model.onnx` takes one row of cross-attention key/values per prompt.
    shared_cross: bool,
    /// `decoder_with_past_model.onnx` reads its self-attention cache from buffers with spare
    /// room (`cache_length` filled) and returns only the new step's key/values.
    in_place_cache: bool,
    /// Buffers of finished in-place caches, reused by the next (memory that is already
    /// mapped; fresh memory costs a page fault per 4 KiB).
    cache_pool: Mutex<Vec<Vec<f32>>>,
    /// Intra-op threads per session (also the threads that sample a step's rows).
    threads: usize,
    /// One set of sessions per worker (the first serves everything but parallel waves).
    sessions: Vec<Mutex<Sessions>>,
    /// Where the time went (nanoseconds), for profiling.
    timers: Timers,
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

/// The optional manifest of a generator folder (format/FORMAT.md, "Generator folders").
pub const GENERATOR_MANIFEST: &str = "xqdb-generator.json";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    format: String,
    version: u32,
    #[serde(default)]
    target_vocab: Option<String>,
    #[serde(default)]
    logits: Option<String>,
    /// Informational (read so that `deny_unknown_fields` accepts it).
    #[serde(default, rename = "precision")]
    _precision: Option<String>,
    #[serde(default)]
    cross_attention: Option<String>,
    #[serde(default)]
    decoder_cache: Option<String>,
    /// Informational.
    #[serde(default, rename = "source")]
    _source: Option<String>,
}

#[derive(serde::Deserialize)]
struct VocabFile {
    format: String,
    version: u32,
    vocab_size: usize,
    ids: Vec<u32>,
}

/// What a generator folder's manifest says.
#[derive(Default)]
struct FolderManifest {
    /// The target vocabulary, with the file's bytes (for the fingerprint).
    vocab: Option<(TargetVocab, Vec<u8>)>,
    /// `decoder_with_past_model.onnx` takes cross-attention key/values per prompt.
    shared_cross: bool,
    /// `decoder_with_past_model.onnx` appends to its self-attention cache in place.
    in_place_cache: bool,
}

/// Reads `xqdb-generator.json` and the target vocabulary it names. Nothing for a plain
/// optimum export.
fn read_manifest(dir: &Path, config: &Seq2SeqConfig) -> Result<FolderManifest> {
    let path = dir.join(GENERATOR_MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FolderManifest::default()),
        Err(e) => return Err(model_err(&path, format!("cannot read ({e})"))),
    };
    let m: ManifestFile =
        serde_json::from_str(&text).map_err(|e| model_err(&path, format!("bad manifest: {e}")))?;
    if m.format != "xqdb-generator" || m.version != 1 {
        return Err(model_err(
            &path,
            format!(
                "format {:?} version {} is not xqdb-generator version 1 (a newer xqdb wrote it?)",
                m.format, m.version
            ),
        ));
    }
    // A two-valued field: absent or `off` is false, `on` true, anything else an error.
    let choice = |field: &str, value: Option<&str>, off: &str, on: &str| match value {
        None => Ok(false),
        Some(v) if v == off => Ok(false),
        Some(v) if v == on => Ok(true),
        Some(o) => Err(model_err(
            &path,
            format!("{field} {o:?} is not {off} or {on}"),
        )),
    };
    let trimmed = choice("logits", m.logits.as_deref(), "full", "trimmed")?;
    let shared_cross = choice(
        "cross_attention",
        m.cross_attention.as_deref(),
        "per_row",
        "per_prompt",
    )?;
    let in_place_cache = choice(
        "decoder_cache",
        m.decoder_cache.as_deref(),
        "concat",
        "in_place",
    )?;
    let Some(file) = m.target_vocab else {
        if trimmed {
            return Err(model_err(&path, "trimmed logits need a target_vocab file"));
        }
        return Ok(FolderManifest {
            vocab: None,
            shared_cross,
            in_place_cache,
        });
    };
    if file.contains('/') || file.contains('\\') || file.starts_with('.') {
        return Err(model_err(
            &path,
            format!("target_vocab {file:?} is not a file name"),
        ));
    }
    let vpath = dir.join(&file);
    let bytes =
        std::fs::read(&vpath).map_err(|e| model_err(&vpath, format!("cannot read ({e})")))?;
    let v = check_target_vocab(&bytes, config.vocab, config.eos as u32)
        .map_err(|reason| model_err(&vpath, reason))?;
    Ok(FolderManifest {
        vocab: Some((TargetVocab { ids: v, trimmed }, bytes)),
        shared_cross,
        in_place_cache,
    })
}

/// Checks a `target_vocab.json` for a model of `vocab` pieces whose EOS is `eos`; returns
/// its ids. Public for fuzzing.
#[doc(hidden)]
pub fn check_target_vocab(
    bytes: &[u8],
    vocab: usize,
    eos: u32,
) -> std::result::Result<Vec<u32>, String> {
    let v: VocabFile = serde_json::from_slice(bytes).map_err(|e| format!("bad JSON: {e}"))?;
    if v.format != "xqdb-target-vocab" || v.version != 1 {
        return Err(format!(
            "format {:?} version {} is not xqdb-target-vocab version 1",
            v.format, v.version
        ));
    }
    if v.vocab_size != vocab {
        return Err(format!(
            "made for a vocabulary of {} pieces, the model has {vocab}",
            v.vocab_size
        ));
    }
    if v.ids.is_empty() || v.ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err("ids must be non-empty and strictly ascending".into());
    }
    if *v.ids.last().expect("non-empty") as usize >= vocab {
        return Err(format!("an id is outside the vocabulary of {vocab}"));
    }
    if v.ids.binary_search(&eos).is_err() {
        return Err(format!("EOS ({eos}) is not among the ids"));
    }
    Ok(v.ids)
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
        super::runtime::init_runtime(rt)?;
        let prepacked = ort::session::builder::PrepackedWeights::new();
        let workers = options.workers.max(1);
        let mut sets = Vec::with_capacity(workers);
        for w in 0..workers {
            let session = |f: &str| {
                let profile = options.profile.as_ref().map(|p| {
                    let stem = f.trim_end_matches(".onnx");
                    PathBuf::from(format!("{}-{stem}-w{w}", p.display()))
                });
                super::runtime::new_session(
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

    fn check_graphs(&self) -> Result<()> {
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
        let timer = if file == ENCODER {
            &self.timers.encoder
        } else {
            &self.timers.decoder
        };
        Timers::add(timer, start);
        out
    }

    fn ort_err(&self, e: ort::Error) -> Error {
        model_err(&self.dir, format!("tensor error: {e}"))
    }

    /// Runs the encoder on a padded batch; returns `last_hidden_state` with each prompt's row
    /// repeated `copies[r]` times, and the matching attention mask.
    fn encode(
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
    fn encoder_states(&self, s: &mut Sessions, p: &EncodedPrompts) -> Result<(Vec<f32>, usize)> {
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

    /// One decoder step over `ids` (one token per row). `first`: the step after the start
    /// token (no past yet); otherwise `pasts` holds the decoder and encoder key/values.
    /// `hidden` is needed on the first step and on every step of the merged layout.
    fn decoder_step<'s>(
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

    /// Whether logits `v` wide fit the target vocabulary: one column per kept id when the
    /// projection is trimmed, every kept id inside the width when it is not.
    fn logits_fit(&self, v: usize) -> bool {
        match &self.vocab {
            Some(t) if t.trimmed => v == t.ids.len(),
            Some(t) => v > *t.ids.last().unwrap_or(&0) as usize,
            None => true,
        }
    }

    /// The logits of one step as `[rows, width]` (the last position of each row), checked
    /// against the target vocabulary.
    fn step_logits<'o>(
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
    fn sample(
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

    /// Takes the `present.*` outputs of a step: decoder key/values, and on the first step the
    /// encoder (cross-attention) ones.
    fn take_presents(
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
    fn lockstep(
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
    fn wave(
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
        // Encoder: one prompt at a time, at its real length; then padded into one batch.
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

    /// Samples the next token of each `(position, row)` from `logits` (`width` per position),
    /// on up to `threads` threads when there is enough to share (each row has its own
    /// generator, so the split changes nothing). A row that samples EOS is marked done.
    fn sample_rows(
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

    /// The caches after the first step (one position): as they are, or with an in-place
    /// cache the self-attention key/values moved into buffers that can hold `max_length`
    /// positions.
    fn start_cache(
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
    fn advance_cache(&self, pasts: &mut Pasts, presents: Vec<DynValue>) -> Result<()> {
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
    fn pooled(&self, len: usize) -> Vec<f32> {
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
    fn release_cache(&self, pasts: Pasts) {
        let Some(c) = pasts.cache else { return };
        let mut pool = self.cache_pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.extend(c.data);
        pool.sort_by_key(|v| std::cmp::Reverse(v.capacity()));
        pool.truncate(4 * self.config.layers);
    }

    fn gather_all(&self, values: &[DynValue], rows: &[usize]) -> Result<Vec<DynValue>> {
        values
            .iter()
            .map(|v| self.gather_value::<f32>(v, rows))
            .collect()
    }

    fn gather_value<T>(&self, v: &DynValue, rows: &[usize]) -> Result<DynValue>
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
/// first, ties by index: one pass with a small sorted buffer instead of a full sort. Blocks
/// of 16 logits none of which can enter the buffer are skipped with one vectorisable test.
/// `None` when a logit is NaN or +inf.
fn top_k_indices(logits: &[f32], k: usize) -> Option<Vec<usize>> {
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
pub fn pick(logits: &[f32], s: &Sampling, rng: &mut impl Rng) -> Option<usize> {
    let top_k = !s.is_greedy() && s.top_k > 0 && s.top_k < logits.len();
    if !top_k && logits.iter().any(|x| x.is_nan() || *x == f32::INFINITY) {
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
    let order = if top_k {
        top_k_indices(logits, s.top_k)?
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
