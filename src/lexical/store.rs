//! The stored lexical index: postings in the catalog, written in the same transaction as
//! the rows they describe (FORMAT.md, "Lexical index").

use super::blocks::{self, Entry, BLOCK};
use super::{Analyzer, Bm25};
use crate::store::{LexicalStats, LEX_POSTINGS};
use crate::types::LexicalSettings;
use redb::{ReadTransaction, ReadableTable, Table};
use std::collections::BTreeMap;

/// Why a lexical operation failed.
pub(crate) enum LexError {
    Storage(redb::Error),
    Corrupt(String),
}

impl<E: Into<redb::Error>> From<E> for LexError {
    fn from(e: E) -> Self {
        LexError::Storage(e.into())
    }
}

/// The analysed fields of one passage: each term with its frequency in the text field
/// (title and text) and in the queries field, and the two fields' lengths.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct DocTerms {
    pub terms: BTreeMap<String, (u32, u32)>,
    pub text_len: u32,
    pub queries_len: u32,
}

fn analyzer(settings: &LexicalSettings, lang: Option<&str>) -> Analyzer {
    if settings.stem {
        Analyzer::for_lang(lang)
    } else {
        Analyzer::new()
    }
}

/// The terms a search query is matched with.
pub(crate) fn query_terms(
    settings: &LexicalSettings,
    text: &str,
    lang: Option<&str>,
) -> Vec<String> {
    analyzer(settings, lang).terms(text)
}

/// Analyses a passage: title and text in its language, each query in its own.
pub(crate) fn analyze(
    settings: &LexicalSettings,
    title: Option<&str>,
    text: &str,
    lang: Option<&str>,
    queries: &[(String, String)],
) -> DocTerms {
    let mut doc = DocTerms::default();
    let a = analyzer(settings, lang);
    for field in title.into_iter().chain([text]) {
        for t in a.terms(field) {
            doc.terms.entry(t).or_default().0 += 1;
            doc.text_len = doc.text_len.saturating_add(1);
        }
    }
    for (qlang, q) in queries {
        for t in analyzer(settings, Some(qlang)).terms(q) {
            doc.terms.entry(t).or_default().1 += 1;
            doc.queries_len = doc.queries_len.saturating_add(1);
        }
    }
    doc
}

/// A posting's value in memory: text tf, queries tf, text length and queries length, 32
/// bits each from the low end (blocks store them as four varints).
fn pack(tf: (u32, u32), doc: &DocTerms) -> u128 {
    tf.0 as u128
        | (tf.1 as u128) << 32
        | (doc.text_len as u128) << 64
        | (doc.queries_len as u128) << 96
}

/// (text tf, queries tf, text length, queries length) of a stored posting.
pub(crate) fn unpack(v: u128) -> [u32; 4] {
    [
        v as u32,
        (v >> 32) as u32,
        (v >> 64) as u32,
        (v >> 96) as u32,
    ]
}

/// One posting to write or remove: term, row id, packed value.
pub(crate) type Posting = (String, u64, u128);

/// Postings a commit adds and removes, applied term by term in row order when it finishes
/// (each block a commit touches is then read and rewritten once).
#[derive(Default)]
pub(crate) struct Pending {
    adds: Vec<Posting>,
    removes: Vec<Posting>,
}

impl Pending {
    /// Adds a passage's postings (nothing for a passage without terms).
    pub fn add(&mut self, stats: &mut LexicalStats, rid: u64, doc: &DocTerms) {
        if doc.terms.is_empty() {
            return;
        }
        for (term, &tf) in &doc.terms {
            self.adds.push((term.clone(), rid, pack(tf, doc)));
        }
        stats.docs += 1;
        stats.text_len += doc.text_len as u64;
        stats.queries_len += doc.queries_len as u64;
    }

    /// Removes a passage's postings; each must be there as [`Pending::add`] wrote it.
    pub fn remove(
        &mut self,
        stats: &mut LexicalStats,
        rid: u64,
        doc: &DocTerms,
    ) -> Result<(), LexError> {
        if doc.terms.is_empty() {
            return Ok(());
        }
        for (term, &tf) in &doc.terms {
            self.removes.push((term.clone(), rid, pack(tf, doc)));
        }
        let (Some(docs), Some(text_len), Some(queries_len)) = (
            stats.docs.checked_sub(1),
            stats.text_len.checked_sub(doc.text_len as u64),
            stats.queries_len.checked_sub(doc.queries_len as u64),
        ) else {
            return Err(LexError::Corrupt(
                "lexical statistics are smaller than the passages they count".into(),
            ));
        };
        *stats = LexicalStats {
            docs,
            text_len,
            queries_len,
        };
        Ok(())
    }

