//! Folders of documents: [`sync`] walks a folder, cuts its text, Markdown, HTML and PDF files
//! into passages of about 100 words on sentence boundaries, tags each passage's language and
//! keeps the index in step with the folder — only changed files are read, a changed file's
//! passages are replaced and a removed file's deleted, each file in one atomic commit.
//!
//! Passage ids are `path#n` (`path` relative to the folder, `/`-separated, `n` from 0), and
//! each passage's metadata holds `"path"`, `"start"` and `"end"` (its source byte range),
//! `"line"` (the line of `start`, from 1) and `"title"` (the document's title); for PDF files
//! `start`/`end`/`line` index the extracted text and `"page"` gives the page (from 1). The catalog
//! keeps one record per synced file (FORMAT.md, "files").
//!
//! ```no_run
//! # fn main() -> xqdb::Result<()> {
//! let index = xqdb::Index::open("notes.xqdb")?;
//! let report = xqdb::documents::sync(&index, "notes".as_ref(), &Default::default(), &|_| {})?;
//! println!("{} added, {} changed, {} removed", report.added, report.changed, report.removed);
//! # Ok(()) }
//! ```

mod chunk;
mod extract;
mod lang;

pub use chunk::{Chunk, ChunkOptions};
pub use extract::Kind;
pub use lang::{detect_language, detect_language_among, detectable_languages, Detector};

use crate::error::{Error, Result};
use crate::index::Index;
use crate::ingest::{Row, WriteMode};
use crate::types::Passage;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};
use unicode_segmentation::UnicodeSegmentation;

/// Version of the file record written by this build.
pub const FILE_RECORD_VERSION: u32 = 1;

/// What the catalog remembers of a synced file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Record version ([`FILE_RECORD_VERSION`]).
    pub v: u32,
    /// Size in bytes when it was read.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 when the system has none).
    pub mtime_ns: i128,
    /// xxh3-128 of the content, 32 hex digits.
    pub hash: String,
    /// Passages stored for it: ids `path#0` … `path#(passages-1)`.
    pub passages: u32,
    /// The settings its passages were cut and encoded with ([`SyncOptions::fingerprint`]);
    /// empty in records of builds before it. A sync with other settings reads the file again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub settings: String,
}

impl FileRecord {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a file record serialises")
    }

    fn decode(index: &Index, path: &str, bytes: &[u8]) -> Result<FileRecord> {
        serde_json::from_slice::<FileRecord>(bytes)
            .map_err(|e| e.to_string())
            .and_then(|r| match r.v {
                1 => Ok(r),
                v => Err(format!("file record version {v} is not supported")),
            })
            .map_err(|reason| {
                Error::corrupt(
                    &index.inner.catalog_path,
                    format!("file record of {path:?}: {reason}"),
                )
            })
    }
}

/// The id of passage `n` of the file at `path`.
pub fn passage_id(path: &str, n: u32) -> String {
    format!("{path}#{n}")
}

/// The synced files of the index's current commit, in path order.
pub fn files(index: &Index) -> Result<Vec<(String, FileRecord)>> {
    index
        .snapshot()
        .file_records()?
        .into_iter()
        .map(|(path, bytes)| {
            let r = FileRecord::decode(index, &path, &bytes)?;
            Ok((path, r))
        })
        .collect()
}

/// How [`sync`] walks and reads a folder.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// gitignore-style patterns of paths to leave out (`*.log`, `drafts/`, `/build`).
    /// `.gitignore` and `.ignore` files inside the folder apply as well.
    pub exclude: Vec<String>,
    /// Read hidden files and folders (names starting with `.`).
    pub hidden: bool,
    /// Follow symbolic links (loops are detected and reported as skips).
    pub follow_links: bool,
    /// Files larger than this are skipped without being read.
    pub max_file_bytes: u64,
    /// How passages are cut.
    pub chunk: ChunkOptions,
    /// How a document's title, headings and opening reach its passages' vectors.
    pub context: DocumentContext,
    /// Language tag for every passage instead of detecting it.
    pub lang: Option<String>,
    /// Languages the detector chooses among (tags of [`detectable_languages`]); all when
    /// empty. Naming the collection's languages makes detection far more accurate.
    pub languages: Vec<String>,
    /// Walk, read and cut, but write nothing (the report says what a sync would do).
    pub dry_run: bool,
    /// Test hook: runs after a file's content was read, before the content is checked again.
    #[doc(hidden)]
    pub after_read: Option<fn(&Path)>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            exclude: Vec::new(),
            hidden: false,
            follow_links: true,
            max_file_bytes: 16 << 20,
            chunk: ChunkOptions::default(),
            context: DocumentContext::default(),
            lang: None,
            languages: Vec::new(),
            dry_run: false,
            after_read: None,
        }
    }
}

