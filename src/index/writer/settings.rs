//! Commits that change settings rather than rows: query adapters and the lexical index.

use super::commit::raise_version;
use super::stage::Writer;
use crate::error::{Error, Result};
use crate::index::snapshot::SnapshotData;
use crate::index::Inner;
use crate::store::{self, CatalogResult};
use redb::{ReadableTable, WriteTransaction};

impl Writer {
    /// Stores a query adapter in one durable commit (after committing the buffered changes),
    /// replacing the one in its slot:
    /// `info.lang` names the query language it serves (`None`: the shared adapter, used by
    /// queries whose language has none of its own). From then on text queries are encoded,
    /// multiplied by W and searched; passage vectors are not touched. A store of an older
    /// catalog version is marked as version 3 (shared) or 6 (per language) in the same
    /// commit, so that builds that would ignore the adapter refuse it.
    ///
    /// ```
    /// use xqdb::distill::{Adapter, AdapterInfo};
    /// # fn main() -> xqdb::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let index = xqdb::Index::builder().dim(2).create(dir.path())?;
    /// let w = Adapter::from_matrix(2, vec![0.0, 1.0, 1.0, 0.0])?; // swaps the two axes
    /// index.writer()?.set_adapter(&w, &AdapterInfo::default())?;
    /// assert_eq!(index.snapshot().adapter().unwrap().adapter.apply(&[1.0, 0.0]), vec![0.0, 1.0]);
    /// assert!(index.writer()?.drop_adapter()?);
    /// # Ok(()) }
    /// ```
    pub fn set_adapter(
        &mut self,
        adapter: &crate::adapter::Adapter,
        info: &crate::adapter::AdapterInfo,
    ) -> Result<()> {
        let record = self.adapter_record(adapter, info)?;
        self.write_adapters(false, &[(info.lang.as_deref(), Some(&record))])
    }

    /// Replaces every stored query adapter (shared and per language) with `adapters` in one
    /// durable commit; each one's `info.lang` names its slot, and no slot may repeat. An
    /// empty list drops them all.
    pub fn replace_adapters(
        &mut self,
        adapters: &[(crate::adapter::Adapter, crate::adapter::AdapterInfo)],
    ) -> Result<()> {
        let mut records = Vec::with_capacity(adapters.len());
        for (i, (a, info)) in adapters.iter().enumerate() {
            if adapters[..i].iter().any(|(_, o)| o.lang == info.lang) {
                return Err(Error::InvalidArgument(format!(
                    "two query adapters for {}",
                    info.lang
                        .as_deref()
                        .map_or("the shared slot".to_string(), |l| format!("language {l:?}"))
                )));
            }
            records.push((info.lang.as_deref(), self.adapter_record(a, info)?));
        }
        let ops: Vec<(Option<&str>, Option<&[u8]>)> = records
            .iter()
            .map(|(l, r)| (*l, Some(r.as_slice())))
            .collect();
        self.write_adapters(true, &ops)
    }

