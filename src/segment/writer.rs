//! Writes a segment durably: temp file → write → fsync → rename → fsync of the folder.

use super::format::{Layout, SegmentFooter, SegmentHeader, BLOCK, SEGMENT_VERSION};
use super::{path_of, SegmentRecord, SEGMENTS_DIR};
use crate::error::{Error, Result};
use crate::types::Dtype;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
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

/// Writes segment `id` under `root` and makes it durable (invariant I2), returning the
/// catalog record that a commit may now reference. On error the temp file is removed.
pub(crate) fn write_segment(
    root: &Path,
    store_uuid: [u8; 16],
    id: u64,
    dim: u32,
    dtype: Dtype,
    rows: &dyn RowSource,
) -> Result<SegmentRecord> {
    let final_path = path_of(root, id);
    let tmp_path = final_path.with_extension("seg.tmp");
    let result = write_tmp(&tmp_path, store_uuid, id, dim, dtype, rows);
    let record = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
    };
    fs::rename(&tmp_path, &final_path).map_err(|e| Error::io(&final_path, e))?;
    sync_dir(&root.join(SEGMENTS_DIR))?;
    Ok(record)
}

fn write_tmp(
    tmp_path: &Path,
    store_uuid: [u8; 16],
    id: u64,
    dim: u32,
    dtype: Dtype,
    rows: &dyn RowSource,
) -> Result<SegmentRecord> {
    let io = |e| Error::io(tmp_path, e);
    let n = rows.len();
    let layout = Layout::new(n as u64, dim, dtype)
        .ok_or_else(|| Error::InvalidArgument("segment too large".into()))?;
    let row_bytes = dim as usize * dtype.size();
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp_path)
        .map_err(io)?;
    let mut w = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, &file),
        hasher: Xxh3::new(),
        hashing: false,
        written: 0,
    };
    let header = SegmentHeader {
        version: SEGMENT_VERSION,
        min_reader_version: SEGMENT_VERSION,
        store_uuid,
        segment_id: id,
        dim,
        dtype,
        rows: n as u64,
    };
    w.write_all(&header.encode()).map_err(io)?;
    w.hashing = true;
    let mut prev: Option<u64> = None;
    for i in 0..n {
        let row = rows.row(i);
        let rid = rows.rid(i);
        if row.len() != row_bytes || prev.is_some_and(|p| p >= rid) {
            return Err(Error::InvalidArgument(
                "segment rows must have the index's width and increasing ids".into(),
            ));
        }
        prev = Some(rid);
        w.write_all(row).map_err(io)?;
    }
    let at = w.written;
    pad_to(&mut w, at, layout.rids_offset).map_err(io)?;
    for i in 0..n {
        w.write_all(&rows.rid(i).to_le_bytes()).map_err(io)?;
    }
    let at = w.written;
    pad_to(&mut w, at, layout.footer_offset).map_err(io)?;
    w.hashing = false;
    let checksum = w.hasher.digest();
    let footer = SegmentFooter {
        rows: n as u64,
        vectors_offset: layout.vectors_offset as u64,
        rids_offset: layout.rids_offset as u64,
        body_checksum: checksum,
    };
    w.write_all(&footer.encode()).map_err(io)?;
    w.flush().map_err(io)?;
    debug_assert_eq!(w.written, layout.file_len);
    drop(w);
    file.sync_all().map_err(io)?;
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
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
