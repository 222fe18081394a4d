//! Plain data types shared by the public API.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Largest vector dimension an index accepts.
pub const MAX_DIM: usize = 65_536;
/// Largest passage text (and title), in bytes.
pub const MAX_TEXT_BYTES: usize = 16 << 20;
/// Longest passage id, in bytes.
pub const MAX_ID_BYTES: usize = 1024;
/// Most hits one search returns (`k`), and the deepest candidate list it ranks (`depth`).
pub const MAX_K: usize = 100_000;

/// Refuses a text query with nothing to look for (empty or only whitespace).
pub(crate) fn check_query_text(query: &str) -> Result<()> {
    if query.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "the query is empty: give some words to search for".into(),
        ));
    }
    Ok(())
}

const LANG_TAG_RULE: &str = "the language tag must be 1-35 ASCII letters, digits, '-' or '_'";

fn lang_tag_ok(lang: &str) -> bool {
    !lang.is_empty()
        && lang.len() <= 35
        && lang
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks a language tag the way passages' tags are checked.
#[cfg_attr(not(feature = "documents"), allow(dead_code))]
pub(crate) fn check_lang_tag(lang: &str) -> Result<()> {
    if lang_tag_ok(lang) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("{lang:?}: {LANG_TAG_RULE}")))
    }
}

impl Passage {
    /// Checks the id, text, title, language tag and metadata against the limits every write
    /// path enforces; returns the metadata as JSON text when there is some.
    pub(crate) fn validate(&self) -> Result<Option<String>> {
        let p = self;
        let bad = |reason: &str| Error::InvalidPassage {
            id: p.id.clone(),
            reason: reason.to_string(),
        };
        if p.id.is_empty() {
            return Err(bad("the id is empty"));
        }
        if p.id.len() > MAX_ID_BYTES {
            return Err(bad(&format!(
                "the id is longer than {} bytes",
                MAX_ID_BYTES
            )));
        }
        if p.text.trim().is_empty() {
            return Err(bad("the text is empty"));
        }
        if p.text.len() > MAX_TEXT_BYTES {
            return Err(bad(&format!(
                "the text has {} bytes; the limit is {}",
                p.text.len(),
                MAX_TEXT_BYTES
            )));
        }
        if p.title.as_ref().is_some_and(|t| t.len() > MAX_TEXT_BYTES) {
            return Err(bad("the title is too long"));
        }
        if let Some(lang) = &p.lang {
            if !lang_tag_ok(lang) {
                return Err(bad(LANG_TAG_RULE));
            }
        }
        match &p.meta {
            None => Ok(None),
            Some(m) if m.is_object() => Ok(Some(m.to_string())),
            Some(_) => Err(bad("metadata must be a JSON object")),
        }
    }
}

/// How vectors are compared. Scores are always "higher is better".
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Inner product of the vectors as given.
    Dot,
    /// Cosine similarity: vectors and queries are L2-normalised, then compared by inner product.
    Cosine,
}

/// How segment rows are stored on disk. The durable tail always keeps f32.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// The passage id.
    pub id: String,
    /// Similarity score (higher is better): the dense score, the BM25 score or the fused
    /// score, by the search's mode.
    pub score: f32,
    /// The stored passage.
    #[serde(flatten)]
    pub passage: Passage,
    /// The vector similarity, when a hybrid search computed it for this passage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_score: Option<f32>,
    /// The BM25 score, when a lexical or hybrid search matched this passage's terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lexical_score: Option<f32>,
    /// An excerpt of the text around the matched terms, each marked `<mark>…</mark>`
    /// (lexical matches only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
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
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
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
    /// The query languages with a query adapter of their own.
    #[serde(default)]
    pub query_adapter_langs: Vec<String>,
    /// The codes segments keep beside their rows (`"binary"`, `"i8"`).
    #[serde(default)]
    pub codes: Vec<String>,
    /// Whether codes are taken around the index's mean.
    #[serde(default)]
    pub codes_centred: Option<bool>,
    /// The first pass searches use by default.
    #[serde(default)]
    pub first_pass: FirstPass,
    /// The oversampling of that first pass (1 for exact).
    #[serde(default)]
    pub oversample: usize,
    /// Bytes of codes in segment files (included in `segment_bytes`).
    #[serde(default)]
    pub code_bytes: u64,
    /// The lexical index's settings, when the index keeps one.
    #[serde(default)]
    pub lexical: Option<LexicalSettings>,
}

