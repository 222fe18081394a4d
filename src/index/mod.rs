//! `Index`: opening and creating a store, the writer lock, and publishing snapshots.

mod by_file;
mod lexical;
mod snapshot;
mod verify;
mod writer;

pub use by_file::{group_by_file, FileHit, FileRanking};
pub use snapshot::{SearchOptions, Snapshot};
pub use verify::VerifyReport;
#[cfg(feature = "documents")]
pub use writer::{AugmentBudget, AugmentReport, CommitInfo, ReFuseReport, Writer};

use crate::error::{Error, Result};
use crate::model::{Encoder, EncoderOptions, Generator, GeneratorOptions, ModelBundle};
use crate::segment::{
    self, FsDir, MemDir, ReadMode, SegmentDir, SegmentHandle, SegmentRecord, SEGMENTS_DIR,
};
use crate::store::{self, Counters, MetaError, MetaKey, StoreConfig, CATALOG_FILE};
use crate::types::{Dtype, Metric};
use crate::xqg::XqgProfile;
use redb::{ReadableDatabase, ReadableTable};
use snapshot::{SnapshotData, Tail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

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
    dim: Option<usize>,
    metric: Metric,
    dtype: Dtype,
    model_fingerprint: Option<String>,
    encoder: Option<Arc<Encoder>>,
    xqg: Option<XqgProfile>,
    generator: Option<Arc<Generator>>,
    codes: Option<crate::types::Codes>,
    lexical: Option<crate::types::LexicalSettings>,
    read_only: bool,
    read_mode: ReadMode,
    verify: VerifyPolicy,
    seal_rows: usize,
    direct_segment_rows: usize,
    merge_fan_in: usize,
    threads: usize,
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
    /// searches can scan first and rescore (see [`SearchOptions::first_pass`]). Only for
    /// f32 and f16 rows; fixed at creation.
    pub fn codes(mut self, codes: crate::types::Codes) -> Self {
        self.codes = codes.any().then_some(codes);
        self
    }

    /// Keep a lexical (keyword) index beside the vectors of a new index, for lexical and
    /// hybrid searches ([`SearchOptions::mode`]); fixed at creation
    /// ([`Writer::enable_lexical`] adds one to an existing index). Writing to an index that
    /// keeps one needs the `lexical` feature.
    pub fn lexical(mut self, settings: crate::types::LexicalSettings) -> Self {
        self.lexical = Some(settings);
        self
    }

    /// Automatic size-tiered merging: once this many segments share a size tier (tier `t`
    /// holds segments of `seal_rows · fan_in^t` up to `seal_rows · fan_in^(t+1)` live rows),
    /// a commit merges them into one; at most one merge per commit. `0` turns it off
    /// ([`Writer::compact`] still merges everything). Default 8.
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

pub(crate) enum Db {
    Writable(redb::Database),
    ReadOnly(redb::ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> std::result::Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Db::Writable(d) => d.begin_read(),
            Db::ReadOnly(d) => d.begin_read(),
        }
    }
}

pub(crate) struct Inner {
    pub root: PathBuf,
    pub catalog_path: PathBuf,
    /// Where segment files live (the `segments/` folder, or memory).
    pub dir: Arc<dyn SegmentDir>,
    pub db: Db,
    pub options: IndexBuilder,
    pub current: RwLock<Arc<SnapshotData>>,
    writer_active: AtomicBool,
    poisoned: Mutex<Option<String>>,
    /// Segments a commit dropped whose files stay until their last snapshot goes.
    retired: Mutex<Vec<std::sync::Weak<SegmentHandle>>>,
    /// Whether the previous writer closed the index cleanly (as found at open).
    pub was_clean: bool,
    /// The text encoder: given at open, or loaded on first use from the recorded bundle.
    encoder: OnceLock<Arc<Encoder>>,
    /// The query generator: given at open, or loaded on first use from the profile.
    generator: OnceLock<Arc<Generator>>,
    /// Serialises reloads of a read-only index that follows another process's commits.
    refresh_lock: Mutex<()>,
}

