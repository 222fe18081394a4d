//! The bytes of a segment file once in memory: a read-only mapping or an aligned copy, and
//! the read mode that chooses between them. Shared by the folder abstraction (`dir`) and the
//! checked reader (`reader`).

use memmap2::Mmap;
use std::sync::Arc;

/// How segment bytes reach memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// Memory-map segment files (fast, shared with the page cache). The default.
    #[default]
    Mmap,
    /// Read each segment into memory at open: no mapping, so a file truncated or changed
    /// behind xqdb's back can never raise SIGBUS; costs the segments' size in RAM. Also
    /// used automatically when a file cannot be mapped.
    Read,
}

/// The bytes of a segment: a mapping, or a copy in 8-byte-aligned memory.
#[derive(Debug)]
pub(crate) enum Bytes {
    Mapped(Mmap),
    Loaded(Arc<Vec<u64>>, usize),
}

/// A copy of `bytes` in 8-byte-aligned words (zero-padded to a whole word).
pub(crate) fn aligned_words(bytes: &[u8]) -> Arc<Vec<u64>> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    Arc::new(words)
}

impl Bytes {
    /// A copy of `bytes` in 8-byte-aligned memory.
    pub fn copied(bytes: &[u8]) -> Self {
        Bytes::Loaded(aligned_words(bytes), bytes.len())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Loaded(words, len) => &bytemuck::cast_slice(words)[..*len],
        }
    }
}
