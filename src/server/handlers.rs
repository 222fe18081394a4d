//! What each route does, as plain blocking functions over the index (the transport runs them
//! on its blocking pool): no HTTP here beyond the status of a refusal.

use super::api::{
    to_f32, Added, Answer, ApiError, Deleted, Health, Page, Query, SearchAnswer, SearchRequest,
    MAX_LIST, MAX_QUERIES,
};
use super::ServerOptions;
use crate::ingest::jsonl::parse_line;
use crate::ingest::{Row, WriteMode};
use crate::{Filter, Hit, Index, Passage, SearchOptions, Stats, Writer};
use serde_json::Value;
use std::sync::{Mutex, MutexGuard};

/// The index a server answers for, its writer (none when read-only) and its settings.
pub(crate) struct State {
    pub index: Index,
    pub writer: Option<Mutex<Writer>>,
    pub options: ServerOptions,
}

impl State {
    pub fn health(&self) -> Health {
        let snap = self.index.snapshot();
        Health {
            status: "ok",
            passages: snap.len(),
            commit_seq: snap.commit_seq(),
        }
    }

    pub fn stats(&self) -> Result<Stats, ApiError> {
        Ok(self.index.stats()?)
    }

    /// The search options of a request, checked against the server's limits.
    fn options(&self, r: &SearchRequest) -> Result<SearchOptions, ApiError> {
        let max_k = self.options.max_k;
        let k = r.k.unwrap_or(10);
        if k > max_k {
            return Err(ApiError::new(
                400,
                format!("k must be an integer from 0 to {max_k}"),
            ));
        }
        let mut filter = Filter::new();
        if let Some(langs) = &r.lang {
            filter = filter.langs(langs.clone());
        }
        if let Some(meta) = &r.meta {
            for (field, value) in meta {
                filter = match value {
                    Value::Array(any_of) => filter.meta_in(field, any_of.clone()),
                    value => filter.meta_eq(field, value.clone()),
                };
            }
        }
        let mut options = SearchOptions::new(k)
            .filter(filter)
            .adapter(r.adapter.unwrap_or(true));
        options.query_lang = r.query_lang.clone();
        options.first_pass = r.first_pass;
        if let Some(o) = r.oversample {
            let max = crate::index::MAX_OVERSAMPLE;
            if o == 0 || o > max {
                return Err(ApiError::new(
                    400,
                    format!("oversample must be an integer from 1 to {max}"),
                ));
            }
            options.oversample = Some(o);
        }
        if let Some(m) = r.mode {
            options.mode = m;
        }
        if let Some(f) = r.fusion {
            f.validate()
                .map_err(|e| ApiError::new(400, e.to_string()))?;
            options.fusion = f;
        }
        if let Some(d) = r.depth {
            if d == 0 || d > max_k.max(1000) {
                return Err(ApiError::new(
                    400,
                    "depth must be a positive integer (at most max_k or 1000)",
                ));
            }
            options.depth = Some(d);
        }
        Ok(options)
    }

    pub fn search(&self, r: SearchRequest) -> Result<SearchAnswer, ApiError> {
        let options = self.options(&r)?;
        let by_file = r.by_file.unwrap_or(false);
        // A by-file search groups the passages of a deeper search of the same query.
        let ranking = crate::FileRanking::default();
        let searched = if by_file {
            ranking.candidates(&options)
        } else {
            options.clone()
        };
        let answer = |hits: Vec<Hit>| {
            if by_file {
                Answer::Files {
                    files: crate::group_by_file(hits, &ranking, options.k),
                }
            } else {
                Answer::Hits { hits }
            }
        };
        match (r.text, r.vector, r.queries) {
            (Some(t), None, None) => {
                let hits = self.index.search_text_with(&t, &searched)?;
                Ok(SearchAnswer::One(answer(hits)))
            }
            (None, Some(v), None) => {
                let hits = self.index.search_with(&to_f32(&v), &searched)?;
                Ok(SearchAnswer::One(answer(hits)))
            }
            (None, None, Some(queries)) => {
                if queries.len() > MAX_QUERIES {
                    return Err(ApiError::new(
                        400,
                        format!("queries: at most {MAX_QUERIES} queries in one request"),
                    ));
                }
                // Texts are encoded together and vectors scanned together; the answers go
                // back in the order of the queries.
                let (mut texts, mut vectors) = (Vec::new(), Vec::new());
                for (i, q) in queries.into_iter().enumerate() {
                    match q {
                        Query::Text(t) => texts.push((i, t)),
                        Query::Vector(v) => vectors.push((i, v)),
                    }
                }
                let mut results: Vec<Option<Vec<Hit>>> = Vec::new();
                results.resize_with(texts.len() + vectors.len(), || None);
                if !texts.is_empty() {
                    let t: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
                    let hits = self.index.search_texts(&t, &searched)?;
                    for ((i, _), h) in texts.iter().zip(hits) {
                        results[*i] = Some(h);
                    }
                }
                if !vectors.is_empty() {
                    let v: Vec<Vec<f32>> = vectors.iter().map(|(_, v)| to_f32(v)).collect();
                    let hits = self.index.search_batch(&v, &searched)?;
                    for ((i, _), h) in vectors.iter().zip(hits) {
                        results[*i] = Some(h);
                    }
                }
                Ok(SearchAnswer::Batch {
                    results: results
                        .into_iter()
                        .map(|h| answer(h.unwrap_or_default()))
                        .collect(),
                })
            }
            _ => Err(ApiError::new(
                400,
                "give exactly one of text (a string), vector (an array of numbers) or queries \
                 (an array of those)",
            )),
        }
    }

