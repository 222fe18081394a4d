//! Writes the golden store that `tests/backward_compat.rs` opens with every later build.
//!
//! Run once per format version, never in CI:
//! `cargo run --example make_golden_store -- tests/golden/v3`
//! It writes `store/` (one sealed segment, a tail, a tombstone, languages, metadata, an
//! f16 copy of the same data in `store-f16/`), from format 3 on `store-xqg/` (the same rows,
//! every other one with an xQG record, an xQG profile and a stored query adapter), and
//! `expected.json`: the ids, passages, top-3 answers, xQG records and adapter this build
//! gave, which later builds must reproduce. From format 4 on it also writes `store-docs/`:
//! `examples/docs` synced with the default model (`make setup` first), with its file records;
//! from format 5 on `store-codes/`: the xQG store's rows in an index that keeps binary and
//! i8 codes (version-2 segments, a codebook), answered through its default binary first pass;
//! from format 6 on the xQG stores also keep a query adapter for Finnish queries; from format
//! 7 on `store-lexical/`: the xQG store's rows in an index with a lexical index (stemming on),
//! with the top-3 keyword answers to four queries.

use serde_json::json;
use xqdb::{Dtype, Index, Metric, Passage};

fn vector(i: usize) -> Vec<f32> {
    (0..4).map(|j| ((i * 5 + j * 3) % 7) as f32 - 3.0).collect()
}

/// The top-3 (id, score) of each query: what a later build must answer.
fn top3(snap: &xqdb::Snapshot, queries: &[Vec<f32>]) -> xqdb::Result<Vec<Vec<serde_json::Value>>> {
    queries
        .iter()
        .map(|q| {
            snap.search(q, 3)
                .map(|hits| hits.iter().map(|h| json!([h.id, h.score])).collect())
        })
        .collect()
}

/// The stored passages of `ids`.
fn all_passages(snap: &xqdb::Snapshot, ids: &[String]) -> xqdb::Result<Vec<Passage>> {
    ids.iter()
        .map(|id| snap.get(id).map(Option::unwrap))
        .collect()
}

fn build(
    dir: &std::path::Path,
    dtype: Dtype,
    xqg: bool,
    codes: bool,
    lexical: bool,
) -> xqdb::Result<serde_json::Value> {
    let mut b = Index::builder()
        .dim(4)
        .metric(Metric::Dot)
        .dtype(dtype)
        .direct_segment_rows(8);
    if codes {
        b = b.codes(xqdb::Codes::parse("binary,i8")?);
    }
    if lexical {
        b = b.lexical(xqdb::LexicalSettings {
            stem: true,
            ..Default::default()
        });
    }
    if xqg {
        b = b.xqg(xqdb::XqgProfile {
            alpha: 0.25,
            normalize: false,
            ..Default::default()
        });
    }
    let index = b.create(dir)?;
    let mut w = index.writer()?;
    let langs = ["en", "ja", "te", "fi"];
    for i in 0..8 {
        let p = Passage::new(format!("seg-{i}"), format!("sealed passage {i} — 封印 {i}"))
            .with_title(format!("title {i}"))
            .with_lang(langs[i % 4])
            .with_meta(json!({ "n": i, "even": i % 2 == 0 }));
        if xqg && i % 2 == 0 {
            let queries = vec![("fi".to_string(), format!("kysymys {i}"))];
            let a = xqdb::Augmentation::new(vector(i), queries, &[vector(i + 1)], false);
            w.insert_augmented(p, a)?;
        } else {
            w.insert(p, &vector(i))?;
        }
    }
    w.commit()?;
    for i in 8..11 {
        w.insert(
            Passage::new(format!("tail-{i}"), format!("tail passage {i}")).with_lang("ar"),
            &vector(i),
        )?;
    }
    w.delete("seg-3")?;
    w.commit()?;
    let adapter = if xqg {
        let m: Vec<f32> = (0..16)
            .map(|k| if k % 5 == 0 { 1.5 } else { 0.25 })
            .collect();
        let a = xqdb::distill::Adapter::from_matrix(4, m)?;
        let info = xqdb::distill::AdapterInfo {
            teacher: "golden".into(),
            examples: 7,
            ..Default::default()
        };
        w.set_adapter(&a, &info)?;
        json!({ "weights": a.weights(), "teacher": "golden" })
    } else {
        serde_json::Value::Null
    };
    // From format 6 on, the xQG stores also keep a query adapter for Finnish queries.
    let lang_adapters = if xqg && xqdb::FORMAT_VERSION >= 6 {
        let m: Vec<f32> = (0..16)
            .map(|k| if k % 5 == 0 { 0.5 } else { -0.125 })
            .collect();
        let a = xqdb::distill::Adapter::from_matrix(4, m)?;
        let info = xqdb::distill::AdapterInfo {
            teacher: "golden".into(),
            lang: Some("fi".into()),
            objective: Some("embedding".into()),
            lambda: Some(3.0),
            ..Default::default()
        };
        w.set_adapter(&a, &info)?;
        json!({ "fi": a.weights() })
    } else {
        serde_json::Value::Null
    };
    drop(w);
    let snap = index.snapshot();
    let queries: Vec<Vec<f32>> = (0..3).map(|q| vector(q * 3 + 1)).collect();
    let answers = top3(&snap, &queries)?;
    let passages = all_passages(&snap, &snap.ids()?)?;
    let augmentations: Vec<serde_json::Value> = snap
        .ids()?
        .iter()
        .filter_map(|id| {
            snap.augmentation(id).ok().flatten().map(|a| {
                json!({ "id": id, "passage_vector": a.passage_vector, "query_sum": a.query_sum, "queries": a.queries })
            })
        })
        .collect();
    let lexical_answers = if lexical {
        let mut out = Vec::new();
        for q in ["sealed passages", "封印", "kysymys 4", "tail"] {
            let hits = snap.search_lexical(q, &xqdb::SearchOptions::new(3).query_lang("en"))?;
            out.push(json!({ "query": q, "hits": hits.iter().map(|h| json!([h.id, h.score])).collect::<Vec<_>>() }));
        }
        serde_json::Value::Array(out)
    } else {
        serde_json::Value::Null
    };
    Ok(
        json!({ "dtype": dtype, "queries": queries, "answers": answers, "passages": passages, "augmentations": augmentations, "adapter": adapter, "lang_adapters": lang_adapters, "lexical_answers": lexical_answers }),
    )
}

