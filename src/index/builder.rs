//! `IndexBuilder`: the settings of a new index (dimension, metric, row type, codes, models,
//! lexical index) and of an opened one (read mode, verify policy, merge tiers, threads).

use super::handle::Index;
use super::inner::Db;
use super::open::{init_catalog, map_open_error, read_was_clean};
use crate::error::{Error, Result};
use crate::model::{Encoder, Generator};
use crate::segment::{ReadMode, SegmentDir};
use crate::store::CATALOG_FILE;
use crate::types::{Dtype, Metric};
use crate::xqg::XqgProfile;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// When `open` recomputes the checksum of every segment body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifyPolicy {
    /// On every open.
    Always,
    /// Only when the previous writer did not close the index cleanly.
    #[default]
    AfterUncleanShutdown,
    /// Never (headers, footers and lengths are still checked).
    Never,
}

/// Options for opening or creating an [`Index`].
#[derive(Clone, Debug)]
pub struct IndexBuilder {
    pub(super) dim: Option<usize>,
    pub(super) metric: Metric,
    pub(super) dtype: Dtype,
    pub(super) model_fingerprint: Option<String>,
    pub(super) encoder: Option<Arc<Encoder>>,
    pub(super) xqg: Option<XqgProfile>,
    pub(super) generator: Option<Arc<Generator>>,
    pub(super) codes: Option<crate::types::Codes>,
    pub(super) lexical: Option<crate::types::LexicalSettings>,
    pub(super) read_only: bool,
    pub(super) read_mode: ReadMode,
    pub(super) verify: VerifyPolicy,
    pub(super) seal_rows: usize,
    pub(super) direct_segment_rows: usize,
    pub(super) merge_fan_in: usize,
    pub(super) threads: usize,
}

