//! The encoder bundles the set-up installed in the cache (`xqdb models`), and bundle names.

use super::bundle::{ModelBundle, MANIFEST_FILE};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One encoder bundle found in the cache's `models/` folder.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct InstalledBundle {
    /// The folder's name, which `--model NAME` accepts.
    pub name: String,
    /// The folder.
    pub path: PathBuf,
    /// Bytes of every file the manifest lists.
    pub size_bytes: u64,
    /// The weights' type as the manifest states it (`fp32` when it states none).
    pub dtype: String,
    /// Output dimension.
    pub dim: usize,
    /// Longest passage the model reads, in tokens (with its prefix).
    pub max_passage_tokens: usize,
    /// Whether it is the default bundle ([`ModelBundle::default_dir`]).
    pub default: bool,
}

/// The folder that holds the set-up's bundles.
pub fn models_dir() -> PathBuf {
    crate::model::xqdb_home().join("models")
}

/// Every encoder bundle in [`models_dir`] whose manifest reads, sorted by name. Folders that
/// are not bundles, or whose manifest does not parse, are left out, and so are links to
/// another folder listed here (the set-up leaves one under an older folder name so that
/// indexes recording that path still open).
pub fn installed_bundles() -> Vec<InstalledBundle> {
    let default = ModelBundle::default_dir();
    let Ok(entries) = std::fs::read_dir(models_dir()) else {
        return Vec::new();
    };
    let mut out: Vec<InstalledBundle> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(MANIFEST_FILE).is_file())
        .filter_map(|e| {
            let bundle = ModelBundle::open(e.path()).ok()?;
            let m = bundle.manifest();
            (m.kind == "encoder").then(|| InstalledBundle {
                name: e.file_name().to_string_lossy().into_owned(),
                size_bytes: m.files.values().map(|f| f.bytes).sum(),
                dtype: m.dtype.clone().unwrap_or_else(|| "fp32".to_string()),
                dim: m.dim,
                max_passage_tokens: m.max_passage_tokens,
                default: e.path() == default,
                path: e.path(),
            })
        })
        .collect();
    // Aliases: links whose target is another listed folder.
    let real: std::collections::HashSet<PathBuf> = out
        .iter()
        .filter(|b| !is_link(&b.path))
        .filter_map(|b| b.path.canonicalize().ok())
        .collect();
    out.retain(|b| !(is_link(&b.path) && b.path.canonicalize().is_ok_and(|c| real.contains(&c))));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// A bundle given as a folder or by the name of an installed bundle: an existing path is
/// taken as it is; otherwise a plain name is looked up in [`models_dir`].
pub fn resolve_bundle(name_or_dir: &Path) -> PathBuf {
    let plain_name = name_or_dir.components().count() == 1;
    if name_or_dir.exists() || !plain_name {
        return name_or_dir.to_path_buf();
    }
    models_dir().join(name_or_dir)
}
