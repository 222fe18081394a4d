//! Text → vector with an ONNX encoder: batched tokenisation, inference, pooling.

use super::bundle::{ModelBundle, Pooling};
use crate::error::{Error, Result};
use ort::session::Session;
use ort::value::Tensor;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokenizers::{Tokenizer, TruncationParams};

/// Most sessions [`EncoderOptions::sessions`] = 0 opens for a bundle encoded one text per call.
const MAX_AUTO_SESSIONS: usize = 4;

/// Settings for loading an [`Encoder`].
#[derive(Clone, Debug)]
pub struct EncoderOptions {
    /// Threads in all (default, or 0: all cores): each session gets `threads / sessions`
    /// (at least one) for its inference calls.
    pub threads: usize,
    /// Sessions that run inference calls concurrently; 0 (the default) chooses: one for a
    /// batch-invariant bundle (on two cores two one-thread sessions measured no faster than
    /// one two-thread one on batches), and for a bundle whose rows depend on their batch (see
    /// [`Manifest::batch_invariant`](super::bundle::Manifest::batch_invariant)) one per
    /// thread up to 4, since its texts go one per call. Each session holds its own copy of
    /// the weights (~125 MB for the int8 default).
    pub sessions: usize,
    /// Most texts per inference call (default 32). A bundle whose rows depend on their
    /// batch gets one text per call whatever this says, so that a text's vector never
    /// depends on the texts encoded with it (and no row is padded).
    pub batch_size: usize,
    /// Most tokens per inference call, padding included (rows × the longest row; default
    /// 4096). Texts are grouped by token length, so a batch of short queries holds more rows
    /// than a batch of long passages. A text longer than the budget goes alone.
    pub batch_tokens: usize,
    /// Explicit path of `libonnxruntime` (otherwise `ORT_DYLIB_PATH`, then the set-up cache).
    pub runtime: Option<PathBuf>,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            sessions: 0,
            batch_size: 32,
            batch_tokens: 4096,
            runtime: None,
        }
    }
}

/// Whether a text is a query or a passage (they get different prefixes and limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// A search query.
    Query,
    /// A stored passage.
    Passage,
}

/// An ONNX text encoder loaded from a [`ModelBundle`]. `Send + Sync`; each call spreads its
/// batches over the encoder's sessions.
pub struct Encoder {
    bundle: ModelBundle,
    query_tok: Tokenizer,
    passage_tok: Tokenizer,
    sessions: Vec<Mutex<Session>>,
    batch_size: usize,
    batch_tokens: usize,
    pad_id: u32,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("bundle", &self.bundle.fingerprint())
            .finish()
    }
}