/// How a search finds its candidates (see [`Codes`]).
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirstPass {
    /// Score every stored row exactly (no codes read).
    #[default]
    Exact,
    /// Scan the i8 codes, then rescore the best `k × oversample` rows exactly.
    I8,
    /// Scan the 1-bit codes (Hamming distance), then rescore the best `k × oversample` rows.
    Binary,
}

impl FirstPass {
    /// The name used by the CLI and the HTTP API.
    pub fn name(self) -> &'static str {
        match self {
            FirstPass::Exact => "exact",
            FirstPass::I8 => "i8",
            FirstPass::Binary => "binary",
        }
    }

    /// Oversampling used when neither the search nor the index sets one: the first pass
    /// keeps `k × this` candidates (chosen on real embeddings; BENCHMARKS.md).
    pub fn default_oversample(self) -> usize {
        match self {
            FirstPass::Exact => 1,
            FirstPass::I8 => 4,
            FirstPass::Binary => 48,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            FirstPass::Exact => 0,
            FirstPass::I8 => 1,
            FirstPass::Binary => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(FirstPass::Exact),
            1 => Some(FirstPass::I8),
            2 => Some(FirstPass::Binary),
            _ => None,
        }
    }
}

impl std::str::FromStr for FirstPass {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "exact" => Ok(FirstPass::Exact),
            "i8" => Ok(FirstPass::I8),
            "binary" => Ok(FirstPass::Binary),
            _ => Err(Error::InvalidArgument(format!(
                "first pass {s:?}: expected exact, i8 or binary"
            ))),
        }
    }
}

/// Compact codes an index keeps beside its rows, made when a segment is written (seal,
/// compaction). The rows stay the truth: a search that scans codes rescores its candidates
/// with the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Codes {
    /// 1-bit codes: one sign bit per dimension (`dim / 8` bytes a row).
    pub binary: bool,
    /// i8 codes: one byte per dimension with a per-dimension scale.
    pub i8: bool,
    /// Whether codes are taken after subtracting the per-index mean (recorded with the
    /// index's first codes); on by default.
    pub centred: bool,
    /// The first pass searches use unless they choose one.
    pub default_first_pass: FirstPass,
    /// The oversampling searches use unless they choose one (`None`: the first pass's
    /// [`FirstPass::default_oversample`]).
    pub default_oversample: Option<u32>,
}

impl Default for Codes {
    fn default() -> Self {
        Codes {
            binary: false,
            i8: false,
            centred: true,
            default_first_pass: FirstPass::Exact,
            default_oversample: None,
        }
    }
}

impl Codes {
    /// Parses a comma-separated list such as `binary,i8` (the CLI's `--codes`). The default
    /// first pass becomes the cheapest code listed.
    pub fn parse(list: &str) -> Result<Codes> {
        let mut c = Codes::default();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "binary" => c.binary = true,
                "i8" => c.i8 = true,
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "codes {part:?}: expected binary and/or i8"
                    )))
                }
            }
        }
        c.default_first_pass = if c.binary {
            FirstPass::Binary
        } else if c.i8 {
            FirstPass::I8
        } else {
            FirstPass::Exact
        };
        Ok(c)
    }

    /// Whether any code is kept.
    pub fn any(&self) -> bool {
        self.binary || self.i8
    }

    /// Whether the codes a first pass scans are kept.
    pub fn has(&self, pass: FirstPass) -> bool {
        match pass {
            FirstPass::Exact => true,
            FirstPass::I8 => self.i8,
            FirstPass::Binary => self.binary,
        }
    }

    /// The names of the codes kept (`["binary", "i8"]`).
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.binary {
            v.push("binary");
        }
        if self.i8 {
            v.push("i8");
        }
        v
    }
}

