//! A document as passages: blocks cut into passages under their heading path, the document
//! row (summary and opening), the document's language, and each passage's vector input and
//! fusion with its document row.

use super::chunk;
use super::chunk::ChunkOptions;
use super::extract::{self, Kind};
use super::lang::{self, Detector};
use super::options::{DocumentContext, Heading};
use super::record::passage_id;
use crate::error::Result;
use crate::index::Index;
use crate::ingest::Row;
use crate::types::Passage;
use std::collections::BTreeMap;
use unicode_segmentation::UnicodeSegmentation;

/// Words of prose a passage needs before its own language counts over its document's.
pub(super) const OWN_LANGUAGE_WORDS: usize = 40;

/// What a passage of `title` under `section` carries in front of `text`.
pub(super) fn heading_of(
    heading: Heading,
    title: &str,
    section: &[String],
    text: &str,
) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    if heading != Heading::None && !title.is_empty() {
        parts.push(title);
    }
    if heading == Heading::Path {
        // The title is often the first heading too: say it once.
        parts.extend(
            section
                .iter()
                .map(String::as_str)
                .filter(|h| !h.is_empty() && *h != title),
        );
    }
    // A passage that opens with its heading (a section's first line) does not repeat it.
    while let Some(last) = parts.last() {
        if text.starts_with(last) {
            parts.pop();
        } else {
            break;
        }
    }
    (!parts.is_empty()).then(|| parts.join(" › "))
}

