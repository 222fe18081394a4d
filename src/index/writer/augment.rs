//! Deferred generation: queries generated for passages in the backlog, a group of passages
//! per durable commit, within a budget.

use super::stage::{Op, Writer};
use crate::error::{Error, Result};
use crate::index::snapshot::prepare_vector;
use crate::index::Snapshot;
use crate::store;
use crate::types::Passage;
use crate::xqg::Augmentation;
use redb::ReadableTable;

/// Limits of one [`Writer::augment`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AugmentBudget {
    /// Stop after this many passages.
    pub max_passages: usize,
    /// Stop once this much time has passed (the passage in progress is finished).
    pub max_time: std::time::Duration,
    /// Passages per commit (each commit is durable progress).
    pub per_commit: usize,
}

impl Default for AugmentBudget {
    fn default() -> Self {
        AugmentBudget {
            max_passages: usize::MAX,
            max_time: std::time::Duration::MAX,
            per_commit: 8,
        }
    }
}

/// What [`Writer::augment`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AugmentReport {
    /// Passages that got their queries in this call.
    pub augmented: usize,
    /// Queries generated.
    pub queries: usize,
    /// Passages still waiting.
    pub remaining: u64,
}

impl Writer {
    /// Generates the queries of passages inserted for deferred generation, oldest first,
    /// and replaces their vectors with fused ones, within `budget`. Each group of
    /// `per_commit` passages is one durable commit, so an interrupted call (or a crash)
    /// keeps what it finished and the next call resumes with the rest. Searches see either
    /// a passage's old or new vector, never neither.
    pub fn augment(&mut self, budget: &AugmentBudget) -> Result<AugmentReport> {
        if !self.ops.is_empty() {
            self.commit()?;
        }
        let start = std::time::Instant::now();
        let mut report = AugmentReport::default();
        let generator = {
            let snap = self.inner.snapshot_data();
            match &snap.config.xqg {
                Some(p) if p.generator.is_some() => Some(self.inner.generator()?),
                _ => None,
            }
        };
        loop {
            let snap = Snapshot::new(self.inner.clone(), self.inner.snapshot_data());
            let rids: Vec<u64> = {
                let want = budget
                    .per_commit
                    .max(1)
                    .min(budget.max_passages - report.augmented);
                store::in_catalog(&self.inner.catalog_path, || {
                    let t = match snap.data().txn().open_table(store::BACKLOG) {
                        Ok(t) => t,
                        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                        Err(e) => return Err(e.into()),
                    };
                    let mut v = Vec::new();
                    for row in t.iter()? {
                        if v.len() >= want {
                            break;
                        }
                        v.push(row?.0.value());
                    }
                    Ok(v)
                })?
            };
            if rids.is_empty() {
                break;
            }
            let generator = generator.as_deref().ok_or(Error::NoGenerator)?;
            let profile = snap
                .data()
                .config
                .xqg
                .clone()
                .expect("a backlog needs a profile");
            let encoder = self.inner.encoder()?;
            let mut rows = Vec::with_capacity(rids.len());
            for &rid in &rids {
                let passage = snap.passage_by_rid(rid)?;
                let a = snap.augmentation_by_rid(rid)?.ok_or_else(|| {
                    Error::corrupt(
                        &self.inner.catalog_path,
                        format!("row {rid} is in the backlog without an xQG record"),
                    )
                })?;
                rows.push((passage, a));
            }
            // One generation call for the commit's passages (the joint schedule decodes
            // their rows together; each passage still gets its own seeded queries).
            let passages: Vec<&Passage> = rows.iter().map(|(p, _)| p).collect();
            let generated = crate::ingest::generate_queries_batch(generator, &profile, &passages)?;
            for ((passage, mut a), queries) in rows.into_iter().zip(generated) {
                let texts: Vec<&str> = queries.iter().map(|(_, t)| t.as_str()).collect();
                let vectors = encoder.encode_queries(&texts)?;
                report.queries += queries.len();
                a = Augmentation::new(
                    a.passage_vector,
                    queries,
                    &vectors,
                    profile.store_query_vectors,
                );
                let fused = a.fused(profile.alpha, profile.normalize);
                let meta_json = passage.validate()?;
                let vector = prepare_vector(&snap.data().config, &passage.id, &fused)?;
                self.ops.push(Op::Put {
                    passage,
                    meta_json,
                    vector,
                    aug: Some(Box::new(a)),
                });
                report.augmented += 1;
            }
            drop(snap);
            self.commit()?;
            if report.augmented >= budget.max_passages || start.elapsed() >= budget.max_time {
                break;
            }
        }
        report.remaining = self.inner.backlog_len()?;
        Ok(report)
    }
}
