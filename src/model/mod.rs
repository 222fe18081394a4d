//! Models: ONNX Runtime discovery, model bundles and the text encoder and the seq2seq generator.

mod bundle;
mod encoder;
mod generator;
mod installed;
mod runtime;

pub use bundle::{
    parse_tokenizer, FileCheck, InputNames, Manifest, ModelBundle, Pooling, DEFAULT_BUNDLE,
    MANIFEST_FILE, TOKENIZER_PROBE,
};
pub use encoder::{Encoder, EncoderOptions, TextKind};
pub use generator::{
    check_config, check_target_vocab, pick, DecoderLayout, GenerationRequest, GenerationTimings,
    Generator, GeneratorOptions, Sampling, Schedule, DEFAULT_MAX_ROWS, GENERATOR_MANIFEST,
};
pub use installed::{installed_bundles, models_dir, resolve_bundle, InstalledBundle};
pub use runtime::{init_runtime, xqdb_home, SETUP_HINT};

/// What to run when the default model is missing.
pub const SETUP_HINT_MODEL: &str = "run `make setup` (or `python3 scripts/setup_models.py`) in the xqdb repository to create the default model bundle";
