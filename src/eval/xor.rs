//! The XOR-Retrieve scorer (R@2kt, R@5kt), following the official `eval_xor_retrieve.py`
//! of the XOR-TyDi QA repository: for each question with span answers (yes/no dropped), the
//! top passages' nltk tokens are concatenated up to N tokens; a hit is an answer occurring
//! as a plain substring of those N tokens joined by spaces. Scores are hit rates × 100 per
//! language and their macro average.

use super::nltk::word_tokenize;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// One question of an XOR-Retrieve data file (`{"id","lang","answers",..}` per line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct XorQuestion {
    /// Question id.
    pub id: String,
    /// Language of the question.
    pub lang: String,
    /// The question text (used when retrieving with an index).
    #[serde(default)]
    pub question: String,
    /// Gold answers (English spans, or "yes"/"no").
    pub answers: Vec<String>,
}

/// A retrieved passage in a prediction file: a plain string or an object with `text`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ctx {
    /// The passage text.
    Text(String),
    /// An object with at least `text` (other fields are ignored).
    Object {
        /// The passage text.
        text: String,
    },
}

impl Ctx {
    /// The passage text.
    pub fn text(&self) -> &str {
        match self {
            Ctx::Text(t) | Ctx::Object { text: t } => t,
        }
    }
}

/// One question's ranked passages, as in the official prediction JSON
/// (`[{"id","lang","ctxs":[...]}, ...]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct XorPrediction {
    /// Question id.
    pub id: String,
    /// Question language.
    pub lang: String,
    /// Passages, best first.
    pub ctxs: Vec<Ctx>,
}

/// Reads an XOR-Retrieve data file (JSON lines).
pub fn read_questions(path: &Path) -> Result<Vec<XorQuestion>> {
    Ok(super::read_jsonl(path)?
        .into_iter()
        .map(|(_, q)| q)
        .collect())
}

/// Reads a prediction file (one JSON array).
pub fn read_predictions(path: &Path) -> Result<Vec<XorPrediction>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

/// Hits and counted questions of one language at one cutoff.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LangScore {
    /// Language.
    pub lang: String,
    /// Questions counted (those with span answers).
    pub count: usize,
    /// Questions whose answer is in the first N tokens.
    pub hit: usize,
    /// `hit / count × 100`.
    pub score: f64,
}

/// Scores at one cutoff of N tokens.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct XorScore {
    /// The cutoff in tokens (2000 for R@2kt, 5000 for R@5kt).
    pub max_tokens: usize,
    /// Per language, in the order languages first appear in the predictions.
    pub languages: Vec<LangScore>,
    /// Mean of the per-language scores (exactly rounded, as Python's `statistics.mean`).
    pub macro_average: f64,
}

/// Scores `predictions` against `questions` at each cutoff (e.g. `[2000, 5000]`).
pub fn score(
    questions: &[XorQuestion],
    predictions: &[XorPrediction],
    cutoffs: &[usize],
) -> Vec<XorScore> {
    let answers: HashMap<&str, &[String]> = questions
        .iter()
        .map(|q| (q.id.as_str(), q.answers.as_slice()))
        .collect();
    let longest = cutoffs.iter().copied().max().unwrap_or(0);
    let mut langs: Vec<String> = Vec::new();
    // Per language: count, and hits per cutoff.
    let mut tallies: HashMap<String, (usize, Vec<usize>)> = HashMap::new();
    for p in predictions {
        if !tallies.contains_key(&p.lang) {
            langs.push(p.lang.clone());
            tallies.insert(p.lang.clone(), (0, vec![0; cutoffs.len()]));
        }
        let Some(gold) = answers.get(p.id.as_str()) else {
            continue;
        };
        let spans: Vec<&String> = gold.iter().filter(|a| *a != "yes" && *a != "no").collect();
        if spans.is_empty() {
            continue;
        }
        let t = tallies.get_mut(&p.lang).expect("inserted above");
        t.0 += 1;
        let mut tokens: Vec<String> = Vec::new();
        for ctx in &p.ctxs {
            if tokens.len() >= longest {
                break;
            }
            tokens.extend(word_tokenize(ctx.text()));
        }
        for (c, &n) in cutoffs.iter().enumerate() {
            // Tokens were gathered until the longest cutoff; the official loop stops at n,
            // which yields the same first n tokens.
            let joined = tokens[..tokens.len().min(n)].join(" ");
            if spans.iter().any(|a| joined.contains(a.as_str())) {
                t.1[c] += 1;
            }
        }
    }
    cutoffs
        .iter()
        .enumerate()
        .map(|(c, &n)| {
            let languages: Vec<LangScore> = langs
                .iter()
                .filter_map(|l| {
                    let (count, hits) = &tallies[l];
                    (*count > 0).then(|| LangScore {
                        lang: l.clone(),
                        count: *count,
                        hit: hits[c],
                        score: (hits[c] as f64 / *count as f64) * 100.0,
                    })
                })
                .collect();
            let scores: Vec<f64> = languages.iter().map(|l| l.score).collect();
            XorScore {
                max_tokens: n,
                macro_average: exact_mean(&scores),
                languages,
            }
        })
        .collect()
}

