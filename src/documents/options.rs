//! What a sync is asked: file limits, passage size, exclusions, and how a document's
//! context enters its passages' vectors (`DocumentContext`).

use super::chunk::ChunkOptions;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How [`sync`](super::sync()) walks and reads a folder.
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
    /// Languages the detector chooses among (tags of [`detectable_languages`](super::detectable_languages)); all when
    /// empty. Naming the collection's languages makes detection far more accurate.
    pub languages: Vec<String>,
    /// The encoding every file is read with (a WHATWG label: `shift_jis`, `windows-1251`,
    /// `utf-16le` …) instead of telling it file by file (byte-order mark, UTF-8, HTML
    /// `<meta charset>`, then detection).
    pub encoding: Option<String>,
    /// Walk, read and cut, but write nothing (the report says what a sync would do).
    pub dry_run: bool,
    /// Set (by a signal handler, say) to stop the sync after the file in progress: every file
    /// is then wholly old or wholly new, removed files are left for the next sync, and the
    /// report says `interrupted`.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Test hook: runs after a file's content was read, before the content is checked again.
    #[doc(hidden)]
    pub after_read: Option<fn(&Path)>,
}

impl SyncOptions {
    /// The forced encoding, if any; an unknown label is an error.
    pub(crate) fn forced_encoding(&self) -> crate::Result<Option<&'static encoding_rs::Encoding>> {
        match &self.encoding {
            None => Ok(None),
            Some(label) => encoding_rs::Encoding::for_label(label.trim().as_bytes())
                .map(Some)
                .ok_or_else(|| {
                    crate::Error::InvalidArgument(format!(
                        "unknown encoding {label:?} (WHATWG labels: utf-8, shift_jis, euc-jp, \
                         euc-kr, gbk, gb18030, big5, windows-1251, koi8-r, windows-1256, \
                         iso-8859-2, utf-16le …)"
                    ))
                }),
        }
    }
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
            encoding: None,
            dry_run: false,
            stop: None,
            after_read: None,
        }
    }
}

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
        ) + &self
            .encoding
            .as_deref()
            .map(|e| format!("; encoding {e}"))
            .unwrap_or_default()
    }
}
