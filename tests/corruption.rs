//! Damaged and foreign files: flipped bytes in a segment's header, body and footer, a
//! truncated segment, a missing one, a segment from another store, an unlisted file in
//! `segments/`, and a damaged or foreign catalog. Each case runs `xqdb verify` in a child
//! process, so that a crash (SIGBUS, panic) fails the test instead of killing the runner;
//! the child must exit with an ordinary error that names the damaged file.

use std::path::{Path, PathBuf};
use std::process::Command;
use xqdb::{Index, Metric, Passage, ReadMode, VerifyPolicy};

const DIM: usize = 16;

fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|j| ((i * 7 + j * 3) % 11) as f32 - 5.0)
        .collect()
}

/// A store with two sealed segments and a few tail rows.
fn build(dir: &Path) {
    build_with(dir, None)
}

/// The same, keeping `codes` beside the rows.
fn build_with(dir: &Path, codes: Option<xqdb::Codes>) {
    let mut b = Index::builder()
        .dim(DIM)
        .metric(Metric::Dot)
        .direct_segment_rows(100);
    if let Some(c) = codes {
        b = b.codes(c);
    }
    let index = b.create(dir).unwrap();
    let mut w = index.writer().unwrap();
    for batch in 0..2 {
        for i in 0..100 {
            let id = format!("{batch}-{i}");
            w.insert(
                Passage::new(&id, format!("text {id}")),
                &vector(batch * 100 + i),
            )
            .unwrap();
        }
        w.commit().unwrap();
    }
    w.insert(Passage::new("tail", "a tail row"), &vector(999))
        .unwrap();
    w.commit().unwrap();
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("segments")).unwrap();
    std::fs::copy(from.join("catalog.redb"), to.join("catalog.redb")).unwrap();
    for s in segments(from) {
        std::fs::copy(&s, to.join("segments").join(s.file_name().unwrap())).unwrap();
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn verify_in_child(dir: &Path) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(["verify", dir.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

/// The child must fail cleanly (exit 1, not a signal or a panic's 101) naming `file`.
fn assert_clean_failure(case: &str, o: &Outcome, file: &str) {
    assert_eq!(
        o.code,
        Some(1),
        "{case}: child did not fail cleanly: code {:?}\n{}",
        o.code,
        o.stderr
    );
    assert!(
        !o.stderr.contains("panicked"),
        "{case}: panic\n{}",
        o.stderr
    );
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim())
        .unwrap_or_else(|e| panic!("{case}: bad JSON {e}: {}", o.stdout));
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(file),
        "{case}: error does not name {file}: {msg}"
    );
}

#[test]
fn damaged_segments_and_catalogs_give_typed_errors_naming_the_file() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    let segs = segments(base.path());
    assert_eq!(segs.len(), 2, "setup: expected two segments");
    let seg_name = segs[0].file_name().unwrap().to_str().unwrap().to_string();
    let seg_len = std::fs::metadata(&segs[0]).unwrap().len() as usize;

    type Damage = Box<dyn Fn(&Path)>;
    let rel_seg = PathBuf::from("segments").join(&seg_name);
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "header byte",
            Box::new({
                let r = rel_seg.clone();
                move |d: &Path| flip(&d.join(&r), 20)
            }),
            seg_name.as_str(),
        ),
        (
            "header magic",
            Box::new({
                let r = rel_seg.clone();
                move |d: &Path| flip(&d.join(&r), 0)
            }),
            seg_name.as_str(),
        ),
        (
            "body byte",
            Box::new({
                let r = rel_seg.clone();
                move |d: &Path| flip(&d.join(&r), 64 + 500)
            }),
            seg_name.as_str(),
        ),
        (
            "row id byte",
            Box::new({
                let r = rel_seg.clone();
                move |d: &Path| flip(&d.join(&r), seg_len - 64 - 100)
            }),
            seg_name.as_str(),
        ),
        (
            "footer byte",
            Box::new({
                let r = rel_seg.clone();
                move |d: &Path| flip(&d.join(&r), seg_len - 30)
            }),
            seg_name.as_str(),
        ),
        (
            "truncated segment",
            Box::new({
                let r = rel_seg.clone();
                move |d: &Path| {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(d.join(&r))
                        .unwrap();
                    f.set_len(seg_len as u64 / 2).unwrap();
                }
            }),
            seg_name.as_str(),
        ),
        (
            "empty segment",
            Box::new({
                let r = rel_seg.clone();
                move |d: &Path| std::fs::write(d.join(&r), b"").unwrap()
            }),
            seg_name.as_str(),
        ),
        (
            "removed segment",
            Box::new({
                let r = rel_seg.clone();
                move |d: &Path| std::fs::remove_file(d.join(&r)).unwrap()
            }),
            seg_name.as_str(),
        ),
        (
            "segment of another store",
            Box::new({
                let r = rel_seg.clone();
                move |d: &Path| {
                    let other = tempfile::tempdir().unwrap();
                    build(other.path());
                    let theirs = segments(other.path()).remove(0);
                    std::fs::copy(theirs, d.join(&r)).unwrap();
                }
            }),
            seg_name.as_str(),
        ),
        (
            "catalog header",
            Box::new(|d: &Path| {
                let p = d.join("catalog.redb");
                let mut b = std::fs::read(&p).unwrap();
                for x in &mut b[0..64] {
                    *x ^= 0xff;
                }
                std::fs::write(&p, b).unwrap();
            }),
            "catalog.redb",
        ),
        (
            "catalog truncated",
            Box::new(|d: &Path| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("catalog.redb"))
                    .unwrap();
                f.set_len(100).unwrap();
            }),
            "catalog.redb",
        ),
        (
            "catalog replaced by a foreign file",
            Box::new(|d: &Path| std::fs::write(d.join("catalog.redb"), vec![b'x'; 8192]).unwrap()),
            "catalog.redb",
        ),
    ];
    for (case, damage, file) in &cases {
        let dir = tempfile::tempdir().unwrap();
        copy_store(base.path(), dir.path());
        damage(dir.path());
        let outcome = verify_in_child(dir.path());
        assert_clean_failure(case, &outcome, file);
        // The library gives the same verdict in-process, as a typed error.
        let r = Index::builder()
            .verify_policy(VerifyPolicy::Always)
            .open(dir.path())
            .and_then(|i| i.verify());
        let e = r.expect_err(case);
        assert!(e.to_string().contains(file), "{case}: {e}");
        assert!(
            matches!(
                e,
                xqdb::Error::Corrupt { .. }
                    | xqdb::Error::Foreign { .. }
                    | xqdb::Error::Catalog { .. }
            ),
            "{case}: {e:?}"
        );
    }
}

