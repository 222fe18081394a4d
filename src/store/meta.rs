//! The meta table: format version, store identity, vector settings and counters.

use super::FORMAT_VERSION;
use crate::types::{Dtype, Metric};
use redb::{ReadableTable, Table};

/// Keys of the meta table (FORMAT.md, "Meta table").
#[derive(Clone, Copy, Debug)]
pub(crate) enum MetaKey {
    FormatVersion,
    StoreUuid,
    Dim,
    Dtype,
    Metric,
    I8Scale,
    ModelFingerprint,
    ModelPath,
    NextRid,
    NextSegment,
    CommitSeq,
    CleanShutdown,
    XqgProfile,
    QueryAdapter,
    Codes,
    Codebook,
    Lexical,
    LexicalStats,
}

impl MetaKey {
    pub fn name(self) -> &'static str {
        match self {
            MetaKey::FormatVersion => "format_version",
            MetaKey::StoreUuid => "store_uuid",
            MetaKey::Dim => "dim",
            MetaKey::Dtype => "dtype",
            MetaKey::Metric => "metric",
            MetaKey::I8Scale => "i8_scale",
            MetaKey::ModelFingerprint => "model_fingerprint",
            MetaKey::ModelPath => "model_path",
            MetaKey::NextRid => "next_rid",
            MetaKey::NextSegment => "next_segment",
            MetaKey::CommitSeq => "commit_seq",
            MetaKey::CleanShutdown => "clean_shutdown",
            MetaKey::XqgProfile => "xqg_profile",
            MetaKey::QueryAdapter => "query_adapter",
            MetaKey::Codes => "codes",
            MetaKey::Codebook => "codebook",
            MetaKey::Lexical => "lexical",
            MetaKey::LexicalStats => "lexical_stats",
        }
    }
}

/// Settings fixed when the store was created (plus the i8 scale, fixed at first seal).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StoreConfig {
    pub format_version: u32,
    pub uuid: [u8; 16],
    pub dim: usize,
    pub dtype: Dtype,
    pub metric: Metric,
    pub i8_scale: Option<f32>,
    pub model_fingerprint: Option<String>,
    pub model_path: Option<String>,
    /// The xQG augmentation profile (JSON in the meta table), if the index has one.
    pub xqg: Option<crate::xqg::XqgProfile>,
    /// The codes segments keep beside their rows (format version 5).
    pub codes: Option<crate::types::Codes>,
    /// The codebook of those codes, fitted with the first segment that has them.
    pub codebook: Option<std::sync::Arc<crate::segment::Codebook>>,
    /// The lexical index's settings, when the index keeps one (format version 7).
    pub lexical: Option<crate::types::LexicalSettings>,
}

/// Counters that every commit advances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub next_rid: u64,
    pub next_segment: u64,
    pub commit_seq: u64,
}

pub(crate) fn put(
    t: &mut Table<&str, &[u8]>,
    key: MetaKey,
    v: &[u8],
) -> Result<(), redb::StorageError> {
    t.insert(key.name(), v)?;
    Ok(())
}

pub(crate) fn put_u64(
    t: &mut Table<&str, &[u8]>,
    key: MetaKey,
    v: u64,
) -> Result<(), redb::StorageError> {
    put(t, key, &v.to_le_bytes())
}

fn get(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    key: MetaKey,
) -> Result<Option<Vec<u8>>, redb::StorageError> {
    Ok(t.get(key.name())?.map(|g| g.value().to_vec()))
}

/// Why the meta table could not be read.
pub(crate) enum MetaError {
    Storage(redb::StorageError),
    Bad(String),
    NewerVersion(u32),
}

impl From<redb::StorageError> for MetaError {
    fn from(e: redb::StorageError) -> Self {
        MetaError::Storage(e)
    }
}

fn need(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    key: MetaKey,
) -> Result<Vec<u8>, MetaError> {
    get(t, key)?.ok_or_else(|| MetaError::Bad(format!("meta key {} missing", key.name())))
}

fn fixed<const N: usize>(v: Vec<u8>, key: MetaKey) -> Result<[u8; N], MetaError> {
    v.try_into()
        .map_err(|_| MetaError::Bad(format!("meta key {} has the wrong length", key.name())))
}

pub(crate) fn read_u64(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    key: MetaKey,
) -> Result<u64, MetaError> {
    Ok(u64::from_le_bytes(fixed(need(t, key)?, key)?))
}