/// A file a sync did not index, and why. Its previous passages (if any) stay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Path relative to the folder (as the walk saw it, for walk errors).
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What a sync did. File counts, except `passages_*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Files indexed for the first time.
    pub added: usize,
    /// Files whose content changed: their passages were replaced.
    pub changed: usize,
    /// Files gone from the folder (or now excluded): their passages were deleted.
    pub removed: usize,
    /// Files left as they were (same size and time, or same content).
    pub unchanged: usize,
    /// Files not indexed, with the reason.
    pub skipped: Vec<Skipped>,
    /// Passages encoded (to be encoded, with `dry_run`).
    pub passages_encoded: usize,
    /// Passages deleted (replaced or of removed files).
    pub passages_removed: usize,
    /// Bytes read from changed files.
    pub bytes_read: u64,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Wall time.
    pub seconds: f64,
}

/// How far a sync has come; given to progress callbacks after every file.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SyncProgress {
    /// Files looked at so far.
    pub files: usize,
    /// Files in the folder (after exclusions).
    pub total_files: usize,
    /// Passages encoded so far.
    pub passages: usize,
    /// Bytes read so far.
    pub bytes: u64,
    /// Time since the sync started.
    pub elapsed: Duration,
}

/// A file the walk found.
struct Found {
    rel: String,
    path: PathBuf,
}

fn walk(
    folder: &Path,
    index_root: Option<&Path>,
    o: &SyncOptions,
) -> Result<(Vec<Found>, Vec<Skipped>)> {
    let mut overrides = ignore::overrides::OverrideBuilder::new(folder);
    for pattern in &o.exclude {
        overrides
            .add(&format!("!{pattern}"))
            .map_err(|e| Error::InvalidArgument(format!("exclude pattern {pattern:?}: {e}")))?;
    }
    let overrides = overrides
        .build()
        .map_err(|e| Error::InvalidArgument(format!("exclude patterns: {e}")))?;
    let skip_root = index_root.map(Path::to_path_buf);
    let walker = ignore::WalkBuilder::new(folder)
        .standard_filters(false)
        .hidden(!o.hidden)
        .ignore(true)
        .git_ignore(true)
        .require_git(false)
        .parents(false)
        .follow_links(o.follow_links)
        .overrides(overrides)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(move |e| {
            // Never index the index itself when it lives inside the folder.
            match (&skip_root, e.file_type().is_some_and(|t| t.is_dir())) {
                (Some(root), true) => e.path().canonicalize().map_or(true, |p| &p != root),
                _ => true,
            }
        })
        .build();
    let (mut found, mut skipped) = (Vec::new(), Vec::new());
    let rel_of = |p: &Path| -> std::result::Result<String, String> {
        let rel = p.strip_prefix(folder).unwrap_or(p);
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        parts
            .map(|v| v.join("/"))
            .ok_or_else(|| rel.to_string_lossy().into_owned())
    };
    for entry in walker {
        match entry {
            Ok(e) => {
                if !e.file_type().is_some_and(|t| t.is_file()) {
                    continue;
                }
                match rel_of(e.path()) {
                    Ok(rel) => found.push(Found {
                        rel,
                        path: e.path().to_path_buf(),
                    }),
                    Err(lossy) => skipped.push(Skipped {
                        path: lossy,
                        reason: "the file name is not valid UTF-8".into(),
                    }),
                }
            }
            Err(err) => {
                let path = walk_error_path(&err)
                    .map(|p| rel_of(&p).unwrap_or_else(|l| l))
                    .unwrap_or_default();
                let reason = if is_loop(&err) {
                    "symbolic link loop".to_string()
                } else {
                    format!("cannot read: {err}")
                };
                skipped.push(Skipped { path, reason });
            }
        }
    }
    Ok((found, skipped))
}

fn walk_error_path(e: &ignore::Error) -> Option<PathBuf> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            walk_error_path(err)
        }
        _ => None,
    }
}

fn is_loop(e: &ignore::Error) -> bool {
    match e {
        ignore::Error::Loop { .. } => true,
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => is_loop(err),
        _ => false,
    }
}

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128)
}

fn hash_hex(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// Reads at most `limit + 1` bytes (so a file that grew past the limit is noticed).
fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Streams the file through xxh3-128 (memory stays bounded whatever its size).
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:032x}", h.digest128()))
}

/// The text of a PDF's pages, joined by form feeds. pdf-extract reports malformed files as
/// errors, and its panics on files it does not understand are caught and reported too.
fn pdf_pages(bytes: &[u8]) -> std::result::Result<String, String> {
    let r = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes));
    match r {
        Ok(Ok(pages)) => Ok(pages.join("\u{c}")),
        Ok(Err(e)) => Err(format!("cannot read the PDF: {e}")),
        Err(_) => Err("the PDF reader failed on this file".into()),
    }
}

/// Why a file's content cannot be indexed, if it cannot.
fn content_problem(bytes: &[u8]) -> Option<String> {
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Some("binary content (a NUL byte in the first 8 KiB)".into());
    }
    std::str::from_utf8(bytes).err().map(|e| {
        format!(
            "not valid UTF-8 (byte {}); files are read as UTF-8 only",
            e.valid_up_to()
        )
    })
}

/// Words of prose a passage needs before its own language counts over its document's.
const OWN_LANGUAGE_WORDS: usize = 40;

/// What is encoded in front of each passage of a synced document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Heading {
    /// The passage text alone.
    None,
    /// The document's title (left out where the passage already starts with it).
    Title,
    /// The title and the headings above the passage: `title › section › subsection`.
    #[default]
    Path,
}

/// How a synced document's context reaches the vectors of its passages.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentContext {
    /// What each passage carries in front of its text when it is encoded.
    pub heading: Heading,
    /// Store one more row per file, `path#n` after its `n` passages: the document's title,
    /// its summary (a Markdown front matter's `description`) and its opening, as much as the
    /// encoder takes. A question about the document as a whole then finds the document even
    /// where no single passage says what it is about.
    pub document_row: bool,
    /// β: the weight of the document row's vector in each of the file's passage vectors,
    /// `normalize((1 − β)·E(passage) + β·E(document row))` (xQG's fusion arithmetic), for files
    /// with a document row in indexes without an xQG profile (there xQG's own fusion applies).
    /// 0 keeps passage vectors as they are.
    pub fuse: f32,
    /// Start a passage at each Markdown heading (unless the passage before it would be under
    /// a quarter of the target words), so that a passage stays within its section.
    pub sections: bool,
}

