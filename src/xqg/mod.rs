//! Cross-lingual query generation on insert (xQG): the augmentation profile, prompts,
//! languages and the fusion of query vectors into passage vectors.
//!
//! For a passage p with generated queries q_1..q_n (over all target languages),
//!
//! ```text
//! e' = (1 - α) · E(p) + α · Σ_i E(q_i)        (then L2-normalised when the profile says so)
//! ```
//!
//! A passage without queries (none generated yet, or every generation came out empty)
//! keeps e' = E(p).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Languages with a built-in display name for prompts (`code`, `name`).
pub const LANGUAGES: &[(&str, &str)] = &[
    ("ar", "Arabic"),
    ("bn", "Bengali"),
    ("de", "German"),
    ("en", "English"),
    ("es", "Spanish"),
    ("fi", "Finnish"),
    ("fr", "French"),
    ("hi", "Hindi"),
    ("id", "Indonesian"),
    ("it", "Italian"),
    ("ja", "Japanese"),
    ("ko", "Korean"),
    ("nl", "Dutch"),
    ("pt", "Portuguese"),
    ("ru", "Russian"),
    ("sw", "Swahili"),
    ("te", "Telugu"),
    ("th", "Thai"),
    ("tr", "Turkish"),
    ("vi", "Vietnamese"),
    ("zh", "Chinese"),
];

/// The target languages of the xQG paper's runs.
pub const PAPER_LANGUAGES: [&str; 7] = ["ar", "bn", "fi", "ja", "ko", "ru", "te"];

/// The prompt of the xQG generator (`{language}`, `{title}` and `{passage}` are filled in).
pub const DEFAULT_PROMPT: &str =
    "Generate a {language} question for this passage: {title} {passage}";

/// One target language of a profile: its code (stored with each query) and the name the
/// prompt uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetLanguage {
    /// Short code, e.g. `te`.
    pub code: String,
    /// Name put into the prompt, e.g. `Telugu`.
    pub name: String,
}

impl TargetLanguage {
    /// A language by code (`te`) with its built-in name, or `code=Name` for any other.
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if let Some((code, name)) = spec.split_once('=') {
            let (code, name) = (code.trim(), name.trim());
            if code.is_empty() || name.is_empty() || !valid_code(code) {
                return Err(Error::InvalidArgument(format!(
                    "language {spec:?}: write CODE=Name, e.g. sw=Swahili"
                )));
            }
            return Ok(TargetLanguage {
                code: code.into(),
                name: name.into(),
            });
        }
        LANGUAGES
            .iter()
            .find(|(c, _)| *c == spec)
            .map(|(c, n)| TargetLanguage {
                code: (*c).into(),
                name: (*n).into(),
            })
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown language code {spec:?}; known: {}; or write CODE=Name",
                    LANGUAGES
                        .iter()
                        .map(|(c, _)| *c)
                        .collect::<Vec<_>>()
                        .join(",")
                ))
            })
    }

    /// Parses a comma-separated list (`ar,bn,te` or `ar,xx=Klingon`).
    pub fn parse_list(list: &str) -> Result<Vec<Self>> {
        let langs: Vec<Self> = list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Self::parse)
            .collect::<Result<_>>()?;
        if langs.is_empty() {
            return Err(Error::InvalidArgument("no target languages given".into()));
        }
        Ok(langs)
    }
}

fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 35
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// How queries are generated and fused; an index records it when created (and `re_fuse`
/// updates `alpha` and `normalize`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XqgProfile {
    /// Target languages; one prompt each per passage.
    pub languages: Vec<TargetLanguage>,
    /// Queries sampled per language.
    pub per_language: usize,
    /// Weight α of the query vectors.
    pub alpha: f32,
    /// L2-normalise e' after fusing (right for cosine encoders such as e5).
    pub normalize: bool,
    /// Sample among the k most likely tokens (0: no top-k filter).
    pub top_k: usize,
    /// Nucleus sampling threshold (1.0: off).
    pub top_p: f32,
    /// Softmax temperature; 0 means greedy decoding (then `per_language` should be 1).
    pub temperature: f32,
    /// Longest query, counted as the decoder sequence including its start token (the
    /// `max_length` of Hugging Face's `generate`).
    pub max_query_tokens: usize,
    /// Prompts are truncated to this many tokens.
    pub max_input_tokens: usize,
    /// Prompt template with `{language}`, `{title}` and `{passage}`.
    pub prompt: String,
    /// Seed of the sampler: the same seed, passage and profile give the same queries.
    pub seed: u64,
    /// Fingerprint of the generator the queries came from (none: imported queries only).
    #[serde(default)]
    pub generator: Option<String>,
    /// Where the generator bundle was when the index was created (used to load it lazily).
    #[serde(default)]
    pub generator_path: Option<String>,
    /// Keep each query's vector too (about 35× the space of one vector per passage).
    #[serde(default)]
    pub store_query_vectors: bool,
    /// Insert passages with e' = E(p) and generate their queries later (`Writer::augment`).
    #[serde(default)]
    pub deferred: bool,
}

