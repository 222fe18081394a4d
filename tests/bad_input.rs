//! Bad input gets a typed error and loses nothing: every row of this file feeds one kind
//! of bad input to a store that already holds committed data, checks the error, and then
//! checks that the committed data is intact.

use std::process::Command;
use xqdb::{Dtype, Error, Index, Metric, Passage};

const DIM: usize = 4;

fn store() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::builder()
        .dim(DIM)
        .metric(Metric::Cosine)
        .create(dir.path())
        .unwrap();
    let mut w = index.writer().unwrap();
    w.insert(
        Passage::new("keep", "committed before the bad input"),
        &[1.0, 0.0, 0.0, 0.0],
    )
    .unwrap();
    w.commit().unwrap();
    drop(w);
    (dir, index)
}

fn intact(index: &Index) {
    assert_eq!(index.snapshot().ids().unwrap(), vec!["keep".to_string()]);
    assert_eq!(
        index.search(&[1.0, 0.0, 0.0, 0.0], 1).unwrap()[0].id,
        "keep"
    );
    index.verify().unwrap();
}

/// Feeds one passage to a fresh writer, commits whatever was accepted, and returns the error.
fn insert_err(index: &Index, p: Passage, v: &[f32]) -> Error {
    let mut w = index.writer().unwrap();
    let e = w.insert(p, v).expect_err("bad input accepted");
    assert_eq!(w.pending(), 0, "a refused passage must not stay buffered");
    w.commit().unwrap();
    e
}

