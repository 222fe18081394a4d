//! `sync`: the folder compared with the file records, each changed file read, cut, encoded
//! and committed on its own (a file is never half in the index), removed files deleted.

use super::decode::decode;
use super::extract::Kind;
use super::lang::Detector;
use super::options::SyncOptions;
use super::passages::{passages_of, rows_of};
use super::record::{files, passage_id, FileRecord, FILE_RECORD_VERSION};
use super::walk::{hash_file, hash_hex, mtime_ns, pdf_pages, read_limited, walk, Found};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::ingest::WriteMode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// A file a sync did not index, and why. Its previous passages (if any) stay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Path relative to the folder (as the walk saw it, for walk errors).
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What a sync did. File counts, except `passages_*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Files indexed for the first time.
    pub added: usize,
    /// Files whose content changed: their passages were replaced.
    pub changed: usize,
    /// Files gone from the folder (or now excluded): their passages were deleted.
    pub removed: usize,
    /// Files left as they were (same size and time, or same content).
    pub unchanged: usize,
    /// Files not indexed, with the reason.
    pub skipped: Vec<Skipped>,
    /// Passages encoded (to be encoded, with `dry_run`).
    pub passages_encoded: usize,
    /// Passages deleted (replaced or of removed files).
    pub passages_removed: usize,
    /// Bytes read from changed files.
    pub bytes_read: u64,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Wall time.
    pub seconds: f64,
    /// Stopped early by [`SyncOptions::stop`](super::SyncOptions::stop): the files counted
    /// are done, the rest (and removals) wait for the next sync.
    #[serde(default)]
    pub interrupted: bool,
}

/// How far a sync has come; given to progress callbacks after every file.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SyncProgress {
    /// Files looked at so far.
    pub files: usize,
    /// Files in the folder (after exclusions).
    pub total_files: usize,
    /// Passages encoded so far.
    pub passages: usize,
    /// Bytes read so far.
    pub bytes: u64,
    /// Time since the sync started.
    pub elapsed: Duration,
}

/// Brings the index in step with `folder`; see the module docs. Needs an index with a
/// model (its tokenizer keeps passages within the token limit). Files that cannot be indexed
/// are skipped with a reason, keeping their earlier passages; errors of the index itself
/// (a missing model, a full disk) stop the sync, and every file committed before stays.
pub fn sync(
    index: &Index,
    folder: &Path,
    options: &SyncOptions,
    progress: &dyn Fn(&SyncProgress),
) -> Result<SyncReport> {
    let started = Instant::now();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if !std::fs::metadata(folder).map_err(io(folder))?.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{} is not a folder",
            folder.display()
        )));
    }
    if let Some(l) = &options.lang {
        crate::types::check_lang_tag(l)?;
    }
    let detector = Detector::among(&options.languages)?;
    // The model loads when the first changed file needs it: a sync with nothing to do reads
    // only the folder's metadata.
    let encoder = std::cell::OnceCell::new();
    let index_root = index.path().canonicalize().ok();
    let (found, mut skipped) = walk(folder, index_root.as_deref(), options)?;
    let old: BTreeMap<String, FileRecord> = files(index)?.into_iter().collect();
    let mut report = SyncReport {
        dry_run: options.dry_run,
        ..Default::default()
    };
    let mut writer = if options.dry_run {
        None
    } else {
        Some(index.writer()?)
    };
    let mut seen: HashSet<String> = skipped.iter().map(|s| s.path.clone()).collect();
    let mut fits = |t: &str| -> Result<bool> {
        if encoder.get().is_none() {
            let _ = encoder.set(index.encoder()?);
        }
        encoder.get().expect("set above").passage_fits(t)
    };
    let total = found.len();
    let tick = |report: &SyncReport, files: usize| {
        progress(&SyncProgress {
            files,
            total_files: total,
            passages: report.passages_encoded,
            bytes: report.bytes_read,
            elapsed: started.elapsed(),
        })
    };
    let stopped = || {
        options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
    };
    for (i, f) in found.iter().enumerate() {
        if stopped() {
            report.interrupted = true;
            break;
        }
        seen.insert(f.rel.clone());
        let before = old.get(&f.rel);
        let outcome = sync_file(
            index,
            f,
            before,
            options,
            &detector,
            &mut fits,
            writer.as_mut(),
            &mut report,
        )?;
        if let Err(reason) = outcome {
            skipped.push(Skipped {
                path: f.rel.clone(),
                reason,
            });
        }
        tick(&report, i + 1);
    }
    for (path, record) in &old {
        // An interrupted walk has not seen every file: nothing is removed.
        if report.interrupted || seen.contains(path) {
            continue;
        }
        if let Some(w) = writer.as_mut() {
            for n in 0..record.passages {
                w.delete(&passage_id(path, n))?;
            }
            w.stage_file(path, None);
            w.commit()?;
        }
        report.removed += 1;
        report.passages_removed += record.passages as usize;
    }
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    report.skipped = skipped;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Syncs one file. `Ok(Err(reason))` is a skip; `Err` stops the sync.
#[allow(clippy::too_many_arguments)]
pub(super) fn sync_file(
    index: &Index,
    f: &Found,
    before: Option<&FileRecord>,
    o: &SyncOptions,
    detector: &Detector,
    fits: &mut dyn FnMut(&str) -> Result<bool>,
    writer: Option<&mut crate::Writer>,
    report: &mut SyncReport,
) -> Result<std::result::Result<(), String>> {
    let meta = match std::fs::metadata(&f.path) {
        Ok(m) => m,
        Err(e) => return Ok(Err(format!("cannot read: {e}"))),
    };
    let (size, mtime) = (meta.len(), mtime_ns(&meta));
    let settings = o.fingerprint();
    // Its passages now, whatever settings stored them (surplus ones are deleted).
    let old_n = before.map_or(0, |b| b.passages);
    let is_new = before.is_none();
    // A file synced with other settings is read and encoded again, whatever its content;
    // so is one whose passages are not all there (deleted by hand since the last sync).
    let before = match before.filter(|b| b.settings == settings) {
        Some(b) if passages_present(index, &f.rel, b.passages)? => Some(b),
        _ => None,
    };
    if let Some(b) = before {
        if b.size == size && b.mtime_ns == mtime {
            report.unchanged += 1;
            return Ok(Ok(()));
        }
    }
    let Some(kind) = Kind::of(&f.rel) else {
        return Ok(Err(
            "not a text, Markdown or HTML file (by extension)".into()
        ));
    };
    if size > o.max_file_bytes {
        return Ok(Err(format!(
            "{size} bytes, over the limit of {} bytes",
            o.max_file_bytes
        )));
    }
    let bytes = match read_limited(&f.path, o.max_file_bytes) {
        Ok(b) => b,
        Err(e) => return Ok(Err(format!("cannot read: {e}"))),
    };
    report.bytes_read += bytes.len() as u64;
    if bytes.len() as u64 > o.max_file_bytes {
        return Ok(Err("grew over the size limit while being read".into()));
    }
    let hash = hash_hex(&bytes);
    let record = FileRecord {
        v: FILE_RECORD_VERSION,
        size: bytes.len() as u64,
        mtime_ns: mtime,
        hash,
        passages: 0,
        settings,
    };
    if let Some(b) = before.filter(|b| b.hash == record.hash) {
        // Touched but not changed: remember the new time, read nothing next time.
        report.unchanged += 1;
        if let Some(w) = writer {
            w.stage_file(
                &f.rel,
                Some(
                    FileRecord {
                        passages: b.passages,
                        ..record
                    }
                    .encode(),
                ),
            );
            w.commit()?;
        }
        return Ok(Ok(()));
    }
    let pdf_text;
    let decoded;
    let text = if kind == Kind::Pdf {
        pdf_text = match pdf_pages(&bytes) {
            Ok(t) => t,
            Err(reason) => return Ok(Err(reason)),
        };
        decoded = None;
        pdf_text.as_str()
    } else {
        decoded = match decode(&bytes, kind, o.forced_encoding()?) {
            Ok(d) => Some(d),
            Err(reason) => return Ok(Err(reason)),
        };
        decoded.as_ref().map_or("", |d| d.text.as_str())
    };
    let mut passages = passages_of(
        &f.rel,
        kind,
        text,
        &o.chunk,
        &o.context,
        o.lang.as_deref(),
        detector,
        fits,
    )?;
    // `start` and `end` name bytes of the file as it is on disk, whatever its encoding.
    if let Some(d) = decoded.as_ref().filter(|d| d.remaps()) {
        for p in &mut passages {
            let m = p
                .meta
                .as_mut()
                .and_then(|m| m.as_object_mut())
                .expect("set");
            for key in ["start", "end"] {
                let v = d.original(m[key].as_u64().unwrap_or(0) as usize) as u64;
                m.insert(key.into(), v.into());
            }
            if d.encoding != "UTF-8" {
                m.insert("encoding".into(), d.encoding.into());
            }
        }
    }
    if let Some(hook) = o.after_read {
        hook(&f.path);
    }
    // The content must still be what was read: a file written to meanwhile waits for the
    // next sync rather than being stored half old, half new.
    match hash_file(&f.path) {
        Ok(h) if h == record.hash => {}
        Ok(_) => {
            return Ok(Err(
                "changed while being read; the next sync reads it".into()
            ))
        }
        Err(e) => return Ok(Err(format!("cannot read: {e}"))),
    }
    let n = passages.len() as u32;
    if let Some(w) = writer {
        let rows = rows_of(index, passages, o.context.fuse)?;
        if let Err(e) = w.stage_rows(rows, WriteMode::Upsert, &|_| {}) {
            w.rollback();
            return match e.row {
                Some(_) => Ok(Err(e.error.to_string())),
                None => Err(e.error),
            };
        }
        for k in n..old_n {
            w.delete(&passage_id(&f.rel, k))?;
        }
        let record = FileRecord {
            passages: n,
            ..record
        };
        w.stage_file(&f.rel, Some(record.encode()));
        w.commit()?;
    }
    report.passages_encoded += n as usize;
    report.passages_removed += old_n.saturating_sub(n) as usize;
    if n == 0 {
        return Ok(Err("no text".into()));
    }
    if is_new {
        report.added += 1;
    } else {
        report.changed += 1;
    }
    Ok(Ok(()))
}

/// Whether every passage a file record promises (`path#0` … `path#(n-1)`) is in the index.
fn passages_present(index: &Index, rel: &str, n: u32) -> Result<bool> {
    let snap = index.snapshot();
    for i in 0..n {
        if !snap.contains(&passage_id(rel, i))? {
            return Ok(false);
        }
    }
    Ok(true)
}
