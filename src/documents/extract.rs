//! Visible text of plain text, Markdown, HTML and (extracted) PDF files, as blocks (paragraphs, headings,
//! list items, table cells) that remember where each piece of their text came from.

use std::ops::Range;

/// The kinds of file a sync reads, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `.txt`, `.text`: paragraphs separated by blank lines.
    Text,
    /// `.md`, `.markdown`: CommonMark's visible text; the front matter's `title` (YAML
    /// between `---` lines), else the first heading, is the title, and its `description`
    /// the summary.
    Markdown,
    /// `.mdx`: Markdown with JSX: read as Markdown, leaving out top-level `import` and
    /// `export` statements.
    Mdx,
    /// `.html`, `.htm`, `.xhtml`: visible text outside `script`, `style`, `template` and the
    /// head; `<title>` (or the first `h1`) is the title.
    Html,
    /// `.pdf`: the text pdf-extract finds page by page, read like a text file (pages joined by
    /// form feeds); byte ranges index that text, not the file.
    Pdf,
}

impl Kind {
    /// The kind a file name's extension selects, if any.
    pub fn of(name: &str) -> Option<Kind> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "txt" | "text" => Some(Kind::Text),
            "md" | "markdown" => Some(Kind::Markdown),
            "mdx" => Some(Kind::Mdx),
            "html" | "htm" | "xhtml" => Some(Kind::Html),
            "pdf" => Some(Kind::Pdf),
            _ => None,
        }
    }
}

/// A stretch of a block's text and the source bytes it came from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Piece {
    /// Offset of the piece in the block's text.
    pub at: usize,
    /// Length of the piece in the block's text.
    pub len: usize,
    /// Its source bytes; as long as the piece when the text is the source verbatim.
    pub source: Range<usize>,
}

/// One paragraph-like unit of visible text.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Block {
    pub text: String,
    pub pieces: Vec<Piece>,
    /// The headings above the block, outermost first (Markdown).
    pub section: Vec<String>,
    /// Whether the block is code (a Markdown code block), not prose.
    pub code: bool,
    /// Whether the block is a heading (Markdown).
    pub heading: bool,
}

impl Block {
    fn push(&mut self, text: &str, source: Range<usize>) {
        if self.pieces.is_empty() && text.trim().is_empty() {
            return;
        }
        self.pieces.push(Piece {
            at: self.text.len(),
            len: text.len(),
            source,
        });
        self.text.push_str(text);
    }

    /// The source offset of text offset `at`; `end` picks the piece that ends there.
    pub fn source_at(&self, at: usize, end: bool) -> usize {
        let i = if end {
            self.pieces.partition_point(|p| p.at < at).max(1) - 1
        } else {
            self.pieces.partition_point(|p| p.at <= at).max(1) - 1
        };
        let p = &self.pieces[i];
        let verbatim = p.source.len() == p.len;
        let within = at.saturating_sub(p.at).min(p.len);
        match (verbatim, end) {
            (true, _) => p.source.start + within,
            (false, false) => p.source.start,
            (false, true) => p.source.end,
        }
    }
}

/// A document's title, summary and blocks.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Extracted {
    pub title: Option<String>,
    /// What the document says it is about (a Markdown front matter's `description`) and the
    /// source bytes of that value's line(s).
    pub summary: Option<(String, Range<usize>)>,
    pub blocks: Vec<Block>,
}

impl Extracted {
    fn flush(&mut self, block: &mut Block) {
        let b = std::mem::take(block);
        if !b.text.trim().is_empty() {
            self.blocks.push(b);
        }
    }
}

/// Extracts the visible text of `source` read as `kind`.
pub(crate) fn extract(kind: Kind, source: &str) -> Extracted {
    match kind {
        Kind::Text | Kind::Pdf => text(source),
        Kind::Markdown => markdown(source, false),
        Kind::Mdx => markdown(source, true),
        Kind::Html => html(source),
    }
}

fn text(source: &str) -> Extracted {
    let mut out = Extracted::default();
    let mut block = Block::default();
    let mut at = 0;
    for line in source.split_inclusive('\n') {
        let range = at..at + line.len();
        at += line.len();
        if line.trim().is_empty() {
            out.flush(&mut block);
        } else {
            block.push(line, range);
        }
    }
    out.flush(&mut block);
    out
}

