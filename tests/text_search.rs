//! Text in, text out, with the default model: passages are encoded on insert and queries at
//! search time; an index remembers its model and refuses another; a vectors-only index and a
//! missing runtime give clear errors; `xqdb models` lists, measures and names the bundles.

mod common;

use std::process::Command;
use std::sync::Arc;
use xqdb::{Encoder, EncoderOptions, Error, Index, ModelBundle, Passage, SearchOptions};

#[test]
fn questions_in_other_languages_find_english_passages() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("idx");
    let index = Index::builder()
        .encoder(common::default_encoder())
        .create(&path)
        .unwrap();
    let passages = vec![
        Passage::new(
            "helsinki",
            "Helsinki is the capital and most populous city of Finland.",
        )
        .with_title("Helsinki")
        .with_lang("en"),
        Passage::new(
            "tokyo",
            "Tokyo is the capital of Japan and its most populous city.",
        )
        .with_lang("en"),
        Passage::new(
            "tolstoy",
            "Leo Tolstoy wrote the novel War and Peace, published in 1869.",
        )
        .with_lang("en"),
        Passage::new(
            "protein",
            "Adults need about 0.8 grams of protein per kilogram of body weight each day.",
        )
        .with_lang("en"),
    ];
    let mut w = index.writer().unwrap();
    let seen = std::sync::atomic::AtomicUsize::new(0);
    w.insert_texts(passages, &|n| {
        seen.store(n.passages, std::sync::atomic::Ordering::Relaxed)
    })
    .unwrap();
    assert_eq!(seen.into_inner(), 4, "progress must reach every passage");
    w.commit().unwrap();
    drop(w);
    for (q, want) in [
        ("Mikä on Suomen pääkaupunki?", "helsinki"),
        ("日本の首都はどこですか？", "tokyo"),
        ("Кто написал «Войну и мир»?", "tolstoy"),
        ("ఒక రోజుకు ఎంత ప్రోటీన్ అవసరం?", "protein"),
    ] {
        let hits = index.search_text(q, 2).unwrap();
        assert_eq!(hits[0].id, want, "{q}: {hits:?}");
    }
    let hits = index
        .search_texts(&["Helsinki"], &SearchOptions::new(1))
        .unwrap();
    assert_eq!(hits[0][0].passage.title.as_deref(), Some("Helsinki"));
    drop(index);

    // Reopened without an encoder, the index loads the bundle it recorded.
    let index = Index::open(&path).unwrap();
    assert_eq!(
        index.search_text("フィンランドの首都", 1).unwrap()[0].id,
        "helsinki"
    );
    drop(index);

    // A bundle with another fingerprint is refused.
    let other = tmp.path().join("other-bundle");
    std::fs::create_dir(&other).unwrap();
    let src = ModelBundle::default_dir();
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("xqdb-bundle.json")).unwrap())
            .unwrap();
    manifest["name"] = "renamed".into();
    std::fs::write(other.join("xqdb-bundle.json"), manifest.to_string()).unwrap();
    std::fs::copy(src.join("tokenizer.json"), other.join("tokenizer.json")).unwrap();
    std::os::unix::fs::symlink(src.join("model.onnx"), other.join("model.onnx")).unwrap();
    let renamed = Arc::new(
        Encoder::open(
            ModelBundle::open(&other).unwrap(),
            &EncoderOptions::default(),
        )
        .unwrap(),
    );
    let e = Index::builder().encoder(renamed).open(&path).unwrap_err();
    assert!(matches!(e, Error::ModelMismatch { .. }), "{e}");
    assert!(e.to_string().contains("renamed@"), "{e}");
}

#[test]
fn a_vectors_only_index_has_no_text_search() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::builder().dim(384).create(tmp.path()).unwrap();
    assert!(matches!(
        index.search_text("hello", 3),
        Err(Error::NoEncoder)
    ));
    let mut w = index.writer().unwrap();
    assert!(matches!(
        w.insert_texts(vec![Passage::new("a", "b")], &|_| {}),
        Err(Error::NoEncoder)
    ));
}

