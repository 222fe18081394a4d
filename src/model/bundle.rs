//! Model bundles: a folder with ONNX files, a tokenizer and a manifest (`xqdb-bundle.json`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The bundle new indexes use when none is named: multilingual-e5-small as an int8 graph with
/// ONNX Runtime's transformer operators (see BENCHMARKS.md for speed and quality against the
/// fp32 graph, `multilingual-e5-small-fp32`).
pub const DEFAULT_BUNDLE: &str = "multilingual-e5-small-int8";

/// File name of the manifest inside a bundle folder.
pub const MANIFEST_FILE: &str = "xqdb-bundle.json";

/// How token vectors become one text vector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average of the token vectors, padding excluded.
    Mean,
    /// The first token's vector.
    Cls,
    /// The model already outputs one vector per text in its output tensor.
    Output,
}

/// Expected size and digest of one bundle file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheck {
    /// Size in bytes (checked at open).
    pub bytes: u64,
    /// SHA-256, lower-case hex (checked by [`ModelBundle::verify_checksums`]).
    pub sha256: String,
}

/// Names of the ONNX graph's inputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputNames {
    /// Token ids, int64 [batch, sequence].
    pub input_ids: String,
    /// Attention mask, int64 [batch, sequence].
    pub attention_mask: String,
    /// Token type ids (all zero), when the graph takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type_ids: Option<String>,
}

/// The manifest of a model bundle (see format/FORMAT.md, "Model bundles").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version (1).
    pub format: u32,
    /// `encoder` (seq2seq generators come with their own kind).
    pub kind: String,
    /// A display name.
    pub name: String,
    /// The ONNX file, relative to the bundle folder.
    pub model: String,
    /// The `tokenizer.json`, relative to the bundle folder.
    pub tokenizer: String,
    /// Graph input names.
    pub inputs: InputNames,
    /// Graph output to pool (`last_hidden_state`, or a pooled output for `Pooling::Output`).
    pub output: String,
    /// Pooling method.
    pub pooling: Pooling,
    /// L2-normalise the pooled vector.
    pub normalize: bool,
    /// Text put before every query.
    #[serde(default)]
    pub query_prefix: String,
    /// Text put before every passage.
    #[serde(default)]
    pub passage_prefix: String,
    /// Longest query, in tokens (special tokens included).
    pub max_query_tokens: usize,
    /// Longest passage, in tokens (special tokens included).
    pub max_passage_tokens: usize,
    /// Output dimension.
    pub dim: usize,
    /// Padding token id (default: the tokenizer's, else 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_id: Option<u32>,
    /// Size and digest of each file, by relative path.
    #[serde(default)]
    pub files: BTreeMap<String, FileCheck>,
    /// Where the weights came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The weights' type (`fp32`, `int8`, ...), for listings; absent means fp32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// ONNX Runtime session configuration entries (key → value) every session of this
    /// bundle gets, e.g. `optimization.disable_specified_optimizers`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub session_config: BTreeMap<String, String>,
    /// Whether each output row depends on its own input row only, whatever else shares its
    /// batch; absent: true unless [`Manifest::dtype`] is `int8` (see
    /// [`Manifest::batch_invariant`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_invariant: Option<bool>,
}

impl Manifest {
    /// Whether a text's vector is the same in any batch. ONNX Runtime's dynamic int8
    /// (`QAttention`, `DynamicQuantizeMatMul`) quantises a whole batch's activations with one
    /// scale, so in a batch a row's output depends on the other rows (up to ~1e-2 per
    /// component); the encoder then runs each text on its own.
    pub fn batch_invariant(&self) -> bool {
        self.batch_invariant
            .unwrap_or(self.dtype.as_deref() != Some("int8"))
    }

    /// Parses and checks a manifest's text (format, kind, sizes, and that every file it
    /// names is a plain path inside its folder); `manifest_path` is named in errors.
    pub fn parse(text: &str, manifest_path: &Path) -> Result<Manifest> {
        let manifest: Manifest = serde_json::from_str(text)
            .map_err(|e| model_err(manifest_path, format!("bad manifest: {e}")))?;
        if manifest.format != 1 {
            return Err(model_err(
                manifest_path,
                format!("manifest format {} is not supported", manifest.format),
            ));
        }
        if manifest.kind != "encoder" {
            return Err(model_err(
                manifest_path,
                format!("kind {:?} is not an encoder", manifest.kind),
            ));
        }
        if manifest.dim == 0
            || manifest.dim > crate::types::MAX_DIM
            || manifest.max_query_tokens == 0
            || manifest.max_passage_tokens == 0
        {
            return Err(model_err(
                manifest_path,
                "dim and max token counts must be positive",
            ));
        }
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        for rel in [&manifest.model, &manifest.tokenizer]
            .into_iter()
            .chain(manifest.files.keys())
        {
            inside(dir, rel, manifest_path)?;
        }
        Ok(manifest)
    }
}

