//! Folders of documents: [`sync`] walks a folder, cuts its text, Markdown, HTML and PDF files
//! into passages of about 100 words on sentence boundaries, tags each passage's language and
//! keeps the index in step with the folder — only changed files are read, a changed file's
//! passages are replaced and a removed file's deleted, each file in one atomic commit.
//!
//! Passage ids are `path#n` (`path` relative to the folder, `/`-separated, `n` from 0), and
//! each passage's metadata holds `"path"`, `"start"` and `"end"` (its source byte range),
//! `"line"` (the line of `start`, from 1) and `"title"` (the document's title); for PDF files
//! `start`/`end`/`line` index the extracted text and `"page"` gives the page (from 1); for files
//! in another encoding than UTF-8, `start`/`end` are offsets into the file's own bytes and
//! `"encoding"` names it. The catalog
//! keeps one record per synced file (FORMAT.md, "files").
//!
//! ```no_run
//! # fn main() -> xqdb::Result<()> {
//! let index = xqdb::Index::open("notes.xqdb")?;
//! let report = xqdb::documents::sync(&index, "notes".as_ref(), &Default::default(), &|_| {})?;
//! println!("{} added, {} changed, {} removed", report.added, report.changed, report.removed);
//! # Ok(()) }
//! ```
//!
//! `walk` finds and reads the files, `passages` cuts a document into passages with its
//! context, `sync` keeps the index in step with the folder, `record` is what the catalog keeps
//! of each file, `options` what a sync is asked, and `snippet` what a hit shows.

mod chunk;
pub(crate) mod decode;
mod extract;
mod lang;
mod options;
mod passages;
mod record;
mod snippet;
mod sync;
mod walk;

pub use chunk::{Chunk, ChunkOptions};
pub use extract::Kind;
pub use lang::{
    detect_language, detect_language_among, detectable_languages, tag_rows, Detector,
    TAG_CONFIDENCE,
};
pub use options::{DocumentContext, Heading, SyncOptions};
pub(crate) use passages::passages_of;
pub use record::{files, passage_id, FileRecord, FILE_RECORD_VERSION};
pub use snippet::{sentences, snippet};
pub use sync::{sync, Skipped, SyncProgress, SyncReport};
