//! A port of nltk's `word_tokenize` for English (nltk 3.10): the Punkt sentence splitter
//! with NLTK's English parameters, then the improved Treebank word tokenizer on each
//! sentence. The XOR-Retrieve scorer counts and joins these tokens, so parity with nltk
//! decides its results (tested against tokens recorded from nltk itself).

use fancy_regex::Regex;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// NLTK's English Punkt parameters (made by `scripts/make_punkt_english.py`).
const PUNKT_ENGLISH: &str = include_str!("punkt-english.tsv");

const ORTHO_BEG_UC: u32 = 1 << 1;
const ORTHO_MID_UC: u32 = 1 << 2;
const ORTHO_UNK_UC: u32 = 1 << 3;
const ORTHO_BEG_LC: u32 = 1 << 4;
const ORTHO_MID_LC: u32 = 1 << 5;
const ORTHO_UNK_LC: u32 = 1 << 6;
const ORTHO_UC: u32 = ORTHO_BEG_UC | ORTHO_MID_UC | ORTHO_UNK_UC;
const ORTHO_LC: u32 = ORTHO_BEG_LC | ORTHO_MID_LC | ORTHO_UNK_LC;

struct PunktParams {
    abbrev: HashSet<String>,
    starters: HashSet<String>,
    collocations: HashSet<(String, String)>,
    ortho: HashMap<String, u32>,
}

fn params() -> &'static PunktParams {
    static P: OnceLock<PunktParams> = OnceLock::new();
    P.get_or_init(|| {
        let mut p = PunktParams {
            abbrev: HashSet::new(),
            starters: HashSet::new(),
            collocations: HashSet::new(),
            ortho: HashMap::new(),
        };
        for line in PUNKT_ENGLISH.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["abbrev", t] => {
                    p.abbrev.insert((*t).to_string());
                }
                ["starter", t] => {
                    p.starters.insert((*t).to_string());
                }
                ["colloc", a, b] => {
                    p.collocations.insert(((*a).to_string(), (*b).to_string()));
                }
                ["ortho", t, v] => {
                    p.ortho
                        .insert((*t).to_string(), v.parse().expect("ortho flags"));
                }
                _ => panic!("bad line in punkt-english.tsv: {line:?}"),
            }
        }
        p
    })
}