impl StoreConfig {
    pub fn write(&self, t: &mut Table<&str, &[u8]>) -> Result<(), redb::StorageError> {
        put(
            t,
            MetaKey::FormatVersion,
            &self.format_version.to_le_bytes(),
        )?;
        put(t, MetaKey::StoreUuid, &self.uuid)?;
        put_u64(t, MetaKey::Dim, self.dim as u64)?;
        put(t, MetaKey::Dtype, &[self.dtype.code()])?;
        put(t, MetaKey::Metric, &[self.metric.code()])?;
        if let Some(s) = self.i8_scale {
            put(t, MetaKey::I8Scale, &s.to_le_bytes())?;
        }
        if let Some(f) = &self.model_fingerprint {
            put(t, MetaKey::ModelFingerprint, f.as_bytes())?;
        }
        if let Some(f) = &self.model_path {
            put(t, MetaKey::ModelPath, f.as_bytes())?;
        }
        if let Some(p) = &self.xqg {
            put_profile(t, p)?;
        }
        if let Some(c) = &self.codes {
            put(t, MetaKey::Codes, &c.encode())?;
        }
        if let Some(c) = &self.codebook {
            put(t, MetaKey::Codebook, &c.encode())?;
        }
        if let Some(l) = &self.lexical {
            put_lexical(t, l)?;
        }
        Ok(())
    }

    pub fn read(t: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Self, MetaError> {
        let version = u32::from_le_bytes(fixed(
            need(t, MetaKey::FormatVersion)?,
            MetaKey::FormatVersion,
        )?);
        if version > FORMAT_VERSION {
            return Err(MetaError::NewerVersion(version));
        }
        let dim = read_u64(t, MetaKey::Dim)?;
        let [dtype] = fixed::<1>(need(t, MetaKey::Dtype)?, MetaKey::Dtype)?;
        let [metric] = fixed::<1>(need(t, MetaKey::Metric)?, MetaKey::Metric)?;
        let i8_scale = get(t, MetaKey::I8Scale)?
            .map(|v| fixed::<4>(v, MetaKey::I8Scale).map(f32::from_le_bytes))
            .transpose()?;
        let model_path = get(t, MetaKey::ModelPath)?
            .map(|v| {
                String::from_utf8(v).map_err(|_| MetaError::Bad("model path is not UTF-8".into()))
            })
            .transpose()?;
        let model_fingerprint = get(t, MetaKey::ModelFingerprint)?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| MetaError::Bad("model fingerprint is not UTF-8".into()))
            })
            .transpose()?;
        let xqg = get(t, MetaKey::XqgProfile)?
            .map(|v| {
                serde_json::from_slice::<crate::xqg::XqgProfile>(&v)
                    .map_err(|e| MetaError::Bad(format!("xQG profile: {e}")))
            })
            .transpose()?;
        if dim == 0 || dim > crate::types::MAX_DIM as u64 {
            return Err(MetaError::Bad(format!("dimension {dim} out of range")));
        }
        let codes = get(t, MetaKey::Codes)?
            .map(|v| {
                crate::types::Codes::decode(&v)
                    .ok_or_else(|| MetaError::Bad("the codes record is malformed".into()))
            })
            .transpose()?;
        let codebook = get(t, MetaKey::Codebook)?
            .map(|v| {
                crate::segment::Codebook::decode(&v, dim as usize)
                    .map(std::sync::Arc::new)
                    .map_err(MetaError::Bad)
            })
            .transpose()?;
        let lexical = get(t, MetaKey::Lexical)?
            .map(|v| {
                serde_json::from_slice::<crate::types::LexicalSettings>(&v)
                    .map_err(|e| MetaError::Bad(format!("lexical settings: {e}")))
                    .and_then(|l| match l.validate() {
                        Ok(()) => Ok(l),
                        Err(e) => Err(MetaError::Bad(e.to_string())),
                    })
            })
            .transpose()?;
        Ok(StoreConfig {
            format_version: version,
            uuid: fixed(need(t, MetaKey::StoreUuid)?, MetaKey::StoreUuid)?,
            dim: dim as usize,
            dtype: Dtype::from_code(dtype).ok_or_else(|| MetaError::Bad("unknown dtype".into()))?,
            metric: Metric::from_code(metric)
                .ok_or_else(|| MetaError::Bad("unknown metric".into()))?,
            i8_scale,
            model_fingerprint,
            model_path,
            xqg,
            codes,
            codebook,
            lexical,
        })
    }
}

impl Counters {
    pub fn write(&self, t: &mut Table<&str, &[u8]>) -> Result<(), redb::StorageError> {
        put_u64(t, MetaKey::NextRid, self.next_rid)?;
        put_u64(t, MetaKey::NextSegment, self.next_segment)?;
        put_u64(t, MetaKey::CommitSeq, self.commit_seq)
    }

    pub fn read(t: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Self, MetaError> {
        Ok(Counters {
            next_rid: read_u64(t, MetaKey::NextRid)?,
            next_segment: read_u64(t, MetaKey::NextSegment)?,
            commit_seq: read_u64(t, MetaKey::CommitSeq)?,
        })
    }
}

/// Stores the lexical index's settings (JSON).
pub(crate) fn put_lexical(
    t: &mut Table<&str, &[u8]>,
    l: &crate::types::LexicalSettings,
) -> Result<(), redb::StorageError> {
    let json = serde_json::to_vec(l).expect("settings serialise");
    put(t, MetaKey::Lexical, &json)
}

/// Collection statistics of the lexical index (format version 7): documents (passages
/// with at least one term) and the summed lengths of each field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LexicalStats {
    pub docs: u64,
    pub text_len: u64,
    pub queries_len: u64,
}

