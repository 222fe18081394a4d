//! The writer and its buffer: staging inserts, upserts and deletes (checked when staged,
//! durable only at commit), and the id lookups that decide whether an insert is a duplicate.

use crate::error::{Error, Result};
use crate::index::snapshot::{prepare_vector, SnapshotData};
use crate::index::Inner;
use crate::ingest::{IngestItem, Pipeline, Progress, Row, RowData, RowError, WriteMode};
use crate::store;
use crate::types::Passage;
use crate::xqg::Augmentation;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub(super) enum Op {
    Put {
        passage: Passage,
        meta_json: Option<String>,
        vector: Vec<f32>,
        aug: Option<Box<Augmentation>>,
    },
    Delete(String),
}

/// The one writer of an index. Changes are buffered and become durable and visible
/// together when [`Writer::commit`] returns `Ok`; dropping the writer discards them.
pub struct Writer {
    pub(super) inner: Arc<Inner>,
    pub(super) ops: Vec<Op>,
    /// For ids touched by buffered ops: whether the id exists after them.
    pub(super) pending: HashMap<String, bool>,
    /// Buffered file-table changes: path → new record, or `None` to remove it.
    pub(super) files: Vec<(String, Option<Vec<u8>>)>,
    /// The committed id table, opened once per snapshot.
    pub(super) ids: Option<(Arc<SnapshotData>, redb::ReadOnlyTable<&'static str, u64>)>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("pending_ops", &self.ops.len())
            .finish()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.inner.release_writer();
    }
}

pub(super) fn check_augmentation(
    config: &store::StoreConfig,
    id: &str,
    a: &Augmentation,
) -> Result<()> {
    let dim = config.dim;
    let vectors = std::iter::once(&a.passage_vector)
        .chain(std::iter::once(&a.query_sum))
        .chain(a.query_vectors.iter().flatten());
    for v in vectors {
        if v.len() != dim {
            return Err(Error::DimensionMismatch {
                id: id.to_string(),
                expected: dim,
                found: v.len(),
            });
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidVector {
                id: id.to_string(),
                reason: format!("component {i} is {}", v[i]),
            });
        }
    }
    if a.query_vectors
        .as_ref()
        .is_some_and(|q| q.len() != a.queries.len())
    {
        return Err(Error::InvalidArgument(format!(
            "{id}: {} query vectors for {} queries",
            a.query_vectors.as_ref().map_or(0, Vec::len),
            a.queries.len()
        )));
    }
    crate::ingest::check_queries(id, &a.queries)
}

