//! Snippets of a hit: the sentence of a passage that best matches the query, cut to a width.

use super::extract::{self};
use unicode_segmentation::UnicodeSegmentation;

/// The sentences of `text` (Unicode sentence boundaries), trimmed, blank ones left out.
pub fn sentences(text: &str) -> Vec<&str> {
    text.split_sentence_bounds()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// A snippet of `text`: sentence `first` (of [`sentences`]) then the rest in order, with
/// `…` marking left-out text, cut to `width` characters.
pub fn snippet(text: &str, first: usize, width: usize) -> String {
    let all = sentences(text);
    let Some(&lead) = all.get(first) else {
        return cut(text, width);
    };
    let mut s = String::new();
    if first > 0 {
        s.push_str("… ");
    }
    s.push_str(lead);
    for rest in all.iter().skip(first + 1) {
        s.push(' ');
        s.push_str(rest);
    }
    cut(&s, width)
}

pub(super) fn cut(s: &str, width: usize) -> String {
    let collapsed = extract::collapse(s);
    if collapsed.chars().count() <= width {
        return collapsed;
    }
    let mut out: String = collapsed.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}
