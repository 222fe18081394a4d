//! Teachers: models that score (query, passage) pairs more carefully than the index's
//! dense dot product, behind one trait so that reranking and distillation take any of them.

use super::dot;
use crate::xqg::{TargetLanguage, XqgProfile};
use crate::{Encoder, Error, Generator, Result};
use std::sync::Arc;

/// A query to score, with what some teachers need besides its text.
#[derive(Clone, Copy, Debug, Default)]
pub struct TeacherQuery<'a> {
    /// The query as the user wrote it.
    pub text: &'a str,
    /// Its language code (`te`), when known.
    pub lang: Option<&'a str>,
    /// A parallel version of the query (usually English), when one exists.
    pub parallel: Option<&'a str>,
}

/// A candidate passage as stored in the index.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// Passage id.
    pub id: &'a str,
    /// Title, if any.
    pub title: Option<&'a str>,
    /// Passage text.
    pub text: &'a str,
    /// The passage's own embedding E(p) (for an xQG passage, before fusion).
    pub vector: &'a [f32],
}

impl<'a> Candidate<'a> {
    /// Candidates for search hits, with each hit's own embedding from `vectors` (same order).
    pub fn from_hits(hits: &'a [crate::Hit], vectors: &'a [Vec<f32>]) -> Vec<Candidate<'a>> {
        hits.iter()
            .zip(vectors)
            .map(|(h, v)| Candidate {
                id: &h.id,
                title: h.passage.title.as_deref(),
                text: &h.passage.text,
                vector: v,
            })
            .collect()
    }
}

/// Scores a query against candidates; higher is more relevant. Scores of different
/// teachers are on different scales; reranking standardises them and distillation
/// applies a temperature.
pub trait Teacher: Send + Sync {
    /// A short description recorded with adapters and distillation sets
    /// (`generator:<fingerprint>`, `translation`, `encoder:<fingerprint>`).
    fn name(&self) -> String;

    /// One score per candidate, in order.
    fn score(&self, query: &TeacherQuery<'_>, candidates: &[Candidate<'_>]) -> Result<Vec<f32>>;
}

/// The seq2seq generator as teacher: the log-likelihood of the query given the prompt the
/// xQG profile builds from the passage (Ren et al., EMNLP 2022), summed over the query's
/// tokens or divided by their number.
pub struct GeneratorTeacher {
    generator: Arc<Generator>,
    profile: XqgProfile,
    length_normalize: bool,
}

impl GeneratorTeacher {
    /// A teacher using `profile`'s prompt template and length limits.
    pub fn new(generator: Arc<Generator>, profile: XqgProfile, length_normalize: bool) -> Self {
        GeneratorTeacher {
            generator,
            profile,
            length_normalize,
        }
    }

    fn language(&self, lang: Option<&str>) -> Result<TargetLanguage> {
        let Some(code) = lang else {
            return Err(Error::InvalidArgument(
                "the generator teacher needs each query's language (the prompt names it)".into(),
            ));
        };
        match self.profile.languages.iter().find(|l| l.code == code) {
            Some(l) => Ok(l.clone()),
            None => TargetLanguage::parse(code),
        }
    }
}

impl Teacher for GeneratorTeacher {
    fn name(&self) -> String {
        format!(
            "generator:{}{}",
            self.generator.fingerprint(),
            if self.length_normalize {
                " (per token)"
            } else {
                ""
            }
        )
    }

    fn score(&self, query: &TeacherQuery<'_>, candidates: &[Candidate<'_>]) -> Result<Vec<f32>> {
        let lang = self.language(query.lang)?;
        let target = self
            .generator
            .tokenize(query.text, self.profile.max_query_tokens)?;
        candidates
            .iter()
            .map(|c| {
                let prompt = self.profile.prompt_for(&lang, c.title, c.text);
                let ids = self
                    .generator
                    .tokenize(&prompt, self.profile.max_input_tokens)?;
                let ll = self.generator.log_likelihood(&ids, &target)?;
                Ok(if self.length_normalize {
                    (ll / target.len().max(1) as f64) as f32
                } else {
                    ll as f32
                })
            })
            .collect()
    }
}

/// The translation teacher: the encoder's score of the query's parallel (usually English)
/// version against each passage's own embedding — knowledge distillation from parallel
/// text. Queries without a parallel version cannot be scored.
pub struct TranslationTeacher {
    encoder: Arc<Encoder>,
}

impl TranslationTeacher {
    /// A teacher using the index's encoder (the same one that made the passage vectors).
    pub fn new(encoder: Arc<Encoder>) -> Self {
        TranslationTeacher { encoder }
    }
}

impl Teacher for TranslationTeacher {
    fn name(&self) -> String {
        "translation".into()
    }

    fn score(&self, query: &TeacherQuery<'_>, candidates: &[Candidate<'_>]) -> Result<Vec<f32>> {
        let parallel = query.parallel.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the translation teacher needs a parallel version of the query {:?}",
                query.text
            ))
        })?;
        let q = self
            .encoder
            .encode_queries(&[parallel])?
            .pop()
            .unwrap_or_default();
        for c in candidates {
            if c.vector.len() != q.len() {
                return Err(Error::DimensionMismatch {
                    id: c.id.to_string(),
                    expected: q.len(),
                    found: c.vector.len(),
                });
            }
        }
        Ok(candidates.iter().map(|c| dot(&q, c.vector)).collect())
    }
}

/// Another encoder bundle as teacher (usually a larger model than the index's): it encodes
/// the query and the candidates' texts itself.
pub struct EncoderTeacher {
    encoder: Arc<Encoder>,
}

impl EncoderTeacher {
    /// A teacher from an opened encoder.
    pub fn new(encoder: Arc<Encoder>) -> Self {
        EncoderTeacher { encoder }
    }
}

impl Teacher for EncoderTeacher {
    fn name(&self) -> String {
        format!("encoder:{}", self.encoder.fingerprint())
    }

    fn score(&self, query: &TeacherQuery<'_>, candidates: &[Candidate<'_>]) -> Result<Vec<f32>> {
        let q = self
            .encoder
            .encode_queries(&[query.text])?
            .pop()
            .unwrap_or_default();
        let texts: Vec<String> = candidates
            .iter()
            .map(|c| match c.title.filter(|t| !t.trim().is_empty()) {
                Some(t) => format!("{t} {}", c.text),
                None => c.text.to_string(),
            })
            .collect();
        let p = self.encoder.encode_passages(&texts)?;
        Ok(p.iter().map(|v| dot(&q, v)).collect())
    }
}
