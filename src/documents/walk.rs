//! Walking a folder: files found (ignore rules, symlink loops, size limits), read with a
//! limit, hashed, and checked for content that is not text.

use super::options::SyncOptions;
use super::sync::Skipped;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A file the walk found.
pub(super) struct Found {
    pub(super) rel: String,
    pub(super) path: PathBuf,
}

pub(super) fn walk(
    folder: &Path,
    index_root: Option<&Path>,
    o: &SyncOptions,
) -> Result<(Vec<Found>, Vec<Skipped>)> {
    let mut overrides = ignore::overrides::OverrideBuilder::new(folder);
    for pattern in &o.exclude {
        overrides
            .add(&format!("!{pattern}"))
            .map_err(|e| Error::InvalidArgument(format!("exclude pattern {pattern:?}: {e}")))?;
    }
    let overrides = overrides
        .build()
        .map_err(|e| Error::InvalidArgument(format!("exclude patterns: {e}")))?;
    let skip_root = index_root.map(Path::to_path_buf);
    let walker = ignore::WalkBuilder::new(folder)
        .standard_filters(false)
        .hidden(!o.hidden)
        .ignore(true)
        .git_ignore(true)
        .require_git(false)
        .parents(false)
        .follow_links(o.follow_links)
        .overrides(overrides)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(move |e| {
            // Never index the index itself when it lives inside the folder.
            match (&skip_root, e.file_type().is_some_and(|t| t.is_dir())) {
                (Some(root), true) => e.path().canonicalize().map_or(true, |p| &p != root),
                _ => true,
            }
        })
        .build();
    let (mut found, mut skipped) = (Vec::new(), Vec::new());
    let rel_of = |p: &Path| -> std::result::Result<String, String> {
        let rel = p.strip_prefix(folder).unwrap_or(p);
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        parts
            .map(|v| v.join("/"))
            .ok_or_else(|| rel.to_string_lossy().into_owned())
    };
    for entry in walker {
        match entry {
            Ok(e) => {
                if !e.file_type().is_some_and(|t| t.is_file()) {
                    continue;
                }
                match rel_of(e.path()) {
                    Ok(rel) => found.push(Found {
                        rel,
                        path: e.path().to_path_buf(),
                    }),
                    Err(lossy) => skipped.push(Skipped {
                        path: lossy,
                        reason: "the file name is not valid UTF-8".into(),
                    }),
                }
            }
            Err(err) => {
                let path = walk_error_path(&err)
                    .map(|p| rel_of(&p).unwrap_or_else(|l| l))
                    .unwrap_or_default();
                let reason = if is_loop(&err) {
                    "symbolic link loop".to_string()
                } else {
                    format!("cannot read: {err}")
                };
                skipped.push(Skipped { path, reason });
            }
        }
    }
    Ok((found, skipped))
}

pub(super) fn walk_error_path(e: &ignore::Error) -> Option<PathBuf> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            walk_error_path(err)
        }
        _ => None,
    }
}

pub(super) fn is_loop(e: &ignore::Error) -> bool {
    match e {
        ignore::Error::Loop { .. } => true,
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => is_loop(err),
        _ => false,
    }
}

pub(super) fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128)
}

pub(super) fn hash_hex(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// Reads at most `limit + 1` bytes (so a file that grew past the limit is noticed).
pub(super) fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Streams the file through xxh3-128 (memory stays bounded whatever its size).
pub(super) fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:032x}", h.digest128()))
}

/// The text of a PDF's pages, joined by form feeds. pdf-extract reports malformed files as
/// errors, and its panics on files it does not understand are caught and reported too.
pub(super) fn pdf_pages(bytes: &[u8]) -> std::result::Result<String, String> {
    let r = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes));
    match r {
        Ok(Ok(pages)) => Ok(pages.join("\u{c}")),
        Ok(Err(e)) => Err(format!("cannot read the PDF: {e}")),
        Err(_) => Err("the PDF reader failed on this file".into()),
    }
}