impl Writer {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Writer {
            inner,
            ops: Vec::new(),
            pending: HashMap::new(),
            files: Vec::new(),
            ids: None,
        }
    }

    pub(super) fn exists(&mut self, id: &str) -> Result<bool> {
        if let Some(&present) = self.pending.get(id) {
            return Ok(present);
        }
        let snap = self.inner.snapshot_data();
        let stale = !matches!(&self.ids, Some((s, _)) if Arc::ptr_eq(s, &snap));
        if stale {
            let t = snap
                .txn()
                .open_table(store::IDS)
                .map_err(|e| self.inner.catalog_err(e))?;
            self.ids = Some((snap, t));
        }
        let (_, t) = self.ids.as_ref().expect("set above");
        Ok(t.get(id).map_err(|e| self.inner.catalog_err(e))?.is_some())
    }

    pub(super) fn stage(&mut self, passage: Passage, vector: &[f32], replace: bool) -> Result<()> {
        self.stage_with(passage, vector, None, replace)
    }

    pub(super) fn stage_with(
        &mut self,
        passage: Passage,
        vector: &[f32],
        aug: Option<Augmentation>,
        replace: bool,
    ) -> Result<()> {
        self.inner.check_poison()?;
        let meta_json = passage.validate()?;
        let config = self.inner.snapshot_data().config.clone();
        let vector = prepare_vector(&config, &passage.id, vector)?;
        if !replace && self.exists(&passage.id)? {
            return Err(Error::DuplicateId { id: passage.id });
        }
        self.pending.insert(passage.id.clone(), true);
        self.ops.push(Op::Put {
            passage,
            meta_json,
            vector,
            aug: aug.map(Box::new),
        });
        Ok(())
    }

    /// Buffers a new passage. Fails with [`Error::DuplicateId`] if the id exists (committed
    /// or buffered); nothing is buffered when any check fails.
    pub fn insert(&mut self, passage: Passage, vector: &[f32]) -> Result<()> {
        self.stage(passage, vector, false)
    }

    /// Buffers a passage that replaces any passage with the same id.
    ///
    /// ```
    /// use xqdb::{Index, Passage};
    /// # fn main() -> xqdb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let index = Index::builder().dim(2).create(dir.path())?;
    /// let mut w = index.writer()?;
    /// w.insert(Passage::new("p", "first"), &[1.0, 0.0])?;
    /// assert!(w.insert(Passage::new("p", "again"), &[1.0, 0.0]).is_err()); // DuplicateId
    /// w.upsert(Passage::new("p", "second"), &[0.0, 1.0])?;
    /// w.commit()?;
    /// assert_eq!(index.get("p")?.unwrap().text, "second");
    /// # Ok(()) }
    /// ```
    pub fn upsert(&mut self, passage: Passage, vector: &[f32]) -> Result<()> {
        self.stage(passage, vector, true)
    }

    /// Encodes the passages with the index's encoder and buffers them as [`Writer::insert`]
    /// would. With an xQG profile, each passage first gets its queries generated (or is
    /// queued for deferred generation) and its stored vector is the fused one. Every
    /// passage is checked before anything runs; on error nothing of the call is buffered,
    /// and a passage's failure names its id. `progress` sees passages and queries so far.
    pub fn insert_texts(
        &mut self,
        passages: Vec<Passage>,
        progress: &dyn Fn(&Progress),
    ) -> Result<()> {
        self.stage_items(
            passages.into_iter().map(Into::into).collect(),
            false,
            progress,
        )
    }

    /// Like [`Writer::insert_texts`], replacing passages whose id exists.
    pub fn upsert_texts(
        &mut self,
        passages: Vec<Passage>,
        progress: &dyn Fn(&Progress),
    ) -> Result<()> {
        self.stage_items(
            passages.into_iter().map(Into::into).collect(),
            true,
            progress,
        )
    }

    /// Like [`Writer::insert_texts`] for passages that may bring queries generated
    /// elsewhere (e.g. a published xQG-augmented corpus): those are encoded and fused
    /// without running a generator. Needs an index with an xQG profile.
    pub fn insert_items(
        &mut self,
        items: Vec<IngestItem>,
        progress: &dyn Fn(&Progress),
    ) -> Result<()> {
        self.stage_items(items, false, progress)
    }

    /// Like [`Writer::insert_items`], replacing passages whose id exists.
    pub fn upsert_items(
        &mut self,
        items: Vec<IngestItem>,
        progress: &dyn Fn(&Progress),
    ) -> Result<()> {
        self.stage_items(items, true, progress)
    }

    /// Buffers a passage with vectors computed elsewhere: E(passage), its queries and their
    /// vectors. The stored vector is fused with the index's α. Needs an xQG profile.
    pub fn insert_augmented(&mut self, passage: Passage, augmentation: Augmentation) -> Result<()> {
        self.stage_augmented(passage, augmentation, false)
    }

    /// Like [`Writer::insert_augmented`], replacing a passage with the same id.
    pub fn upsert_augmented(&mut self, passage: Passage, augmentation: Augmentation) -> Result<()> {
        self.stage_augmented(passage, augmentation, true)
    }

    pub(super) fn stage_augmented(
        &mut self,
        passage: Passage,
        a: Augmentation,
        replace: bool,
    ) -> Result<()> {
        let config = self.inner.snapshot_data().config.clone();
        let profile = config.xqg.as_ref().ok_or_else(|| {
            Error::InvalidArgument("the index has no xQG profile; create it with one".into())
        })?;
        let id = passage.id.clone();
        check_augmentation(&config, &id, &a)?;
        let fused = a.fused(profile.alpha, profile.normalize);
        self.stage_with(passage, &fused, Some(a), replace)
    }

    pub(super) fn stage_items(
        &mut self,
        items: Vec<IngestItem>,
        replace: bool,
        progress: &dyn Fn(&Progress),
    ) -> Result<()> {
        self.inner.check_poison()?;
        let mut seen = HashSet::new();
        for i in &items {
            let p = &i.passage;
            p.validate()?;
            if !seen.insert(p.id.as_str()) || (!replace && self.exists(&p.id)?) {
                return Err(Error::DuplicateId { id: p.id.clone() });
            }
        }
        let encoder = self.inner.encoder()?;
        let config = self.inner.snapshot_data().config.clone();
        let generator = match &config.xqg {
            Some(p) if !p.deferred && p.generator.is_some() => {
                let needs = items.iter().any(|i| i.queries.is_none());
                if needs {
                    Some(self.inner.generator()?)
                } else {
                    None
                }
            }
            _ => None,
        };
        let done = Pipeline {
            encoder: &encoder,
            profile: config.xqg.as_ref(),
            generator: generator.as_deref(),
            progress,
        }
        .run(items)?;
        let (ops, pending) = (self.ops.len(), self.pending.clone());
        for d in done {
            if let Err(e) = self.stage_with(d.passage, &d.vector, d.augmentation, replace) {
                self.ops.truncate(ops);
                self.pending = pending;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Buffers rows of every kind in one call, the way the CLI's `add`, the HTTP server and
    /// Parquet/Arrow import do: rows with a vector or an xQG record are checked and staged in
    /// order; the others are then encoded (and augmented per the index's profile) together,
    /// with `progress` reporting on them. On error nothing of the call stays buffered and the
    /// error names the failing row's position in `rows`.
    ///
    /// ```
    /// use xqdb::ingest::{Row, WriteMode};
    /// use xqdb::{Index, Passage};
    /// # fn main() -> xqdb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let index = Index::builder().dim(2).create(dir.path())?;
    /// let mut w = index.writer()?;
    /// let rows = vec![
    ///     Row::with_vector(Passage::new("a", "first"), vec![1.0, 0.0]),
    ///     Row::with_vector(Passage::new("a", "again"), vec![0.0, 1.0]),
    /// ];
    /// let e = w.stage_rows(rows, WriteMode::Insert, &|_| {}).unwrap_err();
    /// assert_eq!(e.row, Some(1)); // the duplicate; row 0 was not kept either
    /// assert_eq!(w.pending(), 0);
    /// # Ok(()) }
    /// ```
    pub fn stage_rows(
        &mut self,
        rows: Vec<Row>,
        mode: WriteMode,
        progress: &dyn Fn(&Progress),
    ) -> std::result::Result<(), RowError> {
        let replace = mode == WriteMode::Upsert;
        let (ops, pending) = (self.ops.len(), self.pending.clone());
        let result = self.stage_rows_inner(rows, replace, progress);
        if result.is_err() {
            self.ops.truncate(ops);
            self.pending = pending;
        }
        result
    }

    pub(super) fn stage_rows_inner(
        &mut self,
        rows: Vec<Row>,
        replace: bool,
        progress: &dyn Fn(&Progress),
    ) -> std::result::Result<(), RowError> {
        let at = |row: usize| {
            move |error: Error| RowError {
                row: Some(row),
                error,
            }
        };
        let mut items = Vec::new();
        let mut item_rows = Vec::new();
        for (i, Row { passage, data }) in rows.into_iter().enumerate() {
            match data {
                RowData::Vector(v) => self.stage(passage, &v, replace).map_err(at(i))?,
                RowData::Augmented(a) => {
                    self.stage_augmented(passage, a, replace).map_err(at(i))?
                }
                RowData::Text | RowData::Queries(_) => {
                    let queries = match data {
                        RowData::Queries(q) => Some(q),
                        _ => None,
                    };
                    item_rows.push((passage.id.clone(), i));
                    items.push(IngestItem { passage, queries });
                }
            }
        }
        if items.is_empty() {
            return Ok(());
        }
        self.stage_items(items, replace, progress).map_err(|error| {
            let rows_of_id: Vec<usize> = error.passage_id().map_or_else(Vec::new, |id| {
                item_rows
                    .iter()
                    .filter(|(rid, _)| rid == id)
                    .map(|&(_, r)| r)
                    .collect()
            });
            // An id given twice in the call is reported at its second row (the duplicate);
            // any other error at the row that holds the id.
            let row = match (&error, rows_of_id.as_slice()) {
                (Error::DuplicateId { .. }, [_, second, ..]) => Some(*second),
                (_, [first, ..]) => Some(*first),
                _ => None,
            };
            RowError { row, error }
        })
    }

    /// Buffers the deletion of `id`; returns whether it existed.
    ///
    /// ```
    /// use xqdb::{Index, Passage};
    /// # fn main() -> xqdb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let index = Index::builder().dim(2).create(dir.path())?;
    /// let mut w = index.writer()?;
    /// w.insert(Passage::new("p", "text"), &[1.0, 0.0])?;
    /// w.commit()?;
    /// assert!(w.delete("p")?);
    /// assert!(!w.delete("missing")?);
    /// w.commit()?;
    /// w.compact()?; // drops the deleted row from the segments
    /// assert!(index.get("p")?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn delete(&mut self, id: &str) -> Result<bool> {
        self.inner.check_poison()?;
        if !self.exists(id)? {
            return Ok(false);
        }
        self.pending.insert(id.to_string(), false);
        self.ops.push(Op::Delete(id.to_string()));
        Ok(true)
    }

    /// Number of buffered changes.
    pub fn pending(&self) -> usize {
        self.ops.len() + self.files.len()
    }

    /// Buffers a change to the synced-file table, committed with the passages buffered
    /// beside it (see `xqdb::documents`).
    #[cfg_attr(not(feature = "documents"), allow(dead_code))]
    pub(crate) fn stage_file(&mut self, path: &str, record: Option<Vec<u8>>) {
        self.files.push((path.to_string(), record));
    }

    /// Discards buffered changes.
    pub fn rollback(&mut self) {
        self.ops.clear();
        self.pending.clear();
        self.files.clear();
    }
}
