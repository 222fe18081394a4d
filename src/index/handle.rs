//! `Index`: the handle an application holds — snapshots, the writer, searches by vector and
//! by text, and the index-wide operations (stats, verify, compact).

use super::builder::IndexBuilder;
use super::inner::Inner;
use super::{SearchOptions, Snapshot, VerifyReport, Writer};
use crate::error::{Error, Result};
use crate::model::{Encoder, Generator};
use crate::store::{self, MetaKey};
use std::path::Path;
use std::sync::Arc;

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

impl Index {
    /// Options for opening or creating an index.
    pub fn builder() -> IndexBuilder {
        IndexBuilder::default()
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
        options.check()?;
        for query in queries {
            crate::types::check_query_text(query.as_ref())?;
        }
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

    /// Refuses rows this index's encoder would read only in part
    /// ([`check_fits`](crate::ingest::check_fits)). The encoder is loaded only when some row is
    /// to be encoded (no vector, no xQG record); a missing one is an error of no row.
    pub fn check_fits(
        &self,
        rows: &[crate::ingest::Row],
    ) -> std::result::Result<(), crate::ingest::RowError> {
        use crate::ingest::{RowData, RowError};
        if !rows
            .iter()
            .any(|r| matches!(r.data, RowData::Text | RowData::Queries(_)))
        {
            return Ok(());
        }
        let encoder = self
            .encoder()
            .map_err(|error| RowError { row: None, error })?;
        crate::ingest::check_fits(&encoder, rows)
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

#[allow(dead_code)]
pub(super) fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Index>();
    is::<Snapshot>();
}