#[test]
fn bad_vectors() {
    let (_d, index) = store();
    let e = insert_err(&index, Passage::new("nan", "t"), &[f32::NAN, 0.0, 0.0, 1.0]);
    assert!(
        matches!(e, Error::InvalidVector { .. }) && e.to_string().contains("NaN"),
        "{e}"
    );
    let e = insert_err(
        &index,
        Passage::new("inf", "t"),
        &[f32::INFINITY, 0.0, 0.0, 1.0],
    );
    assert!(matches!(e, Error::InvalidVector { .. }), "{e}");
    let e = insert_err(&index, Passage::new("zero", "t"), &[0.0; DIM]);
    assert!(
        matches!(e, Error::InvalidVector { .. }) && e.to_string().contains("zero"),
        "{e}"
    );
    let e = insert_err(&index, Passage::new("short", "t"), &[1.0, 2.0]);
    assert!(
        matches!(
            e,
            Error::DimensionMismatch {
                expected: 4,
                found: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = index.search(&[1.0; 5], 3).unwrap_err();
    assert!(matches!(e, Error::DimensionMismatch { .. }), "{e}");
    let e = index.search(&[f32::NAN; DIM], 3).unwrap_err();
    assert!(matches!(e, Error::InvalidVector { .. }), "{e}");
    intact(&index);
}

#[test]
fn bad_passages() {
    let (_d, index) = store();
    let v = [0.0, 1.0, 0.0, 0.0];
    for (p, needle) in [
        (Passage::new("", "t"), "id is empty"),
        (Passage::new("e", "   "), "text is empty"),
        (
            Passage::new("big", "x".repeat(xqdb::MAX_TEXT_BYTES + 1)),
            "limit",
        ),
        (Passage::new("id".repeat(600), "t"), "id is longer"),
        (Passage::new("l", "t").with_lang("en us"), "language tag"),
        (
            Passage::new("m", "t").with_meta(serde_json::json!([1, 2])),
            "JSON object",
        ),
    ] {
        let e = insert_err(&index, p, &v);
        assert!(matches!(e, Error::InvalidPassage { .. }), "{e:?}");
        assert!(e.to_string().contains(needle), "{e} lacks {needle}");
    }
    // A 10 MB passage is within the limit and round-trips.
    let mut w = index.writer().unwrap();
    let big = "ü".repeat(5 << 20);
    w.insert(Passage::new("ten-mb", big.clone()), &v).unwrap();
    w.commit().unwrap();
    drop(w);
    assert_eq!(index.get("ten-mb").unwrap().unwrap().text, big);
    let mut w = index.writer().unwrap();
    w.delete("ten-mb").unwrap();
    w.commit().unwrap();
    drop(w);
    intact(&index);
}

#[test]
fn duplicate_ids_in_one_batch_and_against_the_store() {
    let (_d, index) = store();
    let mut w = index.writer().unwrap();
    let e = w
        .insert(Passage::new("keep", "again"), &[0.0, 0.0, 1.0, 0.0])
        .unwrap_err();
    assert!(
        matches!(e, Error::DuplicateId { ref id } if id == "keep"),
        "{e}"
    );
    w.insert(Passage::new("twin", "first"), &[0.0, 0.0, 1.0, 0.0])
        .unwrap();
    let e = w
        .insert(Passage::new("twin", "second"), &[0.0, 0.0, 1.0, 0.0])
        .unwrap_err();
    assert!(matches!(e, Error::DuplicateId { .. }), "{e}");
    w.rollback();
    w.commit().unwrap();
    drop(w);
    intact(&index);
}

#[test]
fn writers_and_read_only_opens() {
    let (dir, index) = store();
    let w = index.writer().unwrap();
    assert!(matches!(index.writer(), Err(Error::WriterBusy)));
    drop(w);
    // A second writable open of the same folder, in this process or another, is refused;
    // read-only opens in other processes are not.
    assert!(matches!(Index::open(dir.path()), Err(Error::Locked { .. })));
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(["delete", dir.path().to_str().unwrap(), "keep", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("locked by another process"));
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(["stats", dir.path().to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    drop(index);
    let ro = Index::builder().read_only(true).open(dir.path()).unwrap();
    assert!(matches!(ro.writer(), Err(Error::ReadOnly)));
    intact(&ro);
}

#[test]
fn options_that_disagree_with_the_store_are_refused() {
    let (dir, index) = store();
    drop(index);
    let e = Index::builder().dim(8).open(dir.path()).unwrap_err();
    assert!(
        matches!(e, Error::IncompatibleOptions { field: "dim", .. }),
        "{e}"
    );
    let e = Index::builder().dim(DIM).create(dir.path()).unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Index::open(empty.path()),
        Err(Error::NotAnIndex { .. })
    ));
    let e = Index::builder()
        .dim(0)
        .dtype(Dtype::I8)
        .create(empty.path())
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    intact(&Index::open(dir.path()).unwrap());
}

#[test]
fn a_store_from_a_newer_format_is_refused() {
    let (dir, index) = store();
    drop(index);
    {
        let db = redb::Database::open(dir.path().join("catalog.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert(
                "format_version",
                (xqdb::FORMAT_VERSION + 1).to_le_bytes().as_slice(),
            )
            .unwrap();
        }
        txn.commit().unwrap();
    }
    let e = Index::open(dir.path()).unwrap_err();
    assert!(
        matches!(e, Error::UnsupportedVersion { found, .. } if found == xqdb::FORMAT_VERSION + 1),
        "{e}"
    );
}

#[test]
fn cli_reports_the_bad_line_and_writes_nothing_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_xqdb");
    let idx = dir.path().join("idx");
    let st = Command::new(bin)
        .args(["init", idx.to_str().unwrap(), "--dim", "3"])
        .status()
        .unwrap();
    assert!(st.success());
    let input = dir.path().join("in.jsonl");
    let mut bytes = b"{\"id\":\"a\",\"text\":\"ok\",\"vector\":[1,0,0]}\n{\"id\":\"b\",\"text\":\"ok\",\"vector\":[0,1,0]}\n".to_vec();
    bytes.extend_from_slice(b"{\"id\":\"c\",\"text\":\"bad \xff utf8\",\"vector\":[0,0,1]}\n");
    std::fs::write(&input, &bytes).unwrap();
    let out = Command::new(bin)
        .args(["add", idx.to_str().unwrap(), input.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in.jsonl:3") && err.contains("UTF-8"), "{err}");
    for (line, needle) in [
        (
            "{\"id\":\"d\",\"text\":\"x\",\"vector\":[1,0]}",
            "dimensions",
        ),
        ("{\"id\":\"d\",\"text\":", "EOF"),
        (
            "{\"id\":\"d\",\"text\":\"x\",\"vector\":[1,0,0],\"bogus\":1}",
            "unknown field",
        ),
    ] {
        std::fs::write(
            &input,
            format!("{{\"id\":\"ok\",\"text\":\"fine\",\"vector\":[1,1,1]}}\n{line}\n"),
        )
        .unwrap();
        let out = Command::new(bin)
            .args(["add", idx.to_str().unwrap(), input.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("in.jsonl:2") && err.contains(needle), "{err}");
    }
    let index = Index::open(&idx).unwrap();
    assert!(
        index.snapshot().is_empty(),
        "nothing of a failed batch may be written"
    );
}