/// `examples/docs` synced into a new index with the default model; what a later build must
/// read back: the file records, the passages, and the top-3 answers to three stored vectors.
fn build_docs(dir: &std::path::Path) -> xqdb::Result<serde_json::Value> {
    let encoder = xqdb::Encoder::from_dir(xqdb::ModelBundle::default_dir())?;
    let index = Index::builder()
        .encoder(std::sync::Arc::new(encoder))
        .create(dir)?;
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/docs");
    // All but one file into a sealed segment, the last one into the tail.
    let first = xqdb::documents::SyncOptions {
        exclude: vec!["ar/".into()],
        ..Default::default()
    };
    xqdb::documents::sync(&index, &docs, &first, &|_| {})?;
    index.writer()?.seal()?;
    xqdb::documents::sync(&index, &docs, &Default::default(), &|_| {})?;
    let files = xqdb::documents::files(&index)?;
    let snap = index.snapshot();
    let ids = snap.ids()?;
    let passages = all_passages(&snap, &ids)?;
    let queries: Vec<Vec<f32>> = ids[..3]
        .iter()
        .map(|id| snap.vector(id).map(Option::unwrap))
        .collect::<xqdb::Result<_>>()?;
    let answers = top3(&snap, &queries)?;
    Ok(json!({ "files": files, "passages": passages, "queries": queries, "answers": answers }))
}

fn main() -> xqdb::Result<()> {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: make_golden_store OUT_DIR"),
    );
    std::fs::create_dir_all(&out).map_err(|e| xqdb::Error::InvalidArgument(e.to_string()))?;
    let f32_store = build(&out.join("store"), Dtype::F32, false, false, false)?;
    let f16_store = build(&out.join("store-f16"), Dtype::F16, false, false, false)?;
    let xqg_store = build(&out.join("store-xqg"), Dtype::F32, true, false, false)?;
    let mut stores = json!({ "store": f32_store, "store-f16": f16_store, "store-xqg": xqg_store });
    if xqdb::FORMAT_VERSION >= 4 {
        stores["store-docs"] = build_docs(&out.join("store-docs"))?;
    }
    if xqdb::FORMAT_VERSION >= 5 {
        stores["store-codes"] = build(&out.join("store-codes"), Dtype::F32, true, true, false)?;
    }
    if xqdb::FORMAT_VERSION >= 7 {
        stores["store-lexical"] = build(&out.join("store-lexical"), Dtype::F32, true, false, true)?;
    }
    let expected = json!({ "format_version": xqdb::FORMAT_VERSION, "stores": stores });
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap(),
    )
    .map_err(|e| xqdb::Error::InvalidArgument(e.to_string()))?;
    Ok(())
}
