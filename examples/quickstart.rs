//! Quickstart: create an index, add passages with vectors, search, update, delete.
//!
//! `cargo run --release --example quickstart [DIR]`

use xqdb::{Filter, Index, Metric, Passage, SearchOptions};

fn main() -> xqdb::Result<()> {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().map_err(|e| xqdb::Error::InvalidArgument(e.to_string()))?;
    let path = dir.unwrap_or_else(|| tmp.path().join("quickstart"));
    let index = Index::builder().dim(3).metric(Metric::Cosine).open(&path)?;
    let mut w = index.writer()?;
    let rows = [
        (
            "fi-1",
            "fi",
            "Helsinki on Suomen pääkaupunki.",
            [0.9, 0.1, 0.0],
        ),
        (
            "en-1",
            "en",
            "Helsinki is the capital of Finland.",
            [0.8, 0.2, 0.1],
        ),
        ("ja-1", "ja", "東京は日本の首都です。", [0.1, 0.1, 0.9]),
    ];
    for (id, lang, text, v) in rows {
        w.upsert(Passage::new(id, text).with_lang(lang), &v)?;
    }
    let info = w.commit()?;
    println!(
        "committed {} passages (commit {})",
        info.written, info.commit_seq
    );
    for hit in index.search(&[1.0, 0.0, 0.0], 2)? {
        println!("{:.3}  {}  {}", hit.score, hit.id, hit.passage.text);
    }
    let english = SearchOptions::new(2).filter(Filter::new().lang("en"));
    println!(
        "only English: {:?}",
        index
            .search_with(&[1.0, 0.0, 0.0], &english)?
            .iter()
            .map(|h| &h.id)
            .collect::<Vec<_>>()
    );
    w.delete("ja-1")?;
    w.commit()?;
    drop(w);
    println!(
        "{} passages after delete; verify: {:?}",
        index.stats()?.passages,
        index.verify()?
    );
    Ok(())
}
