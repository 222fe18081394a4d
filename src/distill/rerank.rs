//! Teacher reranking: the dense top m rescored by a [`Teacher`] and interpolated.

use super::{Candidate, Teacher, TeacherQuery};
use crate::error::{Error, Result};
use crate::index::{Index, SearchOptions, Snapshot};
use crate::types::Hit;

/// How to rerank a dense search with a teacher.
#[derive(Clone, Copy)]
pub struct Rerank<'a> {
    /// The teacher that rescores the candidates.
    pub teacher: &'a dyn Teacher,
    /// How many dense hits (m) the teacher rescores; at least k are taken.
    pub depth: usize,
    /// Interpolation weight w of the teacher in [0, 1]: both score lists are standardised
    /// over the m candidates (z-scores) and the final score is (1 − w)·z_dense + w·z_teacher.
    pub weight: f32,
}

impl std::fmt::Debug for Rerank<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rerank")
            .field("teacher", &self.teacher.name())
            .field("depth", &self.depth)
            .field("weight", &self.weight)
            .finish()
    }
}

/// z-scores; all zero when the scores do not vary.
fn standardise(x: &[f32]) -> Vec<f64> {
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let sd = var.sqrt();
    x.iter()
        .map(|&v| {
            if sd > 0.0 {
                (v as f64 - mean) / sd
            } else {
                0.0
            }
        })
        .collect()
}

impl Snapshot {
    /// The passage's own embedding E(p): from its xQG record when it has one (the stored
    /// row is then the fused vector), otherwise the stored row.
    pub fn passage_vector(&self, id: &str) -> Result<Option<Vec<f32>>> {
        let Some(rid) = self.rid_of(id)? else {
            return Ok(None);
        };
        Ok(Some(match self.augmentation_by_rid(rid)? {
            Some(a) => a.passage_vector,
            None => self.vector_by_rid(rid, id)?,
        }))
    }

    /// E(p) of every hit, in order (see [`Snapshot::passage_vector`]); a hit that is not in
    /// this snapshot is a corrupt catalog.
    pub(crate) fn hit_vectors(&self, hits: &[Hit]) -> Result<Vec<Vec<f32>>> {
        hits.iter()
            .map(|h| {
                self.passage_vector(&h.id)?.ok_or_else(|| {
                    Error::corrupt(
                        &self.inner().catalog_path,
                        format!("hit {:?} vanished", h.id),
                    )
                })
            })
            .collect()
    }

    /// Rescores `hits` (a dense result, best first) with `rerank.teacher` and returns the
    /// best `k` by the interpolated score, which replaces each hit's score. Ties keep the
    /// dense order.
    pub fn rerank(
        &self,
        query: &TeacherQuery<'_>,
        hits: Vec<Hit>,
        k: usize,
        rerank: &Rerank<'_>,
    ) -> Result<Vec<Hit>> {
        if !(0.0..=1.0).contains(&rerank.weight) {
            return Err(Error::InvalidArgument(format!(
                "the rerank weight must be within [0, 1], got {}",
                rerank.weight
            )));
        }
        if hits.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let vectors = self.hit_vectors(&hits)?;
        let candidates = Candidate::from_hits(&hits, &vectors);
        let teacher = rerank.teacher.score(query, &candidates)?;
        if teacher.len() != hits.len() || teacher.iter().any(|x| !x.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "teacher {} returned {} scores (finite: {}) for {} candidates",
                rerank.teacher.name(),
                teacher.len(),
                teacher.iter().all(|x| x.is_finite()),
                hits.len()
            )));
        }
        let dense: Vec<f32> = hits.iter().map(|h| h.score).collect();
        let (zd, zt) = (standardise(&dense), standardise(&teacher));
        let w = rerank.weight as f64;
        let mut scored: Vec<(f64, usize, Hit)> = hits
            .into_iter()
            .enumerate()
            .map(|(i, h)| ((1.0 - w) * zd[i] + w * zt[i], i, h))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(scored
            .into_iter()
            .take(k)
            .map(|(s, _, mut h)| {
                h.score = s as f32;
                h
            })
            .collect())
    }
}

impl Index {
    /// A text search whose dense top `max(m, k)` is rescored by a teacher (see
    /// [`Snapshot::rerank`]); the query adapter applies as in [`Index::search_text_with`].
    ///
    /// ```no_run
    /// use xqdb::distill::{TeacherQuery, TranslationTeacher};
    /// use xqdb::{Index, Rerank, SearchOptions};
    /// # fn main() -> xqdb::Result<()> {
    /// let index = Index::open("my-index")?;
    /// let teacher = TranslationTeacher::new(index.encoder()?);
    /// let query = TeacherQuery {
    ///     text: "Mikä on Suomen pääkaupunki?",
    ///     lang: Some("fi"),
    ///     parallel: Some("What is the capital of Finland?"),
    /// };
    /// let rerank = Rerank { teacher: &teacher, depth: 20, weight: 0.5 };
    /// let hits = index.search_text_reranked(&query, &SearchOptions::new(5), &rerank)?;
    /// # Ok(()) }
    /// ```
    pub fn search_text_reranked(
        &self,
        query: &TeacherQuery<'_>,
        options: &SearchOptions,
        rerank: &Rerank<'_>,
    ) -> Result<Vec<Hit>> {
        let snap = self.snapshot();
        let v = self
            .encode_queries_in(
                &snap,
                &[query.text],
                options.use_adapter,
                options.query_lang.as_deref().or(query.lang),
            )?
            .pop()
            .unwrap_or_default();
        let mut wide = options.clone();
        wide.k = rerank.depth.max(options.k);
        let hits = snap.search_with(&v, &wide)?;
        snap.rerank(query, hits, options.k, rerank)
    }
}

#[cfg(test)]
mod tests {
    use super::standardise;

    #[test]
    fn standardised_scores_have_zero_mean_and_unit_spread() {
        let z = standardise(&[1.0, 2.0, 3.0, 6.0]);
        let mean: f64 = z.iter().sum::<f64>() / 4.0;
        let var: f64 = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12);
        assert_eq!(standardise(&[2.0, 2.0]), vec![0.0, 0.0]);
    }
}
