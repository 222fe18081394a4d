//! What every handle of one open index shares (`Inner`): the catalog, the published
//! snapshot, the segment handles and their retirement, the writer lock and the poison flag,
//! and the models loaded on first use.

use super::builder::IndexBuilder;
use crate::error::{Error, Result};
use crate::index::snapshot::{SnapshotData, Tail};
use crate::model::{Encoder, EncoderOptions, Generator, GeneratorOptions, ModelBundle};
use crate::segment::{SegmentDir, SegmentHandle, SegmentRecord};
use crate::store::{self, Counters, MetaError, MetaKey, StoreConfig};
use redb::{ReadableDatabase, ReadableTable};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

pub(crate) enum Db {
    Writable(redb::Database),
    ReadOnly(redb::ReadOnlyDatabase),
}

impl Db {
    pub(super) fn begin_read(
        &self,
    ) -> std::result::Result<redb::ReadTransaction, redb::TransactionError> {
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
    pub(super) writer_active: AtomicBool,
    pub(super) poisoned: Mutex<Option<String>>,
    /// Segments a commit dropped whose files stay until their last snapshot goes.
    pub(super) retired: Mutex<Vec<std::sync::Weak<SegmentHandle>>>,
    /// Whether the previous writer closed the index cleanly (as found at open).
    pub was_clean: bool,
    /// The text encoder: given at open, or loaded on first use from the recorded bundle.
    pub(super) encoder: OnceLock<Arc<Encoder>>,
    /// The query generator: given at open, or loaded on first use from the profile.
    pub(super) generator: OnceLock<Arc<Generator>>,
    /// Serialises reloads of a read-only index that follows another process's commits.
    pub(super) refresh_lock: Mutex<()>,
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
    pub(super) fn durable_commit_seq(&self) -> Result<u64> {
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
    pub(super) fn load_following(&self, full_check: bool) -> Result<SnapshotData> {
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

    pub(super) fn open_segment(
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

    pub(super) fn try_acquire_writer(&self) -> Result<()> {
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

    pub(super) fn set_clean(&self, clean: bool) -> Result<()> {
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

impl Inner {
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
}