impl Default for XqgProfile {
    /// The paper's settings: 5 queries in each of ar, bn, fi, ja, ko, ru, te, top-k 10,
    /// α = 0.01, queries ≤ 32 tokens, prompts ≤ 256 tokens; normalised (cosine encoders).
    fn default() -> Self {
        XqgProfile {
            languages: PAPER_LANGUAGES
                .iter()
                .map(|c| TargetLanguage::parse(c).expect("built-in language"))
                .collect(),
            per_language: 5,
            alpha: 0.01,
            normalize: true,
            top_k: 10,
            top_p: 1.0,
            temperature: 1.0,
            max_query_tokens: 32,
            max_input_tokens: 256,
            prompt: DEFAULT_PROMPT.into(),
            seed: 0,
            generator: None,
            generator_path: None,
            store_query_vectors: false,
            deferred: false,
        }
    }
}

impl XqgProfile {
    /// Checks every field; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("xQG profile: {m}")));
        if self.languages.is_empty() {
            return bad("no target languages".into());
        }
        for l in &self.languages {
            if !valid_code(&l.code) || l.name.trim().is_empty() {
                return bad(format!("bad language {l:?}"));
            }
        }
        if self.per_language == 0 || self.per_language > 64 {
            return bad(format!(
                "per_language {} is not in 1..=64",
                self.per_language
            ));
        }
        if !self.alpha.is_finite() || !(0.0..=1.0).contains(&self.alpha) {
            return bad(format!("alpha {} is not in [0, 1]", self.alpha));
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!("temperature {} is negative", self.temperature));
        }
        if !self.top_p.is_finite() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return bad(format!("top_p {} is not in (0, 1]", self.top_p));
        }
        if !(2..=512).contains(&self.max_query_tokens) {
            return bad(format!(
                "max_query_tokens {} is not in 2..=512",
                self.max_query_tokens
            ));
        }
        if !(1..=8192).contains(&self.max_input_tokens) {
            return bad(format!(
                "max_input_tokens {} is not in 1..=8192",
                self.max_input_tokens
            ));
        }
        if !self.prompt.contains("{passage}") {
            return bad("the prompt template has no {passage}".into());
        }
        Ok(())
    }

    /// The prompt for one passage and target language. Without a title, `{title}` and the
    /// space after it disappear.
    pub fn prompt_for(&self, lang: &TargetLanguage, title: Option<&str>, passage: &str) -> String {
        let t = self.prompt.replace("{language}", &lang.name);
        let t = match title.filter(|t| !t.trim().is_empty()) {
            Some(title) => t.replace("{title}", title.trim()),
            None => t.replace("{title} ", "").replace("{title}", ""),
        };
        t.replace("{passage}", passage)
    }

    /// Queries generated per passage when every one is kept.
    pub fn queries_per_passage(&self) -> usize {
        self.languages.len() * self.per_language
    }
}

/// The vectors xQG keeps per passage so that e' can be recomputed with another α.
#[derive(Clone, Debug, PartialEq)]
pub struct Augmentation {
    /// E(passage).
    pub passage_vector: Vec<f32>,
    /// Σ E(query) over the generated queries (zeros when there are none).
    pub query_sum: Vec<f32>,
    /// Generated (or imported) queries, as (language code, text).
    pub queries: Vec<(String, String)>,
    /// Per-query vectors, when the profile keeps them (same order as `queries`).
    pub query_vectors: Option<Vec<Vec<f32>>>,
    /// Whether the passage still waits for its queries (deferred generation).
    pub pending: bool,
}