impl Inner {
    /// True for indexes made by [`IndexBuilder::in_memory`].
    pub fn in_memory(&self) -> bool {
        self.root == Path::new(":memory:")
    }

    pub fn catalog_err(&self, e: impl Into<redb::Error>) -> Error {
        Error::catalog(&self.catalog_path, e)
    }

    pub fn poison(&self, reason: &Error) {
        let mut p = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
        p.get_or_insert_with(|| reason.to_string());
    }

    pub fn check_poison(&self) -> Result<()> {
        match &*self.poisoned.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    pub fn snapshot_data(&self) -> Arc<SnapshotData> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn publish(&self, data: SnapshotData) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(data);
    }

    pub fn is_read_only(&self) -> bool {
        matches!(self.db, Db::ReadOnly(_))
    }

    pub fn begin_read(&self) -> Result<redb::ReadTransaction> {
        self.db.begin_read().map_err(|e| self.catalog_err(e))
    }

    pub fn database(&self) -> Result<&redb::Database> {
        match &self.db {
            Db::Writable(d) => Ok(d),
            Db::ReadOnly(_) => Err(Error::ReadOnly),
        }
    }

    /// The commit sequence number the catalog holds now.
    fn durable_commit_seq(&self) -> Result<u64> {
        let txn = self.begin_read()?;
        let meta = txn
            .open_table(store::META)
            .map_err(|e| self.catalog_err(e))?;
        store::read_u64(&meta, MetaKey::CommitSeq).map_err(|e| self.meta_err(e))
    }

