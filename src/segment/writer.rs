//! Writes a segment durably: temp file → write → fsync → rename → fsync of the folder.

use super::codes::Codebook;
use super::dir::SegmentDir;
use super::format::{Layout, SegmentFooter, SegmentHeader, BLOCK, CODES_BINARY, CODES_I8};
use super::{file_name, SegmentRecord};
use crate::error::{Error, Result};
use crate::types::Dtype;
use std::io::Write;
use std::path::Path;
use xxhash_rust::xxh3::Xxh3;

/// Rows to write: row ids in strictly increasing order, and for each the row's bytes
/// already encoded in the segment's dtype.
pub(crate) trait RowSource {
    /// Number of rows.
    fn len(&self) -> usize;
    /// Row id of row `i`.
    fn rid(&self, i: usize) -> u64;
    /// Encoded bytes of row `i` (`dim * dtype.size()` of them).
    fn row(&self, i: usize) -> &[u8];
}

/// Encodes f32 rows into the bytes of `dtype` (`i8_scale` multiplies before rounding).
pub(crate) fn encode_rows(vectors: &[f32], dtype: Dtype, i8_scale: f32) -> Vec<u8> {
    match dtype {
        Dtype::F32 => bytemuck::cast_slice(vectors).to_vec(),
        Dtype::F16 => vectors
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
            .collect(),
        Dtype::I8 => vectors
            .iter()
            .map(|&x| (x * i8_scale).round().clamp(-127.0, 127.0) as i8 as u8)
            .collect(),
    }
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Xxh3,
    hashing: bool,
    written: usize,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.hashing {
            self.hasher.update(&buf[..n]);
        }
        self.written += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn pad_to(w: &mut impl Write, written: usize, target: usize) -> std::io::Result<()> {
    const ZEROS: [u8; BLOCK] = [0; BLOCK];
    w.write_all(&ZEROS[..target - written])
}

/// Codes to write beside the rows: the code flags and the index's codebook.
#[derive(Clone, Copy)]
pub(crate) struct SegmentCodes<'a> {
    pub flags: u8,
    pub codebook: &'a Codebook,
}

/// Decodes one stored row (f32 or f16 bytes) to f32.
pub(crate) fn decode_row(bytes: &[u8], dtype: Dtype, out: &mut Vec<f32>) {
    out.clear();
    match dtype {
        Dtype::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
        ),
        Dtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes(c.try_into().expect("2 bytes")).to_f32()),
        ),
        Dtype::I8 => out.extend(bytes.iter().map(|&b| b as i8 as f32)),
    }
}

/// Writes segment `id` into `dir` and makes it durable (invariant I2): temp file, fsync,
/// rename, fsync of the folder. Returns the catalog record that a commit may now reference.
/// On error the temp file is removed. With `codes`, the file (version 2) also holds the
/// codes of every row.
pub(crate) fn write_segment(
    dir: &dyn SegmentDir,
    store_uuid: [u8; 16],
    id: u64,
    dim: u32,
    dtype: Dtype,
    rows: &dyn RowSource,
    codes: Option<SegmentCodes<'_>>,
) -> Result<SegmentRecord> {
    let name = file_name(id);
    let tmp = format!("{name}.tmp");
    let mut record = None;
    let result = dir.create_durable(&tmp, &mut |w| {
        record = Some(write_body(w, store_uuid, id, dim, dtype, rows, codes)?);
        Ok(())
    });
    if let Err(e) = result {
        let _ = dir.remove(&tmp);
        return Err(Error::io(dir.path(&tmp), e));
    }
    dir.rename(&tmp, &name)
        .map_err(|e| Error::io(dir.path(&name), e))?;
    dir.sync().map_err(|e| Error::io(dir.path(""), e))?;
    record.ok_or_else(|| Error::InvalidArgument("segment writer produced nothing".into()))
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.to_string())
}

fn write_body(
    out: &mut dyn Write,
    store_uuid: [u8; 16],
    id: u64,
    dim: u32,
    dtype: Dtype,
    rows: &dyn RowSource,
    codes: Option<SegmentCodes<'_>>,
) -> std::io::Result<SegmentRecord> {
    let n = rows.len();
    let flags = codes.map_or(0, |c| c.flags);
    let layout =
        Layout::new(n as u64, dim, dtype, flags).ok_or_else(|| invalid("segment too large"))?;
    let version = if flags == 0 { 1 } else { 2 };
    let row_bytes = dim as usize * dtype.size();
    let mut w = HashingWriter {
        inner: out,
        hasher: Xxh3::new(),
        hashing: false,
        written: 0,
    };
    let header = SegmentHeader {
        version,
        min_reader_version: version,
        store_uuid,
        segment_id: id,
        dim,
        dtype,
        rows: n as u64,
        codes: flags,
    };
    w.write_all(&header.encode())?;
    w.hashing = true;
    let mut prev: Option<u64> = None;
    for i in 0..n {
        let row = rows.row(i);
        let rid = rows.rid(i);
        if row.len() != row_bytes || prev.is_some_and(|p| p >= rid) {
            return Err(invalid(
                "segment rows must have the index's width and increasing ids",
            ));
        }
        prev = Some(rid);
        w.write_all(row)?;
    }
    let at = w.written;
    pad_to(&mut w, at, layout.rids_offset)?;
    for i in 0..n {
        w.write_all(&rows.rid(i).to_le_bytes())?;
    }
    let at = w.written;
    pad_to(&mut w, at, layout.bits_offset)?;
    if let Some(c) = codes {
        let mut row = Vec::with_capacity(dim as usize);
        if flags & CODES_BINARY != 0 {
            let words = c.codebook.words();
            let mut plain = Vec::with_capacity(crate::scan::BITS_BLOCK * words);
            let mut block = Vec::with_capacity(crate::scan::BITS_BLOCK * words);
            for start in (0..n).step_by(crate::scan::BITS_BLOCK) {
                plain.clear();
                for i in start..(start + crate::scan::BITS_BLOCK).min(n) {
                    decode_row(rows.row(i), dtype, &mut row);
                    c.codebook.push_bits(&row, &mut plain);
                }
                block.clear();
                crate::scan::interleave_block(&plain, words, &mut block);
                w.write_all(bytemuck::cast_slice(&block))?;
            }
            let at = w.written;
            pad_to(&mut w, at, layout.i8_offset)?;
        }
        if flags & CODES_I8 != 0 {
            let mut code = Vec::with_capacity(dim as usize);
            for i in 0..n {
                decode_row(rows.row(i), dtype, &mut row);
                code.clear();
                c.codebook.push_i8(&row, &mut code);
                w.write_all(&code)?;
            }
        }
    }
    let at = w.written;
    pad_to(&mut w, at, layout.footer_offset)?;
    w.hashing = false;
    let checksum = w.hasher.digest();
    let footer = SegmentFooter {
        rows: n as u64,
        vectors_offset: layout.vectors_offset as u64,
        rids_offset: layout.rids_offset as u64,
        body_checksum: checksum,
        codebook: codes.map_or(0, |c| c.codebook.id),
    };
    w.write_all(&footer.encode())?;
    w.flush()?;
    debug_assert_eq!(w.written, layout.file_len);
    Ok(SegmentRecord {
        dtype,
        dim,
        rows: n as u64,
        file_len: layout.file_len as u64,
        checksum,
        min_rid: if n > 0 { rows.rid(0) } else { 0 },
        max_rid: if n > 0 { rows.rid(n - 1) } else { 0 },
    })
}

/// fsyncs a folder so that renames and unlinks inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
