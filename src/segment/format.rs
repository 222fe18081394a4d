//! Byte layout of segment files (see `format/FORMAT.md`, "Segment files").
//!
//! ```text
//! [header 64][vectors rows*dim*size][pad to 64][row ids rows*8][pad to 64]
//!   (version 2, when the header lists codes:)
//!   [binary codes ceil(rows/8)*8*words*8, blocks of 8 rows][pad to 64][i8 codes rows*dim][pad to 64]
//! [footer 64]
//! ```
//! Every integer is little-endian. The header and the footer each end with the xxh3-64 of
//! their first 56 bytes; the footer also holds the xxh3-64 of everything between the
//! header and the footer, which the catalog row repeats.

use crate::types::Dtype;

/// Magic at the start of every segment file.
pub const HEADER_MAGIC: [u8; 8] = *b"XQDBSEG\0";
/// Magic at the start of every segment footer.
pub const FOOTER_MAGIC: [u8; 8] = *b"XQDBEND\0";
/// Newest segment format version this build reads and writes (files without codes are
/// still written as version 1).
pub const SEGMENT_VERSION: u32 = 2;
/// Header code flag: the file holds 1-bit codes.
pub const CODES_BINARY: u8 = 1;
/// Header code flag: the file holds i8 codes.
pub const CODES_I8: u8 = 2;
/// Size of the header and of the footer.
pub const BLOCK: usize = 64;

/// What a segment header says about its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version that wrote the file.
    pub version: u32,
    /// Oldest reader version that can read it.
    pub min_reader_version: u32,
    /// Store the segment belongs to.
    pub store_uuid: [u8; 16],
    /// Segment id within the store.
    pub segment_id: u64,
    /// Vector dimension.
    pub dim: u32,
    /// Row storage type.
    pub dtype: Dtype,
    /// Number of rows.
    pub rows: u64,
    /// Which codes follow the row ids ([`CODES_BINARY`], [`CODES_I8`]; version 2).
    pub codes: u8,
}

/// Where each part of a segment file lives, derived from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the vector rows.
    pub vectors_offset: usize,
    /// Bytes of the vector rows.
    pub vectors_len: usize,
    /// Offset of the row-id array.
    pub rids_offset: usize,
    /// Offset of the binary codes (equal to `i8_offset` when there are none).
    pub bits_offset: usize,
    /// Bytes of the binary codes.
    pub bits_len: usize,
    /// Offset of the i8 codes (equal to `footer_offset` when there are none).
    pub i8_offset: usize,
    /// Bytes of the i8 codes.
    pub i8_len: usize,
    /// Offset of the footer.
    pub footer_offset: usize,
    /// Total file length.
    pub file_len: usize,
}

fn align64(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

impl Layout {
    /// Layout of a file with `rows` rows of `dim` components of `dtype` and the `codes` the
    /// flags name, or `None` on overflow.
    pub fn new(rows: u64, dim: u32, dtype: Dtype, codes: u8) -> Option<Self> {
        let rows = usize::try_from(rows).ok()?;
        let vectors_len = rows.checked_mul(dim as usize)?.checked_mul(dtype.size())?;
        let vectors_offset = BLOCK;
        let rids_offset = align64(vectors_offset.checked_add(vectors_len)?);
        let bits_offset = align64(rids_offset.checked_add(rows.checked_mul(8)?)?);
        let bits_len = if codes & CODES_BINARY != 0 {
            crate::scan::blocked_len(rows, (dim as usize).div_ceil(64))?.checked_mul(8)?
        } else {
            0
        };
        let i8_offset = align64(bits_offset.checked_add(bits_len)?);
        let i8_len = if codes & CODES_I8 != 0 {
            rows.checked_mul(dim as usize)?
        } else {
            0
        };
        let footer_offset = align64(i8_offset.checked_add(i8_len)?);
        let file_len = footer_offset.checked_add(BLOCK)?;
        Some(Layout {
            vectors_offset,
            vectors_len,
            rids_offset,
            bits_offset,
            bits_len,
            i8_offset,
            i8_len,
            footer_offset,
            file_len,
        })
    }
}

fn hash56(block: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&block[..56])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl SegmentHeader {
    /// Encodes the header block.
    pub fn encode(&self) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[0..8].copy_from_slice(&HEADER_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.min_reader_version.to_le_bytes());
        b[16..32].copy_from_slice(&self.store_uuid);
        b[32..40].copy_from_slice(&self.segment_id.to_le_bytes());
        b[40..44].copy_from_slice(&self.dim.to_le_bytes());
        b[44] = self.dtype.code();
        b[45] = self.codes;
        b[48..56].copy_from_slice(&self.rows.to_le_bytes());
        let h = hash56(&b);
        b[56..64].copy_from_slice(&h.to_le_bytes());
        b
    }

    /// Decodes a header block, checking magic, checksum, version and fields.
    pub fn decode(b: &[u8]) -> Result<Self, HeaderError> {
        if b.len() < BLOCK {
            return Err(HeaderError::Short);
        }
        if b[0..8] != HEADER_MAGIC {
            return Err(HeaderError::Magic);
        }
        if hash56(b) != u64_at(b, 56) {
            return Err(HeaderError::Checksum);
        }
        let version = u32_at(b, 8);
        let min_reader_version = u32_at(b, 12);
        if min_reader_version > SEGMENT_VERSION {
            return Err(HeaderError::Version(version));
        }
        let dtype = Dtype::from_code(b[44]).ok_or(HeaderError::Field("unknown dtype code"))?;
        let codes = b[45];
        if b[46..48] != [0, 0] {
            return Err(HeaderError::Field("reserved header bytes are not zero"));
        }
        if codes & !(CODES_BINARY | CODES_I8) != 0 {
            return Err(HeaderError::Field("unknown code flags"));
        }
        if codes != 0 && min_reader_version < 2 {
            return Err(HeaderError::Field("codes in a version 1 segment"));
        }
        Ok(SegmentHeader {
            version,
            min_reader_version,
            store_uuid: b[16..32].try_into().expect("16 bytes"),
            segment_id: u64_at(b, 32),
            dim: u32_at(b, 40),
            dtype,
            rows: u64_at(b, 48),
            codes,
        })
    }
}