/// `m × 2^e` for a finite, non-negative f64.
fn decompose(x: f64) -> (u128, i32) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = (bits & ((1 << 52) - 1)) as u128;
    if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1 << 52), exp - 1075)
    }
}

/// The correctly rounded mean of non-negative finite values, as Python's
/// `statistics.mean` computes it (exact sum, one rounding). NaN for an empty slice.
pub fn exact_mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let naive = values.iter().sum::<f64>() / values.len() as f64;
    let parts: Vec<(u128, i32)> = values.iter().map(|&v| decompose(v)).collect();
    let Some(emin) = parts.iter().filter(|p| p.0 != 0).map(|p| p.1).min() else {
        return 0.0;
    };
    // The exact sum as S × 2^emin.
    let mut sum: u128 = 0;
    for &(m, e) in &parts {
        let shifted = m
            .checked_shl((e - emin) as u32)
            .filter(|s| s >> (e - emin) == m);
        match shifted.and_then(|s| sum.checked_add(s)) {
            Some(s) => sum = s,
            None => return naive, // out of exact range: never for percentages
        }
    }
    let n = values.len() as u128;
    // Pick, among the naive result and its neighbours, the one nearest to sum / n × 2^emin
    // (ties to an even mantissa): compare |c·n − S| in units of 2^emin.
    let candidates = [
        f64::from_bits(naive.to_bits().saturating_sub(1)),
        naive,
        f64::from_bits(naive.to_bits() + 1),
    ];
    let mut best = naive;
    let mut best_err: Option<u128> = None;
    for c in candidates {
        let (m, e) = decompose(c);
        let Some(scaled) = (if e >= emin {
            m.checked_mul(n)
                .and_then(|x| x.checked_shl((e - emin) as u32))
        } else {
            None
        }) else {
            continue;
        };
        let err = scaled.abs_diff(sum);
        let better = match best_err {
            None => true,
            Some(b) => err < b || (err == b && m % 2 == 0),
        };
        if better {
            best = c;
            best_err = Some(err);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_mean_rounds_once() {
        assert_eq!(exact_mean(&[1.0, 2.0, 4.0]), 7.0 / 3.0);
        assert_eq!(exact_mean(&[0.0, 0.0]), 0.0);
        // 0.1 + 0.2 + 0.3 in floats is 0.6000000000000001; the exact sum of the three
        // doubles divided by 3 rounds to 0.2 (Python: statistics.mean gives 0.2).
        assert_eq!(exact_mean(&[0.1, 0.2, 0.3]), 0.2);
        let v = [100.0 / 3.0, 200.0 / 7.0, 50.0, 300.0 / 11.0];
        let naive = v.iter().sum::<f64>() / 4.0;
        assert!((exact_mean(&v) - naive).abs() <= naive * 1e-15);
    }

    #[test]
    fn scoring_follows_the_official_rules() {
        let q = |id: &str, lang: &str, a: &[&str]| XorQuestion {
            id: id.into(),
            lang: lang.into(),
            question: String::new(),
            answers: a.iter().map(|s| s.to_string()).collect(),
        };
        let questions = vec![
            q("1", "fi", &["Helsinki"]),
            q("2", "fi", &["yes"]),
            q("3", "ja", &["Tokyo", "no"]),
            q("4", "ja", &["Kyoto"]),
        ];
        let p = |id: &str, lang: &str, ctxs: &[&str]| XorPrediction {
            id: id.into(),
            lang: lang.into(),
            ctxs: ctxs.iter().map(|c| Ctx::Text(c.to_string())).collect(),
        };
        let predictions = vec![
            p("1", "fi", &["one two three", "Helsinki is big."]),
            p("2", "fi", &["yes yes"]),
            p("3", "ja", &["Tokyo."]),
            p("4", "ja", &["Osaka", "Kyoto"]),
            p("5", "ko", &["unknown question"]),
        ];
        let s = score(&questions, &predictions, &[3, 5]);
        // fi: only question 1 counts; its answer is token 4.
        assert_eq!(s[0].languages[0].lang, "fi");
        assert_eq!((s[0].languages[0].count, s[0].languages[0].hit), (1, 0));
        assert_eq!((s[1].languages[0].count, s[1].languages[0].hit), (1, 1));
        // ja: both count; "Tokyo" hits at 3 and 5, "Kyoto" (token 2) too.
        assert_eq!((s[0].languages[1].count, s[0].languages[1].hit), (2, 2));
        // ko has no gold answers: left out.
        assert_eq!(s[0].languages.len(), 2);
        assert_eq!(s[0].macro_average, 50.0);
        assert_eq!(s[1].macro_average, 100.0);
    }
}
