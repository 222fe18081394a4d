//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// Result alias used across xqdb.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in xqdb.
///
/// Errors about files name the file; errors about input name the passage id where
/// there is one. No input, however malformed, makes xqdb panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder the call was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The redb catalog reported an error.
    #[error("catalog error in {path}: {source}")]
    Catalog {
        /// The catalog file.
        path: PathBuf,
        /// The underlying redb error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A file's bytes do not match what the catalog or the format promises.
    #[error("corrupt file {path}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// The file was not written by xqdb, or belongs to another store.
    #[error("foreign file {path}: {reason}")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Why it is not ours.
        reason: String,
    },
    /// The file was written by a newer format version than this build reads.
    #[error("{path} has format version {found}; this build reads versions up to {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Newest version this build understands.
        supported: u32,
    },
    /// The folder does not hold an xqdb index.
    #[error("no xqdb index at {path} (create one with `xqdb init` or `Index::builder().create`)")]
    NotAnIndex {
        /// The folder.
        path: PathBuf,
    },
    /// `create` was asked for a folder that already holds an index.
    #[error("an xqdb index already exists at {path}")]
    AlreadyExists {
        /// The folder.
        path: PathBuf,
    },
    /// Another process holds the index open.
    #[error(
        "index {path} is locked by another process: one process at a time may open an index for writing (any number may open it read-only)"
    )]
    Locked {
        /// The folder.
        path: PathBuf,
    },
    /// The catalog was not closed cleanly (a writer was killed or interrupted) and could not
    /// be recovered by this open. Nothing is lost: the last commit is intact.
    #[error(
        "index {path} was not closed cleanly and needs recovery, which this read-only open could not do ({reason}); any command that opens it for writing recovers it (e.g. `xqdb compact {path}`)"
    )]
    NeedsRecovery {
        /// The folder.
        path: PathBuf,
        /// Why recovery was not done here.
        reason: String,
    },
    /// A second writer was requested while one is alive in this process.
    #[error("another writer is active on this index; drop it before asking for a new one")]
    WriterBusy,
    /// The index was opened read-only.
    #[error("index is open read-only")]
    ReadOnly,
    /// An earlier I/O failure during a commit left the on-disk state unknown; reopen the index.
    #[error("writer poisoned by an earlier I/O failure ({reason}); reopen the index")]
    Poisoned {
        /// The failure that poisoned the writer.
        reason: String,
    },
    /// Options given to `open` disagree with the stored index.
    #[error("index {path} was created with {field} = {stored}, but {requested} was requested")]
    IncompatibleOptions {
        /// The folder.
        path: PathBuf,
        /// Which option.
        field: &'static str,
        /// Value stored in the index.
        stored: String,
        /// Value asked for.
        requested: String,
    },
    /// A passage id is already present (use `upsert` to replace it).
    #[error("duplicate passage id {id:?}")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// A vector has the wrong number of components.
    #[error("vector for {id:?} has {found} dimensions; the index has {expected}")]
    DimensionMismatch {
        /// The passage id or a description of the query.
        id: String,
        /// The index's dimension.
        expected: usize,
        /// The vector's length.
        found: usize,
    },
    /// A vector holds NaN or infinite components, or is zero where a norm is needed.
    #[error("invalid vector for {id:?}: {reason}")]
    InvalidVector {
        /// The passage id or a description of the query.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A passage is unusable (empty id or text, too large, bad metadata).
    #[error("invalid passage {id:?}: {reason}")]
    InvalidPassage {
        /// The passage id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// ONNX Runtime could not be loaded from any of the places tried.
    #[error("ONNX Runtime could not be loaded; tried: {}. To fix: {hint}", tried.join("; "))]
    RuntimeUnavailable {
        /// Each path tried and why it failed.
        tried: Vec<String>,
        /// The command that sets the runtime up.
        hint: &'static str,
    },
    /// A model bundle is missing, incomplete, or does not behave as its manifest says.
    #[error("model {path}: {reason}")]
    Model {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The index was built with another model than the one given.
    #[error("index {path} was built with model {stored}, but {given} was given (re-embedding is an explicit operation)")]
    ModelMismatch {
        /// The index folder.
        path: PathBuf,
        /// Fingerprint recorded in the index.
        stored: String,
        /// Fingerprint of the model given.
        given: String,
    },
    /// Text search or text insert on an index opened without an encoder.
    #[error("this operation needs an encoder model; open the index with one (CLI: --model DIR)")]
    NoEncoder,
    /// Query generation was needed but the index has no generator.
    #[error("this operation needs the index's query generator; create the index with one (CLI: init --generator DIR) or open it with the recorded one")]
    NoGenerator,
    /// An argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn catalog(path: impl Into<PathBuf>, source: impl Into<redb::Error>) -> Self {
        Error::Catalog {
            path: path.into(),
            source: Box::new(source.into()),
        }
    }

    /// The passage id an input error names, if it names one.
    pub fn passage_id(&self) -> Option<&str> {
        match self {
            Error::DuplicateId { id }
            | Error::DimensionMismatch { id, .. }
            | Error::InvalidVector { id, .. }
            | Error::InvalidPassage { id, .. } => Some(id),
            _ => None,
        }
    }

    /// True for errors that mean the stored bytes are damaged or not ours.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::Foreign { .. } | Error::UnsupportedVersion { .. }
        ) || matches!(self, Error::Catalog { source, .. } if matches!(**source, redb::Error::Corrupted(_)))
    }
}