    /// Writes the changes term by term in row order: each block a change falls in is read,
    /// changed and rewritten once (split into blocks of at most [`BLOCK`] postings). Within
    /// a row, an addition comes before a removal (row ids are never reused: a row added and
    /// removed in one commit leaves nothing).
    pub fn apply(self, postings: &mut Table<(&str, u64), &[u8]>) -> Result<(), LexError> {
        let mut changes: Vec<(String, u64, bool, u128)> = Vec::new();
        changes.extend(self.adds.into_iter().map(|(t, r, v)| (t, r, false, v)));
        changes.extend(self.removes.into_iter().map(|(t, r, v)| (t, r, true, v)));
        changes.sort_unstable();
        let mut at = 0;
        let mut buf = Vec::new();
        while at < changes.len() {
            let term = changes[at].0.clone();
            let end = at + changes[at..].partition_point(|c| c.0 == term);
            let list: Vec<(u64, bool, u128)> =
                changes[at..end].iter().map(|c| (c.1, c.2, c.3)).collect();
            update_term(postings, &term, &list, &mut buf)?;
            at = end;
        }
        Ok(())
    }
}

fn corrupt_block(term: &str, first: u64, reason: String) -> LexError {
    LexError::Corrupt(format!("lexical block ({term:?}, row {first}): {reason}"))
}

/// Applies `changes` (row id, removal?, value; sorted) to `term`'s blocks.
fn update_term(
    postings: &mut Table<(&str, u64), &[u8]>,
    term: &str,
    changes: &[(u64, bool, u128)],
    buf: &mut Vec<u8>,
) -> Result<(), LexError> {
    let mut at = 0;
    let mut entries: Vec<Entry> = Vec::new();
    while at < changes.len() {
        let rid = changes[at].0;
        // The block that holds `rid` (the last one starting at or before it), if any.
        let old_key = match postings.range((term, 0u64)..=(term, rid))?.next_back() {
            Some(row) => {
                let (key, bytes) = row?;
                let first = key.value().1;
                blocks::decode(first, bytes.value(), &mut entries)
                    .map_err(|r| corrupt_block(term, first, r))?;
                Some(first)
            }
            None => {
                entries.clear();
                None
            }
        };
        // Changes up to the next block's first row belong here.
        let next = match rid.checked_add(1) {
            Some(from) => match postings.range((term, from)..=(term, u64::MAX))?.next() {
                Some(row) => Some(row?.0.value().1),
                None => None,
            },
            None => None,
        };
        let end = at + changes[at..].partition_point(|c| next.is_none_or(|n| c.0 < n));
        let mut out: Vec<Entry> = Vec::with_capacity(entries.len() + end - at);
        let mut old = entries.drain(..).peekable();
        for &(rid, remove, v) in &changes[at..end] {
            while let Some(&e) = old.peek() {
                if e.0 >= rid {
                    break;
                }
                out.push(e);
                old.next();
            }
            let here = old.peek().filter(|e| e.0 == rid).copied();
            if !remove {
                if here.is_some() || out.last().is_some_and(|e| e.0 == rid) {
                    return Err(LexError::Corrupt(format!(
                        "lexical posting ({term:?}, row {rid}) already exists"
                    )));
                }
                out.push((rid, v));
                continue;
            }
            let found = match here {
                Some(e) => {
                    old.next();
                    Some(e.1)
                }
                None if out.last().is_some_and(|e| e.0 == rid) => out.pop().map(|e| e.1),
                None => None,
            };
            if found != Some(v) {
                return Err(LexError::Corrupt(format!(
                    "lexical posting ({term:?}, row {rid}) does not match the stored passage"
                )));
            }
        }
        out.extend(old);
        if let Some(k) = old_key {
            postings.remove((term, k))?;
        }
        for chunk in out.chunks(BLOCK) {
            buf.clear();
            blocks::encode(chunk, buf);
            postings.insert((term, chunk[0].0), buf.as_slice())?;
        }
        at = end;
    }
    Ok(())
}

