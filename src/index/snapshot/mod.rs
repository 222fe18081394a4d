//! Snapshots: what one commit made visible, and the searches and reads over it.
//!
//! `data` is the state a snapshot shares with the writer that published it; `read` is
//! `Snapshot` and its lookups; `search` ranks; `options` is what a search asks for.

mod data;
mod options;
mod read;
mod search;

pub(crate) use data::{SegmentView, SnapshotData, Tail};
pub use options::SearchOptions;
pub use read::Snapshot;
pub(crate) use search::prepare_vector;
