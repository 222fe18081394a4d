//! The catalog's record of a synced file (FORMAT.md, "files"): its size, time, hash, passage
//! count and the settings it was synced with; and the ids of its passages.

use crate::error::{Error, Result};
use crate::index::Index;
use serde::{Deserialize, Serialize};

/// Version of the file record written by this build.
pub const FILE_RECORD_VERSION: u32 = 1;

/// What the catalog remembers of a synced file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Record version ([`FILE_RECORD_VERSION`]).
    pub v: u32,
    /// Size in bytes when it was read.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 when the system has none).
    pub mtime_ns: i128,
    /// xxh3-128 of the content, 32 hex digits.
    pub hash: String,
    /// Passages stored for it: ids `path#0` … `path#(passages-1)`.
    pub passages: u32,
    /// The settings its passages were cut and encoded with ([`SyncOptions::fingerprint`](super::SyncOptions::fingerprint));
    /// empty in records of builds before it. A sync with other settings reads the file again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub settings: String,
}

impl FileRecord {
    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a file record serialises")
    }

    pub(super) fn decode(index: &Index, path: &str, bytes: &[u8]) -> Result<FileRecord> {
        serde_json::from_slice::<FileRecord>(bytes)
            .map_err(|e| e.to_string())
            .and_then(|r| match r.v {
                1 => Ok(r),
                v => Err(format!("file record version {v} is not supported")),
            })
            .map_err(|reason| {
                Error::corrupt(
                    &index.inner.catalog_path,
                    format!("file record of {path:?}: {reason}"),
                )
            })
    }
}

/// The id of passage `n` of the file at `path`.
pub fn passage_id(path: &str, n: u32) -> String {
    format!("{path}#{n}")
}

/// The synced files of the index's current commit, in path order.
pub fn files(index: &Index) -> Result<Vec<(String, FileRecord)>> {
    index
        .snapshot()
        .file_records()?
        .into_iter()
        .map(|(path, bytes)| {
            let r = FileRecord::decode(index, &path, &bytes)?;
            Ok((path, r))
        })
        .collect()
}