impl Default for DocumentContext {
    fn default() -> Self {
        DocumentContext {
            heading: Heading::Path,
            document_row: true,
            fuse: 0.7,
            sections: false,
        }
    }
}

impl SyncOptions {
    /// The settings that decide a file's stored passages and vectors, as the file record
    /// keeps them: a sync with other settings reads and encodes the file again.
    pub fn fingerprint(&self) -> String {
        let c = &self.chunk;
        format!(
            "words {}/{}/{}; heading {:?}; document row {}; fuse {}; sections {}; lang {}; languages {}",
            c.target_words,
            c.max_words,
            c.overlap_sentences,
            self.context.heading,
            self.context.document_row,
            self.context.fuse,
            self.context.sections,
            self.lang.as_deref().unwrap_or("-"),
            self.languages.join(",")
        )
    }
}

/// What a passage of `title` under `section` carries in front of `text`.
fn heading_of(heading: Heading, title: &str, section: &[String], text: &str) -> Option<String> {
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
fn document_language(detector: &Detector, prose: &[String]) -> Option<String> {
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
fn opening(
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

/// Brings the index in step with `folder`; see the module docs. Needs an index with a
/// model (its tokenizer keeps passages within the token limit). Files that cannot be indexed
/// are skipped with a reason, keeping their earlier passages; errors of the index itself
/// (a missing model, a full disk) stop the sync, and every file committed before stays.
pub fn sync(
    index: &Index,
    folder: &Path,
    options: &SyncOptions,
    progress: &dyn Fn(&SyncProgress),
) -> Result<SyncReport> {
    let started = Instant::now();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if !std::fs::metadata(folder).map_err(io(folder))?.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{} is not a folder",
            folder.display()
        )));
    }
    if let Some(l) = &options.lang {
        crate::types::check_lang_tag(l)?;
    }
    let detector = Detector::among(&options.languages)?;
    // The model loads when the first changed file needs it: a sync with nothing to do reads
    // only the folder's metadata.
    let encoder = std::cell::OnceCell::new();
    let index_root = index.path().canonicalize().ok();
    let (found, mut skipped) = walk(folder, index_root.as_deref(), options)?;
    let old: BTreeMap<String, FileRecord> = files(index)?.into_iter().collect();
    let mut report = SyncReport {
        dry_run: options.dry_run,
        ..Default::default()
    };
    let mut writer = if options.dry_run {
        None
    } else {
        Some(index.writer()?)
    };
    let mut seen: HashSet<String> = skipped.iter().map(|s| s.path.clone()).collect();
    let mut fits = |t: &str| -> Result<bool> {
        if encoder.get().is_none() {
            let _ = encoder.set(index.encoder()?);
        }
        encoder.get().expect("set above").passage_fits(t)
    };
    let total = found.len();
    let tick = |report: &SyncReport, files: usize| {
        progress(&SyncProgress {
            files,
            total_files: total,
            passages: report.passages_encoded,
            bytes: report.bytes_read,
            elapsed: started.elapsed(),
        })
    };
    for (i, f) in found.iter().enumerate() {
        seen.insert(f.rel.clone());
        let before = old.get(&f.rel);
        let outcome = sync_file(
            index,
            f,
            before,
            options,
            &detector,
            &mut fits,
            writer.as_mut(),
            &mut report,
        )?;
        if let Err(reason) = outcome {
            skipped.push(Skipped {
                path: f.rel.clone(),
                reason,
            });
        }
        tick(&report, i + 1);
    }
    for (path, record) in &old {
        if seen.contains(path) {
            continue;
        }
        if let Some(w) = writer.as_mut() {
            for n in 0..record.passages {
                w.delete(&passage_id(path, n))?;
            }
            w.stage_file(path, None);
            w.commit()?;
        }
        report.removed += 1;
        report.passages_removed += record.passages as usize;
    }
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    report.skipped = skipped;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Syncs one file. `Ok(Err(reason))` is a skip; `Err` stops the sync.
#[allow(clippy::too_many_arguments)]
fn sync_file(
    index: &Index,
    f: &Found,
    before: Option<&FileRecord>,
    o: &SyncOptions,
    detector: &Detector,
    fits: &mut dyn FnMut(&str) -> Result<bool>,
    writer: Option<&mut crate::Writer>,
    report: &mut SyncReport,
) -> Result<std::result::Result<(), String>> {
    let meta = match std::fs::metadata(&f.path) {
        Ok(m) => m,
        Err(e) => return Ok(Err(format!("cannot read: {e}"))),
    };
    let (size, mtime) = (meta.len(), mtime_ns(&meta));
    let settings = o.fingerprint();
    // Its passages now, whatever settings stored them (surplus ones are deleted).
    let old_n = before.map_or(0, |b| b.passages);
    let is_new = before.is_none();
    // A file synced with other settings is read and encoded again, whatever its content.
    let before = before.filter(|b| b.settings == settings);
    if let Some(b) = before {
        if b.size == size && b.mtime_ns == mtime {
            report.unchanged += 1;
            return Ok(Ok(()));
        }
    }
    let Some(kind) = Kind::of(&f.rel) else {
        return Ok(Err(
            "not a text, Markdown or HTML file (by extension)".into()
        ));
    };
    if size > o.max_file_bytes {
        return Ok(Err(format!(
            "{size} bytes, over the limit of {} bytes",
            o.max_file_bytes
        )));
    }
    let bytes = match read_limited(&f.path, o.max_file_bytes) {
        Ok(b) => b,
        Err(e) => return Ok(Err(format!("cannot read: {e}"))),
    };
    report.bytes_read += bytes.len() as u64;
    if bytes.len() as u64 > o.max_file_bytes {
        return Ok(Err("grew over the size limit while being read".into()));
    }
    let hash = hash_hex(&bytes);
    let record = FileRecord {
        v: FILE_RECORD_VERSION,
        size: bytes.len() as u64,
        mtime_ns: mtime,
        hash,
        passages: 0,
        settings,
    };
    if let Some(b) = before.filter(|b| b.hash == record.hash) {
        // Touched but not changed: remember the new time, read nothing next time.
        report.unchanged += 1;
        if let Some(w) = writer {
            w.stage_file(
                &f.rel,
                Some(
                    FileRecord {
                        passages: b.passages,
                        ..record
                    }
                    .encode(),
                ),
            );
            w.commit()?;
        }
        return Ok(Ok(()));
    }
    let pdf_text;
    let (text, offset) = if kind == Kind::Pdf {
        pdf_text = match pdf_pages(&bytes) {
            Ok(t) => t,
            Err(reason) => return Ok(Err(reason)),
        };
        (pdf_text.as_str(), 0)
    } else {
        if let Some(problem) = content_problem(&bytes) {
            return Ok(Err(problem));
        }
        let text = std::str::from_utf8(&bytes).expect("checked above");
        let stripped = text.strip_prefix('\u{feff}').unwrap_or(text);
        (stripped, text.len() - stripped.len())
    };
    let mut passages = passages_of(
        &f.rel,
        kind,
        text,
        &o.chunk,
        &o.context,
        o.lang.as_deref(),
        detector,
        fits,
    )?;
    if offset > 0 {
        for p in &mut passages {
            let m = p
                .meta
                .as_mut()
                .and_then(|m| m.as_object_mut())
                .expect("set");
            for key in ["start", "end"] {
                let v = m[key].as_u64().unwrap_or(0) + offset as u64;
                m.insert(key.into(), v.into());
            }
        }
    }
    if let Some(hook) = o.after_read {
        hook(&f.path);
    }
    // The content must still be what was read: a file written to meanwhile waits for the
    // next sync rather than being stored half old, half new.
    match hash_file(&f.path) {
        Ok(h) if h == record.hash => {}
        Ok(_) => {
            return Ok(Err(
                "changed while being read; the next sync reads it".into()
            ))
        }
        Err(e) => return Ok(Err(format!("cannot read: {e}"))),
    }
    let n = passages.len() as u32;
    if let Some(w) = writer {
        let rows = rows_of(index, passages, o.context.fuse)?;
        if let Err(e) = w.stage_rows(rows, WriteMode::Upsert, &|_| {}) {
            w.rollback();
            return match e.row {
                Some(_) => Ok(Err(e.error.to_string())),
                None => Err(e.error),
            };
        }
        for k in n..old_n {
            w.delete(&passage_id(&f.rel, k))?;
        }
        let record = FileRecord {
            passages: n,
            ..record
        };
        w.stage_file(&f.rel, Some(record.encode()));
        w.commit()?;
    }
    report.passages_encoded += n as usize;
    report.passages_removed += old_n.saturating_sub(n) as usize;
    if n == 0 {
        return Ok(Err("no text".into()));
    }
    if is_new {
        report.added += 1;
    } else {
        report.changed += 1;
    }
    Ok(Ok(()))
}

/// The rows a file's passages are staged as: as text (the index encodes them), or, when the
/// file has a document row, `fuse` > 0 and the index has no xQG profile, with each passage's
/// vector fused with its document row's.
fn rows_of(index: &Index, passages: Vec<Passage>, fuse: f32) -> Result<Vec<Row>> {
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

fn cut(s: &str, width: usize) -> String {
    let collapsed = extract::collapse(s);
    if collapsed.chars().count() <= width {
        return collapsed;
    }
    let mut out: String = collapsed.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn content_checks() {
        assert!(content_problem(b"ok text").is_none());
        assert!(content_problem(b"a\0b").unwrap().contains("binary"));
        assert!(content_problem(b"caf\xe9").unwrap().contains("byte 3"));
    }
}