/// A text every tokenizer must encode at load time (Latin, Cyrillic, Japanese, Telugu).
pub const TOKENIZER_PROBE: &str = "Mikä on Suomen pääkaupunki? Столица フィンランドの首都 రాజధాని";

/// Reads a `tokenizer.json` (Hugging Face tokenizers format) from its bytes, so that a
/// corrupt file is an [`Error::Model`] naming `path`, never a panic: text that is not JSON
/// is refused before the tokenizers library sees it (some malformed files make it panic
/// instead of returning an error), any panic while loading is caught, and the tokenizer
/// must encode [`TOKENIZER_PROBE`] with its special tokens (a post-processor that names a
/// token it does not define panics at that point).
pub fn parse_tokenizer(bytes: &[u8], path: &Path) -> Result<tokenizers::Tokenizer> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map_err(|e| model_err(path, format!("tokenizer is not valid JSON: {e}")))?;
    let t = match std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(bytes)) {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(model_err(path, format!("tokenizer does not parse: {e}"))),
        Err(_) => {
            return Err(model_err(
                path,
                "tokenizer does not parse (the tokenizers library panicked on it)",
            ))
        }
    };
    match std::panic::catch_unwind(|| t.encode(TOKENIZER_PROBE, true).map(|_| ())) {
        Ok(Ok(())) => Ok(t),
        Ok(Err(e)) => Err(model_err(
            path,
            format!("tokenizer cannot encode a probe text: {e}"),
        )),
        Err(_) => Err(model_err(
            path,
            "tokenizer panics on a probe text (is its post-processor's special token missing?)",
        )),
    }
}

/// An opened, checked model bundle.
#[derive(Clone, Debug)]
pub struct ModelBundle {
    dir: PathBuf,
    manifest: Manifest,
    fingerprint: String,
}

fn model_err(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
    Error::Model {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Resolves `rel` inside `dir`, refusing absolute paths and `..`.
fn inside(dir: &Path, rel: &str, manifest: &Path) -> Result<PathBuf> {
    let p = Path::new(rel);
    if rel.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(model_err(
            manifest,
            format!("file {rel:?} is not a plain path inside the bundle folder"),
        ));
    }
    Ok(dir.join(p))
}

impl ModelBundle {
    /// The default bundle ([`DEFAULT_BUNDLE`]) in the set-up's cache.
    pub fn default_dir() -> PathBuf {
        crate::model::xqdb_home()
            .join("models")
            .join(DEFAULT_BUNDLE)
    }

    /// Opens a bundle folder: reads and checks the manifest, and checks that every file
    /// it names exists inside the folder with the recorded size.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let manifest_path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                model_err(
                    &manifest_path,
                    format!("no model bundle here; {}", crate::model::SETUP_HINT_MODEL),
                )
            } else {
                Error::io(&manifest_path, e)
            }
        })?;
        let manifest = Manifest::parse(&text, &manifest_path)?;
        for rel in [&manifest.model, &manifest.tokenizer] {
            let p = inside(&dir, rel, &manifest_path)?;
            if !p.is_file() {
                return Err(model_err(
                    &p,
                    format!("missing; {}", crate::model::SETUP_HINT_MODEL),
                ));
            }
        }
        for (rel, check) in &manifest.files {
            let p = inside(&dir, rel, &manifest_path)?;
            let len = std::fs::metadata(&p)
                .map_err(|e| model_err(&p, format!("cannot read: {e}")))?
                .len();
            if len != check.bytes {
                return Err(model_err(
                    &p,
                    format!(
                        "is {len} bytes; the manifest says {} (truncated or replaced?)",
                        check.bytes
                    ),
                ));
            }
        }
        let canonical = serde_json::to_string(&manifest).expect("manifest serialises");
        let fingerprint = format!(
            "{}@{:016x}",
            manifest.name,
            xxhash_rust::xxh3::xxh3_64(canonical.as_bytes())
        );
        Ok(ModelBundle {
            dir,
            manifest,
            fingerprint,
        })
    }

    /// Recomputes the SHA-256 of every file the manifest lists.
    pub fn verify_checksums(&self) -> Result<()> {
        for (rel, check) in &self.manifest.files {
            let p = self.dir.join(rel);
            let mut f = std::fs::File::open(&p).map_err(|e| Error::io(&p, e))?;
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut f, &mut h).map_err(|e| Error::io(&p, e))?;
            let got = format!("{:x}", h.finalize());
            if got != check.sha256 {
                return Err(model_err(&p, "SHA-256 differs from the manifest"));
            }
        }
        Ok(())
    }

    /// The bundle folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// A short id of the manifest (which includes file sizes and digests): indexes record
    /// it, and refuse to open with a bundle whose fingerprint differs.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Path of the ONNX file.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.model)
    }

    /// Path of the tokenizer.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.tokenizer)
    }
}