/// Damaged codes: a flipped binary or i8 code byte, code flags or codebook id, and a
/// segment whose codes were made with another store's codebook.
#[test]
fn damaged_codes_give_typed_errors_naming_the_file() {
    use xqdb::segment::format::{inspect, Layout};
    let base = tempfile::tempdir().unwrap();
    build_with(base.path(), Some(xqdb::Codes::parse("binary,i8").unwrap()));
    let seg = segments(base.path()).remove(0);
    let seg_name = seg.file_name().unwrap().to_str().unwrap().to_string();
    let info = inspect(&std::fs::read(&seg).unwrap(), true).unwrap();
    assert_eq!(info.header.version, 2);
    assert_eq!(info.header.codes, 3);
    let l: Layout = info.layout;
    assert!(l.bits_len > 0 && l.i8_len > 0);
    let cases = [
        ("binary code byte", l.bits_offset + 5),
        ("i8 code byte", l.i8_offset + 7),
        ("code flags", 45),
        ("codebook id", l.footer_offset + 40),
    ];
    for (case, at) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_store(base.path(), dir.path());
        flip(&dir.path().join("segments").join(&seg_name), at);
        assert_clean_failure(case, &verify_in_child(dir.path()), &seg_name);
        let e = Index::builder()
            .verify_policy(VerifyPolicy::Always)
            .open(dir.path())
            .and_then(|i| i.verify())
            .expect_err(case);
        assert!(e.is_corruption(), "{case}: {e:?}");
    }
    // Codes from a codebook fitted on other rows: same store, footer and checksum rewritten
    // consistently, so only the codebook id can tell.
    let dir = tempfile::tempdir().unwrap();
    copy_store(base.path(), dir.path());
    let path = dir.path().join("segments").join(&seg_name);
    let mut b = std::fs::read(&path).unwrap();
    let f = l.footer_offset;
    b[f + 40] ^= 0x02;
    let h = xxhash_rust::xxh3::xxh3_64(&b[f..f + 56]);
    b[f + 56..f + 64].copy_from_slice(&h.to_le_bytes());
    std::fs::write(&path, b).unwrap();
    let e = Index::open(dir.path()).expect_err("codebook id mismatch");
    assert!(e.to_string().contains("codebook"), "{e}");
    assert!(e.is_corruption(), "{e:?}");
}