    pub fn get(&self, id: &str) -> Result<Passage, ApiError> {
        self.index
            .get(id)?
            .ok_or_else(|| ApiError::new(404, format!("no passage {id:?}")))
    }

    pub fn list(&self, after: Option<&str>, limit: Option<usize>) -> Result<Page, ApiError> {
        let limit = limit.unwrap_or(100);
        if limit == 0 || limit > MAX_LIST {
            return Err(ApiError::new(
                400,
                format!("limit must be an integer from 1 to {MAX_LIST}"),
            ));
        }
        let snap = self.index.snapshot();
        let ids = snap.ids_after(after, limit)?;
        let mut passages = Vec::with_capacity(ids.len());
        for id in &ids {
            // Every id of the snapshot has its passage in the same snapshot.
            if let Some(p) = snap.get(id)? {
                passages.push(p);
            }
        }
        let next = if ids.len() == limit {
            ids.last().cloned()
        } else {
            None
        };
        Ok(Page { passages, next })
    }

    fn writer(&self) -> Result<MutexGuard<'_, Writer>, ApiError> {
        match &self.writer {
            None => Err(ApiError::new(403, "this server is read-only")),
            Some(w) => Ok(w.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }

    pub fn add(&self, r: super::api::AddRequest) -> Result<Added, ApiError> {
        let mut parsed = Vec::with_capacity(r.passages.len());
        for (i, row) in r.passages.iter().enumerate() {
            let bytes = serde_json::to_vec(row)
                .map_err(|e| ApiError::new(400, format!("passage {i}: {e}")))?;
            match parse_line(&bytes) {
                Ok(Some(r)) => parsed.push(Row::from(r)),
                Ok(None) => return Err(ApiError::new(400, format!("passage {i} is empty"))),
                Err(msg) => return Err(ApiError::new(400, format!("passage {i}: {msg}"))),
            }
        }
        let mut w = self.writer()?;
        let n = parsed.len();
        let mode = if r.upsert {
            WriteMode::Upsert
        } else {
            WriteMode::Insert
        };
        #[cfg(feature = "documents")]
        crate::documents::tag_rows(&crate::documents::Detector::default(), &mut parsed);
        let fits = self.index.check_fits(&parsed);
        if let Err(e) = fits.and_then(|()| w.stage_rows(parsed, mode, &|_| {})) {
            w.rollback();
            let status = super::status_of(&e.error);
            return Err(match e.row {
                Some(i) => ApiError::new(status, format!("passage {i}: {}", e.error)),
                None => ApiError::new(status, e.error.to_string()),
            });
        }
        let info = w.commit()?;
        Ok(Added {
            added: n,
            commit_seq: info.commit_seq,
        })
    }

    pub fn delete(&self, id: &str) -> Result<Deleted, ApiError> {
        let mut w = self.writer()?;
        match w.delete(id) {
            Ok(true) => {
                let info = w.commit()?;
                Ok(Deleted {
                    deleted: id.to_string(),
                    commit_seq: info.commit_seq,
                })
            }
            Ok(false) => {
                w.rollback();
                Err(ApiError::new(404, format!("no passage {id:?}")))
            }
            Err(e) => {
                w.rollback();
                Err(e.into())
            }
        }
    }
}
