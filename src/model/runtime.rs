//! Finding and loading ONNX Runtime (`libonnxruntime`), once per process.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The one ONNX Runtime environment of the process, and the library it came from.
static RUNTIME: Mutex<Option<(PathBuf, ort::environment::Environment)>> = Mutex::new(None);

/// The command that sets up the runtime and the default model.
pub const SETUP_HINT: &str =
    "run `make setup` (or `python3 scripts/setup_models.py`) in the xqdb repository, \
     or point ORT_DYLIB_PATH at libonnxruntime.so";

/// The folder where the set-up caches the runtime and models: `$XQDB_HOME`, else
/// `.cache/xqdb` in the source tree this build came from, else `~/.cache/xqdb`.
pub fn xqdb_home() -> PathBuf {
    if let Some(h) = std::env::var_os("XQDB_HOME") {
        return PathBuf::from(h);
    }
    let in_tree = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".cache")
        .join("xqdb");
    if in_tree.exists() {
        return in_tree;
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache").join("xqdb"))
        .unwrap_or(in_tree)
}

fn cached_libraries() -> Vec<PathBuf> {
    let dir = xqdb_home().join("onnxruntime");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with("libonnxruntime.so")
                            || n.starts_with("libonnxruntime.") && n.ends_with(".dylib")
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.reverse();
    if found.is_empty() {
        found.push(dir.join("libonnxruntime.so"));
    }
    found
}

/// Loads ONNX Runtime, trying in order: `explicit`, `ORT_DYLIB_PATH`, the set-up's cache.
/// Later calls return the library already loaded. The error lists every path tried, why
/// each failed, and the command that fixes it.
pub fn init_runtime(explicit: Option<&Path>) -> Result<PathBuf> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((path, _)) = slot.as_ref() {
        return Ok(path.clone());
    }
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(("explicit path".into(), p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        candidates.push(("ORT_DYLIB_PATH".into(), PathBuf::from(p)));
    }
    for p in cached_libraries() {
        candidates.push(("set-up cache".into(), p));
    }
    let mut tried = Vec::new();
    for (source, path) in candidates {
        if !path.is_file() {
            tried.push(format!("{} ({source}): no such file", path.display()));
            continue;
        }
        match ort::init_from(&path) {
            Ok(builder) => match builder.with_name("xqdb").build() {
                Ok(env) => {
                    *slot = Some((path.clone(), env));
                    return Ok(path);
                }
                Err(e) => tried.push(format!("{} ({source}): {e}", path.display())),
            },
            // The Debug text carries the dlopen reason, which Display drops.
            Err(e) => tried.push(format!("{} ({source}): {e:?}", path.display())),
        }
    }
    Err(Error::RuntimeUnavailable {
        tried,
        hint: SETUP_HINT,
    })
}

/// Creates an ONNX session for `model` on the process's runtime (loading it if needed), with
/// the session configuration entries `config` (a bundle's `session_config`).
pub(crate) fn new_session(
    explicit: Option<&Path>,
    model: &Path,
    threads: usize,
    config: &std::collections::BTreeMap<String, String>,
    profile: Option<&Path>,
    prepacked: Option<&ort::session::builder::PrepackedWeights>,
) -> Result<ort::session::Session> {
    init_runtime(explicit)?;
    let slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_, env) = slot.as_ref().expect("runtime initialised above");
    let err = |e: String| Error::Model {
        path: model.to_path_buf(),
        reason: format!("ONNX Runtime cannot load it: {e}"),
    };
    let builder = ort::session::Session::builder(env).map_err(|e| err(e.to_string()))?;
    let builder = builder
        .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Level3)
        .map_err(|e| err(e.to_string()))?;
    let mut builder = builder
        .with_intra_threads(threads.max(1))
        .map_err(|e| err(e.to_string()))?;
    for (key, value) in config {
        builder = builder
            .with_config_entry(key, value)
            .map_err(|e| err(format!("session option {key}={value}: {e}")))?;
    }
    if let Some(weights) = prepacked {
        builder = builder
            .with_prepacked_weights(weights)
            .map_err(|e| err(e.to_string()))?;
    }
    if let Some(prefix) = profile {
        builder = builder
            .with_profiling(prefix)
            .map_err(|e| err(format!("profiling to {}: {e}", prefix.display())))?;
    }
    builder
        .commit_from_file(model)
        .map_err(|e| err(e.to_string()))
}
