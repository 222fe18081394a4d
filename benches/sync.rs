//! Folder sync benchmark: `xqdb::documents::sync` of a folder written from real questions of
//! `../shared/data` (English and the seven native languages, ~400 words a file) against
//! storing the same passages directly with `Writer::insert_texts` (the plain ingest path), in
//! one run; then a second sync with nothing changed, and one after editing 5% of the files.
//! Needs `make setup`. `cargo bench --bench sync` (`XQDB_BENCH_SYNC_FILES`, default 100).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use xqdb::documents::{sync, SyncOptions};
use xqdb::{Encoder, EncoderOptions, Index, ModelBundle};

/// `n` documents: paragraphs of five consecutive questions, 40 questions a file, each file in
/// one language (English translations for even files, a native language for odd ones).
fn write_folder(root: &Path, n: usize) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/xor-tydi");
    let langs = ["ar", "bn", "fi", "ja", "ko", "ru", "te"];
    let rows: Vec<Vec<serde_json::Value>> = langs
        .iter()
        .map(|l| {
            std::fs::read_to_string(data.join(format!("translations.{l}-en.jsonl")))
                .expect("shared data")
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        })
        .collect();
    for i in 0..n {
        let (lang, field) = (
            i / 2 % langs.len(),
            if i % 2 == 0 { "en" } else { "native" },
        );
        let start = (i * 40) % (rows[lang].len() - 40);
        let qs: Vec<&str> = rows[lang][start..start + 40]
            .iter()
            .map(|r| r[field].as_str().unwrap())
            .collect();
        let text: Vec<String> = qs.chunks(5).map(|c| c.join(" ")).collect();
        let name = format!("{}/{i:04}.md", langs[lang]);
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("# Document {i}\n\n{}\n", text.join("\n\n"))).unwrap();
    }
}

fn main() {
    let n: usize = std::env::var("XQDB_BENCH_SYNC_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("docs");
    write_folder(&folder, n);
    let encoder = Arc::new(
        Encoder::open(
            ModelBundle::open(ModelBundle::default_dir()).expect("run `make setup` first"),
            &EncoderOptions::default(),
        )
        .unwrap(),
    );
    let o = SyncOptions::default();

    let index = Index::builder()
        .encoder(encoder.clone())
        .create(tmp.path().join("synced"))
        .unwrap();
    let t = Instant::now();
    let first = sync(&index, &folder, &o, &|_| {}).unwrap();
    let sync_s = t.elapsed().as_secs_f64();
    assert_eq!(first.added, n);

    // The same passages through the plain ingest path, one commit per file's worth.
    let snap = index.snapshot();
    let passages: Vec<xqdb::Passage> = snap
        .ids()
        .unwrap()
        .iter()
        .map(|id| snap.get(id).unwrap().unwrap())
        .collect();
    drop(snap);
    let plain = Index::builder()
        .encoder(encoder.clone())
        .create(tmp.path().join("plain"))
        .unwrap();
    let per_file = passages.len().div_ceil(n);
    let t = Instant::now();
    let mut w = plain.writer().unwrap();
    for chunk in passages.chunks(per_file) {
        w.insert_texts(chunk.to_vec(), &|_| {}).unwrap();
        w.commit().unwrap();
    }
    drop(w);
    let plain_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let again = sync(&index, &folder, &o, &|_| {}).unwrap();
    let again_s = t.elapsed().as_secs_f64();
    assert_eq!((again.unchanged, again.passages_encoded), (n, 0));

    let edited = (n / 20).max(1);
    for i in 0..edited {
        let lang = ["ar", "bn", "fi", "ja", "ko", "ru", "te"][i * 20 / 2 % 7];
        let p = folder.join(format!("{lang}/{:04}.md", i * 20));
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("\nOne more paragraph added by an edit.\n");
        std::fs::write(p, text).unwrap();
    }
    let t = Instant::now();
    let third = sync(&index, &folder, &o, &|_| {}).unwrap();
    let third_s = t.elapsed().as_secs_f64();
    assert_eq!(third.changed, edited);

    let np = first.passages_encoded as f64;
    println!(
        "sync bench: {n} files, {} passages, {:.1} MB",
        first.passages_encoded,
        first.bytes_read as f64 / 1e6
    );
    println!(
        "first sync          {sync_s:>8.2} s  {:>8.1} files/s  {:>7.1} passages/s",
        n as f64 / sync_s,
        np / sync_s
    );
    println!(
        "insert_texts        {plain_s:>8.2} s  {:>8}          {:>7.1} passages/s   (sync / insert_texts time: {:.3})",
        "",
        np / plain_s,
        sync_s / plain_s
    );
    println!(
        "second sync         {again_s:>8.4} s  {:>8.0} files/s  (nothing changed: metadata only)",
        n as f64 / again_s
    );
    println!(
        "after editing {edited:>3}   {third_s:>8.2} s  {} passages encoded, {} removed",
        third.passages_encoded, third.passages_removed
    );
}
