//! The single writer of an index: buffered changes, the commit protocol, sealing, merges and
//! compaction, re-fusion, settings commits and deferred generation.
//!
//! A change is staged (`stage`), applied in one catalog transaction (`commit`), and later
//! sealed and merged into segments (`maintain`). ARCHITECTURE.md follows the write path through
//! these files.

mod augment;
mod commit;
mod fusion;
mod maintain;
mod settings;
mod stage;

pub use augment::{AugmentBudget, AugmentReport};
pub use commit::CommitInfo;
pub use fusion::ReFuseReport;
pub use stage::Writer;