fn markdown(source: &str, mdx: bool) -> Extracted {
    use pulldown_cmark::{Event, MetadataBlockKind, Options, Parser, Tag, TagEnd};
    let mut out = Extracted::default();
    let mut block = Block::default();
    let mut heading: Option<(usize, String)> = None;
    // The heading path above the current block: (level, text), outermost first.
    let mut section: Vec<(usize, String)> = Vec::new();
    let mut metadata: Option<(String, usize)> = None;
    let mut front_title = None;
    let parser = Parser::new_ext(
        source,
        Options::ENABLE_TABLES
            | Options::ENABLE_STRIKETHROUGH
            | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
            | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS,
    );
    let path_of = |section: &[(usize, String)]| section.iter().map(|(_, h)| h.clone()).collect();
    let mut in_code = false;
    for (event, range) in parser.into_offset_iter() {
        match event {
            Event::Start(Tag::MetadataBlock(kind)) => {
                metadata = (kind == MetadataBlockKind::YamlStyle).then(|| (String::new(), 0));
            }
            Event::Text(t) if metadata.is_some() => {
                let m = metadata.as_mut().expect("checked");
                if m.0.is_empty() {
                    m.1 = range.start;
                }
                m.0.push_str(&t);
            }
            Event::End(TagEnd::MetadataBlock(_)) => {
                if let Some((yaml, at)) = metadata.take() {
                    let (title, summary) = front_matter(&yaml, at);
                    front_title = title;
                    out.summary = summary;
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, h)) = heading.as_mut() {
                    h.push_str(&t);
                }
                block.push(&t, range);
            }
            Event::SoftBreak | Event::HardBreak => block.push(" ", range.start..range.start),
            Event::Start(Tag::Heading { level, .. }) => {
                out.flush(&mut block);
                heading = Some((level as usize, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                block.heading = true;
                if let Some((level, h)) = heading.take() {
                    let h = collapse(&h);
                    if !h.is_empty() {
                        if out.title.is_none() {
                            out.title = Some(h.clone());
                        }
                        section.retain(|(l, _)| *l < level);
                        section.push((level, h));
                    }
                }
                out.flush(&mut block);
            }
            Event::End(TagEnd::Paragraph) if mdx && is_esm(&block.text) => {
                block = Block::default();
            }
            Event::End(TagEnd::CodeBlock) => {
                out.flush(&mut block);
                in_code = false;
            }
            Event::End(
                TagEnd::Paragraph | TagEnd::Item | TagEnd::BlockQuote(_) | TagEnd::TableCell,
            )
            | Event::Start(Tag::Item) => out.flush(&mut block),
            Event::Start(Tag::CodeBlock(_)) => {
                out.flush(&mut block);
                in_code = true;
            }
            _ => {}
        }
        if block.pieces.is_empty() {
            block.section = path_of(&section);
            block.code = in_code;
        }
    }
    out.flush(&mut block);
    if front_title.is_some() {
        out.title = front_title;
    }
    out
}

/// Whether a paragraph of an MDX file is made of ESM `import`/`export` statements only.
fn is_esm(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("import ") || t.starts_with("export ")
}

/// The `title` and `description` of a YAML front matter whose text starts at source offset
/// `at`; the description with the source range of its line(s). Front matter that is not YAML
/// (or not a mapping) gives nothing.
fn front_matter(yaml: &str, at: usize) -> (Option<String>, Option<(String, Range<usize>)>) {
    let Ok(docs) = yaml_rust2::YamlLoader::load_from_str(yaml) else {
        return (None, None);
    };
    let Some(doc) = docs.first() else {
        return (None, None);
    };
    let text = |key: &str| doc[key].as_str().map(collapse).filter(|s| !s.is_empty());
    let summary = text("description").map(|d| {
        // The value's bytes: from its key to the next top-level key (or the end).
        let start = yaml
            .match_indices("description:")
            .find(|(i, _)| *i == 0 || yaml.as_bytes()[i - 1] == b'\n')
            .map_or(0, |(i, _)| i);
        let end = yaml[start..]
            .match_indices('\n')
            .map(|(i, _)| start + i + 1)
            .find(|&i| {
                yaml.as_bytes()
                    .get(i)
                    .is_some_and(|b| !b.is_ascii_whitespace())
            })
            .unwrap_or(yaml.len());
        (d, at + start..at + end)
    });
    (text("title"), summary)
}

/// Elements whose content is never shown.
const HIDDEN: &[&str] = &[
    "script", "style", "template", "noscript", "head", "title", "svg", "math", "iframe", "object",
];
/// Elements that start a new block.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "br",
    "hr",
    "tr",
    "td",
    "th",
    "table",
    "section",
    "article",
    "aside",
    "header",
    "footer",
    "nav",
    "main",
    "pre",
    "blockquote",
    "figure",
    "figcaption",
    "form",
    "body",
    "caption",
    "summary",
    "details",
];

