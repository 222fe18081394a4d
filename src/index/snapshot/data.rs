//! What one commit made visible (`SnapshotData`): the read transaction, the segments with
//! their deleted rows, and the tail rows not yet sealed.

use crate::error::Result;
use crate::index::Inner;
use crate::scan::{mark_sorted, Bitmap};
use crate::segment::SegmentHandle;
use crate::store::{self, Counters, StoreConfig};
use crate::types::{Dtype, Metric};
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rows not yet sealed, mirrored in memory from the catalog's tail table, sorted by row id.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    pub rids: Vec<u64>,
    pub vectors: Vec<f32>,
}

impl Tail {
    pub fn load(txn: &ReadTransaction, dim: usize) -> std::result::Result<Tail, String> {
        let t = txn.open_table(store::TAIL).map_err(|e| e.to_string())?;
        let mut tail = Tail::default();
        for row in t.iter().map_err(|e| e.to_string())? {
            let (rid, bytes) = row.map_err(|e| e.to_string())?;
            let bytes = bytes.value();
            if bytes.len() != dim * 4 {
                return Err(format!(
                    "tail row {} has {} bytes, expected {}",
                    rid.value(),
                    bytes.len(),
                    dim * 4
                ));
            }
            tail.rids.push(rid.value());
            tail.vectors.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
            );
        }
        Ok(tail)
    }

    /// A copy without the `removed` rows and with `added` appended (ids above all others).
    pub fn with_changes(&self, dim: usize, removed: &[u64], added: &[(u64, Vec<f32>)]) -> Tail {
        let removed: std::collections::HashSet<u64> = removed.iter().copied().collect();
        let mut out = Tail::default();
        for (i, &rid) in self.rids.iter().enumerate() {
            if !removed.contains(&rid) {
                out.rids.push(rid);
                out.vectors
                    .extend_from_slice(&self.vectors[i * dim..(i + 1) * dim]);
            }
        }
        for (rid, v) in added {
            out.rids.push(*rid);
            out.vectors.extend_from_slice(v);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.rids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rids.is_empty()
    }
}

/// A segment as one snapshot sees it: the shared mapping plus this commit's deletions.
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    pub handle: Arc<SegmentHandle>,
    pub dead: Option<Arc<Bitmap>>,
    pub dead_count: usize,
}

/// Everything one commit made visible.
pub(crate) struct SnapshotData {
    pub(super) txn: Option<ReadTransaction>,
    pub config: StoreConfig,
    pub counters: Counters,
    pub segments: Vec<SegmentView>,
    pub tail: Arc<Tail>,
    pub live: u64,
    /// The shared query adapter applied to encoded text queries, if one is stored.
    pub adapter: Option<Arc<crate::adapter::StoredAdapter>>,
    /// The query adapters of query languages (format version 6).
    pub lang_adapters: BTreeMap<String, Arc<crate::adapter::StoredAdapter>>,
}

impl SnapshotData {
    /// A placeholder that is replaced before the index is handed out.
    pub fn empty() -> Self {
        SnapshotData {
            txn: None,
            config: StoreConfig {
                format_version: 0,
                uuid: [0; 16],
                dim: 1,
                dtype: Dtype::F32,
                metric: Metric::Dot,
                i8_scale: None,
                model_fingerprint: None,
                model_path: None,
                xqg: None,
                codes: None,
                codebook: None,
                lexical: None,
            },
            counters: Counters::default(),
            segments: Vec::new(),
            tail: Arc::new(Tail::default()),
            live: 0,
            adapter: None,
            lang_adapters: BTreeMap::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        inner: &Inner,
        txn: ReadTransaction,
        config: StoreConfig,
        counters: Counters,
        handles: Vec<Arc<SegmentHandle>>,
        tail: Arc<Tail>,
        prev: Option<&SnapshotData>,
        tombstones_changed: bool,
        (adapter, lang_adapters): (
            Option<Arc<crate::adapter::StoredAdapter>>,
            BTreeMap<String, Arc<crate::adapter::StoredAdapter>>,
        ),
    ) -> Result<Self> {
        store::in_catalog(&inner.catalog_path, || {
            let tombstones: Option<Vec<u64>> = if tombstones_changed || prev.is_none() {
                let t = txn.open_table(store::TOMBSTONES)?;
                let mut v = Vec::new();
                for row in t.iter()? {
                    v.push(row?.0.value());
                }
                Some(v)
            } else {
                None
            };
            let segments = handles
                .into_iter()
                .map(|handle| {
                    let (dead, dead_count) = match &tombstones {
                        Some(ts) => {
                            let r = &handle.record;
                            let lo = ts.partition_point(|&x| x < r.min_rid);
                            let hi = ts.partition_point(|&x| x <= r.max_rid);
                            let mut b = Bitmap::new(handle.rows());
                            mark_sorted(handle.rids(), &ts[lo..hi], &mut b);
                            let n = b.count();
                            ((n > 0).then(|| Arc::new(b)), n)
                        }
                        None => prev
                            .and_then(|p| p.segments.iter().find(|s| s.handle.id == handle.id))
                            .map_or((None, 0), |s| (s.dead.clone(), s.dead_count)),
                    };
                    SegmentView {
                        handle,
                        dead,
                        dead_count,
                    }
                })
                .collect();
            let live = txn.open_table(store::IDS)?.len()?;
            Ok(SnapshotData {
                txn: Some(txn),
                config,
                counters,
                segments,
                tail,
                live,
                adapter,
                lang_adapters,
            })
        })
    }

    pub fn segment(&self, id: u64) -> Option<Arc<SegmentHandle>> {
        self.segments
            .iter()
            .find(|s| s.handle.id == id)
            .map(|s| s.handle.clone())
    }

    pub fn txn(&self) -> &ReadTransaction {
        self.txn
            .as_ref()
            .expect("published snapshots hold a transaction")
    }

    pub fn tombstone_count(&self) -> usize {
        self.segments.iter().map(|s| s.dead_count).sum()
    }
}
