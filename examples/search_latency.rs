//! Per-call search latency from Rust on an existing index, for comparison with the same
//! calls from Python (`scripts/bench_python.py`): `cargo run --release --example
//! search_latency -- INDEX QUERIES.f32 [TEXTS.txt]` where QUERIES.f32 holds query vectors as
//! little-endian f32 (the index's dimension each) and TEXTS.txt one text query a line.
//! Prints {"vector_us": mean, "text_us": mean} over the queries, after one warm-up pass.

use std::time::Instant;

fn main() -> xqdb::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, vectors) = match &args[..] {
        [d, v, ..] => (d, v),
        _ => {
            eprintln!("usage: search_latency INDEX QUERIES.f32 [TEXTS.txt]");
            std::process::exit(2)
        }
    };
    let index = xqdb::Index::builder().read_only(true).open(dir)?;
    let dim = index.snapshot().dim();
    let bytes = std::fs::read(vectors).map_err(|e| xqdb::Error::InvalidArgument(e.to_string()))?;
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let queries: Vec<&[f32]> = floats.chunks_exact(dim).collect();
    let options = xqdb::SearchOptions::new(10);
    let time = |f: &mut dyn FnMut() -> xqdb::Result<()>| -> xqdb::Result<f64> {
        f()?; // warm-up
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64())
    };
    let vector_s = time(&mut || {
        for q in &queries {
            index.search_with(q, &options)?;
        }
        Ok(())
    })?;
    let mut out = serde_json::json!({ "vector_us": vector_s * 1e6 / queries.len() as f64 });
    if let Some(path) = args.get(2) {
        let text = std::fs::read_to_string(path)
            .map_err(|e| xqdb::Error::InvalidArgument(e.to_string()))?;
        let texts: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        let text_s = time(&mut || {
            for t in &texts {
                index.search_text_with(t, &options)?;
            }
            Ok(())
        })?;
        out["text_us"] = (text_s * 1e6 / texts.len() as f64).into();
    }
    println!("{out}");
    Ok(())
}
