//! xqdb: an embedded, on-disk search library for passages and their vectors.
//!
//! An application opens a folder, stores passages with vectors durably, and searches
//! them exactly (SIMD scans of memory-mapped, immutable segment files) from any thread,
//! while one writer inserts, replaces and deletes. The catalog is a transactional redb
//! database; `format/FORMAT.md` in the repository describes every byte on disk.
//!
//! ```
//! use xqdb::{Index, Metric, Passage};
//! # fn main() -> xqdb::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let index = Index::builder().dim(3).metric(Metric::Cosine).create(dir.path())?;
//! let mut w = index.writer()?;
//! w.insert(Passage::new("helsinki", "Helsinki is the capital of Finland.").with_lang("en"), &[0.9, 0.1, 0.0])?;
//! w.insert(Passage::new("tokyo", "Tokyo is the capital of Japan.").with_lang("en"), &[0.0, 0.2, 0.9])?;
//! w.commit()?; // durable when it returns
//! drop(w);
//! let hits = index.snapshot().search(&[1.0, 0.0, 0.0], 1)?;
//! assert_eq!(hits[0].id, "helsinki");
//! # Ok(()) }
//! ```
//!
//! # Cargo features
//!
//! The core (store, segments, scans, models, xQG, ingest, distillation) is always built.
//! Default features add:
//! - `cli`: the `xqdb` command-line tool (clap, indicatif, signal-hook; implies `eval`);
//! - `server`: [`server`], an HTTP JSON API (httparse, subtle);
//! - `interchange`: [`interchange`], Parquet and Arrow IPC export/import (arrow-rs, parquet);
//! - `documents`: [`documents`], folder sync (text, Markdown, HTML, PDF);
//! - `lexical`: [`lexical`], keyword and hybrid search;
//! - `eval`: [`eval`], ranking metrics and the evaluation tasks (no dependencies).
//!
//! An application that embeds xqdb can depend on it with `default-features = false` and
//! compile none of them.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adapter;
pub mod distill;
#[cfg(feature = "documents")]
pub mod documents;
mod error;
#[cfg(feature = "eval")]
#[cfg_attr(docsrs, doc(cfg(feature = "eval")))]
pub mod eval;
pub mod faults;
#[doc(hidden)]
pub mod fuzzing;
mod index;
pub mod ingest;
#[cfg(feature = "interchange")]
#[cfg_attr(docsrs, doc(cfg(feature = "interchange")))]
pub mod interchange;
#[cfg(feature = "lexical")]
pub mod lexical;
pub mod model;
mod scan;
pub mod segment;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
mod store;
mod types;
pub mod xqg;

pub use distill::Rerank;
pub use error::{Error, Result};
pub use index::{
    group_by_file, AugmentBudget, AugmentReport, CommitInfo, FileHit, FileRanking, Index,
    IndexBuilder, ReFuseReport, SearchOptions, Snapshot, VerifyPolicy, VerifyReport, Writer,
};
pub use ingest::{IngestItem, Progress};
/// The former name of [`ReFuseReport`].
#[deprecated(since = "0.2.0", note = "renamed to `ReFuseReport`")]
pub type RefuseReport = ReFuseReport;
pub use model::{Encoder, EncoderOptions, Generator, GeneratorOptions, ModelBundle};
#[doc(hidden)]
pub use scan::microbench;
pub use scan::{kernel_report, kernel_self_check, Kernel, KernelCheck, KernelReport};
pub use segment::ReadMode;
pub use store::FORMAT_VERSION;
pub use types::{
    Codes, Dtype, Filter, FirstPass, Fusion, Hit, LexicalSettings, Metric, Passage, SearchMode,
    Stats,
};
pub use xqg::{Augmentation, XqgProfile};

pub use types::{MAX_DIM, MAX_ID_BYTES, MAX_K, MAX_TEXT_BYTES};
