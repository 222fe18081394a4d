//! Keyword search building blocks: a multilingual analyzer that needs no per-language
//! dictionaries, and BM25 scoring (Lucene's variant) over in-memory postings.
//!
//! Analysis: NFKC normalisation, lower-casing, Unicode word segmentation (UAX #29); runs of
//! Han, Hiragana, Katakana and Hangul characters (scripts written without spaces, or whose
//! words carry particles) become overlapping character bigrams (a lone character stays a
//! unigram), as Lucene's CJK bigram filter does; other words can be stemmed with a Snowball
//! stemmer chosen by the text's language.

pub(crate) mod blocks;
pub(crate) mod store;

use rust_stemmers::{Algorithm, Stemmer};
use std::collections::{BTreeMap, HashMap, HashSet};
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

/// Whether `c` belongs to a script analysed as character bigrams.
fn is_bigram_script(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x309F // Hiragana
        | 0x30A0..=0x30FF // Katakana
        | 0x31F0..=0x31FF // Katakana phonetic extensions
        | 0xFF66..=0xFF9F // half-width Katakana
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xF900..=0xFAFF // CJK compatibility ideographs
        | 0x20000..=0x3134F // CJK extensions B-G
        | 0x1100..=0x11FF // Hangul Jamo
        | 0x3130..=0x318F // Hangul compatibility Jamo
        | 0xAC00..=0xD7AF // Hangul syllables
    )
}

/// The Snowball stemmer for an ISO 639-1 language tag, if rust-stemmers has one.
pub fn stemmer_for(lang: &str) -> Option<Algorithm> {
    Some(match lang {
        "ar" => Algorithm::Arabic,
        "da" => Algorithm::Danish,
        "nl" => Algorithm::Dutch,
        "en" => Algorithm::English,
        "fi" => Algorithm::Finnish,
        "fr" => Algorithm::French,
        "de" => Algorithm::German,
        "el" => Algorithm::Greek,
        "hu" => Algorithm::Hungarian,
        "it" => Algorithm::Italian,
        "nb" | "no" => Algorithm::Norwegian,
        "pt" => Algorithm::Portuguese,
        "ro" => Algorithm::Romanian,
        "ru" => Algorithm::Russian,
        "es" => Algorithm::Spanish,
        "sv" => Algorithm::Swedish,
        "ta" => Algorithm::Tamil,
        "tr" => Algorithm::Turkish,
        _ => return None,
    })
}

/// Turns text into index terms.
pub struct Analyzer {
    stemmer: Option<Stemmer>,
}

impl Analyzer {
    /// An analyzer without stemming.
    pub fn new() -> Self {
        Analyzer { stemmer: None }
    }

    /// An analyzer that stems with `lang`'s Snowball stemmer when there is one.
    pub fn for_lang(lang: Option<&str>) -> Self {
        Analyzer {
            stemmer: lang.and_then(stemmer_for).map(Stemmer::create),
        }
    }

    /// The terms of `text`, in order.
    ///
    /// ```
    /// use xqdb::lexical::Analyzer;
    /// assert_eq!(Analyzer::new().terms("Ｈｅｌｌｏ, World!"), ["hello", "world"]);
    /// assert_eq!(Analyzer::new().terms("東京タワー"), ["東京", "京タ", "タワ", "ワー"]);
    /// assert_eq!(Analyzer::for_lang(Some("en")).terms("running dogs"), ["run", "dog"]);
    /// ```
    pub fn terms(&self, text: &str) -> Vec<String> {
        let text: String = text.nfkc().collect::<String>().to_lowercase();
        let mut out = Vec::new();
        // A run of bigram-script characters across adjacent words: (end byte, chars).
        let mut run: Option<(usize, Vec<char>)> = None;
        let flush = |run: &mut Option<(usize, Vec<char>)>, out: &mut Vec<String>| {
            if let Some((_, chars)) = run.take() {
                if chars.len() == 1 {
                    out.push(chars[0].to_string());
                }
                for pair in chars.windows(2) {
                    out.push(pair.iter().collect());
                }
            }
        };
        for (at, word) in text.unicode_word_indices() {
            if word.chars().all(is_bigram_script) {
                match &mut run {
                    Some((end, chars)) if *end == at => {
                        chars.extend(word.chars());
                        *end = at + word.len();
                    }
                    _ => {
                        flush(&mut run, &mut out);
                        run = Some((at + word.len(), word.chars().collect()));
                    }
                }
                continue;
            }
            flush(&mut run, &mut out);
            out.push(match &self.stemmer {
                Some(s) => s.stem(word).into_owned(),
                None => word.to_string(),
            });
        }
        flush(&mut run, &mut out);
        out
    }
}