#[test]
fn a_missing_runtime_names_what_was_tried_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args([
            "init",
            tmp.path().join("idx").to_str().unwrap(),
            "--model",
            ModelBundle::default_dir().to_str().unwrap(),
        ])
        .env("XQDB_HOME", tmp.path().join("empty-home"))
        .env(
            "ORT_DYLIB_PATH",
            tmp.path().join("nowhere/libonnxruntime.so"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ONNX Runtime could not be loaded"), "{err}");
    assert!(
        err.contains("ORT_DYLIB_PATH") && err.contains("nowhere"),
        "{err}"
    );
    assert!(err.contains("make setup"), "{err}");
    assert!(
        !tmp.path().join("idx").join("catalog.redb").exists(),
        "no index may be created without its model"
    );
}

#[test]
fn cli_adds_text_rows_and_answers_text_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_xqdb");
    let idx = tmp.path().join("idx");
    assert!(Command::new(bin)
        .args(["init", idx.to_str().unwrap()])
        .output()
        .unwrap()
        .status
        .success());
    let input = tmp.path().join("p.jsonl");
    std::fs::write(
        &input,
        "{\"id\":\"fi\",\"text\":\"Helsinki is the capital of Finland.\",\"lang\":\"en\"}\n{\"id\":\"jp\",\"text\":\"Tokyo is the capital of Japan.\",\"lang\":\"en\"}\n",
    )
    .unwrap();
    common::xqdb_json(&["add", idx.to_str().unwrap(), input.to_str().unwrap()]);
    let v = common::xqdb_json(&[
        "search",
        idx.to_str().unwrap(),
        "Suomen pääkaupunki",
        "-k",
        "1",
    ]);
    assert_eq!(v["hits"][0]["id"], "fi");
}

#[test]
fn bundles_are_listed_measured_and_chosen_by_name() {
    let list = common::xqdb_json(&["models"]);
    let list = list.as_array().unwrap();
    let defaults: Vec<&serde_json::Value> = list.iter().filter(|b| b["default"] == true).collect();
    assert_eq!(defaults.len(), 1, "{list:?}");
    let default = defaults[0];
    assert_eq!(default["name"], xqdb::model::DEFAULT_BUNDLE);
    assert_eq!(default["dtype"], "int8");
    let size = default["size_bytes"].as_u64().unwrap();
    assert!(
        size <= 150_000_000,
        "the default bundle takes {size} bytes on disk"
    );
    assert!(
        list.iter()
            .any(|b| b["name"] == "multilingual-e5-small-fp32" && b["dtype"] == "fp32"),
        "{list:?}"
    );
    for b in list {
        assert!(std::path::Path::new(b["path"].as_str().unwrap()).is_dir());
        assert_eq!(b["dim"], 384);
    }

    // Measured: every bundle encodes.
    let measured = common::xqdb_json(&["models", "--measure", "8"]);
    for b in measured.as_array().unwrap() {
        let speed = b["passages_per_s"].as_f64().unwrap();
        assert!(speed > 0.0, "{b}");
    }

    // `init --model NAME` records that bundle; without it, the default.
    let tmp = tempfile::tempdir().unwrap();
    for (model, want) in [
        (Some("multilingual-e5-small-fp32"), "multilingual-e5-small@"),
        (None, "multilingual-e5-small-int8@"),
    ] {
        let dir = tmp.path().join(model.unwrap_or("default"));
        let mut args = vec!["init", dir.to_str().unwrap()];
        args.extend(model.map(|m| ["--model", m]).into_iter().flatten());
        let created = common::xqdb_json(&args);
        assert!(
            created["model"].as_str().unwrap().starts_with(want),
            "{created}"
        );
    }

    // A link to another listed folder (the name older set-ups used) is an alias, not a
    // second bundle.
    let home = tmp.path().join("home");
    let models = home.join("models");
    let real = models.join(xqdb::model::DEFAULT_BUNDLE);
    std::fs::create_dir_all(&real).unwrap();
    let src = ModelBundle::default_dir();
    for f in ["xqdb-bundle.json", "tokenizer.json", "model.onnx"] {
        std::os::unix::fs::symlink(src.join(f), real.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(xqdb::model::DEFAULT_BUNDLE, models.join("older-name")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(["models", "--json"])
        .env("XQDB_HOME", &home)
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [xqdb::model::DEFAULT_BUNDLE]);
    assert_eq!(listed[0]["default"], true);
}

/// A passage longer than the model reads is refused by `xqdb add` (naming its line and the
/// limit), never cut silently; the limit is listed by `xqdb models`.
#[test]
fn add_refuses_a_passage_longer_than_the_model_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let ix = tmp.path().join("ix");
    let ix = ix.to_str().unwrap();
    common::xqdb_json(&["init", ix]);
    let filler = "the quick brown fox jumps over the lazy dog ".repeat(70);
    let long = format!("{filler}The capital of Mongolia is Ulaanbaatar.");
    let file = tmp.path().join("long.jsonl");
    let rows = [
        serde_json::json!({ "id": "short", "text": "Helsinki is the capital of Finland." }),
        serde_json::json!({ "id": "long", "text": long }),
    ];
    let lines: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(["add", ix, file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("long.jsonl:2:") && stderr.contains("tokens the model reads"),
        "{stderr}"
    );
    assert_eq!(common::xqdb_json(&["stats", ix])["passages"], 0);
    let models = common::xqdb_json(&["models"]);
    let default = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["default"] == true)
        .unwrap();
    assert!(
        default["max_passage_tokens"].as_u64().unwrap() >= 128,
        "{default}"
    );
    assert!(
        stderr.contains(&default["max_passage_tokens"].to_string()),
        "{stderr}"
    );
}
