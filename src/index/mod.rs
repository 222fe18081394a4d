//! The index: opening and creating a store, the handle applications hold, what its handles
//! share, snapshots and searches, and the single writer.
//!
//! `builder` holds the settings; `open` makes or checks the catalog and maps the segments;
//! `inner` is the state one open index shares (catalog, published snapshot, writer lock);
//! `handle` is `Index` itself; `snapshot` answers searches; `writer` changes the index;
//! `verify`, `lexical` and `by_file` serve the snapshot. ARCHITECTURE.md follows the write
//! and read paths through these files.

mod builder;
mod by_file;
mod handle;
mod inner;
mod lexical;
mod open;
mod snapshot;
mod verify;
mod writer;

pub use builder::{IndexBuilder, VerifyPolicy};
pub use by_file::{group_by_file, FileHit, FileRanking};
pub use handle::Index;
pub use snapshot::{SearchOptions, Snapshot};
pub use verify::VerifyReport;
pub use writer::{AugmentBudget, AugmentReport, CommitInfo, ReFuseReport, Writer};

pub(crate) use builder::check_oversample;
#[cfg(feature = "server")]
pub(crate) use builder::MAX_OVERSAMPLE;
pub(crate) use inner::Inner;
