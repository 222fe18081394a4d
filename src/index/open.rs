//! Opening and creating an index: the catalog made or checked, the options compared with
//! what the index recorded, segments mapped and checked, orphan files removed.

use super::builder::{check_dim, check_oversample, IndexBuilder, VerifyPolicy};
use super::handle::Index;
use super::inner::{Db, Inner};
use crate::error::{Error, Result};
use crate::index::snapshot::SnapshotData;
use crate::segment::{self, FsDir, MemDir, SegmentDir, SEGMENTS_DIR};
use crate::store::{self, Counters, MetaKey, StoreConfig, CATALOG_FILE};
use crate::types::Dtype;
use redb::ReadableTable;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// Whether the last writer closed the catalog cleanly; a redb file without xqdb's tables is
/// refused as foreign.
pub(super) fn read_was_clean(db: &Db, catalog: &Path) -> Result<bool> {
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

/// Writes the settings and creates every table of a new catalog, in one commit.
pub(super) fn init_catalog(
    db: &redb::Database,
    catalog: &Path,
    options: &IndexBuilder,
) -> Result<()> {
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

/// Catalog files are opened in redb's single-writer mode: one process writes, and any number
/// of processes may open the index read-only at the same time and follow its commits.
pub(super) fn catalog_builder() -> redb::Builder {
    let mut b = redb::Database::builder();
    b.set_concurrency_mode(redb::ConcurrencyMode::SingleWriter);
    b
}

/// Opens the catalog read-only. A catalog left by an unclean shutdown (a killed or
/// interrupted writer) needs redb's recovery, which only a writable open runs: when no other
/// process holds the index, this open runs it (a writable open, closed at once), then opens
/// read-only as asked. Recovery replays nothing and loses nothing: it rebuilds redb's
/// allocator state from the last durable commit.
fn open_read_only(root: &Path, catalog: &Path) -> Result<redb::ReadOnlyDatabase> {
    match catalog_builder().open_read_only(catalog) {
        Err(redb::DatabaseError::RepairAborted) => {}
        other => return other.map_err(|e| map_open_error(root, catalog, e)),
    }
    let needs = |reason: String| Error::NeedsRecovery {
        path: root.to_path_buf(),
        reason,
    };
    match catalog_builder().open(catalog) {
        Ok(db) => drop(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(needs(
                "another process holds it open for writing; retry once it has finished".into(),
            ))
        }
        Err(e) => return Err(needs(e.to_string())),
    }
    catalog_builder()
        .open_read_only(catalog)
        .map_err(|e| map_open_error(root, catalog, e))
}

pub(super) fn map_open_error(root: &Path, catalog: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked {
            path: root.to_path_buf(),
        },
        redb::DatabaseError::RepairAborted => Error::NeedsRecovery {
            path: root.to_path_buf(),
            reason: "a writable open was refused".into(),
        },
        redb::DatabaseError::UpgradeRequired(v) => Error::UnsupportedVersion {
            path: catalog.to_path_buf(),
            found: v as u32,
            supported: 3,
        },
        other => Error::catalog(catalog, other),
    }
}

impl Index {
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

    pub(super) fn create_new(root: &Path, options: IndexBuilder) -> Result<Index> {
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

    pub(super) fn create_in_memory(options: IndexBuilder) -> Result<Index> {
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

    pub(super) fn open_existing(root: &Path, options: IndexBuilder) -> Result<Index> {
        let catalog = root.join(CATALOG_FILE);
        let db = if options.read_only {
            Db::ReadOnly(open_read_only(root, &catalog)?)
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

    pub(super) fn finish_open(
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
}

impl Inner {
    pub(super) fn check_options(&self, snap: &SnapshotData) -> Result<()> {
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

    /// Removes segment files the catalog does not list, and temp files (invariant I5).
    pub(super) fn remove_orphans(&self) -> Result<()> {
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
