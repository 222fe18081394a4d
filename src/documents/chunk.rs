//! Passages of about `target_words` words on sentence boundaries (Unicode's UAX #29 sentence
//! and word rules, so Japanese `。`, Bengali `।` and Arabic `؟` end sentences and every Han
//! or kana character counts as a word), never over a token limit the caller checks.

use super::extract::{collapse, Block};
use unicode_segmentation::UnicodeSegmentation;

/// How documents are cut into passages.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkOptions {
    /// Words a passage aims at; a passage closes at the first sentence end past it.
    pub target_words: usize,
    /// Most words a passage may have; longer sentences are cut between words.
    pub max_words: usize,
    /// Sentences of the previous passage repeated at the start of the next one.
    pub overlap_sentences: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            target_words: 100,
            max_words: 150,
            overlap_sentences: 0,
        }
    }
}

/// One passage cut from a document: its text (whitespace collapsed) and source byte range.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    /// The passage text.
    pub text: String,
    /// First source byte.
    pub start: usize,
    /// One past the last source byte.
    pub end: usize,
    /// The headings above the passage's first sentence, outermost first (Markdown).
    pub section: Vec<String>,
    /// The passage's prose: its text without the sentences of code blocks.
    pub prose: String,
}

#[derive(Clone, Debug)]
struct Sentence {
    text: String,
    words: usize,
    start: usize,
    end: usize,
    section: Vec<String>,
    code: bool,
    heading: bool,
}

fn words(s: &str) -> usize {
    s.unicode_words().count()
}

/// A sentence of `block` between text offsets, or `None` if it is blank.
fn sentence(block: &Block, from: usize, to: usize) -> Option<Sentence> {
    let s = &block.text[from..to];
    let lead = s.len() - s.trim_start().len();
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return None;
    }
    let (a, b) = (from + lead, from + lead + trimmed.len());
    Some(Sentence {
        text: collapse(trimmed),
        words: words(trimmed),
        start: block.source_at(a, false),
        end: block.source_at(b, true).max(block.source_at(a, false)),
        section: block.section.clone(),
        code: block.code,
        heading: block.heading,
    })
}

/// Cuts `block[from..to]` into pieces of at most `max` words, between words.
fn split_words(block: &Block, from: usize, to: usize, max: usize, out: &mut Vec<Sentence>) {
    let s = &block.text[from..to];
    let starts: Vec<usize> = s.unicode_word_indices().map(|(i, _)| i).collect();
    if starts.len() <= max.max(1) {
        out.extend(sentence(block, from, to));
        return;
    }
    let mut cut = 0;
    for chunk in starts.chunks(max.max(1)).skip(1) {
        let next = chunk[0];
        out.extend(sentence(block, from + cut, from + next));
        cut = next;
    }
    out.extend(sentence(block, from + cut, to));
}

fn sentences(blocks: &[Block], max_words: usize) -> Vec<Sentence> {
    let mut out = Vec::new();
    for block in blocks {
        for (at, s) in block.text.split_sentence_bound_indices() {
            split_words(block, at, at + s.len(), max_words, &mut out);
        }
    }
    out
}

