//! Helpers every command group uses: the result type, error text, models and opening.

use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use xqdb::{Encoder, EncoderOptions, Index, ModelBundle};

/// What a command returns: a JSON document (printed by `output`), or an error message.
pub(crate) type CliResult = Result<Value, String>;

pub(crate) fn err(e: xqdb::Error) -> String {
    e.to_string()
}

/// The encoder of `model` (a bundle folder, or the name of a bundle `xqdb models` lists), or
/// of the default bundle.
pub(crate) fn load_encoder(model: Option<&Path>) -> Result<Arc<Encoder>, String> {
    let dir = model
        .map(xqdb::model::resolve_bundle)
        .unwrap_or_else(ModelBundle::default_dir);
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