impl LexicalStats {
    pub fn read(t: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Self, MetaError> {
        let Some(v) = get(t, MetaKey::LexicalStats)? else {
            return Ok(LexicalStats::default());
        };
        let b: [u8; 24] = fixed(v, MetaKey::LexicalStats)?;
        let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Ok(LexicalStats {
            docs: word(0),
            text_len: word(1),
            queries_len: word(2),
        })
    }

    pub fn write(&self, t: &mut Table<&str, &[u8]>) -> Result<(), redb::StorageError> {
        let mut b = [0u8; 24];
        for (i, w) in [self.docs, self.text_len, self.queries_len]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        put(t, MetaKey::LexicalStats, &b)
    }
}

/// Stores the xQG profile (JSON).
pub(crate) fn put_profile(
    t: &mut Table<&str, &[u8]>,
    p: &crate::xqg::XqgProfile,
) -> Result<(), redb::StorageError> {
    let json = serde_json::to_vec(p).expect("profile serialises");
    put(t, MetaKey::XqgProfile, &json)
}

/// The meta key of the query adapter serving `lang` (format version 6), or of the shared
/// one (`None`).
pub(crate) fn adapter_key(lang: Option<&str>) -> String {
    match lang {
        None => MetaKey::QueryAdapter.name().to_string(),
        Some(l) => format!("{}.{l}", MetaKey::QueryAdapter.name()),
    }
}

type StoredAdapters = (
    Option<std::sync::Arc<crate::adapter::StoredAdapter>>,
    std::collections::BTreeMap<String, std::sync::Arc<crate::adapter::StoredAdapter>>,
);

/// Decodes one adapter record; when its checksum equals `prev`'s, `prev` is reused without
/// decoding the weights again.
fn decode_adapter(
    bytes: &[u8],
    prev: Option<&std::sync::Arc<crate::adapter::StoredAdapter>>,
    key: &str,
) -> Result<std::sync::Arc<crate::adapter::StoredAdapter>, MetaError> {
    let sum = bytes
        .len()
        .checked_sub(8)
        .map(|at| u64::from_le_bytes(bytes[at..].try_into().expect("8 bytes")));
    if let (Some(p), Some(sum)) = (prev, sum) {
        if p.checksum == sum && p.len == bytes.len() {
            return Ok(p.clone());
        }
    }
    let (adapter, info) = crate::adapter::Adapter::from_bytes(bytes)
        .map_err(|why| MetaError::Bad(format!("{key}: {why}")))?;
    Ok(std::sync::Arc::new(crate::adapter::StoredAdapter {
        adapter,
        info,
        checksum: sum.unwrap_or(0),
        len: bytes.len(),
    }))
}

/// Reads the stored query adapters: the shared one and those of query languages. Records
/// whose checksum equals the previous snapshot's are reused.
pub(crate) fn read_adapters(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    prev: Option<&StoredAdapters>,
) -> Result<StoredAdapters, MetaError> {
    let shared_key = adapter_key(None);
    let shared = match t.get(shared_key.as_str())? {
        Some(guard) => Some(decode_adapter(
            guard.value(),
            prev.and_then(|p| p.0.as_ref()),
            &shared_key,
        )?),
        None => None,
    };
    let mut by_lang = std::collections::BTreeMap::new();
    // Keys "query_adapter.<lang>": every key after "query_adapter." and before
    // "query_adapter/" ('/' follows '.').
    let (lo, hi) = (format!("{shared_key}."), format!("{shared_key}/"));
    for row in t.range(lo.as_str()..hi.as_str())? {
        let (k, v) = row?;
        let key = k.value();
        let lang = key[lo.len()..].to_string();
        let prev = prev.and_then(|p| p.1.get(&lang));
        by_lang.insert(lang, decode_adapter(v.value(), prev, key)?);
    }
    Ok((shared, by_lang))
}

/// Stores (or with `None` removes) the query adapter record of `lang` (`None`: the shared
/// one).
pub(crate) fn put_adapter(
    t: &mut Table<&str, &[u8]>,
    lang: Option<&str>,
    record: Option<&[u8]>,
) -> Result<(), redb::StorageError> {
    let key = adapter_key(lang);
    match record {
        Some(bytes) => t.insert(key.as_str(), bytes).map(|_| ()),
        None => t.remove(key.as_str()).map(|_| ()),
    }
}

/// Whether the last writer closed the store cleanly (absent counts as clean for new stores).
pub(crate) fn read_clean(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<bool, redb::StorageError> {
    Ok(get(t, MetaKey::CleanShutdown)?.is_none_or(|v| v == [1]))
}
