//! Plain data types shared by the public API.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How vectors are compared. Scores are always "higher is better".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Inner product of the vectors as given.
    Dot,
    /// Cosine similarity: vectors and queries are L2-normalised, then compared by inner product.
    Cosine,
}

/// How segment rows are stored on disk. The durable tail always keeps f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit floats: exact scores.
    F32,
    /// IEEE half precision: half the bytes, about three significant digits.
    F16,
    /// Signed bytes with one scale for the whole index: a quarter of the bytes.
    I8,
}

impl Dtype {
    /// Bytes one component takes on disk.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
            Dtype::I8 => 1,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Dtype::F32 => 0,
            Dtype::F16 => 1,
            Dtype::I8 => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Dtype::F32),
            1 => Some(Dtype::F16),
            2 => Some(Dtype::I8),
            _ => None,
        }
    }
}

impl Metric {
    pub(crate) fn code(self) -> u8 {
        match self {
            Metric::Dot => 0,
            Metric::Cosine => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Metric::Dot),
            1 => Some(Metric::Cosine),
            _ => None,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Dot => "dot",
            Metric::Cosine => "cosine",
        })
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::I8 => "i8",
        })
    }
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dot" | "ip" => Ok(Metric::Dot),
            "cosine" | "cos" => Ok(Metric::Cosine),
            _ => Err(format!("unknown metric {s:?} (expected dot or cosine)")),
        }
    }
}

impl FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Dtype::F32),
            "f16" => Ok(Dtype::F16),
            "i8" => Ok(Dtype::I8),
            _ => Err(format!("unknown dtype {s:?} (expected f32, f16 or i8)")),
        }
    }
}

/// A passage to store, with the vector that represents it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// The caller's id, unique within the index.
    pub id: String,
    /// Optional title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The passage text.
    pub text: String,
    /// Optional language tag (e.g. `en`, `ja`), used by language filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Optional JSON metadata (an object), used by metadata filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

impl Passage {
    /// A passage with an id and a text and nothing else.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        Passage {
            id: id.into(),
            text: text.into(),
            ..Default::default()
        }
    }

    /// Sets the title.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the language tag.
    pub fn with_lang(mut self, lang: impl Into<String>) -> Self {
        self.lang = Some(lang.into());
        self
    }

    /// Sets the metadata.
    pub fn with_meta(mut self, meta: serde_json::Value) -> Self {
        self.meta = Some(meta);
        self
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// The passage id.
    pub id: String,
    /// Similarity score (higher is better).
    pub score: f32,
    /// The stored passage.
    #[serde(flatten)]
    pub passage: Passage,
}

/// Restricts a search to rows whose language and metadata match.
///
/// Filters are applied while scanning, so a filtered search returns `k` hits whenever
/// `k` matching rows exist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub(crate) langs: Option<Vec<String>>,
    pub(crate) meta: Vec<(String, Vec<serde_json::Value>)>,
}

impl Filter {
    /// A filter that matches every row.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only rows whose language is one of `langs` (repeated calls narrow further).
    pub fn langs<I, S>(mut self, langs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let wanted: Vec<String> = langs.into_iter().map(Into::into).collect();
        self.langs = Some(match self.langs.take() {
            None => wanted,
            Some(prev) => prev.into_iter().filter(|l| wanted.contains(l)).collect(),
        });
        self
    }

    /// Only rows whose language is `lang`.
    pub fn lang(self, lang: impl Into<String>) -> Self {
        self.langs([lang.into()])
    }

    /// Only rows whose metadata field `field` equals `value`.
    pub fn meta_eq(self, field: impl Into<String>, value: serde_json::Value) -> Self {
        self.meta_in(field, [value])
    }

    /// Only rows whose metadata field `field` equals one of `values`.
    pub fn meta_in<I>(mut self, field: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = serde_json::Value>,
    {
        self.meta.push((field.into(), values.into_iter().collect()));
        self
    }

    /// True when the filter lets every row through.
    pub fn is_empty(&self) -> bool {
        self.langs.is_none() && self.meta.is_empty()
    }

    pub(crate) fn matches_meta(&self, meta: Option<&serde_json::Value>) -> bool {
        self.meta.iter().all(|(field, values)| {
            meta.and_then(|m| m.get(field))
                .is_some_and(|v| values.iter().any(|want| want == v))
        })
    }
}

/// Counts and sizes of an index, as of one snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// Live passages.
    pub passages: u64,
    /// Rows held in the durable tail (not yet sealed).
    pub tail_rows: u64,
    /// Segment files.
    pub segments: u64,
    /// Rows in segment files, deleted ones included.
    pub segment_rows: u64,
    /// Deleted rows still present in segments (until compaction).
    pub tombstones: u64,
    /// Vector dimension.
    pub dim: usize,
    /// Storage type of segment rows.
    pub dtype: Dtype,
    /// Similarity metric.
    pub metric: Metric,
    /// Sequence number of the commit this snapshot shows.
    pub commit_seq: u64,
    /// Bytes of segment files.
    pub segment_bytes: u64,
    /// Bytes of the catalog file.
    pub catalog_bytes: u64,
    /// The store's unique id.
    pub store_uuid: String,
    /// Fingerprint of the model that made the vectors, if recorded.
    pub model_fingerprint: Option<String>,
    /// Passages with an xQG record whose queries are done (generated or imported).
    #[serde(default)]
    pub augmented: u64,
    /// Passages still waiting for deferred query generation.
    #[serde(default)]
    pub augment_backlog: u64,
    /// The fusion weight α, for indexes with an xQG profile.
    #[serde(default)]
    pub xqg_alpha: Option<f32>,
    /// Catalog format version of the store.
    #[serde(default)]
    pub format_version: u32,
    /// Whether a query adapter is stored (applied to text queries).
    #[serde(default)]
    pub query_adapter: bool,
}
