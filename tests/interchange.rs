//! Parquet and Arrow IPC interchange: export then import gives an index whose searches,
//! passages and xQG records equal the original's; a file written by pyarrow in the schema
//! (tests/fixtures/interop, made by scripts/make_interop_fixture.py) imports without
//! recomputing anything; bad files get clear errors and write nothing.

use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use xqdb::interchange::{export, import, import_new, ExportOptions, ImportOptions, Source};
use xqdb::{Augmentation, Error, Index, Metric, Passage, XqgProfile};

const DIM: usize = 16;

fn unit(rng: &mut impl Rng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIM).map(|_| rng.random::<f32>() - 0.5).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// 600 passages: every third with an xQG record, some with titles, languages and metadata,
/// some deleted, sealed into a segment and a tail.
fn original(dir: &Path) -> Index {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let index = Index::builder()
        .dim(DIM)
        .metric(Metric::Cosine)
        .xqg(XqgProfile {
            alpha: 0.2,
            ..Default::default()
        })
        .seal_rows(400)
        .create(dir)
        .unwrap();
    let mut w = index.writer().unwrap();
    for i in 0..600 {
        let mut p = Passage::new(format!("p{i:04}"), format!("passage number {i} — ünïcode"));
        if i % 2 == 0 {
            p = p.with_title(format!("title {i}"));
        }
        if i % 5 == 0 {
            p = p.with_lang(["en", "fi", "te"][i % 3]);
        }
        if i % 7 == 0 {
            p = p.with_meta(serde_json::json!({ "n": i, "tag": "x" }));
        }
        if i % 3 == 0 {
            let qv: Vec<Vec<f32>> = (0..i % 4).map(|_| unit(&mut rng)).collect();
            let qs = (0..qv.len())
                .map(|k| ("fi".to_string(), format!("kysymys {i}.{k}")))
                .collect();
            w.insert_augmented(p, Augmentation::new(unit(&mut rng), qs, &qv, false))
                .unwrap();
        } else {
            w.insert(p, &unit(&mut rng)).unwrap();
        }
        if i % 100 == 99 {
            w.commit().unwrap();
        }
    }
    for i in (0..600).step_by(37) {
        w.delete(&format!("p{i:04}")).unwrap();
    }
    w.commit().unwrap();
    drop(w);
    index
}

fn same_index(a: &Index, b: &Index) {
    let (sa, sb) = (a.snapshot(), b.snapshot());
    assert_eq!(sa.ids().unwrap(), sb.ids().unwrap());
    for id in sa.ids().unwrap() {
        assert_eq!(sa.get(&id).unwrap(), sb.get(&id).unwrap(), "{id}");
        assert_eq!(sa.vector(&id).unwrap(), sb.vector(&id).unwrap(), "{id}");
        assert_eq!(
            sa.augmentation(&id).unwrap(),
            sb.augmentation(&id).unwrap(),
            "{id}"
        );
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for _ in 0..20 {
        let q = unit(&mut rng);
        let ha: Vec<(String, f32)> = sa
            .search(&q, 10)
            .unwrap()
            .into_iter()
            .map(|h| (h.id, h.score))
            .collect();
        let hb: Vec<(String, f32)> = sb
            .search(&q, 10)
            .unwrap()
            .into_iter()
            .map(|h| (h.id, h.score))
            .collect();
        assert_eq!(ha, hb);
    }
}

#[test]
fn export_then_import_gives_the_same_index() {
    let tmp = tempfile::tempdir().unwrap();
    let a = original(&tmp.path().join("a"));
    for name in ["out.parquet", "out.arrow"] {
        let file = tmp.path().join(name);
        let r = export(
            &a,
            &file,
            &ExportOptions {
                batch_rows: 128,
                f16: false,
            },
        )
        .unwrap();
        assert_eq!(r.rows, a.stats().unwrap().passages);
        assert_eq!(r.augmented, a.stats().unwrap().augmented);
        let (b, ri) = import_new(
            &tmp.path().join(format!("b-{name}")),
            &file,
            None,
            &ImportOptions {
                batch_rows: 100,
                commit_rows: 250,
                upsert: false,
                stop: None,
            },
        )
        .unwrap();
        assert_eq!((ri.rows, ri.encoded), (r.rows, 0));
        assert_eq!(ri.commits, r.rows.div_ceil(250));
        same_index(&a, &b);
        assert_eq!(b.snapshot().xqg_profile().unwrap().alpha, 0.2);
        // The records came along: a new α needs no regeneration.
        let mut w = b.writer().unwrap();
        let rr = w.re_fuse(0.5, true).unwrap();
        assert_eq!(rr.re_fused as u64, a.stats().unwrap().augmented);
    }
    // f16 vectors: every stored vector within f16 rounding.
    let file = tmp.path().join("half.parquet");
    export(
        &a,
        &file,
        &ExportOptions {
            batch_rows: 1000,
            f16: true,
        },
    )
    .unwrap();
    let (c, _) = import_new(
        &tmp.path().join("c"),
        &file,
        None,
        &ImportOptions::default(),
    )
    .unwrap();
    let (sa, sc) = (a.snapshot(), c.snapshot());
    for id in sa.ids().unwrap() {
        let (x, y) = (
            sa.vector(&id).unwrap().unwrap(),
            sc.vector(&id).unwrap().unwrap(),
        );
        assert!(x.iter().zip(&y).all(|(p, q)| (p - q).abs() < 2e-3), "{id}");
    }
    // Importing again into the same index: duplicates refused, --upsert replaces.
    let before = c.stats().unwrap().commit_seq;
    let e = import(
        &c,
        Source::open(&file, 64).unwrap(),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("row 1"), "{e}");
    assert_eq!(
        c.stats().unwrap().commit_seq,
        before,
        "a refused import committed"
    );
    let r = import(
        &c,
        Source::open(&file, 64).unwrap(),
        &ImportOptions {
            upsert: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.rows, sa.len());
    assert_eq!(c.stats().unwrap().passages, sa.len());
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop/pyarrow.parquet")
}

#[test]
fn a_file_written_by_pyarrow_imports_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().with_extension("json")).unwrap())
            .unwrap();
    // No xqdb metadata in this file: the index is sized from the vector column.
    let (index, r) = import_new(
        &tmp.path().join("i"),
        &fixture(),
        None,
        &ImportOptions::default(),
    )
    .unwrap();
    let rows = expected["rows"].as_array().unwrap();
    assert_eq!(r.rows as usize, rows.len());
    let snap = index.snapshot();
    for row in rows {
        let id = row["id"].as_str().unwrap();
        let p = snap.get(id).unwrap().unwrap();
        assert_eq!(p.text, row["text"].as_str().unwrap());
        assert_eq!(p.lang.as_deref(), row["lang"].as_str());
        let want: Vec<f32> = row["vec_fused_normalised"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let got = snap.vector(id).unwrap().unwrap();
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{id}"
        );
    }
}