struct Regexes {
    word: Regex,
    numeric: Regex,
    initial: Regex,
    starting_quotes: Vec<(Regex, &'static str)>,
    punctuation: Vec<(Regex, &'static str)>,
    parens: Regex,
    double_dashes: Regex,
    ending_quotes: Vec<(Regex, &'static str)>,
    contractions: Vec<Regex>,
}

/// Characters that cannot appear within Punkt words (NLTK's `_re_non_word_chars`).
const NON_WORD: &str = r#"[)";}\]*:@'({\[‘’“”«»?!]"#;
const MULTI_CHAR: &str = r"(?:-{2,}|\.{2,}|(?:\.\s){2,}\.)";

fn rx(p: &str) -> Regex {
    Regex::new(p).unwrap_or_else(|e| panic!("pattern {p:?}: {e}"))
}

fn regexes() -> &'static Regexes {
    static R: OnceLock<Regexes> = OnceLock::new();
    R.get_or_init(|| Regexes {
        word: rx(&format!(
            r#"{MULTI_CHAR}|(?=[^("`{{\[:;&#*@)}}\]\-,])\S+?(?=\s|$|{NON_WORD}|{MULTI_CHAR}|,(?=$|\s|{NON_WORD}|{MULTI_CHAR}))|\S"#
        )),
        numeric: rx(r"^-?[.,]?\d[\d,.\-]*\.?$"),
        initial: rx(r"^[^\W\d]\.$"),
        starting_quotes: vec![
            (rx(r"([«“‘„]|[`]+)"), " $1 "),
            (rx(r#"^""#), "``"),
            (rx(r"(``)"), " $1 "),
            (rx(r#"([ (\[{<])("|'{2})"#), "$1 `` "),
            (rx(r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)"), "$1 "),
        ],
        punctuation: vec![
            (rx(r#"([^.])(\.)([\])}>"'»”’ ]*)\s*$"#), "$1 $2 $3 "),
            (rx(r"([:,])([^\d])"), " $1 $2"),
            (rx(r"([:,])$"), " $1 "),
            (rx(r"\.{2,}"), " $0 "),
            (rx(r"[;@#$%&]"), " $0 "),
            (rx(r"[\u2012-\u2015]"), " $0 "),
            (rx(r#"([^.])(\.)([\])}>"']*)\s*$"#), "$1 $2$3 "),
            (rx(r"[?!]"), " $0 "),
            (rx(r"([^'])' "), "$1 ' "),
            (rx(r"[*]"), " $0 "),
        ],
        parens: rx(r"[\]\[(){}<>]"),
        double_dashes: rx(r"--"),
        ending_quotes: vec![
            (rx(r"([»”’])"), " $1 "),
            (rx(r"''"), " '' "),
            (rx(r#"""#), " '' "),
            (rx(r"\s+"), " "),
            (rx(r"([^' ])('[sS]|'[mM]|'[dD]|') "), "$1 $2 "),
            (rx(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), "$1 $2 "),
        ],
        contractions: [
            r"(?i)\b(can)(not)\b",
            r"(?i)\b(d)('ye)\b",
            r"(?i)\b(gim)(me)\b",
            r"(?i)\b(gon)(na)\b",
            r"(?i)\b(got)(ta)\b",
            r"(?i)\b(lem)(me)\b",
            r"(?i)\b(more)('n)\b",
            r"(?i)\b(wan)(na)(?=\s)",
            r"(?i) ('t)(is)\b",
            r"(?i) ('t)(was)\b",
        ]
        .iter()
        .map(|p| rx(p))
        .collect(),
    })
}

/// Python's `str.isspace` for one character.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.rstrip()`.
fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_space)
}

fn replace_all(re: &Regex, text: &str, rep: &str) -> String {
    re.replace_all(text, rep).into_owned()
}

/// Splits `text` into words the way nltk's `word_tokenize(text)` does (English).
pub fn word_tokenize(text: &str) -> Vec<String> {
    sent_tokenize(text)
        .iter()
        .flat_map(|s| treebank_tokenize(s))
        .collect()
}

/// nltk's `NLTKWordTokenizer().tokenize(sentence)`.
pub fn treebank_tokenize(sentence: &str) -> Vec<String> {
    let r = regexes();
    let mut text = sentence.to_string();
    for (re, rep) in &r.starting_quotes {
        text = replace_all(re, &text, rep);
    }
    for (re, rep) in &r.punctuation {
        text = replace_all(re, &text, rep);
    }
    text = replace_all(&r.parens, &text, " $0 ");
    text = replace_all(&r.double_dashes, &text, " -- ");
    text = format!(" {text} ");
    for (re, rep) in &r.ending_quotes {
        text = replace_all(re, &text, rep);
    }
    for re in &r.contractions {
        text = replace_all(re, &text, " $1 $2 ");
    }
    text.split(py_space)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ortho {
    Yes,
    No,
    Unknown,
}

struct Token<'a> {
    tok: &'a str,
    typ: String,
    period_final: bool,
    sentbreak: bool,
    abbr: bool,
    ellipsis: bool,
}

impl<'a> Token<'a> {
    fn new(tok: &'a str) -> Self {
        let lower = tok.to_lowercase();
        let typ = if regexes().numeric.is_match(&lower).unwrap_or(false) {
            "##number##".to_string()
        } else {
            lower
        };
        Token {
            tok,
            typ,
            period_final: tok.ends_with('.'),
            sentbreak: false,
            abbr: false,
            ellipsis: false,
        }
    }

    fn type_no_period(&self) -> &str {
        if self.typ.chars().count() > 1 && self.typ.ends_with('.') {
            &self.typ[..self.typ.len() - 1]
        } else {
            &self.typ
        }
    }

    fn type_no_sentperiod(&self) -> &str {
        if self.sentbreak {
            self.type_no_period()
        } else {
            &self.typ
        }
    }

    fn first_upper(&self) -> bool {
        self.tok.chars().next().is_some_and(char::is_uppercase)
    }

    fn first_lower(&self) -> bool {
        self.tok.chars().next().is_some_and(char::is_lowercase)
    }

    fn is_ellipsis(&self) -> bool {
        self.tok.len() >= 2 && self.tok.bytes().all(|b| b == b'.')
    }

    fn is_initial(&self) -> bool {
        regexes().initial.is_match(self.tok).unwrap_or(false)
    }
}

/// Punkt's word split of one line (periods stay attached).
fn punkt_words(line: &str) -> Vec<&str> {
    regexes()
        .word
        .find_iter(line)
        .filter_map(|m| m.ok().map(|m| m.as_str()))
        .collect()
}

fn tokenize_words(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        if line.chars().any(|c| !py_space(c)) {
            out.extend(punkt_words(line).into_iter().map(Token::new));
        }
    }
    out
}

fn ortho_heuristic(t: &Token<'_>) -> Ortho {
    if matches!(t.tok, ";" | ":" | "," | "." | "!" | "?") {
        return Ortho::No;
    }
    let ctx = params()
        .ortho
        .get(t.type_no_sentperiod())
        .copied()
        .unwrap_or(0);
    if t.first_upper() && ctx & ORTHO_LC != 0 && ctx & ORTHO_MID_UC == 0 {
        return Ortho::Yes;
    }
    if t.first_lower() && (ctx & ORTHO_UC != 0 || ctx & ORTHO_BEG_LC == 0) {
        return Ortho::No;
    }
    Ortho::Unknown
}

fn annotate(tokens: &mut [Token<'_>]) {
    let p = params();
    for t in tokens.iter_mut() {
        if matches!(t.tok, "." | "?" | "!") {
            t.sentbreak = true;
        } else if t.is_ellipsis() {
            t.ellipsis = true;
        } else if t.period_final && !t.tok.ends_with("..") {
            let stem = t.tok[..t.tok.len() - 1].to_lowercase();
            let last = stem.rsplit('-').next().unwrap_or("");
            if p.abbrev.contains(&stem) || p.abbrev.contains(last) {
                t.abbr = true;
            } else {
                t.sentbreak = true;
            }
        }
    }
    for i in 0..tokens.len().saturating_sub(1) {
        let (a, b) = tokens.split_at_mut(i + 1);
        let (t1, t2) = (&mut a[i], &b[0]);
        if !t1.period_final {
            continue;
        }
        let typ = t1.type_no_period().to_string();
        let next_typ = t2.type_no_sentperiod().to_string();
        let initial = t1.is_initial();
        if p.collocations.contains(&(typ.clone(), next_typ.clone())) {
            t1.sentbreak = false;
            t1.abbr = true;
            continue;
        }
        if (t1.abbr || t1.ellipsis) && !initial {
            if ortho_heuristic(t2) == Ortho::Yes {
                t1.sentbreak = true;
                continue;
            }
            if t2.first_upper() && p.starters.contains(&next_typ) {
                t1.sentbreak = true;
                continue;
            }
        }
        if initial || typ == "##number##" {
            let o = ortho_heuristic(t2);
            if o == Ortho::No {
                t1.sentbreak = false;
                t1.abbr = true;
                continue;
            }
            if o == Ortho::Unknown
                && initial
                && t2.first_upper()
                && p.ortho.get(&next_typ).copied().unwrap_or(0) & ORTHO_LC == 0
            {
                t1.sentbreak = false;
                t1.abbr = true;
            }
        }
    }
}

fn contains_sentbreak(text: &str) -> bool {
    let mut tokens = tokenize_words(text);
    annotate(&mut tokens);
    let mut found = false;
    for t in &tokens {
        if found {
            return true;
        }
        if t.sentbreak {
            found = true;
        }
    }
    false
}

fn is_non_word(c: char) -> bool {
    ")\";}]*:@'({[‘’“”«»?!".contains(c)
}

/// A potential sentence end: the byte range of the end character, and the following
/// token (start of its non-space run and end) when whitespace separates them.
struct EndMatch {
    start: usize,
    end: usize,
    after_end: usize,
    next_tok: Option<usize>,
}

fn period_contexts(text: &str) -> Vec<EndMatch> {
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        if !matches!(c, '.' | '?' | '!') {
            continue;
        }
        let end = i + 1;
        let rest = &text[end..];
        let Some(n) = rest.chars().next() else {
            continue;
        };
        if is_non_word(n) {
            out.push(EndMatch {
                start: i,
                end,
                after_end: end + n.len_utf8(),
                next_tok: None,
            });
            continue;
        }
        let ws: usize = rest
            .chars()
            .take_while(|c| c.is_whitespace())
            .map(char::len_utf8)
            .sum();
        if ws == 0 {
            continue;
        }
        let tok: usize = rest[ws..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .map(char::len_utf8)
            .sum();
        if tok == 0 {
            continue;
        }
        out.push(EndMatch {
            start: i,
            end,
            after_end: end + ws + tok,
            next_tok: Some(end + ws),
        });
    }
    out
}

/// Index of the last ASCII whitespace in `s` (Python's `string.whitespace`), else 0.
fn last_whitespace(s: &str) -> usize {
    s.bytes()
        .rposition(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .unwrap_or(0)
}

fn slices(text: &str) -> Vec<(usize, usize)> {
    let mut contexts: Vec<(&EndMatch, String)> = Vec::new();
    let matches = period_contexts(text);
    let mut prev: Option<(&EndMatch, (usize, usize))> = None;
    let context = |m: &EndMatch, s: (usize, usize)| {
        format!("{}{}", &text[s.0..s.1], &text[m.start..m.after_end])
    };
    let mut prev_slice = (0usize, 0usize);
    for m in &matches {
        let before = &text[prev_slice.1..m.start];
        let mut idx = last_whitespace(before);
        if idx != 0 {
            idx += prev_slice.1 + 1;
        } else {
            idx = prev_slice.0;
        }
        let word = (idx, m.start);
        if let Some((pm, ps)) = prev {
            if ps.1 <= word.0 {
                contexts.push((pm, context(pm, ps)));
            }
        }
        prev = Some((m, word));
        prev_slice = word;
    }
    if let Some((pm, ps)) = prev {
        contexts.push((pm, context(pm, ps)));
    }
    let mut out = Vec::new();
    let mut last_break = 0;
    for (m, ctx) in contexts {
        if contains_sentbreak(&ctx) {
            out.push((last_break, m.end));
            last_break = m.next_tok.unwrap_or(m.end);
        }
    }
    out.push((last_break, py_rstrip(text).len()));
    out
}

fn is_realign_char(c: char) -> bool {
    "\"')]}‘’“”«»".contains(c)
}

/// Length in bytes of the closing punctuation at the start of `s` that belongs to the
/// previous sentence, and the length of the whole match (with following whitespace).
fn realignment(s: &str) -> Option<(usize, usize)> {
    let mut k = 0;
    for c in s.chars() {
        if !is_realign_char(c) {
            break;
        }
        k += c.len_utf8();
        let rest = &s[k..];
        let ws: usize = rest
            .chars()
            .take_while(|c| py_space(*c))
            .map(char::len_utf8)
            .sum();
        if ws > 0 {
            return Some((k, k + ws));
        }
        if rest.starts_with("--") || rest.is_empty() {
            return Some((k, k));
        }
    }
    None
}

/// nltk's `sent_tokenize(text)` (English Punkt, boundaries realigned).
pub fn sent_tokenize(text: &str) -> Vec<String> {
    let slices = slices(text);
    let mut out = Vec::new();
    let mut realign = 0;
    for (i, &(s1, e1)) in slices.iter().enumerate() {
        let start = (s1 + realign).min(e1.max(s1));
        let Some(&(s2, e2)) = slices.get(i + 1) else {
            if start < e1 {
                out.push(text[start..e1].to_string());
            }
            continue;
        };
        match realignment(&text[s2..e2.max(s2)]) {
            Some((keep, whole)) => {
                out.push(text[start..s2 + keep].to_string());
                realign = whole;
            }
            None => {
                realign = 0;
                if start < e1 {
                    out.push(text[start..e1].to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docstring_examples() {
        let s = "Good muffins cost $3.88 (roughly 3,36 euros)\nin New York.  Please buy me\ntwo of them.\nThanks.";
        assert_eq!(
            treebank_tokenize(s),
            [
                "Good", "muffins", "cost", "$", "3.88", "(", "roughly", "3,36", "euros", ")", "in",
                "New", "York.", "Please", "buy", "me", "two", "of", "them.", "Thanks", "."
            ]
        );
        assert_eq!(
            sent_tokenize("Dr. Smith went home. He was tired."),
            ["Dr. Smith went home.", "He was tired."]
        );
    }
}
