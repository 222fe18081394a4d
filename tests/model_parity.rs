//! The Rust encoder against ONNX Runtime from Python: the set-up (`make setup`) records the
//! Python embeddings of 100+ multilingual strings with the default bundle and with each of its
//! variants; the Rust encoder must reproduce every one with every bundle (cosine >= 0.9999;
//! int8 bundles one text per call, and >= 0.995 in batches). Also the model's typed errors.
//! These tests need the default bundle and fail, with the command to run, when it is missing.

use std::path::PathBuf;
use xqdb::model::{Encoder, EncoderOptions, ModelBundle, TextKind};

fn default_bundle() -> PathBuf {
    let dir = ModelBundle::default_dir();
    assert!(
        dir.join("xqdb-bundle.json").exists(),
        "the default model bundle is missing at {}: run `make setup` first",
        dir.display()
    );
    dir
}

#[test]
fn rust_embeddings_equal_python_onnxruntime_embeddings() {
    default_bundle();
    let bundles = xqdb::model::installed_bundles();
    for want in [
        "multilingual-e5-small-fp32",
        "multilingual-e5-small-fp32-fused",
        "multilingual-e5-small-int8",
    ] {
        assert!(
            bundles.iter().any(|b| b.name == want),
            "the set-up installs {want}: {bundles:?}"
        );
    }
    assert!(
        bundles.iter().any(|b| b.default && b.dtype == "int8"),
        "{bundles:?}"
    );
    for b in bundles {
        // Dynamic int8 quantises activations per call, so the encoder gives such a bundle one
        // text per call (the fixture was made one text at a time too). fp32 batches are
        // spread over two sessions.
        if b.dtype == "fp32" {
            check_parity(&b.path, 7, 2, 0.9999);
        } else {
            // A bundle whose rows depend on their batch is encoded one text per call
            // whatever the batch size asked: as exact in batches as alone.
            check_parity(&b.path, 1, 1, 0.9999);
            check_parity(&b.path, 32, 1, 0.9999);
        }
    }
}

/// The Rust encoder of the bundle at `dir`, `batch_size` texts per call over `sessions`
/// sessions, reproduces its `parity.jsonl` (cosine >= `floor`).
fn check_parity(dir: &std::path::Path, batch_size: usize, sessions: usize, floor: f32) {
    let encoder = Encoder::open(
        ModelBundle::open(dir).unwrap(),
        &EncoderOptions {
            batch_size,
            sessions,
            ..Default::default()
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.join("parity.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rows.len() >= 100,
        "parity fixture too small: {}",
        rows.len()
    );
    for kind in ["query", "passage"] {
        let subset: Vec<&serde_json::Value> = rows.iter().filter(|r| r["kind"] == kind).collect();
        let texts: Vec<&str> = subset.iter().map(|r| r["text"].as_str().unwrap()).collect();
        let k = if kind == "query" {
            TextKind::Query
        } else {
            TextKind::Passage
        };
        let got = encoder.encode(&texts, k).unwrap();
        let mut worst = 1.0f32;
        for (r, v) in subset.iter().zip(&got) {
            let want: Vec<f32> = serde_json::from_value(r["vector"].clone()).unwrap();
            assert_eq!(v.len(), want.len());
            let cos: f32 = v.iter().zip(&want).map(|(a, b)| a * b).sum();
            worst = worst.min(cos);
            assert!(
                cos >= floor,
                "{} at batch {batch_size}: {kind} {:?}: cosine {cos}",
                dir.display(),
                r["text"]
            );
        }
        println!(
            "{} at batch {batch_size}: {kind}: {} strings, worst cosine {worst:.6}",
            dir.display(),
            subset.len()
        );
    }
}

#[test]
fn bad_bundles_give_typed_errors_naming_the_file() {
    let dir = default_bundle();
    let tmp = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let p = tmp.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        for f in ["xqdb-bundle.json", "tokenizer.json"] {
            std::fs::copy(dir.join(f), p.join(f)).unwrap();
        }
        std::os::unix::fs::symlink(dir.join("model.onnx"), p.join("model.onnx")).unwrap();
        p
    };
    // Missing manifest.
    let e = ModelBundle::open(tmp.path()).unwrap_err();
    assert!(
        matches!(e, xqdb::Error::Model { .. })
            && e.to_string().contains("xqdb-bundle.json")
            && e.to_string().contains("make setup"),
        "{e}"
    );
    // Missing model file.
    let p = copy("missing");
    std::fs::remove_file(p.join("model.onnx")).unwrap();
    let e = ModelBundle::open(&p).unwrap_err();
    assert!(
        e.to_string().contains("model.onnx") && e.to_string().contains("missing"),
        "{e}"
    );
    // Truncated model file.
    let p = copy("truncated");
    std::fs::remove_file(p.join("model.onnx")).unwrap();
    std::fs::write(p.join("model.onnx"), b"\x08\x07truncated").unwrap();
    let e = ModelBundle::open(&p).unwrap_err();
    assert!(
        e.to_string().contains("model.onnx") && e.to_string().contains("truncated"),
        "{e}"
    );
    // A tokenizer.json that does not parse.
    let p = copy("badtok");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("xqdb-bundle.json")).unwrap())
            .unwrap();
    m["files"].as_object_mut().unwrap().remove("tokenizer.json");
    std::fs::write(p.join("xqdb-bundle.json"), m.to_string()).unwrap();
    std::fs::write(p.join("tokenizer.json"), b"{ not json").unwrap();
    let e = Encoder::open(ModelBundle::open(&p).unwrap(), &EncoderOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("tokenizer.json")
            && (e.to_string().contains("parse") || e.to_string().contains("not valid JSON")),
        "{e}"
    );
    // A manifest pointing outside its folder.
    let p = copy("escape");
    m["tokenizer"] = "../escape/tokenizer.json".into();
    std::fs::write(p.join("xqdb-bundle.json"), m.to_string()).unwrap();
    let e = ModelBundle::open(&p).unwrap_err();
    assert!(e.to_string().contains("not a plain path"), "{e}");
    // A manifest whose dim disagrees with the model's output.
    let p = copy("dim");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("xqdb-bundle.json")).unwrap())
            .unwrap();
    m["dim"] = 256.into();
    std::fs::write(p.join("xqdb-bundle.json"), m.to_string()).unwrap();
    let enc = Encoder::open(ModelBundle::open(&p).unwrap(), &EncoderOptions::default()).unwrap();
    let e = enc.encode_queries(&["hello"]).unwrap_err();
    assert!(
        e.to_string().contains("model.onnx") && e.to_string().contains("shape"),
        "{e}"
    );
}