#[test]
fn a_body_flip_is_caught_at_open_only_by_a_full_check() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    let seg = segments(base.path()).remove(0);
    flip(&seg, 64 + 8);
    // A clean shutdown means the default policy only checks framing at open...
    let index = Index::open(base.path()).expect("framing is intact");
    // ...but verify() recomputes every checksum.
    let e = index
        .verify()
        .expect_err("verify must catch the flipped body byte");
    assert!(e.is_corruption(), "{e:?}");
    drop(index);
    let e = Index::builder()
        .verify_policy(VerifyPolicy::Always)
        .open(base.path())
        .expect_err("full check at open");
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[test]
fn unlisted_files_in_segments_are_removed_at_open() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    let segs = segments(base.path());
    let stray = base.path().join("segments").join("00000000000000ff.seg");
    let tmp = base
        .path()
        .join("segments")
        .join("0000000000000002.seg.tmp");
    std::fs::copy(&segs[0], &stray).unwrap();
    std::fs::write(&tmp, b"half written").unwrap();
    let index = Index::open(base.path()).unwrap();
    assert!(!stray.exists(), "orphan segment survived open");
    assert!(!tmp.exists(), "temp file survived open");
    assert_eq!(segments(base.path()), segs);
    let report = index.verify().unwrap();
    assert_eq!(report.passages, 201);
}

#[test]
fn a_segment_replaced_while_open_is_caught_at_the_next_open() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    let other = tempfile::tempdir().unwrap();
    build(other.path());
    let index = Index::open(base.path()).unwrap();
    let before: Vec<String> = index
        .search(&vector(3), 5)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    // Another program renames a foreign segment over ours while the index is open.
    let ours = segments(base.path()).remove(0);
    let theirs = segments(other.path()).remove(0);
    let staged = base.path().join("staged");
    std::fs::copy(&theirs, &staged).unwrap();
    std::fs::rename(&staged, &ours).unwrap();
    // The open index keeps reading the file it mapped (the old inode): same answers, verify ok.
    let after: Vec<String> = index
        .search(&vector(3), 5)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(before, after);
    index.verify().unwrap();
    drop(index);
    // The next open checks the file against the catalog and refuses it, naming it.
    let e = Index::open(base.path()).unwrap_err();
    assert!(matches!(e, xqdb::Error::Foreign { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains(ours.file_name().unwrap().to_str().unwrap()),
        "{e}"
    );
}

#[test]
fn in_read_mode_a_segment_truncated_while_open_cannot_crash_searches() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    let index = Index::builder()
        .read_mode(ReadMode::Read)
        .open(base.path())
        .unwrap();
    let before = index.search(&vector(5), 10).unwrap();
    // Another program truncates a segment under the open index: with a mapping, touching the
    // lost pages would raise SIGBUS; in read mode the rows are already in memory.
    for seg in segments(base.path()) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(10)
            .unwrap();
    }
    let after = index.search(&vector(5), 10).unwrap();
    assert_eq!(before, after);
    index.verify().unwrap();
    drop(index);
    let e = Index::open(base.path()).unwrap_err();
    assert!(e.is_corruption(), "{e:?}");
}

