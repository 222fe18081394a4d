//! Incremental ingest with the default model: add passages in batches as they arrive, each
//! batch one durable commit; replace changed passages, delete withdrawn ones, keep searching
//! between batches, and compact at the end. Needs `make setup`.
//!
//! `cargo run --release --example incremental_ingest [DIR]`

use xqdb::{Index, Passage};

fn main() -> xqdb::Result<()> {
    let tmp = tempfile::tempdir().map_err(|e| xqdb::Error::InvalidArgument(e.to_string()))?;
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("incremental"));
    // Opens the index if it exists (the model it records is loaded on first use), or
    // creates one for the default model.
    let index = if dir.join("catalog.redb").exists() {
        Index::open(&dir)?
    } else {
        let encoder = xqdb::Encoder::from_dir(xqdb::ModelBundle::default_dir())?;
        Index::builder()
            .encoder(std::sync::Arc::new(encoder))
            .create(&dir)?
    };
    let batches = [
        vec![
            (
                "helsinki",
                "Helsinki is the capital and largest city of Finland.",
            ),
            ("tokyo", "Tokyo is the capital of Japan."),
        ],
        vec![
            ("kyiv", "Kyiv is the capital of Ukraine, on the Dnieper."),
            (
                "tokyo",
                "Tokyo, officially the Tokyo Metropolis, is the capital of Japan.",
            ),
        ],
    ];
    let mut w = index.writer()?;
    for (n, batch) in batches.iter().enumerate() {
        let passages: Vec<Passage> = batch
            .iter()
            .map(|(id, text)| Passage::new(*id, *text).with_lang("en"))
            .collect();
        // upsert: a passage that exists is replaced in the same commit.
        w.upsert_items(
            passages
                .into_iter()
                .map(|passage| xqdb::IngestItem {
                    passage,
                    queries: None,
                })
                .collect(),
            &|p| eprintln!("  {} passages encoded", p.passages),
        )?;
        let info = w.commit()?;
        println!(
            "batch {n}: commit {} ({} written)",
            info.commit_seq, info.written
        );
        // Searches see every finished commit, also while the writer is open.
        for hit in index.search_text("Mikä on Japanin pääkaupunki?", 1)? {
            println!(
                "  top hit for a Finnish question: {} — {}",
                hit.id, hit.passage.text
            );
        }
    }
    w.delete("kyiv")?;
    w.commit()?;
    w.compact()?;
    drop(w);
    println!("{:?}", index.stats()?);
    Ok(())
}