impl Analyzer {
    /// An excerpt of `text` of at most `max_words` words (Han, kana and Hangul count one a
    /// character) where the most words match `query` terms, HTML-escaped, each matching
    /// word (or pair of characters matched as a bigram) marked `<mark>…</mark>`, with `…`
    /// where text was cut. `None` when nothing matches.
    ///
    /// ```
    /// use xqdb::lexical::Analyzer;
    /// let a = Analyzer::new();
    /// let q = a.terms("capital");
    /// assert_eq!(a.highlight("Helsinki is the capital of Finland", &q, 3).as_deref(),
    ///            Some("… the <mark>capital</mark> of …"));
    /// ```
    pub fn highlight(&self, text: &str, query: &[String], max_words: usize) -> Option<String> {
        let query: HashSet<&str> = query.iter().map(String::as_str).collect();
        // Units: (start byte, end byte, matched).
        let mut units: Vec<(usize, usize, bool)> = Vec::new();
        let mut run: Vec<(usize, usize)> = Vec::new();
        let flush_run = |run: &mut Vec<(usize, usize)>, units: &mut Vec<(usize, usize, bool)>| {
            if run.is_empty() {
                return;
            }
            let chars: Vec<String> = run
                .iter()
                .map(|&(a, b)| text[a..b].nfkc().collect::<String>().to_lowercase())
                .collect();
            let mut hit = vec![false; run.len()];
            if run.len() == 1 {
                hit[0] = query.contains(chars[0].as_str());
            }
            for i in 1..run.len() {
                if query.contains(format!("{}{}", chars[i - 1], chars[i]).as_str()) {
                    hit[i - 1] = true;
                    hit[i] = true;
                }
            }
            units.extend(run.iter().zip(hit).map(|(&(a, b), h)| (a, b, h)));
            run.clear();
        };
        for (at, word) in text.unicode_word_indices() {
            if word.chars().all(is_bigram_script) {
                if run.last().is_some_and(|&(_, end)| end != at) {
                    flush_run(&mut run, &mut units);
                }
                run.extend(
                    word.char_indices()
                        .map(|(i, c)| (at + i, at + i + c.len_utf8())),
                );
                continue;
            }
            flush_run(&mut run, &mut units);
            let hit = self.terms(word).iter().any(|t| query.contains(t.as_str()));
            units.push((at, at + word.len(), hit));
        }
        flush_run(&mut run, &mut units);
        let width = max_words.max(1).min(units.len());
        let (mut best, mut best_hits, mut hits) = (0, 0, 0);
        for i in 0..units.len() {
            hits += units[i].2 as usize;
            if i >= width {
                hits -= units[i - width].2 as usize;
            }
            if i + 1 >= width && hits > best_hits {
                (best, best_hits) = (i + 1 - width, hits);
            }
        }
        if best_hits == 0 {
            return None;
        }
        // Centre the window's matches (they stay inside it).
        let hits_at: Vec<usize> = (best..best + width).filter(|&i| units[i].2).collect();
        let (first, last) = (hits_at[0], hits_at[hits_at.len() - 1]);
        let centred = ((first + last) / 2)
            .saturating_sub(width / 2)
            .min(units.len() - width);
        let best = centred.clamp(last + 1 - width.min(last + 1), first);
        let window = &units[best..best + width];
        let from = if best == 0 { 0 } else { window[0].0 };
        let to = if best + width == units.len() {
            text.len()
        } else {
            window[width - 1].1
        };
        let mut out = String::new();
        if from > 0 {
            out.push_str("… ");
        }
        let mut at = from;
        let mut open = false;
        for &(a, b, hit) in window {
            if open && (!hit || a != at) {
                out.push_str("</mark>");
                open = false;
            }
            escape_into(&mut out, &text[at..a]);
            if hit && !open {
                out.push_str("<mark>");
                open = true;
            }
            escape_into(&mut out, &text[a..b]);
            at = b;
        }
        if open {
            out.push_str("</mark>");
        }
        escape_into(&mut out, &text[at..to]);
        if to < text.len() {
            out.push_str(" …");
        }
        Some(out)
    }
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            _ => out.push(c),
        }
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new()
    }
}

/// BM25 parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25 {
    /// Term-frequency saturation (default 1.2).
    pub k1: f32,
    /// Length normalisation (default 0.75).
    pub b: f32,
}

impl Default for Bm25 {
    fn default() -> Self {
        Bm25 { k1: 1.2, b: 0.75 }
    }
}

impl Bm25 {
    /// Lucene's idf: ln(1 + (N − df + 0.5) / (df + 0.5)).
    pub fn idf(&self, docs: u64, df: u64) -> f64 {
        (1.0 + (docs as f64 - df as f64 + 0.5) / (df as f64 + 0.5)).ln()
    }