/// Settings of an index's lexical (keyword) index, fixed when it is enabled (format
/// version 7). Scoring is Lucene's BM25 per field: the passage's title and text form one
/// field, its generated (or imported) queries another whose score is multiplied by
/// `queries_weight`.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LexicalSettings {
    /// Term-frequency saturation (default 1.2).
    pub k1: f32,
    /// Length normalisation (default 0.75).
    pub b: f32,
    /// Weight of the generated-queries field (default 0.5; 0 leaves it out of scores).
    pub queries_weight: f32,
    /// Stem words with the Snowball stemmer of the text's language (passages by their
    /// `lang`, generated queries by theirs, search queries by
    /// [`crate::SearchOptions::query_lang`]). Default off: without a query language a
    /// stemmed index misses inflected forms.
    pub stem: bool,
}

impl Default for LexicalSettings {
    fn default() -> Self {
        LexicalSettings {
            k1: 1.2,
            b: 0.75,
            queries_weight: 0.5,
            stem: false,
        }
    }
}

impl LexicalSettings {
    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<()> {
        let ok = self.k1.is_finite()
            && self.k1 >= 0.0
            && self.b.is_finite()
            && (0.0..=1.0).contains(&self.b)
            && self.queries_weight.is_finite()
            && self.queries_weight >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "lexical settings out of range (k1 ≥ 0, b in [0, 1], queries weight ≥ 0): {self:?}"
            )))
        }
    }
}

/// What a search ranks by.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Vector similarity (the default).
    #[default]
    Dense,
    /// BM25 over the lexical index (text queries; the index must keep one).
    Lexical,
    /// Both lists, fused.
    Hybrid,
}

impl std::str::FromStr for SearchMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "dense" => Ok(SearchMode::Dense),
            "lexical" => Ok(SearchMode::Lexical),
            "hybrid" => Ok(SearchMode::Hybrid),
            _ => Err(format!(
                "unknown search mode {s:?} (dense, lexical, hybrid)"
            )),
        }
    }
}

/// How a hybrid search merges the dense and lexical lists.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Fusion {
    /// Reciprocal rank fusion: Σ weight / (k + rank), rank from 1; the lexical list's
    /// term is multiplied by `lexical_weight`.
    Rrf {
        /// The rank constant (default 60).
        k: f32,
        /// Weight of the lexical list (default 1).
        lexical_weight: f32,
    },
    /// Weighted sum (1 − w)·dense + w·lexical of normalised scores, a passage missing
    /// from a list scoring 0 there: dense scores min-max normalised within their list,
    /// BM25 scores divided by the score no passage can reach for the query (the sum of its
    /// terms' idf; a term absent from the index counts at the largest idf). A lexical list
    /// that matches little of the query (words of another language, say) thus weighs
    /// little, where min-max normalisation would stretch its best hit to 1.
    Weighted {
        /// The lexical weight w in [0, 1].
        lexical_weight: f32,
    },
}

impl Default for Fusion {
    /// [`Fusion::weighted`]: on the quality sets of BENCHMARKS.md ("Hybrid search")
    /// reciprocal rank fusion let a cross-lingual query's weak keyword matches displace
    /// good dense hits.
    fn default() -> Self {
        Fusion::weighted()
    }
}

impl Fusion {
    /// Reciprocal rank fusion with k 60 and equal weights.
    pub fn rrf() -> Self {
        Fusion::Rrf {
            k: 60.0,
            lexical_weight: 1.0,
        }
    }

    /// Weighted fusion with the default lexical weight, 0.3 (chosen on the tuning split of
    /// BENCHMARKS.md's hybrid-search sets).
    pub fn weighted() -> Self {
        Fusion::Weighted {
            lexical_weight: 0.3,
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Fusion::Rrf { k, lexical_weight } => {
                if k.is_finite() && k >= 0.0 && lexical_weight.is_finite() && lexical_weight >= 0.0
                {
                    Ok(())
                } else {
                    Err(Error::InvalidArgument(format!(
                        "reciprocal rank fusion needs a rank constant and a lexical weight of 0 \
                         or more (got k {k}, lexical weight {lexical_weight})"
                    )))
                }
            }
            Fusion::Weighted { lexical_weight } if (0.0..=1.0).contains(&lexical_weight) => Ok(()),
            Fusion::Weighted { lexical_weight } => Err(Error::InvalidArgument(format!(
                "the lexical weight of a weighted fusion is {lexical_weight}; it must be from 0 to 1"
            ))),
        }
    }
}
