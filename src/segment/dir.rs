//! Where segment files live: the `segments/` folder of an index on disk, or a map in memory
//! (for in-memory indexes). Everything the engine does to segment files goes through this
//! small trait, so that the commit protocol is written once.

use super::bytes::{Bytes, ReadMode};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A flat folder of segment files.
pub(crate) trait SegmentDir: Send + Sync + std::fmt::Debug {
    /// Where `name` lives, for messages.
    fn path(&self, name: &str) -> PathBuf;
    /// Creates `name` (it must not exist), lets `fill` write it, and makes its bytes durable.
    fn create_durable(
        &self,
        name: &str,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()>;
    /// Renames within the folder (atomic).
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Makes creations, renames and removals in the folder durable.
    fn sync(&self) -> io::Result<()>;
    /// Removes `name`.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Names in the folder.
    fn list(&self) -> io::Result<Vec<String>>;
    /// The bytes of `name`, refused with `InvalidData` unless it is `expected_len` long
    /// (checked before anything is mapped).
    fn load(&self, name: &str, expected_len: u64, mode: ReadMode) -> io::Result<Bytes>;
}

/// The `segments/` folder on disk.
#[derive(Debug)]
pub(crate) struct FsDir {
    pub dir: PathBuf,
}

fn read_aligned(file: &mut File, len: usize) -> io::Result<Bytes> {
    let mut words = vec![0u64; len.div_ceil(8)];
    file.read_exact(&mut bytemuck::cast_slice_mut(&mut words)[..len])?;
    Ok(Bytes::Loaded(Arc::new(words), len))
}

impl SegmentDir for FsDir {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn create_durable(
        &self,
        name: &str,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.path(name))?;
        let mut w = BufWriter::with_capacity(1 << 20, &file);
        fill(&mut w)?;
        w.flush()?;
        drop(w);
        file.sync_all()
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path(from), self.path(to))
    }

    fn sync(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path(name))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn load(&self, name: &str, expected_len: u64, mode: ReadMode) -> io::Result<Bytes> {
        let mut file = File::open(self.path(name))?;
        let len = file.metadata()?.len();
        if len != expected_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("length is {len} bytes; the catalog recorded {expected_len}"),
            ));
        }
        match mode {
            // SAFETY: segment files are never modified or truncated after publication (I3),
            // and the length was checked against the catalog just above on this same open
            // file, so every offset later validated by `inspect` lies inside the mapping. A
            // file truncated behind xqdb's back is outside the contract (FORMAT.md,
            // "Assumptions"); ReadMode::Read exists for media where that can happen.
            ReadMode::Mmap => match unsafe { memmap2::Mmap::map(&file) } {
                Ok(m) => Ok(Bytes::Mapped(m)),
                // A file system that cannot map files still serves reads.
                Err(_) => read_aligned(&mut file, len as usize),
            },
            ReadMode::Read => read_aligned(&mut file, len as usize),
        }
    }
}

/// One in-memory file: 8-byte-aligned words and the byte length.
type MemFile = (Arc<Vec<u64>>, usize);

/// Segment files held in memory (in-memory indexes): 8-byte-aligned, shared with readers.
#[derive(Debug, Default)]
pub(crate) struct MemDir {
    files: Mutex<HashMap<String, MemFile>>,
}

impl SegmentDir for MemDir {
    fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(":memory:").join(name)
    }

    fn create_durable(
        &self,
        name: &str,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut bytes = Vec::new();
        fill(&mut bytes)?;
        let words = super::bytes::aligned_words(&bytes);
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if files.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                name.to_string(),
            ));
        }
        files.insert(name.to_string(), (words, bytes.len()));
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let f = files
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        files.insert(to.to_string(), f);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect())
    }

    fn load(&self, name: &str, expected_len: u64, _mode: ReadMode) -> io::Result<Bytes> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let (words, len) = files
            .get(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if *len as u64 != expected_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "length differs from the catalog",
            ));
        }
        Ok(Bytes::Loaded(words.clone(), *len))
    }
}