/// Passages of one file's text (and its document row, when `context` asks for one).
#[allow(clippy::too_many_arguments)]
pub(crate) fn passages_of(
    rel: &str,
    kind: Kind,
    text: &str,
    chunking: &ChunkOptions,
    context: &DocumentContext,
    lang: Option<&str>,
    detector: &Detector,
    fits: &mut dyn FnMut(&str) -> Result<bool>,
) -> Result<Vec<Passage>> {
    let doc = extract::extract(kind, text);
    let chunks = chunk::chunk(&doc.blocks, chunking, context.sections, fits)?;
    let title = doc.title.clone().unwrap_or_else(|| {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        name.rsplit_once('.')
            .map_or(name, |(stem, _)| stem)
            .to_string()
    });
    let newlines: Vec<usize> = text
        .bytes()
        .enumerate()
        .filter(|&(_, b)| b == b'\n')
        .map(|(i, _)| i)
        .collect();
    let line_of = |at: usize| newlines.partition_point(|&i| i < at) + 1;
    // The document's language is judged on its prose (code blocks, commands, paths and URLs
    // left out: technical text fools trigram models), and every passage takes it unless the
    // passage has prose enough of its own that is reliably another language.
    let prose: Vec<String> = chunks.iter().map(|c| lang::prose(&c.prose)).collect();
    let doc_lang = match lang {
        Some(l) => Some(l.to_string()),
        None => document_language(detector, &prose)
            .or_else(|| detector.detect(&doc.title.clone().unwrap_or_default())),
    };
    let mut out = Vec::with_capacity(chunks.len() + 1);
    for (n, (c, prose)) in chunks.into_iter().zip(&prose).enumerate() {
        let own = (prose.unicode_words().count() >= OWN_LANGUAGE_WORDS)
            .then(|| detector.detect_reliable(prose))
            .flatten();
        let lang = match (lang, own) {
            (Some(l), _) => Some(l.to_string()),
            (None, Some((l, true))) => Some(l),
            (None, _) => doc_lang.clone(),
        };
        let mut meta = serde_json::json!({
            "path": rel,
            "start": c.start,
            "end": c.end,
            "line": line_of(c.start),
            "title": title,
        });
        if !c.section.is_empty() {
            meta["section"] = c.section.clone().into();
        }
        if kind == Kind::Pdf {
            let page = text[..c.start].matches('\u{c}').count() + 1;
            meta["page"] = page.into();
        }
        out.push(Passage {
            id: passage_id(rel, n as u32),
            title: heading_of(context.heading, &title, &c.section, &c.text),
            text: c.text,
            lang,
            meta: Some(meta),
        });
    }
    // A document of one passage and no summary is its own document row already.
    if context.document_row && (out.len() > 1 || (!out.is_empty() && doc.summary.is_some())) {
        let (row_text, start, end) = opening(&doc, fits)?;
        // A range that does not fall on the text's characters (a front matter whose value
        // the YAML reader moved) is narrowed to what it can name.
        let floor = |mut i: usize| {
            i = i.min(text.len());
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let (start, end) = (floor(start), floor(end));
        let start = start.min(end);
        let mut meta = serde_json::json!({
            "path": rel,
            "start": start,
            "end": end,
            "line": line_of(start),
            "title": title,
            "document": true,
        });
        if kind == Kind::Pdf {
            meta["page"] = (text[..start].matches('\u{c}').count() + 1).into();
        }
        out.push(Passage {
            id: passage_id(rel, out.len() as u32),
            title: Some(title.clone()).filter(|t| !row_text.starts_with(t.as_str())),
            meta: Some(meta),
            text: row_text,
            lang: doc_lang,
        });
    }
    Ok(out)
}

/// The language most of a document's prose is in: each passage's guess weighed by its words
/// (a guess on the whole text at once is swayed by a language's strongest trigrams).
pub(super) fn document_language(detector: &Detector, prose: &[String]) -> Option<String> {
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    for p in prose {
        if let Some(l) = detector.detect(p) {
            *votes.entry(l).or_default() += p.unicode_words().count();
        }
    }
    // The most words wins; a tie goes to the first tag in byte order (deterministic).
    votes
        .into_iter()
        .fold(None, |best: Option<(String, usize)>, (l, n)| match best {
            Some((_, m)) if m >= n => best,
            _ => Some((l, n)),
        })
        .map(|(l, _)| l)
}

/// A document's summary and opening blocks, as many as fit the encoder, with the source range
/// they span.
pub(super) fn opening(
    doc: &extract::Extracted,
    fits: &mut dyn FnMut(&str) -> Result<bool>,
) -> Result<(String, usize, usize)> {
    let mut text = String::new();
    let (mut start, mut end) = (usize::MAX, 0);
    if let Some((summary, range)) = &doc.summary {
        text.push_str(summary);
        (start, end) = (range.start, range.end);
    }
    for b in &doc.blocks {
        let t = extract::collapse(&b.text);
        let longer = if text.is_empty() {
            t
        } else {
            format!("{text} {t}")
        };
        let fit = fits(&longer)?;
        if !fit && !text.is_empty() {
            break;
        }
        // The first text over the limit is kept: its words are cut to fit below.
        text = longer;
        start = start.min(b.source_at(0, false));
        end = end.max(b.source_at(b.text.len(), true));
        if !fit {
            break;
        }
    }
    // A summary or first block over the limit keeps the words that fit.
    let mut words: Vec<usize> = text.unicode_word_indices().map(|(i, _)| i).collect();
    while words.len() > 1 && !fits(&text)? {
        words.truncate(words.len() / 2);
        let cut = words.last().map_or(text.len(), |&i| {
            i + text[i..].unicode_words().next().map_or(0, str::len)
        });
        text.truncate(cut);
    }
    Ok((text, start.min(end), end))
}

/// The rows a file's passages are staged as: as text (the index encodes them), or, when the
/// file has a document row, `fuse` > 0 and the index has no xQG profile, with each passage's
/// vector fused with its document row's.
pub(super) fn rows_of(index: &Index, passages: Vec<Passage>, fuse: f32) -> Result<Vec<Row>> {
    let has_row = passages
        .last()
        .and_then(|p| p.meta.as_ref())
        .is_some_and(|m| m.get("document").is_some());
    if !(fuse > 0.0 && has_row && index.snapshot().xqg_profile().is_none()) {
        return Ok(passages.into_iter().map(Row::text).collect());
    }
    let texts: Vec<String> = passages.iter().map(crate::ingest::encoder_input).collect();
    let mut vectors = index.encoder()?.encode_passages(&texts)?;
    let doc = vectors.pop().expect("the document row's vector");
    let mut fused: Vec<Vec<f32>> = vectors
        .iter()
        .map(|e| crate::xqg::fuse(e, &doc, 1, fuse, true))
        .collect();
    fused.push(doc);
    Ok(passages
        .into_iter()
        .zip(fused)
        .map(|(p, v)| Row::with_vector(p, v))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::*;

    #[test]
    fn snippets_lead_with_the_chosen_sentence() {
        let t = "First one. Second one here. Third.";
        assert_eq!(sentences(t), ["First one.", "Second one here.", "Third."]);
        assert_eq!(snippet(t, 1, 80), "… Second one here. Third.");
        assert_eq!(snippet(t, 0, 12), "First one. …");
        assert_eq!(snippet(t, 9, 80), t);
    }

    fn passages(kind: Kind, text: &str, target_words: usize) -> Vec<Passage> {
        let words = |t: &str| Ok(t.unicode_words().count() <= 200);
        passages_of(
            "d",
            kind,
            text,
            &ChunkOptions {
                target_words,
                max_words: target_words * 3 / 2,
                overlap_sentences: 0,
            },
            &DocumentContext::default(),
            None,
            &Detector::default(),
            &mut { words },
        )
        .unwrap()
    }

    #[test]
    fn technical_passages_take_their_documents_language() {
        // A Japanese page whose middle passage is mostly commands and options.
        let doc = "# インストール\n\nこのガイドでは、新しいプロジェクトを作成して開発サーバーを\
            起動する方法を説明します。まず、パッケージマネージャーを使ってテンプレートを取得します。\n\n\
            ```sh\nnpm create astro@latest -- --template minimal\ncd my-project && npm install\n\
            npm run dev -- --host 0.0.0.0 --port 4321\n```\n\n\
            Run `npm run build`, then `npm run preview` with --open or --host, see https://docs.astro.build/en/install/.\n\n\
            ビルドが終わると、dist フォルダーにサイトが出力されます。このフォルダーをそのまま\
            サーバーにアップロードすれば公開できます。\n";
        let ps = passages(Kind::Markdown, doc, 30);
        assert!(ps.len() >= 3, "{ps:?}");
        for p in &ps {
            assert_eq!(p.lang.as_deref(), Some("ja"), "{p:?}");
        }
    }

    #[test]
    fn a_long_passage_clearly_in_another_language_keeps_its_own() {
        let fi = "Kirjasto on auki arkisin yhdeksästä kuuteen ja lauantaisin kymmenestä kahteen. \
            Lainaaja voi lainata kerralla kymmenen kirjaa kolmeksi viikoksi, ja lainat voi uusia \
            verkossa kahdesti. Myöhästyneistä palautuksista peritään pieni maksu jokaiselta \
            päivältä, eikä uusia lainoja voi tehdä ennen kuin maksut on maksettu.";
        let en = "The library opens at nine on weekdays and at ten on Saturdays. Members may \
            borrow up to ten books at a time for three weeks, and loans can be renewed online \
            twice. Late returns cost a small fee for each day, and no new loans can be made until \
            the fees are paid.";
        // Passages of one paragraph each, every one long enough to judge on its own.
        let ps = passages(Kind::Text, &format!("{en}\n\n{en}\n\n{fi}\n"), 45);
        let langs: Vec<_> = ps
            .iter()
            .map(|p| p.lang.as_deref().unwrap_or("-"))
            .collect();
        assert_eq!(langs, ["en", "en", "fi", "en"], "{ps:?}");
        assert!(ps[2].text.starts_with("Kirjasto"));
        assert_eq!(ps[3].meta.as_ref().unwrap()["document"], true);
    }

    #[test]
    fn document_rows_name_source_ranges_whatever_the_front_matter() {
        let docs = [
            "---\r\ntitle: Über\r\ndescription: >-\r\n  Zwei Zeilen\r\n  über Fonts\r\n---\r\n\r\nErster Absatz hier. Zweiter Satz dort.\r\n\r\n## Teil\r\n\r\nNoch ein Absatz mit Text.\r\n",
            "---\ndescription: \"日本語の説明\"\ntitle: '引用'\n---\n本文の最初の段落です。次の文です。\n\n## 見出し\n\n二つ目の段落です。\n",
            "---\ndescription: [not, a, string]\n---\nOne. Two.\n\nThree. Four.\n",
            "---\n: : bad yaml {\n---\nOne. Two.\n\nThree. Four.\n",
        ];
        for doc in docs {
            let ps = passages(Kind::Mdx, doc, 3);
            assert!(ps.len() >= 2, "{doc:?}: {ps:?}");
            for p in &ps {
                let m = p.meta.as_ref().unwrap();
                let (s, e) = (
                    m["start"].as_u64().unwrap() as usize,
                    m["end"].as_u64().unwrap() as usize,
                );
                assert!(s <= e && e <= doc.len(), "{doc:?}: {s}..{e}");
                assert!(
                    doc.is_char_boundary(s) && doc.is_char_boundary(e),
                    "{doc:?}: {s}..{e}"
                );
                assert!(!p.text.contains("description"), "{p:?}");
            }
        }
        let ps = passages(Kind::Mdx, docs[1], 3);
        let row = ps.last().unwrap();
        assert!(
            row.text.starts_with("日本語の説明 本文の最初の段落です。"),
            "{row:?}"
        );
        assert_eq!(row.meta.as_ref().unwrap()["title"], "引用");
    }

    #[test]
    fn headings_are_said_once() {
        let sec = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(heading_of(Heading::None, "T", &sec(&["A"]), "x"), None);
        assert_eq!(
            heading_of(Heading::Title, "T", &sec(&["A"]), "x").as_deref(),
            Some("T")
        );
        assert_eq!(
            heading_of(Heading::Path, "T", &sec(&["T", "A", "B"]), "x").as_deref(),
            Some("T › A › B")
        );
        // A passage that opens with its section heading does not repeat it.
        assert_eq!(
            heading_of(Heading::Path, "T", &sec(&["A", "B"]), "B. more").as_deref(),
            Some("T › A")
        );
        assert_eq!(heading_of(Heading::Title, "T", &[], "T is a tool"), None);
    }
}
