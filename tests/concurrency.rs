//! Readers during writes: four threads search and read continuously while one writer
//! inserts, deletes, seals and compacts. The logical state after commit c is known in
//! closed form, so every reader checks that what it saw is the state of some commit, and
//! that within one snapshot a search, a get and the id list all agree.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use xqdb::{Index, Metric, Passage, SearchOptions};

const DIM: usize = 8;
const PER_COMMIT: u64 = 20;
const COMMITS: u64 = 60;

fn vector(n: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| ((n * 13 + j * 5) % 17) as f32 - 8.0)
        .collect()
}

/// Live ids after logical step `s`: step s inserts `s-*`, and removes step s-3's ids.
fn live_after(s: u64) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for step in s.saturating_sub(2)..=s {
        if step == 0 {
            continue;
        }
        for i in 0..PER_COMMIT {
            out.insert(format!("{step}-{i}"));
        }
    }
    out
}

#[test]
fn readers_always_see_a_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::builder()
        .dim(DIM)
        .metric(Metric::Dot)
        .seal_rows(50)
        .direct_segment_rows(40)
        .create(dir.path())
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let index = index.clone();
            let done = done.clone();
            let reads = reads.clone();
            std::thread::spawn(move || {
                let mut seen_steps = std::collections::BTreeSet::new();
                while !done.load(Ordering::Acquire) {
                    let snap = index.snapshot();
                    let ids: std::collections::BTreeSet<String> =
                        snap.ids().unwrap().into_iter().collect();
                    let step = ids
                        .iter()
                        .filter_map(|id| id.split('-').next()?.parse::<u64>().ok())
                        .max()
                        .unwrap_or(0);
                    assert_eq!(
                        ids,
                        live_after(step),
                        "reader {r} saw a state no commit produced"
                    );
                    let hits = snap
                        .search_with(
                            &vector(r),
                            &SearchOptions::new(1000).threads(1 + r as usize % 2),
                        )
                        .unwrap();
                    let hit_ids: std::collections::BTreeSet<String> =
                        hits.iter().map(|h| h.id.clone()).collect();
                    assert_eq!(
                        hit_ids, ids,
                        "reader {r}: search and id list disagree within one snapshot"
                    );
                    if let Some(id) = ids.iter().next() {
                        assert!(
                            snap.get(id).unwrap().is_some(),
                            "reader {r}: {id} listed but not readable"
                        );
                    }
                    seen_steps.insert(step);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                seen_steps.len()
            })
        })
        .collect();
    {
        let mut w = index.writer().unwrap();
        for step in 1..=COMMITS {
            for i in 0..PER_COMMIT {
                let id = format!("{step}-{i}");
                w.insert(
                    Passage::new(&id, format!("text {id}")),
                    &vector(step * 100 + i),
                )
                .unwrap();
            }
            if step > 3 {
                for i in 0..PER_COMMIT {
                    assert!(w.delete(&format!("{}-{i}", step - 3)).unwrap());
                }
            }
            w.commit().unwrap();
            match step % 10 {
                4 => {
                    w.seal().unwrap();
                }
                9 => {
                    w.compact().unwrap();
                }
                _ => {}
            }
        }
    }
    done.store(true, Ordering::Release);
    let distinct: Vec<usize> = readers
        .into_iter()
        .map(|h| h.join().expect("reader panicked"))
        .collect();
    eprintln!(
        "reads: {}, distinct states seen per reader: {distinct:?}",
        reads.load(Ordering::Relaxed)
    );
    assert!(reads.load(Ordering::Relaxed) > 0);
    let final_ids: std::collections::BTreeSet<String> =
        index.snapshot().ids().unwrap().into_iter().collect();
    assert_eq!(final_ids, live_after(COMMITS));
    index.verify().unwrap();
}

#[test]
fn a_second_writer_is_refused_while_the_first_lives() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::builder().dim(2).create(dir.path()).unwrap();
    let w = index.writer().unwrap();
    assert!(matches!(index.writer(), Err(xqdb::Error::WriterBusy)));
    let other = index.clone();
    let from_thread =
        std::thread::spawn(move || other.writer().map(|_| ()).unwrap_err().to_string())
            .join()
            .unwrap();
    assert!(from_thread.contains("another writer"), "{from_thread}");
    drop(w);
    assert!(index.writer().is_ok());
}

#[test]
fn old_segment_files_stay_until_their_last_snapshot_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::builder()
        .dim(DIM)
        .metric(Metric::Dot)
        .direct_segment_rows(10)
        .create(dir.path())
        .unwrap();
    let mut w = index.writer().unwrap();
    for b in 0..3u64 {
        for i in 0..10 {
            w.insert(Passage::new(format!("{b}-{i}"), "t"), &vector(b * 10 + i))
                .unwrap();
        }
        w.commit().unwrap();
    }
    let files = |d: &std::path::Path| std::fs::read_dir(d.join("segments")).unwrap().count();
    assert_eq!(files(dir.path()), 3);
    let old = index.snapshot();
    w.compact().unwrap();
    // The old snapshot still maps the three retired files; the new segment is the fourth.
    assert_eq!(files(dir.path()), 4);
    assert_eq!(old.search(&vector(5), 30).unwrap().len(), 30);
    index.verify().unwrap();
    drop(old);
    assert_eq!(
        files(dir.path()),
        1,
        "retired files must go with their last snapshot"
    );
}