fn model_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Model {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn load_tokenizer(path: &Path, max_len: usize) -> Result<Tokenizer> {
    let bytes = std::fs::read(path).map_err(|e| model_err(path, format!("cannot read: {e}")))?;
    let mut t = super::bundle::parse_tokenizer(&bytes, path)?;
    t.with_truncation(Some(TruncationParams {
        max_length: max_len,
        ..Default::default()
    }))
    .map_err(|e| model_err(path, format!("cannot set truncation: {e}")))?;
    t.with_padding(None);
    Ok(t)
}

/// Texts tokenised at a time by [`Encoder::encode`] (then sorted by length and batched).
const TOKENIZE_WINDOW: usize = 4096;

/// Vectors of one batch, each with its position in the caller's list.
type Encoded = Vec<(usize, Vec<f32>)>;

/// Token ids and mask of one batch, padded to its longest text.
struct Batch {
    positions: Vec<usize>,
    rows: usize,
    len: usize,
    ids: Vec<i64>,
    mask: Vec<i64>,
}

impl Encoder {
    /// Loads the runtime (once per process), the tokenizer and the ONNX session.
    pub fn open(bundle: ModelBundle, options: &EncoderOptions) -> Result<Self> {
        let m = bundle.manifest();
        let tok_path = bundle.tokenizer_path();
        let query_tok = load_tokenizer(&tok_path, m.max_query_tokens)?;
        let passage_tok = load_tokenizer(&tok_path, m.max_passage_tokens)?;
        let pad_id = m
            .pad_id
            .or_else(|| query_tok.get_padding().map(|p| p.pad_id))
            .or_else(|| query_tok.token_to_id("<pad>"))
            .unwrap_or(0);
        let model_path = bundle.model_path();
        let threads = match options.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let alone = !m.batch_invariant();
        let n_sessions = match options.sessions {
            0 if alone => threads.min(MAX_AUTO_SESSIONS),
            0 => 1,
            n => n,
        };
        // Sessions share their prepacked weights (the container needs the runtime loaded).
        super::runtime::init_runtime(options.runtime.as_deref())?;
        let prepacked = ort::session::builder::PrepackedWeights::new();
        let mut sessions = Vec::new();
        for _ in 0..n_sessions {
            sessions.push(super::runtime::new_session(
                options.runtime.as_deref(),
                &model_path,
                (threads / n_sessions).max(1),
                &m.session_config,
                None,
                Some(&prepacked),
            )?);
        }
        let session = &sessions[0];
        let names: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        for want in [
            Some(&m.inputs.input_ids),
            Some(&m.inputs.attention_mask),
            m.inputs.token_type_ids.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if !names.contains(&want.as_str()) {
                return Err(model_err(
                    &model_path,
                    format!("graph has no input {want:?} (it has {names:?})"),
                ));
            }
        }
        if !session.outputs().iter().any(|o| o.name() == m.output) {
            return Err(model_err(
                &model_path,
                format!("graph has no output {:?}", m.output),
            ));
        }
        Ok(Encoder {
            bundle,
            query_tok,
            passage_tok,
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            batch_size: if alone { 1 } else { options.batch_size.max(1) },
            batch_tokens: options.batch_tokens.max(1),
            pad_id,
        })
    }

    /// Opens the bundle at `dir` with default options.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Encoder::open(ModelBundle::open(dir)?, &EncoderOptions::default())
    }

    /// The bundle this encoder came from.
    pub fn bundle(&self) -> &ModelBundle {
        &self.bundle
    }

    /// Output dimension.
    pub fn dim(&self) -> usize {
        self.bundle.manifest().dim
    }

    /// The bundle's fingerprint.
    pub fn fingerprint(&self) -> &str {
        self.bundle.fingerprint()
    }

    /// Whether `text`, with the passage prefix, fits the model's passage token limit
    /// (longer passages are truncated when encoded).
    pub fn passage_fits(&self, text: &str) -> Result<bool> {
        let prefix = &self.bundle.manifest().passage_prefix;
        let encoding = self
            .passage_tok
            .encode(format!("{prefix}{text}"), true)
            .map_err(|e| {
                model_err(
                    &self.bundle.tokenizer_path(),
                    format!("cannot tokenize: {e}"),
                )
            })?;
        Ok(encoding.get_overflowing().is_empty())
    }

    /// The passage token limit of the bundle.
    pub fn max_passage_tokens(&self) -> usize {
        self.bundle.manifest().max_passage_tokens
    }

    /// Encodes queries (with the query prefix).
    pub fn encode_queries<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        self.encode(texts, TextKind::Query)
    }

    /// Encodes passages (with the passage prefix).
    pub fn encode_passages<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        self.encode(texts, TextKind::Passage)
    }

    /// Token ids of each of `texts`, with the kind's prefix, truncated.
    fn tokenize(&self, texts: &[&str], kind: TextKind) -> Result<Vec<tokenizers::Encoding>> {
        let m = self.bundle.manifest();
        let (tok, prefix) = match kind {
            TextKind::Query => (&self.query_tok, m.query_prefix.as_str()),
            TextKind::Passage => (&self.passage_tok, m.passage_prefix.as_str()),
        };
        let inputs: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
        tok.encode_batch(inputs, true).map_err(|e| {
            model_err(
                &self.bundle.tokenizer_path(),
                format!("tokenisation failed: {e}"),
            )
        })
    }

    /// Cuts tokenised texts (`(position, encoding)`) into padded batches: longest first, each
    /// batch at most `batch_size` rows and `batch_tokens` padded tokens.
    fn batches(&self, mut items: Vec<(usize, tokenizers::Encoding)>) -> Vec<Batch> {
        items.sort_by_key(|(_, e)| std::cmp::Reverse(e.get_ids().len()));
        let mut out = Vec::new();
        let mut rest = &items[..];
        while !rest.is_empty() {
            // Sorted longest first: the first row sets the batch's length.
            let len = rest[0].1.get_ids().len().max(1);
            let rows = (self.batch_tokens / len)
                .clamp(1, self.batch_size)
                .min(rest.len());
            let (group, tail) = rest.split_at(rows);
            rest = tail;
            let mut ids = vec![self.pad_id as i64; rows * len];
            let mut mask = vec![0i64; rows * len];
            for (r, (_, e)) in group.iter().enumerate() {
                for (j, &id) in e.get_ids().iter().enumerate() {
                    ids[r * len + j] = id as i64;
                    mask[r * len + j] = 1;
                }
            }
            out.push(Batch {
                positions: group.iter().map(|(p, _)| *p).collect(),
                rows,
                len,
                ids,
                mask,
            });
        }
        out
    }

    fn infer(&self, batch: Batch, session: usize) -> Result<Encoded> {
        let m = self.bundle.manifest();
        let path = self.bundle.model_path();
        let err = |e: ort::Error| model_err(&path, format!("inference failed: {e}"));
        let shape = [batch.rows, batch.len];
        let mut inputs: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![
            (
                m.inputs.input_ids.clone(),
                Tensor::from_array((shape, batch.ids)).map_err(err)?.into(),
            ),
            (
                m.inputs.attention_mask.clone(),
                Tensor::from_array((shape, batch.mask.clone()))
                    .map_err(err)?
                    .into(),
            ),
        ];
        if let Some(name) = &m.inputs.token_type_ids {
            inputs.push((
                name.clone(),
                Tensor::from_array((shape, vec![0i64; batch.rows * batch.len]))
                    .map_err(err)?
                    .into(),
            ));
        }
        let mut session = self.sessions[session % self.sessions.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let outputs = session.run(inputs).map_err(err)?;
        let (out_shape, data) = outputs[m.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(err)?;
        let dims: Vec<i64> = out_shape.iter().copied().collect();
        let dim = m.dim;
        let expect_rank = if m.pooling == Pooling::Output { 2 } else { 3 };
        if dims.len() != expect_rank
            || dims[0] as usize != batch.rows
            || dims[dims.len() - 1] as usize != dim
        {
            return Err(model_err(&path, format!("output {:?} has shape {dims:?}; expected [{}, ..., {dim}] (is the manifest's dim right?)", m.output, batch.rows)));
        }
        let mut out = Vec::with_capacity(batch.rows);
        for (r, &pos) in batch.positions.iter().enumerate() {
            let mut v = vec![0f32; dim];
            match m.pooling {
                Pooling::Output => v.copy_from_slice(&data[r * dim..(r + 1) * dim]),
                Pooling::Cls => {
                    v.copy_from_slice(&data[r * batch.len * dim..r * batch.len * dim + dim])
                }
                Pooling::Mean => {
                    let mut count = 0f32;
                    for t in 0..batch.len {
                        if batch.mask[r * batch.len + t] == 1 {
                            let row =
                                &data[(r * batch.len + t) * dim..(r * batch.len + t + 1) * dim];
                            v.iter_mut().zip(row).for_each(|(a, b)| *a += b);
                            count += 1.0;
                        }
                    }
                    v.iter_mut().for_each(|a| *a /= count.max(1.0));
                }
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(model_err(&path, "the model produced a non-finite value"));
            }
            if m.normalize {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                }
            }
            out.push((pos, v));
        }
        Ok(out)
    }

    /// Encodes texts of one kind. Texts are tokenised in windows of 4,096,
    /// grouped by token length into batches (see [`EncoderOptions::batch_tokens`]), and
    /// tokenisation of the next window overlaps inference of the current one.
    pub fn encode<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        kind: TextKind,
    ) -> Result<Vec<Vec<f32>>> {
        let texts: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let starts = (0..texts.len()).step_by(TOKENIZE_WINDOW);
        let mut out = vec![Vec::new(); texts.len()];
        // The batches of the window of texts that begins at `start`.
        let window_batches = |start: usize| -> Result<Vec<Batch>> {
            let end = (start + TOKENIZE_WINDOW).min(texts.len());
            let encodings = self.tokenize(&texts[start..end], kind)?;
            Ok(self.batches((start..).zip(encodings).collect()))
        };
        if texts.len() <= TOKENIZE_WINDOW && (self.sessions.len() == 1 || texts.len() == 1) {
            for start in starts {
                for batch in window_batches(start)? {
                    for (pos, v) in self.infer(batch, 0)? {
                        out[pos] = v;
                    }
                }
            }
            return Ok(out);
        }
        let workers = self.sessions.len();
        let results: Vec<Result<Encoded>> = crossbeam::scope(|s| {
            let (tx, rx) = crossbeam::channel::bounded::<Result<Batch>>(workers + 1);
            let window_batches = &window_batches;
            s.spawn(move |_| {
                for start in starts {
                    match window_batches(start) {
                        Ok(batches) => {
                            for b in batches {
                                if tx.send(Ok(b)).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            });
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let rx = rx.clone();
                    s.spawn(move |_| -> Result<Encoded> {
                        let mut done = Vec::new();
                        for batch in rx {
                            done.extend(self.infer(batch?, w)?);
                        }
                        Ok(done)
                    })
                })
                .collect();
            drop(rx);
            handles
                .into_iter()
                .map(|h| h.join().expect("encoder worker panicked"))
                .collect()
        })
        .expect("encoder threads panicked");
        for r in results {
            for (pos, v) in r? {
                out[pos] = v;
            }
        }
        Ok(out)
    }
}