    /// Lucene's term weight: idf · tf / (tf + k1 · (1 − b + b · len / avg_len)).
    pub fn weight(&self, idf: f64, tf: u32, len: u32, avg_len: f64) -> f64 {
        let (k1, b, tf) = (self.k1 as f64, self.b as f64, tf as f64);
        let norm = if avg_len > 0.0 {
            1.0 - b + b * len as f64 / avg_len
        } else {
            1.0
        };
        idf * tf / (tf + k1 * norm)
    }
}

/// Postings of a set of documents held in memory: enough to score BM25 exactly and to
/// serve as the oracle of a stored lexical index.
#[derive(Clone, Debug, Default)]
pub struct Postings {
    /// term → (document, term frequency), documents ascending.
    terms: HashMap<String, Vec<(u32, u32)>>,
    /// Length (terms) of each document.
    lens: Vec<u32>,
    total_len: u64,
}

impl Postings {
    /// Empty postings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a document's terms; returns its number (0, 1, ...).
    pub fn add(&mut self, terms: &[String]) -> u32 {
        let doc = self.lens.len() as u32;
        let mut tf: HashMap<&str, u32> = HashMap::new();
        for t in terms {
            *tf.entry(t).or_default() += 1;
        }
        for (t, n) in tf {
            self.terms.entry(t.to_string()).or_default().push((doc, n));
        }
        self.lens.push(terms.len() as u32);
        self.total_len += terms.len() as u64;
        doc
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// True when no document was added.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// The BM25 score of every document for `query` terms (a repeated query term counts
    /// once per occurrence, as Lucene's boolean query of term clauses does).
    ///
    /// The terms are summed in the order the stored index sums them — each distinct term
    /// once, in byte order, its weight times its count — so that both give the same bits,
    /// not only the same score up to rounding: ties are then ties in both.
    pub fn scores(&self, query: &[String], bm25: &Bm25) -> Vec<f64> {
        let mut out = vec![0f64; self.lens.len()];
        let n = self.lens.len() as u64;
        let avg = if n == 0 {
            0.0
        } else {
            self.total_len as f64 / n as f64
        };
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for t in query {
            *counts.entry(t.as_str()).or_default() += 1;
        }
        for (t, times) in counts {
            let Some(list) = self.terms.get(t) else {
                continue;
            };
            let idf = bm25.idf(n, list.len() as u64);
            for &(d, tf) in list {
                out[d as usize] += bm25.weight(idf, tf, self.lens[d as usize], avg) * times as f64;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_without_spaces_become_bigrams_across_word_breaks() {
        let a = Analyzer::new();
        // UAX #29 splits ideographs one by one; the run is rejoined before bigramming.
        assert_eq!(a.terms("日本の首都"), ["日本", "本の", "の首", "首都"]);
        assert_eq!(a.terms("한국어 사전"), ["한국", "국어", "사전"]);
        assert_eq!(a.terms("山"), ["山"]);
        // Mixed scripts: Latin and digits stay words, each CJK run is bigrammed alone.
        assert_eq!(
            a.terms("iPhone 15は東京で"),
            ["iphone", "15", "は東", "東京", "京で"]
        );
        assert!(a.terms("  ,.!? ").is_empty());
    }

    #[test]
    fn normalisation_case_and_stemming() {
        let a = Analyzer::new();
        assert_eq!(a.terms("ÉCOLE École école"), ["école", "école", "école"]);
        assert_eq!(a.terms("ﬁnance"), ["finance"]);
        let fi = Analyzer::for_lang(Some("fi"));
        assert_eq!(fi.terms("taloissa"), fi.terms("taloissa"));
        assert_ne!(fi.terms("taloissa"), Analyzer::new().terms("taloissa"));
        let ru = Analyzer::for_lang(Some("ru"));
        assert_eq!(ru.terms("озера"), ru.terms("озеро"));
        assert!(stemmer_for("ja").is_none());
    }

    #[test]
    fn bm25_prefers_rare_terms_and_short_documents() {
        let a = Analyzer::new();
        let mut p = Postings::new();
        for d in [
            "the cat sat",
            "the dog sat on the mat",
            "the cat and the dog",
            "the",
        ] {
            p.add(&a.terms(d));
        }
        let s = p.scores(&a.terms("cat"), &Bm25::default());
        assert!(s[0] > s[2] && s[2] > 0.0 && s[1] == 0.0 && s[3] == 0.0);
        // A term in every document still scores above zero (Lucene's idf), and less than a
        // rare one.
        let common = p.scores(&a.terms("the"), &Bm25::default());
        assert!(common[3] > 0.0 && common[3] < s[0]);
        // b = 0: no length normalisation.
        let flat = p.scores(&a.terms("sat"), &Bm25 { k1: 1.2, b: 0.0 });
        assert_eq!(flat[0], flat[1]);
    }
}
