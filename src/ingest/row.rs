//! One row to stage: a passage and whatever came with it (nothing, generated queries, a
//! vector, or a whole xQG record). [`Writer::stage_rows`](crate::Writer::stage_rows) takes
//! these; the CLI's `add`, the HTTP server's `POST /passages` and Parquet/Arrow import all
//! write through it.

use crate::error::Error;
use crate::types::Passage;
use crate::xqg::Augmentation;

/// A passage to stage, and what decides its stored vector.
#[derive(Clone, Debug)]
pub struct Row {
    /// The passage.
    pub passage: Passage,
    /// What came with it.
    pub data: RowData,
}

/// What a [`Row`] brings besides its passage.
#[derive(Clone, Debug, Default)]
pub enum RowData {
    /// Nothing: the index's encoder (and its generator, per the xQG profile) make the vector.
    #[default]
    Text,
    /// Queries generated elsewhere, as (language, text): encoded and fused without running a
    /// generator. Needs an index with an xQG profile.
    Queries(Vec<(String, String)>),
    /// A vector computed elsewhere, stored as given (unit-normalised in cosine indexes).
    Vector(Vec<f32>),
    /// E(p), Σ E(q) and the queries, computed elsewhere: fused with the index's α. Needs an
    /// index with an xQG profile.
    Augmented(Augmentation),
}

impl Row {
    /// A row whose vector the index computes.
    pub fn text(passage: Passage) -> Self {
        Row {
            passage,
            data: RowData::Text,
        }
    }

    /// A row with a vector computed elsewhere.
    pub fn with_vector(passage: Passage, vector: Vec<f32>) -> Self {
        Row {
            passage,
            data: RowData::Vector(vector),
        }
    }
}

impl From<super::jsonl::JsonlRow> for Row {
    fn from(r: super::jsonl::JsonlRow) -> Self {
        let data = match (r.vector, r.queries) {
            (Some(v), _) => RowData::Vector(v),
            (None, Some(q)) => RowData::Queries(q),
            (None, None) => RowData::Text,
        };
        Row {
            passage: r.passage,
            data,
        }
    }
}

/// Whether a staged row may replace a passage with the same id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Fail with [`Error::DuplicateId`] when the id exists.
    #[default]
    Insert,
    /// Replace the passage with the same id, if any.
    Upsert,
}

/// Why [`Writer::stage_rows`](crate::Writer::stage_rows) refused a call, and which row (its
/// position in the call) caused it. Nothing of the call was staged.
#[derive(Debug, thiserror::Error)]
#[error("{}{error}", .row.map(|r| format!("row {r}: ")).unwrap_or_default())]
pub struct RowError {
    /// The failing row's position in the call (0-based); `None` when the failure belongs to no
    /// single row (a missing model, a poisoned writer).
    pub row: Option<usize>,
    /// The error.
    #[source]
    pub error: Error,
}

impl From<RowError> for Error {
    fn from(e: RowError) -> Self {
        e.error
    }
}
