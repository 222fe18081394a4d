//! Seq2seq generation (T5/mT5 exported by optimum) with a real KV cache and seeded sampling.
//!
//! A generator bundle is an optimum export folder: `encoder_model.onnx`, either
//! `decoder_model.onnx` + `decoder_with_past_model.onnx` (split layout) or
//! `decoder_model_merged.onnx` (merged layout, with a `use_cache_branch` input), plus
//! `config.json` and `tokenizer.json`. Every prompt is encoded once; its samples are
//! decoded together, one token per step, feeding the previous step's key/value tensors
//! back into the decoder (the cross-attention keys/values come from the first step).
//!
//! `manifest` reads the folder, `run` holds the sessions and runs one encoder pass or decoder
//! step, `schedule` moves prompts through waves of rows, `cache` keeps the key/value tensors
//! between steps and `sampling` picks tokens.

mod cache;
mod manifest;
mod run;
mod sampling;
mod schedule;

pub use manifest::{check_config, check_target_vocab, DecoderLayout, GENERATOR_MANIFEST};
pub use run::{GenerationTimings, Generator, GeneratorOptions};
pub use sampling::{pick, Sampling};
pub use schedule::{GenerationRequest, Schedule, DEFAULT_MAX_ROWS};