impl Default for IndexBuilder {
    fn default() -> Self {
        IndexBuilder {
            dim: None,
            metric: Metric::Cosine,
            dtype: Dtype::F32,
            model_fingerprint: None,
            encoder: None,
            xqg: None,
            generator: None,
            codes: None,
            lexical: None,
            read_only: false,
            read_mode: ReadMode::default(),
            verify: VerifyPolicy::default(),
            seal_rows: 16_384,
            direct_segment_rows: 4_096,
            merge_fan_in: 8,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl IndexBuilder {
    /// Vector dimension (required to create an index; checked against an existing one).
    pub fn dim(mut self, dim: usize) -> Self {
        self.dim = Some(dim);
        self
    }

    /// Similarity metric for a new index (default cosine).
    pub fn metric(mut self, metric: Metric) -> Self {
        self.metric = metric;
        self
    }

    /// Storage type of segment rows for a new index (default f32).
    pub fn dtype(mut self, dtype: Dtype) -> Self {
        self.dtype = dtype;
        self
    }

    /// Fingerprint of the model that makes the vectors; recorded at creation and checked
    /// on every later open.
    pub fn model_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.model_fingerprint = Some(fingerprint.into());
        self
    }

    /// The encoder that turns text into vectors: recorded in a new index (dimension,
    /// fingerprint and bundle folder), checked against an existing one.
    pub fn encoder(mut self, encoder: Arc<Encoder>) -> Self {
        self.dim = Some(encoder.dim());
        self.model_fingerprint = Some(encoder.fingerprint().to_string());
        self.encoder = Some(encoder);
        self
    }

    /// The xQG augmentation profile of a new index (ignored when opening an existing one,
    /// which keeps its recorded profile). With a [`IndexBuilder::generator`], inserted
    /// passages get generated queries; without one, queries can only be imported.
    pub fn xqg(mut self, profile: XqgProfile) -> Self {
        self.xqg = Some(profile);
        self
    }

    /// The seq2seq query generator: recorded in a new index's profile (fingerprint and
    /// folder), checked against an existing one's.
    pub fn generator(mut self, generator: Arc<Generator>) -> Self {
        self.generator = Some(generator);
        self
    }

    /// Opens without a writer: searches only, nothing on disk changes.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// How segment files are read: mapped (default) or copied into memory, for media where
    /// a file may change behind xqdb's back (network and FUSE file systems).
    pub fn read_mode(mut self, mode: ReadMode) -> Self {
        self.read_mode = mode;
        self
    }

    /// When segment bodies are checksummed at open.
    pub fn verify_policy(mut self, policy: VerifyPolicy) -> Self {
        self.verify = policy;
        self
    }

    /// Seal the tail into a segment once it holds this many rows (default 16,384).
    pub fn seal_rows(mut self, rows: usize) -> Self {
        self.seal_rows = rows.max(1);
        self
    }

    /// A commit adding at least this many rows writes them straight into a new segment
    /// instead of the tail (default 4,096).
    pub fn direct_segment_rows(mut self, rows: usize) -> Self {
        self.direct_segment_rows = rows.max(1);
        self
    }

    /// Compact codes to keep beside the rows of a new index (binary and/or i8), which
    /// searches can scan first and rescore (see [`SearchOptions::first_pass`](crate::SearchOptions::first_pass)). Only for
    /// f32 and f16 rows; fixed at creation.
    pub fn codes(mut self, codes: crate::types::Codes) -> Self {
        self.codes = codes.any().then_some(codes);
        self
    }

    /// Keep a lexical (keyword) index beside the vectors of a new index, for lexical and
    /// hybrid searches ([`SearchOptions::mode`](crate::SearchOptions::mode)); fixed at creation
    /// ([`Writer::enable_lexical`](crate::Writer::enable_lexical) adds one to an existing index). Writing to an index that
    /// keeps one needs the `lexical` feature.
    pub fn lexical(mut self, settings: crate::types::LexicalSettings) -> Self {
        self.lexical = Some(settings);
        self
    }

    /// Automatic size-tiered merging: once this many segments share a size tier (tier `t`
    /// holds segments of `seal_rows · fan_in^t` up to `seal_rows · fan_in^(t+1)` live rows),
    /// a commit merges them into one; at most one merge per commit. `0` turns it off
    /// ([`Writer::compact`](crate::Writer::compact) still merges everything). Default 8.
    pub fn merge_fan_in(mut self, fan_in: usize) -> Self {
        self.merge_fan_in = if fan_in == 1 { 2 } else { fan_in };
        self
    }

    /// Threads a search uses by default (default: all cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Opens the index at `path`, creating it when absent and a dimension was given.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Index> {
        let root = path.as_ref();
        if root.join(CATALOG_FILE).exists() {
            Index::open_existing(root, self)
        } else if self.dim.is_some() && !self.read_only {
            Index::create_new(root, self)
        } else {
            Err(Error::NotAnIndex {
                path: root.to_path_buf(),
            })
        }
    }

    /// Creates an index that lives in memory only (catalog and segments): the same API and
    /// behaviour except durability, for tests and fuzzers of applications built on xqdb.
    /// Results are deterministic: the same operations give the same answers on every run.
    pub fn in_memory(self) -> Result<Index> {
        Index::create_in_memory(self)
    }

    /// Opens (or, when it is empty, creates) the index on a simulated disk, for crash tests
    /// (see [`crate::faults`]).
    pub fn open_simulated(self, disk: &Arc<crate::faults::SimDisk>) -> Result<Index> {
        let root = PathBuf::from(":simulated:");
        let catalog = root.join(CATALOG_FILE);
        let fresh = !disk.has_catalog();
        if fresh {
            check_dim(&self)?;
        }
        let db = redb::Builder::new()
            .create_with_backend(crate::faults::SimBackend(disk.clone()))
            .map_err(|e| map_open_error(&root, &catalog, e))?;
        if fresh {
            init_catalog(&db, &catalog, &self)?;
        }
        let db = Db::Writable(db);
        let was_clean = read_was_clean(&db, &catalog)?;
        let dir: Arc<dyn SegmentDir> = Arc::new(crate::faults::SimDir(disk.clone()));
        Index::finish_open(&root, catalog, dir, db, self, was_clean)
    }

    /// Creates a new index at `path`; fails if one exists there.
    pub fn create(self, path: impl AsRef<Path>) -> Result<Index> {
        let root = path.as_ref();
        if root.join(CATALOG_FILE).exists() {
            return Err(Error::AlreadyExists {
                path: root.to_path_buf(),
            });
        }
        Index::create_new(root, self)
    }
}

pub(super) fn check_dim(options: &IndexBuilder) -> Result<()> {
    let dim = options.dim.ok_or_else(|| {
        Error::InvalidArgument("a dimension is required to create an index".into())
    })?;
    if dim == 0 || dim > crate::types::MAX_DIM {
        return Err(Error::InvalidArgument(format!(
            "dimension {dim} out of range 1..={}",
            crate::types::MAX_DIM
        )));
    }
    Ok(())
}

/// Largest oversampling factor a search may ask for.
pub(crate) const MAX_OVERSAMPLE: usize = 1 << 20;

pub(crate) fn check_oversample(o: usize) -> Result<()> {
    if o == 0 || o > MAX_OVERSAMPLE {
        return Err(Error::InvalidArgument(format!(
            "oversampling {o} out of range 1..={MAX_OVERSAMPLE}"
        )));
    }
    Ok(())
}
