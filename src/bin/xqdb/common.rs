//! Helpers every command group uses: the result type, error text, models and opening.

use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use xqdb::{Encoder, EncoderOptions, Index, ModelBundle};

/// What a command returns: a JSON document (printed by `output`), or an error message.
pub(crate) type CliResult = Result<Value, String>;

/// Set by the first SIGINT or SIGTERM once [`interruptible`] has been called.
static INTERRUPTED: std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();

/// Makes the first SIGINT/SIGTERM set a flag that a writing command checks between batches
/// or files (it then rolls back the batch in flight, says what was committed and exits 130);
/// a second signal ends the process at once (what was committed stays: commits are atomic).
pub(crate) fn interruptible() -> Arc<std::sync::atomic::AtomicBool> {
    INTERRUPTED
        .get_or_init(|| {
            let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                // The conditional exit first: it fires only when the flag is already set.
                let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone());
                let _ = signal_hook::flag::register(sig, flag.clone());
            }
            flag
        })
        .clone()
}

/// Whether a command has said what an interrupt left ([`tell_interrupted`]).
static TOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says on stderr what an interrupt left (`interrupted: …`), once for the process.
pub(crate) fn tell_interrupted(what: &str) {
    TOLD.store(true, std::sync::atomic::Ordering::Relaxed);
    eprintln!("interrupted: {what}");
}

/// Whether [`tell_interrupted`] was called.
pub(crate) fn told() -> bool {
    TOLD.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether an interrupt arrived (after [`interruptible`]).
pub(crate) fn interrupted() -> bool {
    INTERRUPTED
        .get()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
}

pub(crate) fn err(e: xqdb::Error) -> String {
    e.to_string()
}

/// The encoder of `model` (a bundle folder, or the name of a bundle `xqdb models` lists), or
/// of the default bundle.
pub(crate) fn load_encoder(model: Option<&Path>) -> Result<Arc<Encoder>, String> {
    let dir = model
        .map(xqdb::model::resolve_bundle)
        .unwrap_or_else(ModelBundle::default_dir);
    if let Some(name) = model.filter(|_| !dir.exists()) {
        // A name (or folder) that is not there: say which names are.
        let names: Vec<String> = xqdb::model::installed_bundles()
            .into_iter()
            .map(|b| b.name)
            .collect();
        return Err(if names.is_empty() {
            format!(
                "no model bundle {}; none is installed: {}",
                name.display(),
                xqdb::model::SETUP_HINT_MODEL
            )
        } else {
            format!(
                "no model bundle {}; installed: {} (`xqdb models` describes them)",
                name.display(),
                names.join(", ")
            )
        });
    }
    let bundle = ModelBundle::open(&dir).map_err(err)?;
    Encoder::open(bundle, &EncoderOptions::default())
        .map(Arc::new)
        .map_err(err)
}

pub(crate) fn open_index(
    dir: &Path,
    model: Option<&Path>,
    read_only: bool,
) -> Result<Index, String> {
    let mut builder = Index::builder().read_only(read_only);
    if let Some(m) = model {
        builder = builder.encoder(load_encoder(Some(m))?);
    }
    builder.open(dir).map_err(err)
}