impl Augmentation {
    /// Builds the record from E(p) and the queries' vectors.
    pub fn new(
        passage_vector: Vec<f32>,
        queries: Vec<(String, String)>,
        query_vectors: &[Vec<f32>],
        keep_query_vectors: bool,
    ) -> Self {
        let mut query_sum = vec![0f32; passage_vector.len()];
        for v in query_vectors {
            query_sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
        }
        Augmentation {
            passage_vector,
            query_sum,
            queries,
            query_vectors: keep_query_vectors.then(|| query_vectors.to_vec()),
            pending: false,
        }
    }

    /// A passage waiting for deferred generation: e' = E(p) until then.
    pub fn pending(passage_vector: Vec<f32>) -> Self {
        let dim = passage_vector.len();
        Augmentation {
            passage_vector,
            query_sum: vec![0.0; dim],
            queries: Vec::new(),
            query_vectors: None,
            pending: true,
        }
    }

    /// e' under `alpha` and `normalize`.
    pub fn fused(&self, alpha: f32, normalize: bool) -> Vec<f32> {
        fuse(
            &self.passage_vector,
            &self.query_sum,
            self.queries.len(),
            alpha,
            normalize,
        )
    }
}

/// `e' = (1-α)·e_p + α·Σe_q`, L2-normalised when `normalize`; `e_p` itself when `count` is 0.
pub fn fuse(e_p: &[f32], query_sum: &[f32], count: usize, alpha: f32, normalize: bool) -> Vec<f32> {
    let mut v: Vec<f32> = if count == 0 {
        e_p.to_vec()
    } else {
        e_p.iter()
            .zip(query_sum)
            .map(|(p, q)| (1.0 - alpha) * p + alpha * q)
            .collect()
    };
    if normalize {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            v.iter_mut().for_each(|x| *x /= norm);
        }
    }
    v
}

/// Removes repeated queries (after trimming; the first stays) and empty ones.
pub fn dedup_queries(queries: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    queries
        .into_iter()
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty() && seen.insert(q.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_follows_the_formula() {
        let e = fuse(&[1.0, 0.0], &[0.0, 4.0], 4, 0.25, false);
        assert_eq!(e, vec![0.75, 1.0]);
        let n = fuse(&[1.0, 0.0], &[0.0, 4.0], 4, 0.25, true);
        let norm = (0.75f32 * 0.75 + 1.0).sqrt();
        assert!((n[0] - 0.75 / norm).abs() < 1e-6 && (n[1] - 1.0 / norm).abs() < 1e-6);
        assert_eq!(
            fuse(&[3.0, 4.0], &[0.0, 0.0], 0, 0.5, false),
            vec![3.0, 4.0]
        );
    }

    #[test]
    fn prompts_follow_the_template() {
        let p = XqgProfile::default();
        let te = TargetLanguage::parse("te").unwrap();
        assert_eq!(
            p.prompt_for(&te, Some("Helsinki"), "Helsinki is a city."),
            "Generate a Telugu question for this passage: Helsinki Helsinki is a city."
        );
        assert_eq!(
            p.prompt_for(&te, None, "Text."),
            "Generate a Telugu question for this passage: Text."
        );
    }

    #[test]
    fn languages_parse_or_name_the_problem() {
        assert_eq!(TargetLanguage::parse("ja").unwrap().name, "Japanese");
        assert_eq!(TargetLanguage::parse("xx=Klingon").unwrap().name, "Klingon");
        let e = TargetLanguage::parse("zz").unwrap_err().to_string();
        assert!(e.contains("unknown language code"), "{e}");
        assert!(TargetLanguage::parse_list(" , ").is_err());
        assert_eq!(TargetLanguage::parse_list("ar,bn").unwrap().len(), 2);
    }

    #[test]
    fn profile_validation_names_the_field() {
        let mut p = XqgProfile::default();
        p.validate().unwrap();
        p.alpha = f32::NAN;
        assert!(p.validate().unwrap_err().to_string().contains("alpha"));
        let p = XqgProfile {
            prompt: "no slot".into(),
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("{passage}"));
    }

    #[test]
    fn dedup_keeps_first_and_drops_empty() {
        let q = dedup_queries(vec![" a ".into(), "b".into(), "a".into(), "".into()]);
        assert_eq!(q, vec!["a".to_string(), "b".to_string()]);
    }
}
