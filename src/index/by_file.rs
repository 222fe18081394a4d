//! Ranking by file: the passages of a search grouped by the file they came from (their
//! `path` metadata, which `documents::sync` writes), each file once with its best passage.

use super::Index;
use crate::error::Result;
use crate::types::Hit;
use crate::SearchOptions;
use serde::Serialize;
use std::collections::HashMap;

/// A file of a by-file search.
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileHit {
    /// The file's path in the synced folder (the passage id for passages of no file).
    pub path: String,
    /// The file's score: its best passage's score plus [`FileRanking::share`] of the others'.
    pub score: f32,
    /// How many of the file's passages were among the candidates.
    pub passages: usize,
    /// The file's best passage.
    pub best: Hit,
}

/// How a by-file search combines passages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FileRanking {
    /// Passages searched for each file asked for (at least 100 in all).
    pub depth: usize,
    /// Weight of a file's other candidate passages' scores added to its best one's.
    pub share: f32,
    /// How many of a file's other passages (the next best) `share` counts.
    pub others: usize,
}

impl Default for FileRanking {
    fn default() -> Self {
        FileRanking {
            depth: 10,
            share: 0.0,
            others: usize::MAX,
        }
    }
}

/// The file a hit belongs to: its `path` metadata, else its id.
fn file_of(hit: &Hit) -> &str {
    hit.passage
        .meta
        .as_ref()
        .and_then(|m| m.get("path"))
        .and_then(|p| p.as_str())
        .unwrap_or(&hit.id)
}

/// Groups passage hits (best first) by file: the top `k` files, best first (ties by the
/// order of their best passages).
pub fn group_by_file(hits: Vec<Hit>, ranking: &FileRanking, k: usize) -> Vec<FileHit> {
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut files: Vec<FileHit> = Vec::new();
    for hit in hits {
        let path = file_of(&hit).to_string();
        match at.get(&path) {
            Some(&i) => {
                if files[i].passages <= ranking.others {
                    files[i].score += ranking.share * hit.score;
                }
                files[i].passages += 1;
            }
            None => {
                at.insert(path.clone(), files.len());
                files.push(FileHit {
                    path,
                    score: hit.score,
                    passages: 1,
                    best: hit,
                });
            }
        }
    }
    // A stable sort: equal scores keep the order of their best passages.
    files.sort_by(|a, b| b.score.total_cmp(&a.score));
    files.truncate(k);
    files
}

impl FileRanking {
    /// The options of the passage search a by-file search for the top `options.k` files
    /// groups: the same, for `options.k × depth` passages (at least 100, at most
    /// [`MAX_K`](crate::MAX_K)).
    pub fn candidates(&self, options: &SearchOptions) -> SearchOptions {
        let mut deep = options.clone();
        deep.k = options
            .k
            .saturating_mul(self.depth.max(1))
            .clamp(100, crate::types::MAX_K);
        deep
    }
}

impl Index {
    /// The top `options.k` files for each text query: the passages of
    /// [`FileRanking::candidates`] grouped by [`group_by_file`].
    pub fn search_files<S: AsRef<str> + Sync>(
        &self,
        queries: &[S],
        options: &SearchOptions,
        ranking: &FileRanking,
    ) -> Result<Vec<Vec<FileHit>>> {
        options.check()?;
        let all = self.search_texts(queries, &ranking.candidates(options))?;
        Ok(all
            .into_iter()
            .map(|hits| group_by_file(hits, ranking, options.k))
            .collect())
    }
}
