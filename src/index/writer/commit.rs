//! The commit protocol: one redb write transaction applies the buffered operations to the
//! catalog tables, writes new rows to the tail or (for large commits) straight to a durable
//! segment, advances the counters, and publishes the snapshot after it.

use super::stage::{Op, Writer};
use crate::error::{Error, Result};
use crate::segment::{
    decode_row, encode_rows, write_segment, Codebook, RowSource, SegmentCodes, SegmentRecord,
};
use crate::store::{self, Counters, MetaKey};
use crate::types::Dtype;
use redb::WriteTransaction;
use std::collections::HashSet;
use std::sync::Arc;

/// Rows of the first coded segment the codebook is fitted on (evenly spaced).
pub(super) const CODEBOOK_SAMPLE: usize = 65_536;

/// What a successful commit made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    /// Sequence number of the commit (visible to new snapshots).
    pub commit_seq: u64,
    /// Passages written (inserted or replaced).
    pub written: usize,
    /// Passages deleted.
    pub deleted: usize,
    /// Whether an automatic merge ran after the commit (see
    /// [`IndexBuilder::merge_fan_in`](crate::IndexBuilder::merge_fan_in)).
    pub merged: bool,
}

/// Records format version `to` in the catalog if it holds an older one.
pub(super) fn raise_version(
    meta: &mut redb::Table<&str, &[u8]>,
    current: u32,
    to: u32,
) -> std::result::Result<(), redb::StorageError> {
    if current < to {
        store::put(meta, MetaKey::FormatVersion, &to.to_le_bytes())?;
    }
    Ok(())
}

/// New rows (of a commit, or the sealed tail), in row-id order, as a segment source. f32
/// rows are written straight from the vectors; f16 and i8 rows are encoded once.
pub(super) struct NewRows<'a> {
    pub(super) rids: Vec<u64>,
    pub(super) vectors: Vec<&'a [f32]>,
    pub(super) encoded: Option<Vec<u8>>,
    pub(super) width: usize,
}

impl RowSource for NewRows<'_> {
    fn len(&self) -> usize {
        self.rids.len()
    }
    fn rid(&self, i: usize) -> u64 {
        self.rids[i]
    }
    fn row(&self, i: usize) -> &[u8] {
        match &self.encoded {
            Some(e) => &e[i * self.width..(i + 1) * self.width],
            None => bytemuck::cast_slice(self.vectors[i]),
        }
    }
}

/// The i8 scale for new rows: the stored one, or one chosen from `vectors` (largest
/// magnitude maps to 127) when the index has none yet.
pub(super) fn i8_scale_for(stored: Option<f32>, vectors: &[&[f32]]) -> f32 {
    stored.unwrap_or_else(|| {
        let max = vectors
            .iter()
            .flat_map(|v| v.iter())
            .fold(0f32, |m, x| m.max(x.abs()));
        if max > 0.0 {
            127.0 / max
        } else {
            1.0
        }
    })
}

impl Writer {
    /// Makes every buffered change durable and visible in one transaction. When it returns
    /// `Ok`, a crash cannot lose the changes. Afterwards the tail is sealed into a segment
    /// if it has grown past the index's `seal_rows`. With nothing buffered it writes nothing
    /// and returns the current commit.
    pub fn commit(&mut self) -> Result<CommitInfo> {
        self.inner.check_poison()?;
        if self.ops.is_empty() && self.files.is_empty() {
            return Ok(CommitInfo {
                commit_seq: self.inner.snapshot_data().counters.commit_seq,
                written: 0,
                deleted: 0,
                merged: false,
            });
        }
        let ops = std::mem::take(&mut self.ops);
        let files = std::mem::take(&mut self.files);
        self.pending.clear();
        // Holding the old snapshot would keep retired files and old catalog pages alive.
        self.ids = None;
        let result = self.apply(ops, files);
        if let Err(e) = &result {
            self.inner.poison(e);
        }
        let info = result?;
        if self.inner.snapshot_data().tail.len() >= self.inner.options.seal_rows {
            self.seal()?;
        }
        let merged = self.guard(|w| w.merge_tier())?;
        Ok(CommitInfo { merged, ..info })
    }