/// The footer block: a second copy of the row count plus the body checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFooter {
    /// Number of rows (must equal the header's).
    pub rows: u64,
    /// Offset of the vectors.
    pub vectors_offset: u64,
    /// Offset of the row ids.
    pub rids_offset: u64,
    /// xxh3-64 of bytes `[64, footer_offset)`.
    pub body_checksum: u64,
    /// Checksum of the index codebook the codes were made with (0 without codes).
    pub codebook: u64,
}

impl SegmentFooter {
    /// Encodes the footer block.
    pub fn encode(&self) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[0..8].copy_from_slice(&FOOTER_MAGIC);
        b[8..16].copy_from_slice(&self.rows.to_le_bytes());
        b[16..24].copy_from_slice(&self.vectors_offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.rids_offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.body_checksum.to_le_bytes());
        b[40..48].copy_from_slice(&self.codebook.to_le_bytes());
        let h = hash56(&b);
        b[56..64].copy_from_slice(&h.to_le_bytes());
        b
    }

    /// Decodes a footer block, checking magic and checksum.
    pub fn decode(b: &[u8]) -> Result<Self, HeaderError> {
        if b.len() < BLOCK {
            return Err(HeaderError::Short);
        }
        if b[0..8] != FOOTER_MAGIC {
            return Err(HeaderError::Magic);
        }
        if hash56(b) != u64_at(b, 56) {
            return Err(HeaderError::Checksum);
        }
        if b[48..56].iter().any(|&x| x != 0) {
            return Err(HeaderError::Field("reserved footer bytes are not zero"));
        }
        Ok(SegmentFooter {
            rows: u64_at(b, 8),
            vectors_offset: u64_at(b, 16),
            rids_offset: u64_at(b, 24),
            body_checksum: u64_at(b, 32),
            codebook: u64_at(b, 40),
        })
    }
}

/// Why a header or footer block was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than 64 bytes.
    Short,
    /// Wrong magic: not a segment file.
    Magic,
    /// The block's own checksum does not match.
    Checksum,
    /// Written by a newer format (the version it carries).
    Version(u32),
    /// A field holds an impossible value.
    Field(&'static str),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Short => f.write_str("shorter than a 64-byte block"),
            HeaderError::Magic => f.write_str("bad magic"),
            HeaderError::Checksum => f.write_str("block checksum mismatch"),
            HeaderError::Version(v) => write!(f, "written by format version {v}"),
            HeaderError::Field(what) => f.write_str(what),
        }
    }
}

/// Everything a complete, well-formed segment file says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The header.
    pub header: SegmentHeader,
    /// The footer.
    pub footer: SegmentFooter,
    /// Where the parts are.
    pub layout: Layout,
}