/// Top `k` rows by BM25 (text field plus `queries_weight` × queries field) for the query
/// `terms`; with `allowed` (sorted row ids) only those rows. Best first, ties by row id.
/// Also returns the score no row can reach: Σ over query terms of their idf in each field
/// (a term's weight tends to its idf as its frequency grows), terms absent from the index
/// counted at the largest idf, so that a score over the bound measures how much of the
/// query a row matches.
pub(crate) fn search(
    txn: &ReadTransaction,
    settings: &LexicalSettings,
    stats: &LexicalStats,
    terms: &[String],
    allowed: Option<&[u64]>,
    k: usize,
) -> Result<(Vec<(f32, u64)>, f64), LexError> {
    if stats.docs == 0 || terms.is_empty() || k == 0 {
        return Ok((Vec::new(), 0.0));
    }
    let table = match txn.open_table(LEX_POSTINGS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), 0.0)),
        Err(e) => return Err(e.into()),
    };
    let bm25 = Bm25 {
        k1: settings.k1,
        b: settings.b,
    };
    let n = stats.docs;
    let avg_text = stats.text_len as f64 / n as f64;
    let avg_queries = stats.queries_len as f64 / n as f64;
    let weight_q = settings.queries_weight as f64;
    // Scores accumulate in a list sorted by row id: each term's postings come in row order,
    // so adding a term is a merge (no hashing per posting).
    let mut scores: Vec<(u64, f64)> = Vec::new();
    let mut merged: Vec<(u64, f64)> = Vec::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in terms {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    let mut list: Vec<(u64, [u32; 4])> = Vec::new();
    let mut block: Vec<Entry> = Vec::new();
    let mut bound = 0.0;
    let with_queries = stats.queries_len > 0 && weight_q > 0.0;
    for (term, times) in counts {
        list.clear();
        // Document frequencies count every live row, filtered or not.
        let (mut df_text, mut df_queries) = (0u64, 0u64);
        for row in table.range((term, 0u64)..=(term, u64::MAX))? {
            let (key, bytes) = row?;
            let first = key.value().1;
            blocks::decode(first, bytes.value(), &mut block)
                .map_err(|r| corrupt_block(term, first, r))?;
            for &(rid, v) in &block {
                let p = unpack(v);
                df_text += (p[0] > 0) as u64;
                df_queries += (p[1] > 0) as u64;
                if allowed.is_none_or(|a| a.binary_search(&rid).is_ok()) {
                    list.push((rid, p));
                }
            }
        }
        let idf_text = bm25.idf(n, df_text);
        let idf_queries = bm25.idf(n, df_queries);
        bound += times as f64
            * (idf_text
                + if with_queries {
                    weight_q * idf_queries
                } else {
                    0.0
                });
        if list.is_empty() {
            continue;
        }
        let term_scores = list.iter().filter_map(|&(rid, [tt, tq, lt, lq])| {
            let mut s = 0.0;
            if tt > 0 {
                s += bm25.weight(idf_text, tt, lt, avg_text);
            }
            if tq > 0 && weight_q > 0.0 {
                s += weight_q * bm25.weight(idf_queries, tq, lq, avg_queries);
            }
            (s > 0.0).then_some((rid, s * times as f64))
        });
        merged.clear();
        let mut old = scores.iter().copied().peekable();
        for (rid, s) in term_scores {
            while let Some(&(r, prev)) = old.peek() {
                if r >= rid {
                    break;
                }
                merged.push((r, prev));
                old.next();
            }
            match old.peek() {
                Some(&(r, prev)) if r == rid => {
                    merged.push((rid, prev + s));
                    old.next();
                }
                _ => merged.push((rid, s)),
            }
        }
        merged.extend(old);
        std::mem::swap(&mut scores, &mut merged);
    }
    // The tie rule of every search (README, "Order of hits"): the reported f32 score, then
    // the row id. Ranking by the f64 sum instead would order hits whose reported scores are
    // equal by bits the caller never sees.
    let mut ranked: Vec<(f32, u64)> = scores.into_iter().map(|(r, s)| (s as f32, r)).collect();
    let by_score = |a: &(f32, u64), b: &(f32, u64)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if ranked.len() > k {
        ranked.select_nth_unstable_by(k - 1, by_score);
        ranked.truncate(k);
    }
    ranked.sort_unstable_by(by_score);
    Ok((ranked, bound))
}

/// A row's postings in a form that takes constant memory: their number and the wrapping
/// sum of a hash of each (term, value).
pub(crate) type RowDigest = (u64, u64);

fn posting_hash(term: &str, v: u128) -> u64 {
    let mut bytes = Vec::with_capacity(term.len() + 17);
    bytes.extend_from_slice(term.as_bytes());
    bytes.push(0xff); // not UTF-8: ends the term
    bytes.extend_from_slice(&v.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// The digest of every row's postings, reading every block once (each must decode, and the
/// blocks of a term must not overlap): what [`crate::Snapshot::verify`] compares with the
/// passages.
pub(crate) fn digests_by_row(
    txn: &ReadTransaction,
) -> Result<std::collections::HashMap<u64, RowDigest>, LexError> {
    let mut out: std::collections::HashMap<u64, RowDigest> = Default::default();
    let table = match txn.open_table(LEX_POSTINGS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    let mut block = Vec::new();
    let mut prev: Option<(String, u64)> = None;
    for row in table.iter()? {
        let (key, bytes) = row?;
        let (term, first) = key.value();
        blocks::decode(first, bytes.value(), &mut block)
            .map_err(|r| corrupt_block(term, first, r))?;
        if let Some((t, last)) = &prev {
            if t == term && *last >= first {
                return Err(corrupt_block(
                    term,
                    first,
                    format!("overlaps the block before it (up to row {last})"),
                ));
            }
        }
        for &(rid, v) in &block {
            let d = out.entry(rid).or_default();
            d.0 += 1;
            d.1 = d.1.wrapping_add(posting_hash(term, v));
        }
        prev = Some((term.to_string(), block.last().map_or(first, |e| e.0)));
    }
    Ok(out)
}

/// The digest of the postings [`Pending::add`] writes for `doc`.
pub(crate) fn digest(doc: &DocTerms) -> RowDigest {
    doc.terms.iter().fold((0, 0), |(n, sum), (t, &tf)| {
        (n + 1, sum.wrapping_add(posting_hash(t, pack(tf, doc))))
    })
}
