//! xQG with queries generated elsewhere (a GPU job, or the published xQG-augmented corpus):
//! each passage comes with its questions in other languages; xqdb encodes them with the
//! index's model and folds them into the passage vector — no generator needed. Then a new
//! fusion weight is tried without encoding again. Needs `make setup`.
//!
//! `cargo run --release --example pregenerated_queries`

use std::sync::Arc;
use xqdb::{Index, IngestItem, Passage, XqgProfile};

fn main() -> xqdb::Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| xqdb::Error::InvalidArgument(e.to_string()))?;
    let encoder = Arc::new(xqdb::Encoder::from_dir(xqdb::ModelBundle::default_dir())?);
    let index = Index::builder()
        .encoder(encoder)
        .xqg(XqgProfile {
            alpha: 0.2,
            ..Default::default()
        })
        .create(tmp.path().join("idx"))?;
    let items = vec![
        IngestItem {
            passage: Passage::new(
                "helsinki",
                "Helsinki is the capital and most populous city of Finland.",
            )
            .with_lang("en"),
            queries: Some(vec![
                ("fi".into(), "Mikä on Suomen pääkaupunki?".into()),
                ("te".into(), "ఫిన్లాండ్ రాజధాని ఏది?".into()),
            ]),
        },
        IngestItem {
            passage: Passage::new("tokyo", "Tokyo is the capital of Japan.").with_lang("en"),
            queries: Some(vec![("ja".into(), "日本の首都はどこですか？".into())]),
        },
    ];
    let mut w = index.writer()?;
    w.insert_items(items, &|_| {})?;
    w.commit()?;
    let q = "ఫిన్లాండ్ యొక్క రాజధాని నగరం ఏది?";
    let show = |label: &str| -> xqdb::Result<()> {
        let hits = index.search_text(q, 2)?;
        let list: Vec<String> = hits
            .iter()
            .map(|h| format!("{} {:.4}", h.id, h.score))
            .collect();
        println!("{label}: {}", list.join(", "));
        Ok(())
    };
    show("α = 0.2")?;
    println!(
        "stored queries of helsinki: {:?}",
        index.snapshot().queries("helsinki")?
    );
    // Re-fuse every passage with another α from the stored E(p) and Σ E(q).
    w.re_fuse(0.0, true)?;
    show("α = 0 (plain passage vectors)")?;
    Ok(())
}