    pub(super) fn apply(
        &mut self,
        ops: Vec<Op>,
        files: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<CommitInfo> {
        let inner = &*self.inner;
        store::in_catalog(&inner.catalog_path, || {
            let snap = inner.snapshot_data();
            let mut config = snap.config.clone();
            let mut counters = snap.counters;
            let first_new_rid = counters.next_rid;
            let db = inner.database()?;
            let txn = db.begin_write()?;
            let mut new_rows: Vec<(u64, Vec<f32>)> = Vec::new();
            let mut dead_new: HashSet<u64> = HashSet::new();
            let mut tail_removed: Vec<u64> = Vec::new();
            let mut tombstoned = false;
            let (mut written, mut deleted) = (0, 0);
            {
                let mut ids = txn.open_table(store::IDS)?;
                let mut passages = txn.open_table(store::PASSAGES)?;
                let mut langs = txn.open_multimap_table(store::LANGS)?;
                let mut tail = txn.open_table(store::TAIL)?;
                let mut tombstones = txn.open_table(store::TOMBSTONES)?;
                let mut augment = txn.open_table(store::AUGMENT)?;
                let mut backlog = txn.open_table(store::BACKLOG)?;
                let mut lex = match config.lexical {
                    Some(settings) if !ops.is_empty() => Some(
                        crate::index::lexical::LexWriter::open(inner, &txn, settings)?,
                    ),
                    _ => None,
                };
                for op in ops {
                    let id = match &op {
                        Op::Put { passage, .. } => passage.id.clone(),
                        Op::Delete(id) => id.clone(),
                    };
                    let old = ids.remove(id.as_str())?.map(|g| g.value());
                    if let Some(rid) = old {
                        let old_aug = augment.remove(rid)?;
                        backlog.remove(rid)?;
                        let record = passages.remove(rid)?;
                        if let Some(lex) = &mut lex {
                            let record = record.as_ref().ok_or_else(|| {
                                Error::corrupt(
                                    &inner.catalog_path,
                                    format!("row {rid} has no passage"),
                                )
                            })?;
                            let aug = old_aug.as_ref().map(|a| a.value());
                            let (passage, queries) = crate::index::lexical::stored_fields(
                                inner,
                                rid,
                                record.value(),
                                aug,
                            )?;
                            lex.update(false, rid, &passage, &queries)?;
                        }
                        drop(old_aug);
                        if let Some(lang) = record
                            .as_ref()
                            .and_then(|r| store::decode_passage_meta(r.value()).ok())
                            .and_then(|p| p.lang)
                        {
                            langs.remove(lang.as_str(), rid)?;
                        }
                        // Where the old row's vector lives decides how it goes (I6: one
                        // vector per live passage). Row ids only grow, so a rid at or past
                        // `first_new_rid` was put by an earlier op of this same commit: its
                        // vector is still in `new_rows`, and is dropped from there. Otherwise
                        // it was committed before: in the tail (removed with it, in this
                        // transaction), or in a segment, which is immutable (I3), so the row
                        // is tombstoned until a merge leaves it out.
                        if rid >= first_new_rid {
                            dead_new.insert(rid);
                        } else if tail.remove(rid)?.is_some() {
                            tail_removed.push(rid);
                        } else {
                            tombstones.insert(rid, ())?;
                            tombstoned = true;
                        }
                    }
                    match op {
                        Op::Put {
                            passage,
                            meta_json,
                            vector,
                            aug,
                        } => {
                            let rid = counters.next_rid;
                            counters.next_rid += 1;
                            ids.insert(passage.id.as_str(), rid)?;
                            let record = store::encode_passage(&passage, meta_json.as_deref());
                            passages.insert(rid, record.as_slice())?;
                            if let Some(lang) = &passage.lang {
                                langs.insert(lang.as_str(), rid)?;
                            }
                            if let Some(lex) = &mut lex {
                                let queries = aug.as_ref().map_or(&[][..], |a| &a.queries[..]);
                                lex.update(true, rid, &passage, queries)?;
                            }
                            if let Some(a) = &aug {
                                augment.insert(rid, store::encode_augmentation(a).as_slice())?;
                                if a.pending {
                                    backlog.insert(rid, ())?;
                                }
                            }
                            new_rows.push((rid, vector));
                            written += 1;
                        }
                        Op::Delete(_) => deleted += old.is_some() as usize,
                    }
                }
                if !files.is_empty() {
                    let mut table = txn.open_table(store::FILES)?;
                    for (path, record) in &files {
                        match record {
                            Some(r) => table.insert(path.as_str(), r.as_slice()),
                            None => table.remove(path.as_str()),
                        }?;
                    }
                    let mut meta = txn.open_table(store::META)?;
                    raise_version(&mut meta, config.format_version, 4)?;
                    config.format_version = config.format_version.max(4);
                }
                if let Some(lex) = lex {
                    lex.finish(&txn)?;
                }
                new_rows.retain(|(rid, _)| !dead_new.contains(rid));
                if new_rows.len() < inner.options.direct_segment_rows {
                    for (rid, v) in &new_rows {
                        tail.insert(*rid, bytemuck::cast_slice::<f32, u8>(v))?;
                    }
                }
            }
            let direct = new_rows.len() >= inner.options.direct_segment_rows;
            if direct {
                let rids = new_rows.iter().map(|r| r.0).collect();
                let vectors = new_rows.iter().map(|r| r.1.as_slice()).collect();
                self.write_rows(&txn, &mut config, &mut counters, rids, vectors)?;
            }
            self.write_counters(&txn, &mut counters)?;
            txn.commit()?;
            let added: &[(u64, Vec<f32>)] = if direct { &[] } else { &new_rows };
            let tail = if tail_removed.is_empty() && added.is_empty() {
                snap.tail.clone()
            } else {
                Arc::new(snap.tail.with_changes(config.dim, &tail_removed, added))
            };
            let next = inner.load_snapshot(Some(&snap), Some(tail), tombstoned, false)?;
            inner.publish(next);
            Ok(CommitInfo {
                commit_seq: counters.commit_seq,
                written,
                deleted,
                merged: false,
            })
        })
    }

    /// Encodes rows into a new durable segment and lists it in `txn` (with the i8 scale
    /// when this is the index's first quantized segment).
    pub(super) fn write_rows(
        &self,
        txn: &WriteTransaction,
        config: &mut store::StoreConfig,
        counters: &mut Counters,
        rids: Vec<u64>,
        vectors: Vec<&[f32]>,
    ) -> Result<(u64, SegmentRecord)> {
        let inner = &*self.inner;
        store::in_catalog(&inner.catalog_path, || {
            let scale = if config.dtype == Dtype::I8 {
                i8_scale_for(config.i8_scale, &vectors)
            } else {
                1.0
            };
            if config.dtype == Dtype::I8 && config.i8_scale.is_none() {
                let mut meta = txn.open_table(store::META)?;
                config.i8_scale = Some(scale);
                store::put(&mut meta, MetaKey::I8Scale, &scale.to_le_bytes())?;
            }
            let encoded = (config.dtype != Dtype::F32).then(|| {
                vectors
                    .iter()
                    .flat_map(|v| encode_rows(v, config.dtype, scale))
                    .collect()
            });
            let source = NewRows {
                rids,
                vectors,
                encoded,
                width: config.dim * config.dtype.size(),
            };
            Ok(self.add_segment(txn, config, counters, &source)?)
        })
    }

    /// Writes `rows` as the next segment (durable before it returns, I2) and lists it in `txn`.
    pub(super) fn add_segment(
        &self,
        txn: &WriteTransaction,
        config: &mut store::StoreConfig,
        counters: &mut Counters,
        rows: &dyn RowSource,
    ) -> Result<(u64, SegmentRecord)> {
        let inner = &*self.inner;
        store::in_catalog(&self.inner.catalog_path, || {
            let id = counters.next_segment;
            counters.next_segment += 1;
            let dim = config.dim as u32;
            let codebook = self.codebook_for(txn, config, rows)?;
            let codes = config
                .codes
                .zip(codebook.as_deref())
                .map(|(c, codebook)| SegmentCodes {
                    flags: c.flags(),
                    codebook,
                });
            let rec = write_segment(&*inner.dir, config.uuid, id, dim, config.dtype, rows, codes)?;
            let mut segs = txn.open_table(store::SEGMENTS)?;
            segs.insert(id, store::SegmentRecordCodec::encode(&rec).as_slice())?;
            Ok((id, rec))
        })
    }

    /// The codebook for a new segment's codes: the index's, or (for its first segment with
    /// codes) one fitted on up to [`CODEBOOK_SAMPLE`] of `rows` and stored in `txn`.
    pub(super) fn codebook_for(
        &self,
        txn: &WriteTransaction,
        config: &mut store::StoreConfig,
        rows: &dyn RowSource,
    ) -> Result<Option<Arc<Codebook>>> {
        store::in_catalog(&self.inner.catalog_path, || {
            let Some(codes) = config.codes else {
                return Ok(None);
            };
            if let Some(cb) = &config.codebook {
                return Ok(Some(cb.clone()));
            }
            let n = rows.len().min(CODEBOOK_SAMPLE);
            let step = (rows.len() / n.max(1)).max(1);
            let mut sample = Vec::with_capacity(n * config.dim);
            let mut row = Vec::with_capacity(config.dim);
            for i in (0..rows.len()).step_by(step).take(n) {
                decode_row(rows.row(i), config.dtype, &mut row);
                sample.extend_from_slice(&row);
            }
            let cb = Arc::new(Codebook::fit(&sample, config.dim, codes.centred));
            let mut meta = txn.open_table(store::META)?;
            store::put(&mut meta, MetaKey::Codebook, &cb.encode())?;
            config.codebook = Some(cb.clone());
            Ok(Some(cb))
        })
    }

    /// Advances the commit sequence and stores the counters in `txn`.
    pub(super) fn write_counters(
        &self,
        txn: &WriteTransaction,
        counters: &mut Counters,
    ) -> Result<()> {
        store::in_catalog(&self.inner.catalog_path, || {
            counters.commit_seq += 1;
            let mut meta = txn.open_table(store::META)?;
            Ok(counters.write(&mut meta)?)
        })
    }

    pub(super) fn guard<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.inner.check_poison()?;
        let r = f(self);
        if let Err(e) = &r {
            self.inner.poison(e);
        }
        r
    }
}