fn join(sentences: &[Sentence]) -> Chunk {
    let text = sentences
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    Chunk {
        text,
        start: sentences.iter().map(|s| s.start).min().unwrap_or(0),
        end: sentences.iter().map(|s| s.end).max().unwrap_or(0),
        section: sentences
            .first()
            .map(|s| s.section.clone())
            .unwrap_or_default(),
        prose: sentences
            .iter()
            .filter(|s| !s.code)
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Emits `group` as one passage if it fits, else halves it (a lone sentence by words).
fn emit<E>(
    group: &[Sentence],
    fits: &mut dyn FnMut(&str) -> Result<bool, E>,
    out: &mut Vec<Chunk>,
) -> Result<(), E> {
    let chunk = join(group);
    if fits(&chunk.text)? {
        out.push(chunk);
        return Ok(());
    }
    if group.len() > 1 {
        let mid = group.len() / 2;
        emit(&group[..mid], fits, out)?;
        return emit(&group[mid..], fits, out);
    }
    let s = &group[0];
    let starts: Vec<usize> = s.text.unicode_word_indices().map(|(i, _)| i).collect();
    if starts.len() < 2 {
        // One word over the limit: the encoder truncates it.
        out.push(chunk);
        return Ok(());
    }
    let cut = starts[starts.len() / 2];
    let halves = [
        (&s.text[..cut], s.start, s.start),
        (&s.text[cut..], s.start, s.end),
    ];
    let halves: Vec<Sentence> = halves
        .iter()
        .map(|(t, a, b)| Sentence {
            text: t.trim().to_string(),
            words: words(t),
            start: *a,
            end: *b,
            section: s.section.clone(),
            code: s.code,
            heading: s.heading,
        })
        .collect();
    emit(&halves[..1], fits, out)?;
    emit(&halves[1..], fits, out)
}

/// Cuts `blocks` into passages. `fits` says whether a passage text is within the encoder's
/// token limit; passages that are not are split further.
pub(crate) fn chunk<E>(
    blocks: &[Block],
    options: &ChunkOptions,
    at_headings: bool,
    fits: &mut dyn FnMut(&str) -> Result<bool, E>,
) -> Result<Vec<Chunk>, E> {
    let target = options.target_words.max(1);
    let max = options.max_words.max(target);
    let all = sentences(blocks, max);
    let mut groups: Vec<Vec<Sentence>> = Vec::new();
    let mut cur: Vec<Sentence> = Vec::new();
    let mut fresh = 0; // sentences of `cur` not carried over from the previous passage
    let count = |g: &[Sentence]| g.iter().map(|s| s.words).sum::<usize>();
    for s in all {
        // A heading starts a passage (with `at_headings`), unless the passage so far is short.
        let new_section =
            at_headings && s.heading && count(&cur[cur.len() - fresh..]) >= target / 4;
        if fresh > 0 && (count(&cur) + s.words > max || new_section) {
            let keep = options.overlap_sentences.min(fresh - 1);
            let carried = cur[cur.len() - keep..].to_vec();
            groups.push(std::mem::replace(&mut cur, carried));
            fresh = 0;
        }
        cur.push(s);
        fresh += 1;
        if count(&cur) >= target {
            let keep = options.overlap_sentences.min(fresh - 1);
            let carried = cur[cur.len() - keep..].to_vec();
            groups.push(std::mem::replace(&mut cur, carried));
            fresh = 0;
        }
    }
    if fresh > 0 {
        // A short remainder joins the previous passage when that stays within `max`.
        let tail_words = count(&cur[cur.len() - fresh..]);
        match groups.last_mut() {
            Some(last) if tail_words < target / 4 && count(last) + tail_words <= max => {
                last.extend(cur.drain(cur.len() - fresh..));
            }
            _ => groups.push(cur),
        }
    }
    let mut out = Vec::new();
    for g in &groups {
        emit(g, fits, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::extract::{extract, Kind};
    use super::*;

    fn run(src: &str, kind: Kind, o: &ChunkOptions, limit: usize) -> Vec<Chunk> {
        let e = extract(kind, src);
        chunk::<()>(&e.blocks, o, false, &mut |t| Ok(words(t) <= limit)).unwrap()
    }

    #[test]
    fn passages_close_on_sentence_ends_near_the_target() {
        let sentence = "One two three four five six seven eight nine ten. ";
        let src = sentence.repeat(25);
        let o = ChunkOptions::default();
        let chunks = run(&src, Kind::Text, &o, 10_000);
        assert_eq!(chunks.len(), 3, "{chunks:?}");
        assert_eq!(words(&chunks[0].text), 100);
        assert!(chunks[0].text.ends_with("ten."));
        assert_eq!(words(&chunks[2].text), 50);
        // byte ranges tile the source
        assert_eq!(chunks[0].start, 0);
        assert_eq!(chunks[1].start, chunks[0].end + 1);
        assert_eq!(&src[chunks[2].start..chunks[2].end], chunks[2].text);
    }

    #[test]
    fn headings_start_passages_when_asked() {
        let para = "One two three four five six seven eight nine ten. ".repeat(3);
        let src = format!(
            "# Doc\n\n{para}\n\n## Install\n\n{para}\n\n## Tiny\n\nShort.\n\n## Use\n\n{para}\n"
        );
        let o = ChunkOptions::default();
        let e = extract(Kind::Markdown, &src);
        let words_only = |t: &str| Ok::<bool, ()>(words(t) <= 10_000);
        let plain = chunk(&e.blocks, &o, false, &mut { words_only }).unwrap();
        let at = chunk(&e.blocks, &o, true, &mut { words_only }).unwrap();
        assert_eq!(plain.len(), 1, "{plain:?}");
        let starts: Vec<&str> = at
            .iter()
            .map(|c| c.text.split(' ').next().unwrap())
            .collect();
        // "Tiny" is too short a section to stand alone: "Use" joins it.
        assert_eq!(starts, ["Doc", "Install", "Tiny"], "{at:?}");
        assert_eq!(at[1].section, ["Doc"]);
    }

    #[test]
    fn a_short_remainder_joins_the_previous_passage() {
        let src = format!("{} Tail.", "word ".repeat(99) + "end.");
        let chunks = run(&src, Kind::Text, &ChunkOptions::default(), 10_000);
        assert_eq!(chunks.len(), 1);
        assert_eq!(words(&chunks[0].text), 101);
    }

    #[test]
    fn unspaced_scripts_split_on_their_sentence_marks() {
        let src = "東京は日本の首都です。大阪は二番目に大きい都市です。".repeat(10);
        let o = ChunkOptions {
            target_words: 20,
            max_words: 30,
            overlap_sentences: 0,
        };
        let chunks = run(&src, Kind::Text, &o, 10_000);
        assert!(chunks.len() > 3, "{chunks:?}");
        for c in &chunks {
            assert!(c.text.ends_with('。'), "{c:?}");
            assert!(words(&c.text) <= 30);
            assert_eq!(&src[c.start..c.end], c.text.replace(' ', ""));
        }
    }

    #[test]
    fn long_sentences_are_cut_and_the_limit_is_kept() {
        let src = "alpha ".repeat(1000);
        let chunks = run(&src, Kind::Text, &ChunkOptions::default(), 40);
        assert!(chunks.iter().all(|c| words(&c.text) <= 40));
        assert_eq!(chunks.iter().map(|c| words(&c.text)).sum::<usize>(), 1000);
    }

    #[test]
    fn overlap_repeats_sentences() {
        let src = "A b c d e. F g h i j. K l m n o. P q r s t. ".repeat(2);
        let o = ChunkOptions {
            target_words: 10,
            max_words: 15,
            overlap_sentences: 1,
        };
        let chunks = run(&src, Kind::Text, &o, 10_000);
        assert!(chunks.len() >= 3);
        assert!(chunks[1].text.starts_with("F g h i j."), "{chunks:?}");
    }
}
