//! A generator folder's files: the ONNX graphs present (split or merged decoder), the model's
//! `config.json`, the folder manifest (`generator.json`) and its target vocabulary.

use crate::error::{Error, Result};
use std::path::Path;

pub(super) const ENCODER: &str = "encoder_model.onnx";

pub(super) const DECODER: &str = "decoder_model.onnx";

pub(super) const DECODER_WITH_PAST: &str = "decoder_with_past_model.onnx";

pub(super) const DECODER_MERGED: &str = "decoder_model_merged.onnx";

/// Which decoder files a generator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderLayout {
    /// `decoder_model.onnx` for the first step, `decoder_with_past_model.onnx` after it.
    Split,
    /// `decoder_model_merged.onnx` for every step (`use_cache_branch` false, then true).
    Merged,
}

/// The token ids a generator samples from (`target_vocab.json`), sorted ascending.
#[derive(Clone, Debug)]
pub(super) struct TargetVocab {
    pub(super) ids: Vec<u32>,
    /// The decoder's logits have one column per kept id (a trimmed output projection).
    pub(super) trimmed: bool,
}

/// The model facts the decoding loop needs, from `config.json`.
#[derive(Clone, Debug)]
pub(super) struct Seq2SeqConfig {
    pub(super) decoder_start: i64,
    pub(super) eos: i64,
    pub(super) pad: i64,
    pub(super) layers: usize,
    pub(super) heads: usize,
    pub(super) head_dim: usize,
    pub(super) vocab: usize,
}

pub(super) fn model_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Model {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

pub(super) fn config_usize(cfg: &serde_json::Value, keys: &[&str], path: &Path) -> Result<usize> {
    keys.iter()
        .find_map(|k| cfg.get(*k).and_then(|v| v.as_u64()))
        .map(|v| v as usize)
        .ok_or_else(|| model_err(path, format!("config.json has no {}", keys.join(" or "))))
}

pub(super) fn read_config(path: &Path) -> Result<(Seq2SeqConfig, String)> {
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

pub(super) fn parse_config(text: &str, path: &Path) -> Result<Seq2SeqConfig> {
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
pub(super) struct ManifestFile {
    pub(super) format: String,
    pub(super) version: u32,
    #[serde(default)]
    pub(super) target_vocab: Option<String>,
    #[serde(default)]
    pub(super) logits: Option<String>,
    /// Informational (read so that `deny_unknown_fields` accepts it).
    #[serde(default, rename = "precision")]
    pub(super) _precision: Option<String>,
    #[serde(default)]
    pub(super) cross_attention: Option<String>,
    #[serde(default)]
    pub(super) decoder_cache: Option<String>,
    /// Informational.
    #[serde(default, rename = "source")]
    pub(super) _source: Option<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct VocabFile {
    pub(super) format: String,
    pub(super) version: u32,
    pub(super) vocab_size: usize,
    pub(super) ids: Vec<u32>,
}

/// What a generator folder's manifest says.
#[derive(Default)]
pub(super) struct FolderManifest {
    /// The target vocabulary, with the file's bytes (for the fingerprint).
    pub(super) vocab: Option<(TargetVocab, Vec<u8>)>,
    /// `decoder_with_past_model.onnx` takes cross-attention key/values per prompt.
    pub(super) shared_cross: bool,
    /// `decoder_with_past_model.onnx` appends to its self-attention cache in place.
    pub(super) in_place_cache: bool,
}

/// Reads `xqdb-generator.json` and the target vocabulary it names. Nothing for a plain
/// optimum export.
pub(super) fn read_manifest(dir: &Path, config: &Seq2SeqConfig) -> Result<FolderManifest> {
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