/// Checks the framing of a whole segment file held in memory: header, length, footer and
/// (when `full`) the body checksum and row-id order. Never panics, whatever the bytes.
pub fn inspect(bytes: &[u8], full: bool) -> Result<SegmentInfo, String> {
    let header = SegmentHeader::decode(bytes).map_err(|e| format!("header: {e}"))?;
    let layout = Layout::new(header.rows, header.dim, header.dtype, header.codes)
        .ok_or_else(|| "header: row count or dimension overflows".to_string())?;
    if header.dim == 0 {
        return Err("header: dimension is zero".into());
    }
    if bytes.len() != layout.file_len {
        return Err(format!(
            "length is {} bytes; header implies {}",
            bytes.len(),
            layout.file_len
        ));
    }
    let footer = SegmentFooter::decode(&bytes[layout.footer_offset..])
        .map_err(|e| format!("footer: {e}"))?;
    if footer.rows != header.rows
        || footer.vectors_offset != layout.vectors_offset as u64
        || footer.rids_offset != layout.rids_offset as u64
    {
        return Err("footer disagrees with header".into());
    }
    if (header.codes == 0) != (footer.codebook == 0) {
        return Err("footer codebook disagrees with the header's codes".into());
    }
    if full {
        let body = &bytes[BLOCK..layout.footer_offset];
        if xxhash_rust::xxh3::xxh3_64(body) != footer.body_checksum {
            return Err("body checksum mismatch".into());
        }
        let rids = &bytes[layout.rids_offset..layout.rids_offset + header.rows as usize * 8];
        let mut prev: Option<u64> = None;
        for chunk in rids.chunks_exact(8) {
            let rid = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            if prev.is_some_and(|p| p >= rid) {
                return Err("row ids are not strictly increasing".into());
            }
            prev = Some(rid);
        }
    }
    Ok(SegmentInfo {
        header,
        footer,
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_any_flipped_bit() {
        let h = SegmentHeader {
            version: 1,
            min_reader_version: 1,
            store_uuid: [7; 16],
            segment_id: 42,
            dim: 384,
            dtype: Dtype::I8,
            rows: 1000,
            codes: 0,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..BLOCK * 8 {
            let mut c = b;
            c[i / 8] ^= 1 << (i % 8);
            assert!(SegmentHeader::decode(&c).is_err(), "bit {i} flip accepted");
        }
    }

    /// A real segment file written by the segment writer.
    fn sample_file() -> Vec<u8> {
        struct Src;
        impl crate::segment::RowSource for Src {
            fn len(&self) -> usize {
                5
            }
            fn rid(&self, i: usize) -> u64 {
                10 + i as u64 * 3
            }
            fn row(&self, i: usize) -> &[u8] {
                const ROWS: [[u8; 6]; 5] = [[1; 6], [2; 6], [3; 6], [4; 6], [5; 6]];
                &ROWS[i]
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let fs = crate::segment::FsDir {
            dir: dir.path().to_path_buf(),
        };
        crate::segment::write_segment(&fs, [9; 16], 7, 3, Dtype::F16, &Src, None).unwrap();
        std::fs::read(dir.path().join(crate::segment::file_name(7))).unwrap()
    }

    #[test]
    fn every_single_byte_change_of_a_real_file_is_detected() {
        let file = sample_file();
        let info = inspect(&file, true).unwrap();
        assert_eq!(info.header.rows, 5);
        assert_eq!(info.header.segment_id, 7);
        for i in 0..file.len() {
            let mut f = file.clone();
            f[i] ^= 0x01;
            assert!(
                inspect(&f, true).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        for len in 0..file.len() {
            assert!(
                inspect(&file[..len], true).is_err(),
                "truncation to {len} accepted"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn inspect_never_panics_on_arbitrary_or_mangled_bytes(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            at in 0usize..400,
            cut in 0usize..400,
        ) {
            let _ = inspect(&noise, true);
            let mut f = sample_file();
            let n = f.len();
            for (k, b) in noise.iter().enumerate().take(8) {
                f[(at + k) % n] = *b;
            }
            f.truncate(n - cut % n);
            let _ = inspect(&f, true);
        }
    }

    #[test]
    fn layout_is_64_byte_aligned() {
        let l = Layout::new(3, 5, Dtype::F16, 0).unwrap();
        assert_eq!(l.vectors_offset % 64, 0);
        assert_eq!(l.rids_offset % 64, 0);
        assert_eq!(l.footer_offset % 64, 0);
        assert_eq!(l.rids_offset, 64 + 64);
        assert!(Layout::new(u64::MAX, u32::MAX, Dtype::F32, 0).is_none());
        let c = Layout::new(3, 100, Dtype::F32, CODES_BINARY | CODES_I8).unwrap();
        assert_eq!(c.bits_offset % 64, 0);
        assert_eq!(c.bits_len, 8 * 2 * 8);
        assert_eq!(c.i8_offset % 64, 0);
        assert_eq!(c.i8_len, 300);
        assert_eq!(c.footer_offset, c.i8_offset + 320);
    }
}
