//! A simulated disk for crash tests: the catalog (through redb's storage-backend trait) and
//! the segment files live in memory with two views, what the process sees and what a crash
//! keeps (only what was synced), and any I/O call can be made to fail. Applications built on
//! xqdb can use it to test their own crash handling.

use crate::segment::{Bytes, ReadMode, SegmentDir};
use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// When the simulated disk starts failing: every I/O call from the `fail_at`-th on returns
/// an error, as if the disk had gone away.
#[derive(Debug, Default)]
pub struct FaultPlan {
    calls: AtomicU64,
    fail_at: AtomicU64,
}

impl FaultPlan {
    fn tick(&self) -> io::Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let at = self.fail_at.load(Ordering::SeqCst);
        if at != 0 && n >= at {
            return Err(io::Error::other(format!("injected fault at I/O call {n}")));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone)]
struct CatalogFile {
    volatile: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default, Clone)]
struct SegFiles {
    /// Names the process sees → contents.
    volatile: HashMap<String, Arc<Vec<u8>>>,
    /// Names and contents a crash keeps (the folder was synced after they were made).
    durable: HashMap<String, Arc<Vec<u8>>>,
}

/// A simulated disk holding one index.
#[derive(Debug, Default)]
pub struct SimDisk {
    plan: FaultPlan,
    catalog: Mutex<CatalogFile>,
    segments: Mutex<SegFiles>,
}

impl SimDisk {
    /// An empty disk that never fails.
    pub fn new() -> Arc<Self> {
        Arc::new(SimDisk::default())
    }

    /// Makes the `n`-th I/O call from now on, and every later one, fail (0: never).
    pub fn fail_from(&self, n: u64) {
        let now = self.plan.calls.load(Ordering::SeqCst);
        self.plan
            .fail_at
            .store(if n == 0 { 0 } else { now + n }, Ordering::SeqCst);
    }

    /// I/O calls made so far.
    pub fn calls(&self) -> u64 {
        self.plan.calls.load(Ordering::SeqCst)
    }

    /// The disk as it would be found after power loss now: only synced state, no faults.
    pub fn crash(&self) -> Arc<SimDisk> {
        let c = self.catalog.lock().unwrap_or_else(|e| e.into_inner());
        let s = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        Arc::new(SimDisk {
            plan: FaultPlan::default(),
            catalog: Mutex::new(CatalogFile {
                volatile: c.durable.clone(),
                durable: c.durable.clone(),
            }),
            segments: Mutex::new(SegFiles {
                volatile: s.durable.clone(),
                durable: s.durable.clone(),
            }),
        })
    }

    /// Names of the segment files the process sees.
    pub fn segment_files(&self) -> Vec<String> {
        let s = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = s.volatile.keys().cloned().collect();
        v.sort();
        v
    }

    pub(crate) fn has_catalog(&self) -> bool {
        !self
            .catalog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .volatile
            .is_empty()
    }
}

/// The catalog side of a [`SimDisk`], as a redb storage backend.
#[derive(Debug)]
pub(crate) struct SimBackend(pub Arc<SimDisk>);

impl redb::StorageBackend for SimBackend {
    fn len(&self) -> io::Result<u64> {
        self.0.plan.tick()?;
        Ok(self
            .0
            .catalog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .volatile
            .len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.plan.tick()?;
        let c = self.0.catalog.lock().unwrap_or_else(|e| e.into_inner());
        let start = offset as usize;
        let src = c
            .volatile
            .get(start..start + out.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.plan.tick()?;
        self.0
            .catalog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .volatile
            .resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.plan.tick()?;
        let mut c = self.0.catalog.lock().unwrap_or_else(|e| e.into_inner());
        c.durable = c.volatile.clone();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.plan.tick()?;
        let mut c = self.0.catalog.lock().unwrap_or_else(|e| e.into_inner());
        let end = offset as usize + data.len();
        if c.volatile.len() < end {
            c.volatile.resize(end, 0);
        }
        c.volatile[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}

/// The segment side of a [`SimDisk`].
#[derive(Debug)]
pub(crate) struct SimDir(pub Arc<SimDisk>);

impl SimDir {
    fn files(&self) -> std::sync::MutexGuard<'_, SegFiles> {
        self.0.segments.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SegmentDir for SimDir {
    fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(":simulated:").join(name)
    }

    fn create_durable(
        &self,
        name: &str,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        self.0.plan.tick()?;
        if self.files().volatile.contains_key(name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let mut bytes = Vec::new();
        fill(&mut bytes)?;
        // The bytes are fsynced, but the name is durable only once the folder is.
        self.0.plan.tick()?;
        self.files()
            .volatile
            .insert(name.to_string(), Arc::new(bytes));
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.0.plan.tick()?;
        let mut f = self.files();
        let data = f
            .volatile
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        f.volatile.insert(to.to_string(), data);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.0.plan.tick()?;
        let mut f = self.files();
        f.durable = f.volatile.clone();
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.0.plan.tick()?;
        self.files()
            .volatile
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        self.0.plan.tick()?;
        Ok(self.files().volatile.keys().cloned().collect())
    }

    fn load(&self, name: &str, expected_len: u64, _mode: ReadMode) -> io::Result<Bytes> {
        self.0.plan.tick()?;
        let f = self.files();
        let data = f
            .volatile
            .get(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if data.len() as u64 != expected_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "length differs from the catalog",
            ));
        }
        Ok(Bytes::copied(data))
    }
}
