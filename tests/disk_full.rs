//! Disk full: on a 24 MiB tmpfs (mounted by the test; needs root, so it is run by hand:
//! `cargo test --release --test disk_full -- --ignored --nocapture`), ingest until the file
//! system is full. The failing commit must return a typed error, poison the writer, leave
//! every earlier commit readable (read-only open, no space needed), and after space is freed
//! a writable open must verify and accept new batches.

use std::path::Path;
use std::process::Command;
use xqdb::{Error, Index, Metric, Passage};

const DIM: usize = 64;
const BATCH: usize = 500;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn vector(n: usize) -> Vec<f32> {
    (0..DIM)
        .map(|j| ((n * 7 + j * 13) % 29) as f32 - 14.0)
        .collect()
}

fn insert_batch(index: &Index, b: usize) -> xqdb::Result<()> {
    let mut w = index.writer()?;
    for i in 0..BATCH {
        let id = format!("b{b}-{i}");
        w.insert(
            Passage::new(&id, format!("{id} {}", "filler text ".repeat(80))),
            &vector(b * BATCH + i),
        )?;
    }
    w.commit().map(|_| ())
}

fn check_batches(index: &Index, batches: usize) {
    let snap = index.snapshot();
    assert_eq!(snap.len() as usize, batches * BATCH, "committed passages");
    for b in 0..batches {
        for i in [0, BATCH - 1] {
            assert!(
                snap.contains(&format!("b{b}-{i}")).unwrap(),
                "b{b}-{i} lost"
            );
        }
    }
}

#[test]
#[ignore = "needs root to mount a tmpfs; run by hand, see RELIABILITY.md"]
fn ingest_until_enospc_loses_nothing_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=24m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(
        st.success(),
        "mounting a tmpfs failed (this test needs root)"
    );
    let _mount = Mount(mnt.clone());
    // Space to give back later.
    let reserve = mnt.join("reserve");
    std::fs::write(&reserve, vec![1u8; 4 << 20]).unwrap();
    let dir = mnt.join("idx");
    let index = Index::builder()
        .dim(DIM)
        .metric(Metric::Dot)
        .direct_segment_rows(BATCH)
        .create(&dir)
        .unwrap();
    let mut committed = 0;
    let err = loop {
        match insert_batch(&index, committed) {
            Ok(()) => committed += 1,
            Err(e) => break e,
        }
        assert!(committed < 10_000, "the file system never filled up");
    };
    eprintln!(
        "{committed} batches ({} passages) committed before: {err}",
        committed * BATCH
    );
    assert!(committed > 0);
    assert!(
        matches!(err, Error::Io { .. } | Error::Catalog { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("No space left"), "{err}");
    // The writer is poisoned: no blind retry.
    let again = index.writer().map(|_| ()).unwrap_err();
    assert!(matches!(again, Error::Poisoned { .. }), "{again}");
    drop(index);
    assert!(!Path::new(&dir)
        .join("segments")
        .read_dir()
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));

    // Every committed batch is there, without needing any space.
    let ro = Index::builder().read_only(true).open(&dir).unwrap();
    check_batches(&ro, committed);
    drop(ro);

    // Free space; a writable open recovers, verifies, and ingest continues.
    std::fs::remove_file(&reserve).unwrap();
    let index = Index::open(&dir).unwrap();
    index.verify().unwrap();
    check_batches(&index, committed);
    insert_batch(&index, committed).unwrap();
    check_batches(&index, committed + 1);
    index.verify().unwrap();
    eprintln!(
        "after freeing space: {} passages, verify ok",
        index.stats().unwrap().passages
    );
}
