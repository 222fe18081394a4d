//! In-memory indexes: the same operations on an in-memory index and on an on-disk one give
//! the same answers (searches, filters, batches, after seals and compactions), every run and
//! at every thread count; nothing touches the file system; verify() passes.

use xqdb::{Filter, Index, Metric, Passage, SearchOptions};

const DIM: usize = 8;

fn vector(n: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| (((n * 2654435761 + j * 40503) % 1009) as f32 / 504.5) - 1.0)
        .collect()
}

/// Applies a fixed mixed workload and returns every answer it saw, as text.
fn workload(index: &Index) -> Vec<String> {
    let mut seen = Vec::new();
    let mut w = index.writer().unwrap();
    for round in 0..12u64 {
        for i in 0..150u64 {
            let n = round * 1000 + i;
            let lang = ["en", "fi", "ja"][(n % 3) as usize];
            w.upsert(
                Passage::new(format!("p{}", n % 900), format!("text {n}"))
                    .with_lang(lang)
                    .with_meta(serde_json::json!({"g": n % 4})),
                &vector(n),
            )
            .unwrap();
        }
        for i in (0..900).step_by(37 + round as usize) {
            w.delete(&format!("p{i}")).unwrap();
        }
        w.commit().unwrap();
        match round % 4 {
            1 => {
                w.seal().unwrap();
            }
            3 => {
                w.compact().unwrap();
            }
            _ => {}
        }
        let queries: Vec<Vec<f32>> = (0..6).map(|q| vector(round * 77 + q)).collect();
        for filter in [
            None,
            Some(Filter::new().lang("fi")),
            Some(Filter::new().meta_in("g", [serde_json::json!(1), serde_json::json!(3)])),
        ] {
            for threads in [1, 2] {
                let mut opts = SearchOptions::new(7).threads(threads);
                if let Some(f) = filter.clone() {
                    opts = opts.filter(f);
                }
                let batch = index.search_batch(&queries, &opts).unwrap();
                for (q, hits) in queries.iter().zip(&batch) {
                    // Batches use another kernel (summation order): same ids, scores to 1e-5.
                    let single = index.search_with(q, &opts).unwrap();
                    assert_eq!(
                        single.iter().map(|h| &h.id).collect::<Vec<_>>(),
                        hits.iter().map(|h| &h.id).collect::<Vec<_>>()
                    );
                    assert!(single
                        .iter()
                        .zip(hits)
                        .all(|(a, b)| (a.score - b.score).abs() <= 1e-5));
                }
                let line: Vec<String> = batch
                    .iter()
                    .flatten()
                    .map(|h| format!("{}:{:.6}", h.id, h.score))
                    .collect();
                // The answer must not depend on the thread count: record it once.
                if threads == 1 {
                    seen.push(line.join(" "));
                } else {
                    assert_eq!(
                        seen.last().unwrap(),
                        &line.join(" "),
                        "thread count changed the answer"
                    );
                }
            }
        }
    }
    seen
}

#[test]
fn in_memory_and_on_disk_indexes_answer_alike_every_time() {
    let builder = || {
        Index::builder()
            .dim(DIM)
            .metric(Metric::Cosine)
            .seal_rows(200)
            .direct_segment_rows(120)
    };
    let a = builder().in_memory().unwrap();
    let b = builder().in_memory().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = builder().create(dir.path()).unwrap();
    let ra = workload(&a);
    assert_eq!(ra, workload(&b), "two in-memory runs differ");
    assert_eq!(ra, workload(&c), "in-memory and on-disk answers differ");
    let report = a.verify().unwrap();
    assert_eq!(report.passages, c.verify().unwrap().passages);
    assert!(report.segments >= 1);
    let stats = a.stats().unwrap();
    assert_eq!(stats.catalog_bytes, 0);
    assert_eq!(a.path(), std::path::Path::new(":memory:"));
    assert!(
        !std::path::Path::new(":memory:").exists(),
        "an in-memory index must not touch the file system"
    );
}