    pub(super) fn adapter_record(
        &self,
        adapter: &crate::adapter::Adapter,
        info: &crate::adapter::AdapterInfo,
    ) -> Result<Vec<u8>> {
        let dim = self.inner.snapshot_data().config.dim;
        if adapter.dim() != dim {
            return Err(Error::DimensionMismatch {
                id: "query adapter".into(),
                expected: dim,
                found: adapter.dim(),
            });
        }
        if let Some(l) = &info.lang {
            let ok = !l.is_empty()
                && l.len() <= 32
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(Error::InvalidArgument(format!(
                    "a query adapter's language must be 1 to 32 ASCII letters, digits, '-' or \
                     '_', not {l:?}"
                )));
            }
        }
        Ok(adapter.to_bytes(info))
    }

    /// Removes every stored query adapter, shared and per language (searches go back to
    /// the plain encoder); returns whether there was one. Like every adapter change, it
    /// commits the buffered changes first.
    pub fn drop_adapter(&mut self) -> Result<bool> {
        if !self.ops.is_empty() {
            self.commit()?;
        }
        let snap = self.inner.snapshot_data();
        if snap.adapter.is_none() && snap.lang_adapters.is_empty() {
            return Ok(false);
        }
        self.write_adapters(true, &[])?;
        Ok(true)
    }

    /// Adds a lexical (keyword) index to an index that has none, indexing every stored
    /// passage (with its generated queries) in one commit; buffered changes are committed
    /// first. Returns false (and changes nothing) when the index already keeps one.
    pub fn enable_lexical(&mut self, settings: crate::types::LexicalSettings) -> Result<bool> {
        settings.validate()?;
        if !self.ops.is_empty() {
            self.commit()?;
        }
        if self.inner.snapshot_data().config.lexical.is_some() {
            return Ok(false);
        }
        self.settings_commit(|inner, txn, snap| {
            crate::index::lexical::write_settings(inner, txn, &settings)?;
            {
                let mut meta = txn.open_table(store::META)?;
                raise_version(&mut meta, snap.config.format_version, 7)?;
            }
            let mut lex = crate::index::lexical::LexWriter::open(inner, txn, settings)?;
            let passages = txn.open_table(store::PASSAGES)?;
            let augment = txn.open_table(store::AUGMENT)?;
            for row in passages.iter()? {
                let (rid, record) = row?;
                let rid = rid.value();
                let aug = augment.get(rid)?;
                let (passage, queries) = crate::index::lexical::stored_fields(
                    inner,
                    rid,
                    record.value(),
                    aug.as_ref().map(|a| a.value()),
                )?;
                lex.update(true, rid, &passage, &queries)?;
            }
            Ok(lex.finish(txn)?)
        })?;
        Ok(true)
    }

    /// One commit that changes settings rather than rows: buffered changes are committed
    /// first, `change` fills the transaction, the counters advance, and the snapshot after
    /// it is published.
    pub(super) fn settings_commit(
        &mut self,
        change: impl FnOnce(&Inner, &WriteTransaction, &SnapshotData) -> CatalogResult<()>,
    ) -> Result<()> {
        if !self.ops.is_empty() {
            self.commit()?;
        }
        self.guard(|w| {
            let inner = &*w.inner;
            store::in_catalog(&inner.catalog_path, || {
                let snap = inner.snapshot_data();
                let mut counters = snap.counters;
                let db = inner.database()?;
                let txn = db.begin_write()?;
                change(inner, &txn, &snap)?;
                w.write_counters(&txn, &mut counters)?;
                txn.commit()?;
                let next =
                    inner.load_snapshot(Some(&snap), Some(snap.tail.clone()), false, false)?;
                inner.publish(next);
                Ok(())
            })
        })
    }

    /// One commit: with `clear`, every stored adapter is removed first; then each (slot,
    /// record) is written (`None` removes the slot).
    pub(super) fn write_adapters(
        &mut self,
        clear: bool,
        ops: &[(Option<&str>, Option<&[u8]>)],
    ) -> Result<()> {
        self.settings_commit(|_inner, txn, snap| {
            let mut meta = txn.open_table(store::META)?;
            if clear {
                let langs = snap.lang_adapters.keys().map(|l| Some(l.as_str()));
                for lang in std::iter::once(None).chain(langs) {
                    store::put_adapter(&mut meta, lang, None)?;
                }
            }
            for (lang, record) in ops {
                store::put_adapter(&mut meta, *lang, *record)?;
            }
            let needs = ops
                .iter()
                .filter(|(_, r)| r.is_some())
                .map(|(l, _)| if l.is_some() { 6 } else { 3 })
                .max();
            if let Some(v) = needs {
                raise_version(&mut meta, snap.config.format_version, v)?;
            }
            Ok(())
        })
    }
}
