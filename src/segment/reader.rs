//! Opens a published segment: length and framing checks first, then a read-only mmap (or,
//! for untrusted media, a copy read into memory).

use super::bytes::{Bytes, ReadMode};
use super::dir::SegmentDir;
use super::format::{
    inspect, HeaderError, SegmentHeader, SegmentInfo, CODES_BINARY, CODES_I8, HEADER_MAGIC,
    SEGMENT_VERSION,
};
use super::{file_name, SegmentRecord};
use crate::error::{Error, Result};
use crate::scan::Rows;
use crate::types::Dtype;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A mapped, checked, immutable segment. Shared by every snapshot that lists it.
///
/// When the writer retires it (a commit dropped it), the file is unlinked as soon as the
/// last snapshot holding this handle is gone (invariant I4).
#[derive(Debug)]
pub(crate) struct SegmentHandle {
    pub id: u64,
    pub path: PathBuf,
    dir: Arc<dyn SegmentDir>,
    name: String,
    pub record: SegmentRecord,
    map: Bytes,
    info: SegmentInfo,
    retired: AtomicBool,
}

impl SegmentHandle {
    /// Opens segment `id` as the catalog describes it. `full` also verifies the body checksum.
    pub fn open(
        dir: &Arc<dyn SegmentDir>,
        id: u64,
        record: &SegmentRecord,
        store_uuid: [u8; 16],
        full: bool,
        mode: ReadMode,
    ) -> Result<Self> {
        let name = file_name(id);
        let path = dir.path(&name);
        let map = dir
            .load(&name, record.file_len, mode)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::corrupt(&path, "segment listed in the catalog is missing")
                }
                std::io::ErrorKind::InvalidData => Error::corrupt(&path, e.to_string()),
                _ => Error::io(&path, e),
            })?;
        let info = inspect(&map, full).map_err(|reason| classify(&path, &map, reason))?;
        let h = &info.header;
        if h.store_uuid != store_uuid {
            return Err(Error::Foreign {
                path,
                reason: "segment belongs to another store".into(),
            });
        }
        if h.segment_id != id
            || h.dim != record.dim
            || h.dtype != record.dtype
            || h.rows != record.rows
            || info.footer.body_checksum != record.checksum
        {
            return Err(Error::corrupt(
                &path,
                "header or checksum disagrees with the catalog row",
            ));
        }
        Ok(SegmentHandle {
            id,
            dir: dir.clone(),
            name,
            path,
            record: *record,
            map,
            info,
            retired: AtomicBool::new(false),
        })
    }

    /// Re-runs the full check (body checksum, row-id order) on the mapped bytes.
    pub fn verify_full(&self) -> Result<()> {
        inspect(&self.map, true)
            .map(|_| ())
            .map_err(|reason| Error::corrupt(&self.path, reason))
    }

    pub fn rows(&self) -> usize {
        self.info.header.rows as usize
    }

    pub fn dim(&self) -> usize {
        self.info.header.dim as usize
    }

    pub fn dtype(&self) -> Dtype {
        self.info.header.dtype
    }

    /// The row ids, in increasing order.
    pub fn rids(&self) -> &[u64] {
        let l = &self.info.layout;
        let bytes = &self.map[l.rids_offset..l.rids_offset + self.rows() * 8];
        // Offsets are multiples of 64 and the bytes start page- or 8-byte-aligned, so the
        // cast to u64 cannot fail.
        bytemuck::cast_slice(bytes)
    }

    /// Raw bytes of the rows.
    pub fn row_bytes(&self) -> &[u8] {
        let l = &self.info.layout;
        &self.map[l.vectors_offset..l.vectors_offset + l.vectors_len]
    }

    /// The rows, typed.
    pub fn vectors(&self) -> Rows<'_> {
        Rows::from_bytes(self.dtype(), self.row_bytes())
    }

    /// The code flags of the file (0: no codes).
    pub fn code_flags(&self) -> u8 {
        self.info.header.codes
    }

    /// The id of the codebook the codes were made with (0: no codes).
    pub fn codebook_id(&self) -> u64 {
        self.info.footer.codebook
    }

    /// Bytes of codes in the file.
    pub fn code_bytes(&self) -> u64 {
        (self.info.layout.bits_len + self.info.layout.i8_len) as u64
    }

    /// The 1-bit codes, if the file holds them.
    pub fn bits(&self) -> Option<Rows<'_>> {
        let l = &self.info.layout;
        (self.code_flags() & CODES_BINARY != 0).then(|| {
            // 64-byte offsets in page- or 8-byte-aligned bytes: the cast cannot fail.
            Rows::Bits(bytemuck::cast_slice(
                &self.map[l.bits_offset..l.bits_offset + l.bits_len],
            ))
        })
    }

    /// The i8 codes, if the file holds them.
    pub fn i8_codes(&self) -> Option<Rows<'_>> {
        let l = &self.info.layout;
        (self.code_flags() & CODES_I8 != 0)
            .then(|| Rows::Codes8(&self.map[l.i8_offset..l.i8_offset + l.i8_len]))
    }

    pub fn file_len(&self) -> u64 {
        self.record.file_len
    }

    /// Marks the file for unlinking once the last snapshot drops this handle.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Drop for SegmentHandle {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            // A failure leaves an orphan that the next writable open removes (I5).
            let _ = self.dir.remove(&self.name);
        }
    }
}

fn classify(path: &Path, bytes: &[u8], reason: String) -> Error {
    if bytes.len() >= 8 && bytes[0..8] != HEADER_MAGIC {
        return Error::Foreign {
            path: path.to_path_buf(),
            reason: "not an xqdb segment (bad magic)".into(),
        };
    }
    if let Err(HeaderError::Version(v)) = SegmentHeader::decode(bytes) {
        return Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: v,
            supported: SEGMENT_VERSION,
        };
    }
    Error::corrupt(path, reason)
}
