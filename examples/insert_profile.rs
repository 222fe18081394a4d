//! Where durable insert time goes: staging (validation, normalisation, duplicate checks)
//! versus commit (catalog rows, segment file, fsyncs). `cargo run --release --example insert_profile`
use std::time::Instant;
use xqdb::{Index, Metric, Passage};

fn main() -> xqdb::Result<()> {
    let dim = 384;
    let rows = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::builder()
        .dim(dim)
        .metric(Metric::Cosine)
        .create(tmp.path())?;
    let data: Vec<f32> = (0..rows * dim)
        .map(|i| ((i * 2654435761usize) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut w = index.writer()?;
    let (mut stage, mut commit) = (0f64, 0f64);
    let all = Instant::now();
    for b in 0..rows / 10_000 {
        let t = Instant::now();
        for i in 0..10_000 {
            let n = b * 10_000 + i;
            w.insert(
                Passage::new(format!("p{n}"), format!("passage {n}")),
                &data[n * dim..(n + 1) * dim],
            )?;
        }
        stage += t.elapsed().as_secs_f64();
        let t = Instant::now();
        w.commit()?;
        commit += t.elapsed().as_secs_f64();
    }
    let total = all.elapsed().as_secs_f64();
    println!(
        "{rows} vectors: {:.0}/s; staging {stage:.2} s, commit {commit:.2} s",
        rows as f64 / total
    );
    Ok(())
}
