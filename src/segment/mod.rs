//! Immutable segment files: the format, the durable writer and the checked mmap reader.

mod bytes;
pub(crate) mod codes;
mod dir;
pub mod format;
mod reader;
mod writer;

pub(crate) use bytes::Bytes;
pub use bytes::ReadMode;
pub(crate) use codes::Codebook;
pub(crate) use dir::{FsDir, MemDir, SegmentDir};
pub(crate) use reader::SegmentHandle;
pub(crate) use writer::{
    decode_row, encode_rows, sync_dir, write_segment, RowSource, SegmentCodes,
};

/// The folder that holds segment files, inside an index folder.
pub(crate) const SEGMENTS_DIR: &str = "segments";

/// File name of segment `id`.
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

/// Parses a segment file name back into its id.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Catalog row for one segment (what the commit that published it promised).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentRecord {
    pub dtype: crate::types::Dtype,
    pub dim: u32,
    pub rows: u64,
    pub file_len: u64,
    pub checksum: u64,
    pub min_rid: u64,
    pub max_rid: u64,
}