#[test]
fn bad_files_are_refused_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let a = original(&tmp.path().join("a"));
    let foreign = tmp.path().join("foreign.parquet");
    std::fs::write(&foreign, b"this is not parquet at all").unwrap();
    assert!(Source::open(&foreign, 64).is_err());
    let txt = tmp.path().join("x.csv");
    std::fs::write(&txt, b"a,b").unwrap();
    let e = Source::open(&txt, 64).err().unwrap();
    assert!(e.to_string().contains(".parquet or .arrow"), "{e}");
    // A file of another dimension.
    let other = Index::builder()
        .dim(8)
        .create(tmp.path().join("o"))
        .unwrap();
    let file = tmp.path().join("a.parquet");
    export(&a, &file, &ExportOptions::default()).unwrap();
    let e = import(
        &other,
        Source::open(&file, 64).unwrap(),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::DimensionMismatch { .. }), "{e}");
    assert_eq!(other.stats().unwrap().passages, 0);
    // A truncated file.
    let bytes = std::fs::read(&file).unwrap();
    let cut = tmp.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(Source::open(&cut, 64).is_err());
}

fn xqdb_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap()
}

#[test]
fn the_cli_imports_a_folder_of_part_files_in_name_order() {
    // What a Spark or Ray job writes: a folder of part files (and other files, skipped).
    let tmp = tempfile::tempdir().unwrap();
    let index = original(&tmp.path().join("orig"));
    let parts = tmp.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    let whole = tmp.path().join("whole.parquet");
    export(&index, &whole, &ExportOptions::default()).unwrap();
    // Two halves: the rows of ids < p0300 and the rest, as their own indexes' exports.
    let snap = index.snapshot();
    for (name, keep) in [("part-1.parquet", true), ("part-0.arrow", false)] {
        let dir = tmp.path().join(name);
        let half = Index::builder()
            .dim(DIM)
            .metric(Metric::Cosine)
            .xqg(XqgProfile {
                alpha: 0.2,
                ..Default::default()
            })
            .create(&dir)
            .unwrap();
        let mut w = half.writer().unwrap();
        for id in snap.ids().unwrap() {
            if (id.as_str() < "p0300") != keep {
                continue;
            }
            let p = snap.get(&id).unwrap().unwrap();
            match snap.augmentation(&id).unwrap() {
                Some(a) => w.insert_augmented(p, a).unwrap(),
                None => w.insert(p, &snap.vector(&id).unwrap().unwrap()).unwrap(),
            }
        }
        w.commit().unwrap();
        drop(w);
        export(&half, &parts.join(name), &ExportOptions::default()).unwrap();
    }
    std::fs::write(parts.join("_SUCCESS"), "").unwrap();
    let copy = tmp.path().join("copy");
    let out = xqdb_cli(&["import", copy.to_str().unwrap(), parts.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"], 2);
    assert_eq!(report["report"]["rows"], snap.len());
    let copy = Index::open(&copy).unwrap();
    same_index(&index, &copy);
    // A folder without data files is an error that says so; nothing is created.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let target = tmp.path().join("none");
    let out = xqdb_cli(&["import", target.to_str().unwrap(), empty.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no Parquet or Arrow files"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!target.exists());
}