#[test]
fn a_damaged_per_language_query_adapter_is_a_typed_error_naming_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build(&dir);
    let index = Index::open(&dir).unwrap();
    let info = xqdb::distill::AdapterInfo {
        lang: Some("fi".into()),
        ..Default::default()
    };
    index
        .writer()
        .unwrap()
        .set_adapter(&xqdb::distill::Adapter::identity(DIM), &info)
        .unwrap();
    drop(index);
    assert_eq!(verify_in_child(&dir).code, Some(0));
    // One weight byte of the record flipped inside an otherwise intact catalog.
    use redb::ReadableTable;
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    {
        let db = redb::Database::open(dir.join("catalog.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(meta).unwrap();
            let mut record = t.get("query_adapter.fi").unwrap().unwrap().value().to_vec();
            let at = record.len() - 20;
            record[at] ^= 0x40;
            t.insert("query_adapter.fi", record.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let o = verify_in_child(&dir);
    assert_clean_failure("adapter record", &o, "query_adapter.fi");
    assert!(Index::open(&dir).is_err());
}

/// Postings or statistics that disagree with the passages, and settings that do not parse,
/// are typed errors: verify names the row, a write that meets a missing posting refuses to
/// commit (nothing is lost), a malformed `lexical` record fails the open.
#[test]
fn damaged_lexical_index_entries_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build(&dir);
    let index = Index::open(&dir).unwrap();
    index
        .writer()
        .unwrap()
        .enable_lexical(xqdb::LexicalSettings::default())
        .unwrap();
    drop(index);
    assert_eq!(verify_in_child(&dir).code, Some(0));
    let postings: redb::TableDefinition<(&str, u64), &[u8]> =
        redb::TableDefinition::new("lex_postings");
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    let edit = |f: &dyn Fn(&redb::WriteTransaction)| {
        let db = redb::Database::open(dir.join("catalog.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        f(&txn);
        txn.commit().unwrap();
    };
    // The first block of the term "text" (every passage has it) removed.
    let rid = 0u64;
    let removed = std::cell::RefCell::new(Vec::new());
    edit(&|txn| {
        let mut t = txn.open_table(postings).unwrap();
        *removed.borrow_mut() = t.remove(("text", rid)).unwrap().unwrap().value().to_vec();
    });
    let o = verify_in_child(&dir);
    assert_clean_failure("missing posting", &o, "lexical postings of row 0");
    let index = Index::open(&dir).unwrap();
    let before = index.stats().unwrap().passages;
    let mut w = index.writer().unwrap();
    w.delete("0-0").unwrap();
    let e = w.commit().unwrap_err();
    assert!(
        matches!(&e, xqdb::Error::Corrupt { reason, .. } if reason.contains("\"text\", row 0")),
        "{e}"
    );
    drop(w);
    assert_eq!(index.stats().unwrap().passages, before, "nothing was lost");
    drop(index);
    // Restored with one count changed, then with a number cut short, then intact.
    let put = |bytes: &[u8]| {
        edit(&|txn| {
            let mut t = txn.open_table(postings).unwrap();
            t.insert(("text", rid), bytes).unwrap();
        })
    };
    let block = removed.borrow().clone();
    let mut changed = block.clone();
    changed[1] ^= 0x02; // the first posting's text-field frequency
    put(&changed);
    assert_clean_failure("changed count", &verify_in_child(&dir), "row 0");
    let mut cut = block.clone();
    *cut.last_mut().unwrap() |= 0x80;
    put(&cut);
    assert_clean_failure("cut block", &verify_in_child(&dir), "lexical block");
    assert!(Index::open(&dir)
        .unwrap()
        .snapshot()
        .search_lexical("text", &xqdb::SearchOptions::new(3))
        .is_err_and(|e| matches!(e, xqdb::Error::Corrupt { .. })));
    put(&block);
    assert_eq!(verify_in_child(&dir).code, Some(0));
    edit(&|txn| {
        let mut t = txn.open_table(meta).unwrap();
        t.insert("lexical_stats", [0u8; 24].as_slice()).unwrap();
    });
    assert_clean_failure("statistics", &verify_in_child(&dir), "lexical statistics");
    edit(&|txn| {
        let mut t = txn.open_table(meta).unwrap();
        t.insert("lexical", b"{\"k1\": -1}".as_slice()).unwrap();
    });
    assert_clean_failure("settings", &verify_in_child(&dir), "lexical settings");
    assert!(Index::open(&dir).is_err());
}