    /// Loads the last commit of a catalog that a writer in another process may be changing.
    /// A segment the writer compacted away between the catalog read and the file's opening is
    /// not corruption when a newer commit exists (it lists the successor): load again. With
    /// no newer commit, a missing or damaged file is an error at once.
    fn load_following(&self, full_check: bool) -> Result<SnapshotData> {
        let mut attempt = 0;
        loop {
            let before = self.durable_commit_seq()?;
            match self.load_snapshot(None, None, true, full_check) {
                Err(e @ (Error::Io { .. } | Error::Corrupt { .. })) => {
                    if attempt >= 20 || self.durable_commit_seq()? == before {
                        return Err(e);
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Loads a snapshot of the last commit. Segment handles and tombstone masks are
    /// reused from `prev` where the catalog still lists them; `tail` is reused when given.
    pub fn load_snapshot(
        &self,
        prev: Option<&SnapshotData>,
        tail: Option<Arc<Tail>>,
        tombstones_changed: bool,
        full_check: bool,
    ) -> Result<SnapshotData> {
        let txn = self.begin_read()?;
        let err = |e: redb::Error| self.catalog_err(e);
        let meta = txn.open_table(store::META).map_err(|e| err(e.into()))?;
        let config = StoreConfig::read(&meta).map_err(|e| self.meta_err(e))?;
        let counters = Counters::read(&meta).map_err(|e| self.meta_err(e))?;
        let prev_adapters = prev.map(|p| (p.adapter.clone(), p.lang_adapters.clone()));
        let adapters =
            store::read_adapters(&meta, prev_adapters.as_ref()).map_err(|e| self.meta_err(e))?;
        drop(meta);
        let seg_table = txn.open_table(store::SEGMENTS).map_err(|e| err(e.into()))?;
        let mut records = BTreeMap::new();
        for row in seg_table.iter().map_err(|e| err(e.into()))? {
            let (id, value) = row.map_err(|e| err(e.into()))?;
            let rec = store::SegmentRecordCodec::decode(value.value()).map_err(|r| {
                Error::corrupt(
                    &self.catalog_path,
                    format!("segment row {}: {r}", id.value()),
                )
            })?;
            records.insert(id.value(), rec);
        }
        drop(seg_table);
        let mut handles = Vec::with_capacity(records.len());
        for (&id, rec) in &records {
            let reused = prev
                .and_then(|p| p.segment(id))
                .filter(|h| h.record == *rec);
            let handle = match reused {
                Some(h) => h,
                None => Arc::new(self.open_segment(id, rec, &config, full_check)?),
            };
            handles.push(handle);
        }
        let tail = match tail {
            Some(t) => t,
            None => Arc::new(
                Tail::load(&txn, config.dim).map_err(|r| Error::corrupt(&self.catalog_path, r))?,
            ),
        };
        SnapshotData::new(
            self,
            txn,
            config,
            counters,
            handles,
            tail,
            prev,
            tombstones_changed,
            adapters,
        )
    }

    fn open_segment(
        &self,
        id: u64,
        rec: &SegmentRecord,
        config: &StoreConfig,
        full: bool,
    ) -> Result<SegmentHandle> {
        let handle = SegmentHandle::open(
            &self.dir,
            id,
            rec,
            config.uuid,
            full,
            self.options.read_mode,
        )?;
        if handle.dim() != config.dim || handle.dtype() != config.dtype {
            return Err(Error::corrupt(
                &handle.path,
                "segment dimension or dtype differs from the index",
            ));
        }
        if handle.code_flags() != 0 {
            let expected = config.codebook.as_ref().map(|c| c.id);
            if expected != Some(handle.codebook_id())
                || config.codes.map(|c| c.flags()) != Some(handle.code_flags())
            {
                return Err(Error::corrupt(
                    &handle.path,
                    "segment codes were not made with the index's codebook",
                ));
            }
        }
        Ok(handle)
    }

    pub fn meta_err(&self, e: MetaError) -> Error {
        match e {
            MetaError::Storage(s) => self.catalog_err(s),
            MetaError::Bad(reason) => Error::corrupt(&self.catalog_path, reason),
            MetaError::NewerVersion(v) => Error::UnsupportedVersion {
                path: self.catalog_path.clone(),
                found: v,
                supported: store::FORMAT_VERSION,
            },
        }
    }

    /// Marks a segment dropped by a durable commit for unlinking (I4).
    pub fn retire(&self, handle: &Arc<SegmentHandle>) {
        handle.retire();
        let mut r = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        r.retain(|w| w.strong_count() > 0);
        r.push(Arc::downgrade(handle));
    }

    /// Ids of retired segments whose files are still in use by some snapshot.
    pub fn retired_in_use(&self) -> Vec<u64> {
        let r = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().filter_map(|w| w.upgrade()).map(|h| h.id).collect()
    }

    fn try_acquire_writer(&self) -> Result<()> {
        if matches!(self.db, Db::ReadOnly(_)) {
            return Err(Error::ReadOnly);
        }
        self.check_poison()?;
        self.writer_active
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(|_| Error::WriterBusy)
    }

    pub fn release_writer(&self) {
        self.writer_active.store(false, Ordering::Release);
    }

    fn set_clean(&self, clean: bool) -> Result<()> {
        store::in_catalog(&self.catalog_path, || {
            let db = self.database()?;
            let txn = db.begin_write()?;
            {
                let mut meta = txn.open_table(store::META)?;
                store::put(&mut meta, MetaKey::CleanShutdown, &[clean as u8])?;
                // Stores made by format version 1 lack the xQG tables; they are empty there.
                txn.open_table(store::AUGMENT)?;
                txn.open_table(store::BACKLOG)?;
            }
            Ok(txn.commit()?)
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if matches!(self.db, Db::Writable(_)) && self.check_poison().is_ok() {
            let _ = self.set_clean(true);
        }
    }
}

/// Whether the last writer closed the catalog cleanly; a redb file without xqdb's tables is
/// refused as foreign.
fn read_was_clean(db: &Db, catalog: &Path) -> Result<bool> {
    store::in_catalog(catalog, || {
        let txn = db.begin_read()?;
        let meta = txn.open_table(store::META).map_err(|e| match e {
            redb::TableError::TableDoesNotExist(_) => Error::Foreign {
                path: catalog.to_path_buf(),
                reason: "a redb file without xqdb's tables".into(),
            },
            e => Error::catalog(catalog, e),
        })?;
        Ok(store::read_clean(&meta)?)
    })
}

fn check_dim(options: &IndexBuilder) -> Result<()> {
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

/// Writes the settings and creates every table of a new catalog, in one commit.
fn init_catalog(db: &redb::Database, catalog: &Path, options: &IndexBuilder) -> Result<()> {
    store::in_catalog(catalog, || {
        let config = StoreConfig {
            format_version: store::FORMAT_VERSION,
            uuid: *uuid::Uuid::new_v4().as_bytes(),
            dim: options.dim.unwrap_or_default(),
            dtype: options.dtype,
            metric: options.metric,
            i8_scale: None,
            model_fingerprint: options.model_fingerprint.clone(),
            model_path: options
                .encoder
                .as_ref()
                .map(|e| e.bundle().dir().to_string_lossy().into_owned()),
            xqg: match &options.xqg {
                None => None,
                Some(p) => {
                    let mut p = p.clone();
                    p.validate()?;
                    if let Some(g) = &options.generator {
                        p.generator = Some(g.fingerprint().to_string());
                        p.generator_path = Some(g.dir().to_string_lossy().into_owned());
                    }
                    if p.deferred && p.generator.is_none() {
                        return Err(Error::InvalidArgument(
                            "deferred generation needs a generator".into(),
                        )
                        .into());
                    }
                    Some(p)
                }
            },
            codes: match options.codes {
                Some(c) if options.dtype == Dtype::I8 => {
                    return Err(Error::InvalidArgument(format!(
                        "codes ({}) need f32 or f16 rows to rescore with; this index stores i8",
                        c.names().join(",")
                    ))
                    .into())
                }
                Some(c) => {
                    if let Some(o) = c.default_oversample {
                        check_oversample(o as usize)?;
                    }
                    Some(c)
                }
                None => None,
            },
            codebook: None,
            lexical: match options.lexical {
                Some(l) => {
                    l.validate()?;
                    Some(l)
                }
                None => None,
            },
        };
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(store::META)?;
            config.write(&mut meta)?;
            Counters::default().write(&mut meta)?;
            store::put(&mut meta, MetaKey::CleanShutdown, &[0])?;
            txn.open_table(store::IDS)?;
            txn.open_table(store::PASSAGES)?;
            txn.open_multimap_table(store::LANGS)?;
            txn.open_table(store::TAIL)?;
            txn.open_table(store::SEGMENTS)?;
            txn.open_table(store::TOMBSTONES)?;
            txn.open_table(store::AUGMENT)?;
            txn.open_table(store::BACKLOG)?;
            if config.lexical.is_some() {
                txn.open_table(store::LEX_POSTINGS)?;
            }
        }
        Ok(txn.commit()?)
    })
}

/// An open index. Cheap to clone; `Send + Sync`; searches run on any thread against a
/// consistent committed snapshot while one [`Writer`] changes the index.
#[derive(Clone)]
pub struct Index {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// Catalog files are opened in redb's single-writer mode: one process writes, and any number
/// of processes may open the index read-only at the same time and follow its commits.
fn catalog_builder() -> redb::Builder {
    let mut b = redb::Database::builder();
    b.set_concurrency_mode(redb::ConcurrencyMode::SingleWriter);
    b
}

fn map_open_error(root: &Path, catalog: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked {
            path: root.to_path_buf(),
        },
        redb::DatabaseError::RepairAborted => Error::corrupt(
            catalog,
            "the catalog needs recovery after an unclean shutdown; open the index for writing once",
        ),
        redb::DatabaseError::UpgradeRequired(v) => Error::UnsupportedVersion {
            path: catalog.to_path_buf(),
            found: v as u32,
            supported: 3,
        },
        other => Error::catalog(catalog, other),
    }
}

impl Index {
    /// Options for opening or creating an index.
    pub fn builder() -> IndexBuilder {
        IndexBuilder::default()
    }

    /// Opens an existing index with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Index> {
        let root = path.as_ref();
        if !root.join(CATALOG_FILE).exists() {
            return Err(Error::NotAnIndex {
                path: root.to_path_buf(),
            });
        }
        Index::open_existing(root, IndexBuilder::default())
    }

    fn create_new(root: &Path, options: IndexBuilder) -> Result<Index> {
        check_dim(&options)?;
        let seg_dir = root.join(SEGMENTS_DIR);
        std::fs::create_dir_all(&seg_dir).map_err(|e| Error::io(&seg_dir, e))?;
        let catalog = root.join(CATALOG_FILE);
        let db = catalog_builder()
            .create(&catalog)
            .map_err(|e| map_open_error(root, &catalog, e))?;
        init_catalog(&db, &catalog, &options)?;
        segment::sync_dir(root)?;
        let dir: Arc<dyn SegmentDir> = Arc::new(FsDir { dir: seg_dir });
        Index::finish_open(root, catalog, dir, Db::Writable(db), options, true)
    }

    fn create_in_memory(options: IndexBuilder) -> Result<Index> {
        check_dim(&options)?;
        let root = PathBuf::from(":memory:");
        let catalog = root.join(CATALOG_FILE);
        let db = redb::Builder::new()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| Error::catalog(&catalog, e))?;
        init_catalog(&db, &catalog, &options)?;
        let dir: Arc<dyn SegmentDir> = Arc::new(MemDir::default());
        Index::finish_open(&root, catalog, dir, Db::Writable(db), options, true)
    }

    fn open_existing(root: &Path, options: IndexBuilder) -> Result<Index> {
        let catalog = root.join(CATALOG_FILE);
        let db = if options.read_only {
            Db::ReadOnly(
                catalog_builder()
                    .open_read_only(&catalog)
                    .map_err(|e| map_open_error(root, &catalog, e))?,
            )
        } else {
            Db::Writable(
                catalog_builder()
                    .open(&catalog)
                    .map_err(|e| map_open_error(root, &catalog, e))?,
            )
        };
        let was_clean = read_was_clean(&db, &catalog)?;
        let dir: Arc<dyn SegmentDir> = Arc::new(FsDir {
            dir: root.join(SEGMENTS_DIR),
        });
        Index::finish_open(root, catalog, dir, db, options, was_clean)
    }

    fn finish_open(
        root: &Path,
        catalog: PathBuf,
        dir: Arc<dyn SegmentDir>,
        db: Db,
        options: IndexBuilder,
        was_clean: bool,
    ) -> Result<Index> {
        let writable = matches!(db, Db::Writable(_));
        let full = match options.verify {
            VerifyPolicy::Always => true,
            VerifyPolicy::AfterUncleanShutdown => !was_clean,
            VerifyPolicy::Never => false,
        };
        let inner = Inner {
            root: root.to_path_buf(),
            catalog_path: catalog,
            dir,
            db,
            options,
            current: RwLock::new(Arc::new(SnapshotData::empty())),
            writer_active: AtomicBool::new(false),
            poisoned: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
            was_clean,
            encoder: OnceLock::new(),
            generator: OnceLock::new(),
            refresh_lock: Mutex::new(()),
        };
        if let Some(e) = &inner.options.encoder {
            let _ = inner.encoder.set(e.clone());
        }
        if let Some(g) = &inner.options.generator {
            let _ = inner.generator.set(g.clone());
        }
        if writable {
            inner.remove_orphans()?;
        }
        let snap = if writable {
            inner.load_snapshot(None, None, true, full)?
        } else {
            inner.load_following(full)?
        };
        inner.check_options(&snap)?;
        inner.publish(snap);
        if writable {
            inner.set_clean(false)?;
        }
        Ok(Index {
            inner: Arc::new(inner),
        })
    }

    /// A consistent view of the last commit; searches on it never see later changes. An
    /// index opened read-only while another process writes follows that writer: each call
    /// shows its latest commit (see [`Index::refresh`]).
    pub fn snapshot(&self) -> Snapshot {
        if self.inner.is_read_only() {
            // On failure the last loaded commit stays visible; `refresh` reports the error.
            let _ = self.refresh();
        }
        Snapshot::new(self.inner.clone(), self.inner.snapshot_data())
    }

    /// For an index opened read-only: loads the newest commit another process has made, if
    /// it differs from the one shown; returns whether it changed. A writable index is always
    /// current (returns `Ok(false)`).
    ///
    /// ```no_run
    /// # fn main() -> xqdb::Result<()> {
    /// // Another process holds the writer; this one only reads.
    /// let index = xqdb::Index::builder().read_only(true).open("my-index")?;
    /// loop {
    ///     if index.refresh()? {
    ///         println!("now at commit {}", index.snapshot().commit_seq());
    ///     }
    ///     std::thread::sleep(std::time::Duration::from_secs(1));
    /// }
    /// # }
    /// ```
    pub fn refresh(&self) -> Result<bool> {
        let inner = &*self.inner;
        if !inner.is_read_only() {
            return Ok(false);
        }
        let _guard = inner.refresh_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = inner.snapshot_data();
        let mut attempt = 0;
        loop {
            let txn = inner.begin_read()?;
            let meta = txn
                .open_table(store::META)
                .map_err(|e| inner.catalog_err(e))?;
            let seq = store::read_u64(&meta, MetaKey::CommitSeq).map_err(|e| inner.meta_err(e))?;
            drop(meta);
            drop(txn);
            if seq == current.counters.commit_seq {
                return Ok(false);
            }
            match inner.load_snapshot(Some(&current), None, true, false) {
                Ok(next) => {
                    inner.publish(next);
                    return Ok(true);
                }
                // The writer may have compacted away a segment of the commit just read
                // (compaction deletes replaced files): the next commit lists its successor.
                Err(Error::Io { .. } | Error::Corrupt { .. }) if attempt < 5 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2 << attempt));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The single writer of this index. A second call while one is alive returns
    /// [`Error::WriterBusy`]; a read-only index returns [`Error::ReadOnly`].
    pub fn writer(&self) -> Result<Writer> {
        self.inner.try_acquire_writer()?;
        Ok(Writer::new(self.inner.clone()))
    }

    /// Top `k` hits for `query` in the latest commit (see [`Snapshot::search`]).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<crate::Hit>> {
        self.snapshot().search(query, k)
    }

    /// Top hits for `query` with options (filters, threads) in the latest commit.
    pub fn search_with(&self, query: &[f32], options: &SearchOptions) -> Result<Vec<crate::Hit>> {
        self.snapshot().search_with(query, options)
    }

    /// Top hits for each query of a batch, scanning each segment once.
    pub fn search_batch(
        &self,
        queries: &[Vec<f32>],
        options: &SearchOptions,
    ) -> Result<Vec<Vec<crate::Hit>>> {
        self.snapshot().search_batch(queries, options)
    }

    /// Top `k` hits for a text query, encoded by the index's encoder.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use xqdb::{Encoder, Index, ModelBundle, Passage};
    /// # fn main() -> xqdb::Result<()> {
    /// let encoder = Arc::new(Encoder::from_dir(ModelBundle::default_dir())?);
    /// let index = Index::builder().encoder(encoder).create("my-index")?;
    /// let mut w = index.writer()?;
    /// w.insert_texts(vec![Passage::new("fi", "Helsinki is the capital of Finland.")], &|_| {})?;
    /// w.commit()?;
    /// let hits = index.search_text("ఫిన్లాండ్ రాజధాని ఏది?", 5)?;
    /// # Ok(()) }
    /// ```
    pub fn search_text(&self, query: &str, k: usize) -> Result<Vec<crate::Hit>> {
        self.search_text_with(query, &SearchOptions::new(k))
    }

    /// Top hits for a text query with options.
    pub fn search_text_with(
        &self,
        query: &str,
        options: &SearchOptions,
    ) -> Result<Vec<crate::Hit>> {
        let mut all = self.search_texts(&[query], options)?;
        Ok(all.pop().unwrap_or_default())
    }

    /// Top hits for each text query of a batch.
    pub fn search_texts<S: AsRef<str> + Sync>(
        &self,
        queries: &[S],
        options: &SearchOptions,
    ) -> Result<Vec<Vec<crate::Hit>>> {
        let snap = self.snapshot();
        if options.mode == crate::types::SearchMode::Lexical {
            return queries
                .iter()
                .map(|q| snap.search_lexical(q.as_ref(), options))
                .collect();
        }
        let lang = options.query_lang.as_deref();
        if options.mode == crate::types::SearchMode::Hybrid {
            options.fusion.validate()?;
            snap.lexical_settings().ok_or_else(|| {
                Error::InvalidArgument("a hybrid search needs a lexical index".into())
            })?;
            let vectors = self.encode_queries_in(&snap, queries, options.use_adapter, lang)?;
            let texts: Vec<&str> = queries.iter().map(|q| q.as_ref()).collect();
            return snap.search_hybrid_batch(&texts, &vectors, options);
        }
        let vectors = self.encode_queries_in(&snap, queries, options.use_adapter, lang)?;
        snap.search_batch(&vectors, options)
    }

    /// Encodes text queries as searches of `snap` do: with the encoder, then through the
    /// shared query adapter when `use_adapter` is set and one is stored.
    pub fn encode_queries_for<S: AsRef<str> + Sync>(
        &self,
        snap: &Snapshot,
        queries: &[S],
        use_adapter: bool,
    ) -> Result<Vec<Vec<f32>>> {
        self.encode_queries_in(snap, queries, use_adapter, None)
    }

    /// Like [`Index::encode_queries_for`] for queries in `lang`: they go through that
    /// language's adapter when one is stored, else the shared one
    /// ([`Snapshot::adapter_for`]).
    pub fn encode_queries_in<S: AsRef<str> + Sync>(
        &self,
        snap: &Snapshot,
        queries: &[S],
        use_adapter: bool,
        lang: Option<&str>,
    ) -> Result<Vec<Vec<f32>>> {
        let vectors = self.inner.encoder()?.encode_queries(queries)?;
        Ok(match snap.adapter_for(lang).filter(|_| use_adapter) {
            Some(a) => vectors.iter().map(|v| a.adapter.apply(v)).collect(),
            None => vectors,
        })
    }

    /// The encoder of this index (see [`IndexBuilder::encoder`]); loads the recorded
    /// bundle on first use. [`Error::NoEncoder`] for a vectors-only index.
    pub fn encoder(&self) -> Result<Arc<Encoder>> {
        self.inner.encoder()
    }

    /// The xQG generator of this index (see [`IndexBuilder::generator`]); loads the
    /// recorded folder on first use. [`Error::NoGenerator`] when the index has none.
    pub fn generator(&self) -> Result<Arc<Generator>> {
        self.inner.generator()
    }

    /// The passage stored under `id` in the latest commit.
    pub fn get(&self, id: &str) -> Result<Option<crate::Passage>> {
        self.snapshot().get(id)
    }

    /// Counts and sizes of the latest commit.
    pub fn stats(&self) -> Result<crate::Stats> {
        self.snapshot().stats()
    }

    /// Full check of the latest commit (see [`Snapshot::verify`]).
    pub fn verify(&self) -> Result<VerifyReport> {
        self.snapshot().verify()
    }

    /// Seals the tail and merges all segments (takes the writer; see [`Writer::compact`]).
    pub fn compact(&self) -> Result<bool> {
        self.writer()?.compact()
    }

    /// The index folder.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// Whether the previous writer closed the index cleanly.
    pub fn was_closed_cleanly(&self) -> bool {
        self.inner.was_clean
    }
}

impl Inner {
    fn check_options(&self, snap: &SnapshotData) -> Result<()> {
        let c = &snap.config;
        let mismatch = |field, stored: String, requested: String| Error::IncompatibleOptions {
            path: self.root.clone(),
            field,
            stored,
            requested,
        };
        if let Some(dim) = self.options.dim {
            if dim != c.dim {
                return Err(mismatch("dim", c.dim.to_string(), dim.to_string()));
            }
        }
        if let Some(want) = &self.options.model_fingerprint {
            if c.model_fingerprint.as_ref() != Some(want) {
                return Err(Error::ModelMismatch {
                    path: self.root.clone(),
                    stored: c
                        .model_fingerprint
                        .clone()
                        .unwrap_or_else(|| "none (vectors only)".into()),
                    given: want.clone(),
                });
            }
        }
        if let Some(g) = &self.options.generator {
            let stored = c.xqg.as_ref().and_then(|p| p.generator.clone());
            if stored.as_deref() != Some(g.fingerprint()) {
                return Err(Error::ModelMismatch {
                    path: self.root.clone(),
                    stored: stored.unwrap_or_else(|| "none (no generator recorded)".into()),
                    given: g.fingerprint().to_string(),
                });
            }
        }
        Ok(())
    }

    /// Passages waiting for deferred generation in the latest commit.
    pub fn backlog_len(&self) -> Result<u64> {
        store::in_catalog(&self.catalog_path, || {
            let snap = self.snapshot_data();
            match snap.txn().open_table(store::BACKLOG) {
                Ok(t) => Ok(redb::ReadableTableMetadata::len(&t)?),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// The generator: the one given at open, else the one recorded in the profile (loaded
    /// once, and refused if its fingerprint changed).
    pub fn generator(&self) -> Result<Arc<Generator>> {
        if let Some(g) = self.generator.get() {
            return Ok(g.clone());
        }
        let snap = self.snapshot_data();
        let Some(profile) = &snap.config.xqg else {
            return Err(Error::NoGenerator);
        };
        let (Some(path), Some(stored)) = (&profile.generator_path, &profile.generator) else {
            return Err(Error::NoGenerator);
        };
        let g = Generator::open(path, &GeneratorOptions::default())?;
        if g.fingerprint() != stored {
            return Err(Error::ModelMismatch {
                path: self.root.clone(),
                stored: stored.clone(),
                given: g.fingerprint().to_string(),
            });
        }
        Ok(self.generator.get_or_init(|| Arc::new(g)).clone())
    }

    /// The encoder: the one given at open, else the bundle recorded at creation (loaded
    /// once, and refused if its fingerprint changed).
    pub fn encoder(&self) -> Result<Arc<Encoder>> {
        if let Some(e) = self.encoder.get() {
            return Ok(e.clone());
        }
        let snap = self.snapshot_data();
        let (Some(path), Some(stored)) = (&snap.config.model_path, &snap.config.model_fingerprint)
        else {
            return Err(Error::NoEncoder);
        };
        let bundle = ModelBundle::open(path)?;
        if bundle.fingerprint() != stored {
            return Err(Error::ModelMismatch {
                path: self.root.clone(),
                stored: stored.clone(),
                given: bundle.fingerprint().to_string(),
            });
        }
        let encoder = Arc::new(Encoder::open(bundle, &EncoderOptions::default())?);
        Ok(self.encoder.get_or_init(|| encoder).clone())
    }

    /// Removes segment files the catalog does not list, and temp files (invariant I5).
    fn remove_orphans(&self) -> Result<()> {
        store::in_catalog(&self.catalog_path, || {
            let listed: std::collections::HashSet<u64> = {
                let txn = self.begin_read()?;
                let t = txn.open_table(store::SEGMENTS)?;
                let mut set = std::collections::HashSet::new();
                for row in t.iter()? {
                    set.insert(row?.0.value());
                }
                set
            };
            let mut removed = false;
            for name in self
                .dir
                .list()
                .map_err(|e| Error::io(self.dir.path(""), e))?
            {
                let orphan = name.ends_with(".seg.tmp")
                    || (name.ends_with(".seg")
                        && segment::parse_file_name(&name).is_none_or(|id| !listed.contains(&id)));
                if orphan {
                    self.dir
                        .remove(&name)
                        .map_err(|e| Error::io(self.dir.path(&name), e))?;
                    removed = true;
                }
            }
            if removed {
                self.dir
                    .sync()
                    .map_err(|e| Error::io(self.dir.path(""), e))?;
            }
            Ok(())
        })
    }
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Index>();
    is::<Snapshot>();
}