fn html(source: &str) -> Extracted {
    let mut out = Extracted::default();
    let Ok(dom) = tl::parse(source, tl::ParserOptions::default()) else {
        return out;
    };
    let parser = dom.parser();
    let base = source.as_ptr() as usize;
    let mut block = Block::default();
    let mut h1: Option<String> = None;
    out.title = dom
        .query_selector("title")
        .and_then(|mut q| q.next())
        .and_then(|h| h.get(parser))
        .map(|n| collapse(&html_escape::decode_html_entities(&n.inner_text(parser))))
        .filter(|t| !t.is_empty());
    // Depth-first over the tree with an explicit stack: (node, leaving?).
    let mut stack: Vec<(tl::NodeHandle, bool)> =
        dom.children().iter().rev().map(|&h| (h, false)).collect();
    while let Some((handle, leaving)) = stack.pop() {
        let Some(node) = handle.get(parser) else {
            continue;
        };
        match node {
            tl::Node::Tag(tag) => {
                let name = tag.name().as_utf8_str().to_ascii_lowercase();
                if HIDDEN.contains(&name.as_str()) {
                    continue;
                }
                let is_block = BLOCKS.contains(&name.as_str());
                if is_block {
                    out.flush(&mut block);
                }
                if leaving {
                    continue;
                }
                if name == "h1" && h1.is_none() {
                    h1 = Some(collapse(&html_escape::decode_html_entities(
                        &tag.inner_text(parser),
                    )));
                }
                if is_block {
                    stack.push((handle, true));
                }
                let children: Vec<tl::NodeHandle> = tag.children().top().iter().copied().collect();
                stack.extend(children.into_iter().rev().map(|c| (c, false)));
            }
            tl::Node::Raw(bytes) => {
                let raw = bytes.as_bytes();
                let start = (raw.as_ptr() as usize).wrapping_sub(base);
                let range = if start <= source.len() && start + raw.len() <= source.len() {
                    start..start + raw.len()
                } else {
                    0..0
                };
                let decoded =
                    html_escape::decode_html_entities(bytes.as_utf8_str().as_ref()).into_owned();
                block.push(&decoded, range);
            }
            tl::Node::Comment(_) => {}
        }
    }
    out.flush(&mut block);
    if out.title.is_none() {
        out.title = h1.filter(|t| !t.is_empty());
    }
    out
}

/// `s` with every run of whitespace made one space, trimmed.
pub(crate) fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(e: &Extracted) -> Vec<String> {
        e.blocks.iter().map(|b| collapse(&b.text)).collect()
    }

    #[test]
    fn plain_text_paragraphs_keep_their_bytes() {
        let src = "First line\nstill first.\n\n  \nSecond paragraph.\n";
        let e = extract(Kind::Text, src);
        assert_eq!(texts(&e), ["First line still first.", "Second paragraph."]);
        let b = &e.blocks[1];
        assert_eq!(
            &src[b.source_at(0, false)..b.source_at(b.text.len(), true)],
            "Second paragraph.\n"
        );
    }

    #[test]
    fn markdown_title_and_visible_text() {
        let src = "# Über *uns*\n\nEin `Satz` mit [Link](http://x.y).\n\n- eins\n- zwei\n";
        let e = extract(Kind::Markdown, src);
        assert_eq!(e.title.as_deref(), Some("Über uns"));
        assert_eq!(
            texts(&e),
            ["Über uns", "Ein Satz mit Link.", "eins", "zwei"]
        );
        let b = &e.blocks[1];
        let (s, t) = (b.source_at(0, false), b.source_at(b.text.len(), true));
        assert!(src[s..t].starts_with("Ein `Satz`"), "{:?}", &src[s..t]);
    }

    #[test]
    fn html_skips_scripts_and_styles_and_decodes_entities() {
        let src = "<html><head><title>T &amp; U</title><style>p{x:1}</style></head>\
            <body><script>var a = 1;</script><p>Caf&eacute; <b>ol&eacute;</b>.</p>\
            <div>Zweiter<br>Block</div><!-- hidden --></body></html>";
        let e = extract(Kind::Html, src);
        assert_eq!(e.title.as_deref(), Some("T & U"));
        assert_eq!(texts(&e), ["Café olé.", "Zweiter", "Block"]);
        let b = &e.blocks[0];
        let (s, t) = (b.source_at(0, false), b.source_at(b.text.len(), true));
        assert_eq!(&src[s..t], "Caf&eacute; <b>ol&eacute;</b>.");
    }

    #[test]
    fn kinds_by_extension() {
        assert_eq!(Kind::of("a/b.MD"), Some(Kind::Markdown));
        assert_eq!(Kind::of("x.htm"), Some(Kind::Html));
        assert_eq!(Kind::of("notes.txt"), Some(Kind::Text));
        assert_eq!(Kind::of("paper.PDF"), Some(Kind::Pdf));
        assert_eq!(Kind::of("photo.jpg"), None);
        assert_eq!(Kind::of("README"), None);
    }
}
