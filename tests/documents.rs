//! Folders of documents (`xqdb::documents::sync`, `xqdb sync`): incremental syncs on folders
//! the tests write (text, Markdown, HTML in several languages and scripts), bad files skipped
//! with reasons, SIGKILL during a sync, and the example folder answering cross-lingual
//! questions with a path and a snippet. Needs the default model (`make setup`).

mod common;

use common::{default_encoder, xqdb_json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use xqdb::documents::{files, sync, SyncOptions, SyncReport};
use xqdb::{Index, Passage};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn new_index(dir: &Path) -> Index {
    Index::builder()
        .encoder(default_encoder())
        .create(dir)
        .unwrap()
}

fn run(index: &Index, folder: &Path, o: &SyncOptions) -> SyncReport {
    let r = sync(index, folder, o, &|_| {}).unwrap();
    index.verify().unwrap();
    r
}

/// Every stored passage of `path`, in order, and checks that the ids are `path#0..n` with
/// nothing after them.
fn passages_of(index: &Index, path: &str) -> Vec<Passage> {
    let mut out = Vec::new();
    while let Some(p) = index.get(&format!("{path}#{}", out.len())).unwrap() {
        out.push(p);
    }
    out
}

const EN: &str = "The library opens at nine in the morning and closes at six in the evening. \
Members may borrow up to ten books at a time for three weeks. Late returns cost twenty cents \
a day for each book.\n\nThe reading room on the second floor is quiet. Laptops are welcome, \
but phone calls must be taken outside. Lockers for bags are next to the entrance, and the \
keys are kept at the front desk.\n";
const JA: &str = "# 図書館の案内\n\n図書館は朝九時に開き、夕方六時に閉まります。\
会員は一度に十冊まで、三週間借りることができます。\n\n二階の閲覧室では静かにしてください。\n";
const RU: &str = "<html><head><title>Правила библиотеки</title><style>p{margin:0}</style>\
<script>track()</script></head><body><h1>Правила</h1><p>Библиотека открыта с девяти утра \
до шести вечера.</p><p>Читатели могут брать до десяти книг на три недели.</p><p>Вход свободный, но для выдачи книг нужен читательский билет, который оформляют за пять минут.</p></body></html>";
const FI: &str = "# Kirjaston säännöt\n\nKirjasto on auki yhdeksästä kuuteen. Lainaaja voi \
lainata kerralla kymmenen kirjaa kolmeksi viikoksi.\n";

fn write_folder(root: &Path) {
    write(root, "en/notes.txt", EN);
    write(root, "ja/memo.md", JA);
    write(root, "ru/page.html", RU);
    write(root, "fi/ohje.md", FI);
    write(
        root,
        ".hidden/secret.txt",
        "A hidden note that must not be indexed.",
    );
    write(
        root,
        "build/out.txt",
        "Generated output that is excluded by a pattern.",
    );
    write(root, "notes.log", "An excluded log line.");
}

fn options() -> SyncOptions {
    SyncOptions {
        exclude: vec!["build/".into(), "*.log".into()],
        chunk: xqdb::documents::ChunkOptions {
            target_words: 30,
            max_words: 45,
            overlap_sentences: 0,
        },
        ..Default::default()
    }
}

#[test]
fn syncs_replace_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, folder) = (tmp.path().join("index"), tmp.path().join("docs"));
    write_folder(&folder);
    let index = new_index(&dir);
    let o = options();

    // First sync: four documents, hidden and excluded files left out.
    let r = run(&index, &folder, &o);
    assert_eq!(
        (r.added, r.changed, r.removed, r.unchanged),
        (4, 0, 0, 0),
        "{r:?}"
    );
    assert!(r.skipped.is_empty(), "{r:?}");
    assert_eq!(index.verify().unwrap().files, 4);
    let listed: Vec<String> = files(&index).unwrap().into_iter().map(|f| f.0).collect();
    assert_eq!(
        listed,
        ["en/notes.txt", "fi/ohje.md", "ja/memo.md", "ru/page.html"]
    );
    let total: usize = listed.iter().map(|p| passages_of(&index, p).len()).sum();
    assert_eq!(total, r.passages_encoded);
    assert_eq!(index.snapshot().len() as usize, total);
    assert!(
        passages_of(&index, "en/notes.txt").len() >= 2,
        "the English note is two passages"
    );
    let langs: BTreeMap<&str, String> = [
        ("en/notes.txt", "en"),
        ("ja/memo.md", "ja"),
        ("ru/page.html", "ru"),
        ("fi/ohje.md", "fi"),
    ]
    .into_iter()
    .map(|(p, l)| (p, l.to_string()))
    .collect();
    for (path, lang) in &langs {
        let source = std::fs::read_to_string(folder.join(path)).unwrap();
        for p in passages_of(&index, path) {
            assert_eq!(p.lang.as_ref(), Some(lang), "{}", p.id);
            let m = p.meta.as_ref().unwrap();
            assert_eq!(m["path"], *path);
            let (s, e) = (
                m["start"].as_u64().unwrap() as usize,
                m["end"].as_u64().unwrap() as usize,
            );
            assert!(s < e && e <= source.len(), "{}: {s}..{e}", p.id);
            let first_word = p.text.split_whitespace().next().unwrap();
            let first_word: String = first_word.chars().take(3).collect();
            assert!(
                source[s..e].contains(&first_word),
                "{}: {:?} not in {:?}",
                p.id,
                first_word,
                &source[s..e]
            );
            assert_eq!(
                m["line"].as_u64().unwrap() as usize,
                source[..s].matches('\n').count() + 1
            );
            // The passage carries its document's title and section in front of its text
            // when encoded, unless its text opens with them.
            let title = m["title"].as_str().unwrap();
            if let Some(t) = &p.title {
                assert!(t.starts_with(title), "{}: {t:?}", p.id);
            } else {
                assert!(p.text.starts_with(title), "{}: {:?}", p.id, p.text);
            }
        }
    }
    let ru = passages_of(&index, "ru/page.html");
    assert_eq!(ru[0].meta.as_ref().unwrap()["title"], "Правила библиотеки");
    assert!(ru
        .iter()
        .all(|p| !p.text.contains("track()") && !p.text.contains("margin")));
    assert_eq!(
        passages_of(&index, "ja/memo.md")[0].meta.as_ref().unwrap()["title"],
        "図書館の案内"
    );

    // A second sync reads and encodes nothing and leaves the index as it was.
    let stats = serde_json::to_value(index.stats().unwrap()).unwrap();
    let r = run(&index, &folder, &o);
    assert_eq!(
        (r.added, r.changed, r.removed, r.unchanged),
        (0, 0, 0, 4),
        "{r:?}"
    );
    assert_eq!((r.passages_encoded, r.bytes_read), (0, 0));
    assert_eq!(serde_json::to_value(index.stats().unwrap()).unwrap(), stats);

    // Editing one file replaces its passages only.
    let before_others: Vec<Vec<Passage>> = ["en/notes.txt", "ja/memo.md", "fi/ohje.md"]
        .iter()
        .map(|p| passages_of(&index, p))
        .collect();
    write(
        &folder,
        "ru/page.html",
        &RU.replace("трёх", "четыре")
            .replace("три недели", "четыре недели"),
    );
    let r = run(&index, &folder, &o);
    assert_eq!(
        (r.added, r.changed, r.removed, r.unchanged),
        (0, 1, 0, 3),
        "{r:?}"
    );
    assert_eq!(
        r.passages_encoded,
        passages_of(&index, "ru/page.html").len()
    );
    assert!(passages_of(&index, "ru/page.html")
        .iter()
        .any(|p| p.text.contains("четыре недели")));
    let after_others: Vec<Vec<Passage>> = ["en/notes.txt", "ja/memo.md", "fi/ohje.md"]
        .iter()
        .map(|p| passages_of(&index, p))
        .collect();
    assert_eq!(before_others, after_others);

    // Rewriting a file with the same content only refreshes its record.
    std::thread::sleep(Duration::from_millis(20));
    write(&folder, "fi/ohje.md", FI);
    let r = run(&index, &folder, &o);
    assert_eq!(
        (r.changed, r.unchanged, r.passages_encoded),
        (0, 4, 0),
        "{r:?}"
    );

    // A shorter file drops the passages it no longer has.
    let n_before = passages_of(&index, "en/notes.txt").len();
    write(
        &folder,
        "en/notes.txt",
        "The library is closed on Sundays.\n",
    );
    let r = run(&index, &folder, &o);
    assert_eq!((r.changed, r.passages_encoded), (1, 1), "{r:?}");
    assert_eq!(r.passages_removed, n_before - 1);
    assert_eq!(passages_of(&index, "en/notes.txt").len(), 1);
    assert!(index.get(&format!("en/notes.txt#{}", 1)).unwrap().is_none());

    // Deleting a file removes its passages and its record.
    let fi_n = passages_of(&index, "fi/ohje.md").len();
    std::fs::remove_file(folder.join("fi/ohje.md")).unwrap();
    let r = run(&index, &folder, &o);
    assert_eq!((r.removed, r.passages_removed), (1, fi_n), "{r:?}");
    assert!(passages_of(&index, "fi/ohje.md").is_empty());
    assert!(files(&index)
        .unwrap()
        .iter()
        .all(|(p, _)| p != "fi/ohje.md"));

    // Renaming moves the passages to the new path.
    let ja_texts: Vec<String> = passages_of(&index, "ja/memo.md")
        .into_iter()
        .map(|p| p.text)
        .collect();
    std::fs::rename(folder.join("ja/memo.md"), folder.join("ja/renamed.md")).unwrap();
    let r = run(&index, &folder, &o);
    assert_eq!((r.added, r.removed), (1, 1), "{r:?}");
    assert!(passages_of(&index, "ja/memo.md").is_empty());
    let moved: Vec<String> = passages_of(&index, "ja/renamed.md")
        .into_iter()
        .map(|p| p.text)
        .collect();
    assert_eq!(moved, ja_texts);

    // Excluding a synced folder later removes what it had.
    let mut o2 = o.clone();
    o2.exclude.push("ru/".into());
    let r = run(&index, &folder, &o2);
    assert_eq!(r.removed, 1, "{r:?}");
    assert!(passages_of(&index, "ru/page.html").is_empty());
    let total: usize = files(&index)
        .unwrap()
        .iter()
        .map(|(_, f)| f.passages as usize)
        .sum();
    assert_eq!(index.snapshot().len() as usize, total);

    // Reopened, the index holds the same.
    drop(index);
    let index = Index::builder()
        .encoder(default_encoder())
        .open(&dir)
        .unwrap();
    assert_eq!(passages_of(&index, "ja/renamed.md").len(), moved.len());
    assert_eq!(index.stats().unwrap().format_version, xqdb::FORMAT_VERSION);
}

#[test]
fn bad_files_are_skipped_with_a_reason_and_the_rest_is_indexed() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("docs");
    write(
        &folder,
        "good.txt",
        "A perfectly ordinary note about the weather in Helsinki.",
    );
    std::fs::write(
        folder.join("binary.txt"),
        b"PK\x03\x04\0\0\x14\0 binary data",
    )
    .unwrap();
    std::fs::write(folder.join("latin1.txt"), b"Caf\xe9 cr\xe8me, na\xefve").unwrap();
    std::fs::write(folder.join("empty.md"), b"").unwrap();
    std::fs::write(folder.join("photo.jpg"), b"\xff\xd8\xff\xe0").unwrap();
    // 200 MB of text (sparse on disk): skipped by its size, never read into memory.
    let big = std::fs::File::create(folder.join("huge.txt")).unwrap();
    big.set_len(200 << 20).unwrap();
    drop(big);
    std::os::unix::fs::symlink(folder.join("nowhere.txt"), folder.join("dangling.txt")).unwrap();
    std::fs::create_dir_all(folder.join("loop")).unwrap();
    std::os::unix::fs::symlink(&folder, folder.join("loop/back")).unwrap();
    // The index inside the folder it syncs is never read as a document.
    let index = new_index(&folder.join("the-index"));
    let r = run(&index, &folder, &SyncOptions::default());
    let reasons: BTreeMap<&str, &str> = r
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason.as_str()))
        .collect();
    // The note, and the Latin-1 file: read as Latin-1 (windows-1252), not skipped.
    assert_eq!(r.added, 2, "{r:?}");
    assert_eq!(
        passages_of(&index, "latin1.txt")[0].text,
        "Café crème, naïve"
    );
    assert!(reasons["binary.txt"].contains("binary"), "{reasons:?}");
    assert!(reasons["empty.md"].contains("no text"), "{reasons:?}");
    assert!(reasons["photo.jpg"].contains("extension"), "{reasons:?}");
    assert!(
        reasons["huge.txt"].contains("over the limit"),
        "{reasons:?}"
    );
    assert!(
        reasons["dangling.txt"].contains("cannot read"),
        "{reasons:?}"
    );
    assert!(reasons["loop/back"].contains("loop"), "{reasons:?}");
    assert!(
        !reasons.keys().any(|p| p.starts_with("the-index")),
        "{reasons:?}"
    );
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    assert!(r.bytes_read < 4096, "read {} bytes", r.bytes_read);
    assert_eq!(passages_of(&index, "good.txt").len(), 1);
    assert_eq!(index.snapshot().len(), 2);

    // Fixed files are picked up by the next sync; still-bad ones are skipped again.
    std::fs::write(
        folder.join("binary.txt"),
        "Now a plain note about crème brûlée.",
    )
    .unwrap();
    let r = run(&index, &folder, &SyncOptions::default());
    assert_eq!(r.added, 1, "{r:?}");
    assert!(passages_of(&index, "binary.txt")[0].text.contains("crème"));
    // The empty file is remembered (no passages) and left alone while it stays the same.
    assert_eq!((r.skipped.len(), r.unchanged), (4, 3), "{r:?}");
}

#[test]
fn a_file_written_during_its_read_waits_for_the_next_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("docs");
    write(
        &folder,
        "moving.txt",
        "The first version of a note that keeps changing.",
    );
    let index = new_index(&tmp.path().join("index"));
    let o = SyncOptions {
        after_read: Some(|p: &Path| {
            std::fs::write(p, "The second version, written while the sync was reading.").unwrap()
        }),
        ..Default::default()
    };
    let r = run(&index, &folder, &o);
    assert_eq!(r.added, 0, "{r:?}");
    assert!(
        r.skipped[0].reason.contains("changed while being read"),
        "{r:?}"
    );
    assert_eq!(index.snapshot().len(), 0);
    let r = run(&index, &folder, &SyncOptions::default());
    assert_eq!(r.added, 1, "{r:?}");
    assert!(passages_of(&index, "moving.txt")[0]
        .text
        .contains("second version"));
}

fn version_text(file: usize, version: usize) -> String {
    format!(
        "Note {file} at version {version}. It describes shelf {file} of the archive. \
         Each revision replaces the whole note. Version {version} is the one to keep.\n\n\
         A second paragraph of note {file}, still at version {version}, long enough to stand \
         as a passage of its own in the index after chunking.\n"
    )
}

/// Writes version `version` of notes `shelf/00.txt` … for `files` files.
fn write_shelf(folder: &Path, files: usize, version: usize) {
    for f in 0..files {
        write(
            folder,
            &format!("shelf/{f:02}.txt"),
            &version_text(f, version),
        );
    }
}

/// Passages of each synced file all come from one version of it, the ids are contiguous, and
/// no passage exists without its file's record.
fn check_whole_files(index: &Index, versions_written: usize) -> BTreeMap<String, usize> {
    index.verify().unwrap();
    let mut seen = BTreeMap::new();
    let mut total = 0;
    for (path, rec) in files(index).unwrap() {
        let ps = passages_of(index, &path);
        assert_eq!(ps.len(), rec.passages as usize, "{path}");
        total += ps.len();
        let vs: std::collections::BTreeSet<usize> = ps
            .iter()
            .map(|p| {
                let tail = p.text.split("version ").nth(1).expect("a version");
                tail.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(vs.len(), 1, "{path} mixes versions {vs:?}");
        // Two passages and the document row, whose vector each passage's is fused with.
        let (row, passages) = ps.split_last().unwrap();
        assert_eq!(row.meta.as_ref().unwrap()["document"], true, "{path}");
        let snap = index.snapshot();
        let doc = snap.vector(&row.id).unwrap().unwrap();
        for p in passages {
            let v = snap.vector(&p.id).unwrap().unwrap();
            let cos: f32 = v.iter().zip(&doc).map(|(a, b)| a * b).sum();
            assert!(cos > 0.95, "{}: {cos} to its document row", p.id);
        }
        let v = *vs.iter().next().unwrap();
        assert!(v < versions_written);
        seen.insert(path, v);
    }
    assert_eq!(
        index.snapshot().len() as usize,
        total,
        "passages without a file record"
    );
    seen
}

fn sync_child(dir: &Path, folder: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args([
            "sync",
            dir.to_str().unwrap(),
            folder.to_str().unwrap(),
            "--words",
            "20",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_during_a_sync_leaves_every_file_wholly_old_or_wholly_new() {
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    let (dir, folder) = (tmp.path().join("index"), tmp.path().join("docs"));
    let files_n = 48;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed_d0c5);
    drop(new_index(&dir));
    let write_version = |v: usize| write_shelf(&folder, files_n, v);
    // A reader follows the writer's commits, so that each kill lands after the child's first
    // file commit, at a random point of the per-file phase measured on version 0.
    let reader = Index::builder().read_only(true).open(&dir).unwrap();
    let first_commit = |child: &mut std::process::Child| {
        let seq = reader.stats().unwrap().commit_seq;
        loop {
            reader.refresh().unwrap();
            if reader.stats().unwrap().commit_seq != seq || child.try_wait().unwrap().is_some() {
                return std::time::Instant::now();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    write_version(0);
    let mut child = sync_child(&dir, &folder);
    let started = first_commit(&mut child);
    assert!(child.wait().unwrap().success());
    let phase = started.elapsed();
    let rounds = 8;
    let (mut mixed_rounds, mut interrupted) = (0, 0);
    for round in 1..=rounds {
        write_version(round);
        let mut child = sync_child(&dir, &folder);
        first_commit(&mut child);
        std::thread::sleep(phase.mul_f64(rng.random_range(0.0..0.5)));
        let _ = child.kill();
        child.wait().unwrap();
        let index = Index::open(&dir).unwrap();
        let seen = check_whole_files(&index, round + 1);
        let distinct: std::collections::BTreeSet<_> = seen.values().collect();
        mixed_rounds += (distinct.len() > 1) as usize;
        interrupted += seen.values().any(|&v| v != round) as usize;
    }
    drop(reader);
    // The next sync completes the rest.
    let index = Index::builder()
        .encoder(default_encoder())
        .open(&dir)
        .unwrap();
    let r = run(
        &index,
        &folder,
        &SyncOptions {
            chunk: xqdb::documents::ChunkOptions {
                target_words: 20,
                max_words: 30,
                overlap_sentences: 0,
            },
            ..Default::default()
        },
    );
    assert!(r.skipped.is_empty(), "{r:?}");
    let seen = check_whole_files(&index, rounds + 1);
    assert_eq!(seen.len(), files_n);
    assert!(seen.values().all(|&v| v == rounds), "{seen:?}");
    eprintln!(
        "the per-file phase took {phase:?}; {rounds} kills, {interrupted} before the sync finished, \
         {mixed_rounds} leaving files of different versions side by side"
    );
    // The kills must land mid-sync for the test to mean anything.
    assert!(
        interrupted >= rounds / 2,
        "{interrupted} of {rounds} kills interrupted a sync"
    );
}

#[test]
fn an_io_failure_at_any_call_of_a_sync_leaves_every_file_wholly_old_or_wholly_new() {
    use xqdb::faults::SimDisk;
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("docs");
    let encoder = default_encoder();
    let files_n = 6;
    let write_version = |v: usize| {
        for f in 0..files_n {
            write(&folder, &format!("{f}.txt"), &version_text(f, v));
        }
    };
    let o = SyncOptions {
        chunk: xqdb::documents::ChunkOptions {
            target_words: 20,
            max_words: 30,
            overlap_sentences: 0,
        },
        ..Default::default()
    };
    // Version 0 synced on a healthy disk, then version 1 written to the folder; `fail_at`
    // counts the I/O calls of the second sync.
    let setup = |fail_at: Option<u64>| {
        write_version(0);
        let disk = SimDisk::new();
        let index = Index::builder()
            .encoder(encoder.clone())
            .open_simulated(&disk)
            .unwrap();
        sync(&index, &folder, &o, &|_| {}).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        write_version(1);
        let start = disk.calls();
        if let Some(n) = fail_at {
            disk.fail_from(n);
        }
        let r = sync(&index, &folder, &o, &|_| {});
        (disk.calls() - start, r, disk, index)
    };
    let (calls, r, _, _) = setup(None);
    assert_eq!(r.unwrap().changed, files_n);
    let step = (calls / 40).max(1);
    let mut failed = 0;
    for n in (1..=calls).step_by(step as usize) {
        let (_, r, disk, index) = setup(Some(n));
        failed += r.is_err() as usize;
        drop(index);
        let index = Index::builder()
            .encoder(encoder.clone())
            .open_simulated(&disk.crash())
            .unwrap_or_else(|e| panic!("reopen after a failure at call {n}: {e}"));
        let seen = check_whole_files(&index, 2);
        assert_eq!(seen.len(), files_n, "failure at call {n}");
        // The next sync completes the rest.
        let r = sync(&index, &folder, &o, &|_| {}).unwrap();
        assert!(r.skipped.is_empty(), "{r:?}");
        let seen = check_whole_files(&index, 2);
        assert!(
            seen.values().all(|&v| v == 1),
            "failure at call {n}: {seen:?}"
        );
    }
    eprintln!("{calls} I/O calls in a sync of {files_n} changed files; {failed} injected failures stopped it");
    assert!(failed > 0);
}

/// A PDF of two pages of Helvetica text, one line per string, written the way PDF 1.4
/// describes it (catalog, page tree, pages, content streams, cross-reference table).
fn two_page_pdf(pages: [&[&str]; 2]) -> Vec<u8> {
    let escape = |t: &str| {
        t.replace('\\', "\\\\")
            .replace('(', "\\(")
            .replace(')', "\\)")
    };
    let content = |lines: &[&str]| {
        let mut c = String::from("BT /F1 12 Tf 72 720 Td 16 TL\n");
        for l in lines {
            c.push_str(&format!("({}) Tj T*\n", escape(l)));
        }
        c.push_str("ET");
        c
    };
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 7 0 R >> >> >>".to_string(),
        { let c = content(pages[0]); format!("<< /Length {} >>\nstream\n{c}\nendstream", c.len()) },
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 6 0 R /Resources << /Font << /F1 7 0 R >> >> >>".to_string(),
        { let c = content(pages[1]); format!("<< /Length {} >>\nstream\n{c}\nendstream", c.len()) },
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[test]
fn pdf_files_are_read_page_by_page() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("docs");
    std::fs::create_dir_all(&folder).unwrap();
    let pdf = two_page_pdf([
        &[
            "Harbour opening hours.",
            "The ferry leaves at seven every morning.",
        ],
        &[
            "Winter schedule.",
            "In January the ferry does not run on Sundays.",
        ],
    ]);
    std::fs::write(folder.join("ferry.pdf"), &pdf).unwrap();
    std::fs::write(folder.join("broken.pdf"), &pdf[..pdf.len() / 2]).unwrap();
    let index = new_index(&tmp.path().join("index"));
    let o = SyncOptions {
        chunk: xqdb::documents::ChunkOptions {
            target_words: 8,
            max_words: 12,
            overlap_sentences: 0,
        },
        // Passages only: each one's page is what this test reads.
        context: xqdb::documents::DocumentContext {
            document_row: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let r = run(&index, &folder, &o);
    assert_eq!(r.added, 1, "{r:?}");
    assert!(
        r.skipped[0].path == "broken.pdf" && r.skipped[0].reason.contains("PDF"),
        "{r:?}"
    );
    let ps = passages_of(&index, "ferry.pdf");
    let all: String = ps
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        all.contains("The ferry leaves at seven every morning."),
        "{all}"
    );
    assert!(all.contains("does not run on Sundays"), "{all}");
    let pages: Vec<u64> = ps
        .iter()
        .map(|p| p.meta.as_ref().unwrap()["page"].as_u64().unwrap())
        .collect();
    assert_eq!((pages[0], *pages.last().unwrap()), (1, 2), "{ps:?}");
    let hits = index
        .search_text("Does the ferry run on Sundays in winter?", 1)
        .unwrap();
    assert_eq!(hits[0].passage.meta.as_ref().unwrap()["page"], 2);
}

#[test]
fn synced_passages_get_generated_queries_now_or_deferred() {
    use xqdb::xqg::TargetLanguage;
    use xqdb::{AugmentBudget, Generator, GeneratorOptions, XqgProfile};
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("docs");
    write(
        &folder,
        "a.txt",
        "Helsinki is the capital of Finland. It lies on the coast.",
    );
    write(&folder, "b.md", "# Tokyo\n\nTokyo is the capital of Japan.");
    let gen_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seq2seq/mt5");
    let generator =
        std::sync::Arc::new(Generator::open(gen_dir, &GeneratorOptions::default()).unwrap());
    for deferred in [false, true] {
        let index = Index::builder()
            .encoder(default_encoder())
            .generator(generator.clone())
            .xqg(XqgProfile {
                languages: TargetLanguage::parse_list("fi,te").unwrap(),
                per_language: 2,
                max_query_tokens: 8,
                deferred,
                ..Default::default()
            })
            .create(tmp.path().join(format!("index-{deferred}")))
            .unwrap();
        let r = run(&index, &folder, &SyncOptions::default());
        assert_eq!(r.added, 2, "{r:?}");
        let ids = index.snapshot().ids().unwrap();
        assert_eq!(ids.len(), r.passages_encoded);
        let stats = index.stats().unwrap();
        if deferred {
            assert_eq!(stats.augment_backlog as usize, ids.len());
            let done = index
                .writer()
                .unwrap()
                .augment(&AugmentBudget::default())
                .unwrap();
            assert_eq!((done.augmented, done.remaining), (ids.len(), 0));
        } else {
            assert_eq!(
                (stats.augmented as usize, stats.augment_backlog),
                (ids.len(), 0)
            );
        }
        for id in &ids {
            let a = index.snapshot().augmentation(id).unwrap().unwrap();
            assert!(!a.pending && !a.queries.is_empty(), "{id}");
        }
        // An edited file's new passages get their queries the same way.
        write(
            &folder,
            "a.txt",
            "Helsinki is the capital of Finland. It has a cathedral.",
        );
        let r = run(&index, &folder, &SyncOptions::default());
        assert_eq!(r.changed, 1, "{r:?}");
        let a = index.snapshot().augmentation("a.txt#0").unwrap().unwrap();
        assert_eq!(a.pending, deferred);
        write(
            &folder,
            "a.txt",
            "Helsinki is the capital of Finland. It lies on the coast.",
        );
    }
}

#[test]
fn the_example_folder_answers_cross_lingual_questions_with_a_path_and_a_snippet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    let dir = dir.to_str().unwrap();
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/docs");
    xqdb_json(&["init", dir]);
    let r = xqdb_json(&["sync", dir, docs]);
    assert_eq!(r["added"], 6, "{r}");
    assert_eq!(r["skipped"].as_array().unwrap().len(), 0, "{r}");
    let again = xqdb_json(&["sync", dir, docs, "--dry-run"]);
    assert_eq!(
        (
            again["unchanged"].as_u64(),
            again["passages_encoded"].as_u64()
        ),
        (Some(6), Some(0))
    );
    for (query, path) in [
        ("బైకాల్ సరస్సు ఎంత లోతుగా ఉంటుంది?", "ru/baikal.html"),
        ("ما هو اللوويلي في الساونا الفنلندية؟", "fi/sauna.md"),
        ("Where did coffee come from?", "ar/coffee.txt"),
        ("When did Mount Fuji last erupt?", "ja/fuji.txt"),
    ] {
        let out = xqdb_json(&["search", dir, query, "-k", "3"]);
        let top = &out["hits"][0];
        assert_eq!(top["meta"]["path"], path, "{query}: {out}");
        let loc = top["location"].as_str().unwrap();
        assert!(loc.starts_with(&format!("{path}:")), "{loc}");
        let snippet = top["snippet"].as_str().unwrap();
        assert!(
            !snippet.is_empty() && snippet.chars().count() <= 160,
            "{snippet}"
        );
    }
}

const GUIDE: &str = "---
title: Using custom fonts
description: >-
  Add typefaces to a website with Fontsource
  or with font files of your own.
---
import Steps from '~/components/Steps.astro';

This guide adds web fonts to a project.

## Local font files

Put the file `DistantGalaxy.woff2` in the assets folder, then name it in the config.
Every page that uses the font loads it once.

### Fallbacks

A fallback font shows while the web font loads.
";

#[test]
fn documents_carry_their_title_sections_and_a_document_row() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("docs");
    write(&folder, "guide.mdx", GUIDE);
    let index = new_index(&tmp.path().join("index"));
    let o = SyncOptions {
        chunk: xqdb::documents::ChunkOptions {
            target_words: 10,
            max_words: 15,
            overlap_sentences: 0,
        },
        ..Default::default()
    };
    let r = run(&index, &folder, &o);
    let ps = passages_of(&index, "guide.mdx");
    assert_eq!(r.passages_encoded, ps.len());
    let (row, passages) = ps.split_last().unwrap();
    assert!(passages.len() >= 3, "{ps:?}");
    // The front matter and the MDX import are no passage's text; the title comes from the
    // front matter, each passage carries its heading path.
    for p in passages {
        let m = p.meta.as_ref().unwrap();
        assert_eq!(m["title"], "Using custom fonts");
        assert!(m.get("document").is_none());
        assert!(
            !p.text.contains("description") && !p.text.contains("import"),
            "{p:?}"
        );
    }
    assert!(passages[0]
        .text
        .starts_with("This guide adds web fonts to a project."));
    assert_eq!(passages[0].title.as_deref(), Some("Using custom fonts"));
    let local = passages
        .iter()
        .find(|p| p.text.starts_with("Put the file"))
        .unwrap();
    assert_eq!(
        local.title.as_deref(),
        Some("Using custom fonts › Local font files")
    );
    assert_eq!(
        local.meta.as_ref().unwrap()["section"],
        serde_json::json!(["Local font files"])
    );
    let fallback = passages
        .iter()
        .find(|p| p.text.starts_with("A fallback"))
        .unwrap();
    assert_eq!(
        fallback.title.as_deref(),
        Some("Using custom fonts › Local font files › Fallbacks")
    );
    // The document row: the summary, then the opening, as the file's own bytes.
    let m = row.meta.as_ref().unwrap();
    assert_eq!(m["document"], true);
    assert_eq!(row.title.as_deref(), Some("Using custom fonts"));
    assert!(
        row.text.starts_with(
            "Add typefaces to a website with Fontsource or with font files of your own. \
             This guide adds web fonts"
        ),
        "{:?}",
        row.text
    );
    let (s, e) = (
        m["start"].as_u64().unwrap() as usize,
        m["end"].as_u64().unwrap() as usize,
    );
    assert!(GUIDE[s..].starts_with("description:"), "{:?}", &GUIDE[s..e]);
    assert!(GUIDE[..e].ends_with("loads."), "{:?}", &GUIDE[s..e]);
    assert_eq!(row.lang.as_deref(), Some("en"));

    // Each passage's vector is fused with the document row's: normalize(0.3·e_p + 0.7·e_doc).
    let encoder = default_encoder();
    let input = |p: &Passage| match &p.title {
        Some(t) => format!("{t} {}", p.text),
        None => p.text.clone(),
    };
    let plain = encoder
        .encode_passages(&ps.iter().map(input).collect::<Vec<_>>())
        .unwrap();
    let doc = plain.last().unwrap();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for (p, e) in ps.iter().zip(&plain) {
        let stored = index.snapshot().vector(&p.id).unwrap().unwrap();
        let want = if p.id == row.id {
            e.clone()
        } else {
            xqdb::xqg::fuse(e, doc, 1, 0.7, true)
        };
        // The same text encoded in another batch: int8 activations differ slightly.
        assert!(
            dot(&stored, &want) > 0.998,
            "{}: {}",
            p.id,
            dot(&stored, &want)
        );
        if p.id != row.id {
            assert!(dot(&stored, e) < 0.99, "{} is not fused", p.id);
        }
    }
    // Other settings (no fusion) re-encode the file though its content did not change.
    let plain_options = SyncOptions {
        context: xqdb::documents::DocumentContext {
            fuse: 0.0,
            ..Default::default()
        },
        ..o.clone()
    };
    let r = run(&index, &folder, &plain_options);
    assert_eq!(
        (r.changed, r.unchanged, r.passages_encoded),
        (1, 0, ps.len()),
        "{r:?}"
    );
    let first = index.snapshot().vector(&ps[0].id).unwrap().unwrap();
    assert!(dot(&first, &plain[0]) > 0.998);
    let r = run(&index, &folder, &plain_options);
    assert_eq!((r.changed, r.unchanged), (0, 1), "{r:?}");

    // The file shrinks to one passage without a summary: its document row goes too.
    write(&folder, "guide.mdx", "# Fonts\n\nA short note on fonts.\n");
    let r = run(&index, &folder, &o);
    assert_eq!((r.changed, r.passages_removed), (1, ps.len() - 1), "{r:?}");
    let ps = passages_of(&index, "guide.mdx");
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(ps[0].meta.as_ref().unwrap().get("document").is_none());
}

#[test]
fn search_by_file_gives_each_file_once_with_its_best_passage() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("docs");
    write_folder(&folder);
    let index = new_index(&tmp.path().join("index"));
    run(&index, &folder, &options());
    let query = "図書館は何時に開きますか？";
    let passages = index.search_text(query, 100).unwrap();
    let files = index
        .search_files(&[query], &xqdb::SearchOptions::new(3), &Default::default())
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(files.len(), 3);
    // The files in the order of their best passages, each with that passage and its score.
    let mut order: Vec<String> = Vec::new();
    for h in &passages {
        let p = h.passage.meta.as_ref().unwrap()["path"]
            .as_str()
            .unwrap()
            .to_string();
        if !order.contains(&p) {
            order.push(p);
        }
    }
    let got: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        got,
        order[..3].iter().map(String::as_str).collect::<Vec<_>>()
    );
    for f in &files {
        let best = passages
            .iter()
            .find(|h| h.passage.meta.as_ref().unwrap()["path"] == f.path.as_str())
            .unwrap();
        assert_eq!((&f.best.id, f.score), (&best.id, best.score));
        let n = passages
            .iter()
            .filter(|h| h.passage.meta.as_ref().unwrap()["path"] == f.path.as_str())
            .count();
        assert_eq!(f.passages, n);
    }
    let dir = index.path().to_path_buf();
    drop(index);
    let cli = xqdb_json(&[
        "search",
        dir.to_str().unwrap(),
        query,
        "-k",
        "2",
        "--by-file",
    ]);
    let listed: Vec<&str> = cli["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(listed, got[..2]);
    assert!(cli["files"][0]["best"]["location"].is_string(), "{cli}");
}

/// The folder is the truth: a synced passage deleted by hand comes back at the next sync
/// (its file is read again), and a file whose passages are all there stays unchanged.
#[test]
fn a_synced_passage_deleted_by_hand_comes_back_at_the_next_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, folder) = (tmp.path().join("index"), tmp.path().join("docs"));
    write_folder(&folder);
    let index = new_index(&dir);
    let o = options();
    run(&index, &folder, &o);
    let before = passages_of(&index, "en/notes.txt");
    assert!(before.len() >= 2, "{before:?}");
    let mut w = index.writer().unwrap();
    assert!(w.delete("en/notes.txt#1").unwrap());
    w.commit().unwrap();
    drop(w);
    assert!(index.get("en/notes.txt#1").unwrap().is_none());
    let r = run(&index, &folder, &o);
    assert_eq!((r.changed, r.unchanged), (1, 3), "{r:?}");
    let after = passages_of(&index, "en/notes.txt");
    assert_eq!(
        after.iter().map(|p| &p.text).collect::<Vec<_>>(),
        before.iter().map(|p| &p.text).collect::<Vec<_>>()
    );
    let r = run(&index, &folder, &o);
    assert_eq!((r.changed, r.unchanged), (0, 4), "{r:?}");
}

/// Ctrl-C during `xqdb sync`: the sync stops after the file in progress, says so and exits
/// 130 (or 0 when it had finished); a read-only process then opens the index without any
/// writer having recovered it, and every file is wholly one version.
#[test]
fn sigint_during_a_sync_stops_after_a_whole_file() {
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    let (dir, folder) = (tmp.path().join("index"), tmp.path().join("docs"));
    let files_n = 32;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x0005_16e7);
    drop(new_index(&dir));
    let write_version = |v: usize| write_shelf(&folder, files_n, v);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_xqdb"))
            .args(["sync", dir.to_str().unwrap(), folder.to_str().unwrap()])
            .args(["--words", "20"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    write_version(0);
    let started = std::time::Instant::now();
    assert!(spawn().wait().unwrap().success());
    let whole = started.elapsed();
    let (rounds, mut stopped) = (8, 0);
    for round in 1..=rounds {
        write_version(round);
        let child = spawn();
        std::thread::sleep(whole.mul_f64(rng.random_range(0.3..0.9)));
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(130) => {
                assert!(stderr.contains("interrupted:"), "{stderr}");
                stopped += 1;
            }
            Some(0) => {}
            other => panic!("round {round}: exit {other:?}: {stderr}"),
        }
        let index = Index::builder().read_only(true).open(&dir).unwrap();
        check_whole_files(&index, round + 1);
    }
    assert!(
        stopped >= rounds / 2,
        "only {stopped} of {rounds} SIGINTs stopped a sync"
    );
}

/// The README's sync example, run as written (in the repository, the index in a temporary
/// folder): the search answers with the file and line the README shows.
#[test]
fn the_readme_sync_example_works_as_written() {
    let root = env!("CARGO_MANIFEST_DIR");
    let block = common::readme_block("`xqdb sync DIR FOLDER` keeps");
    let tmp = tempfile::tempdir().unwrap();
    let ix = tmp.path().join("docs.xqdb");
    let mut lines = block.lines();
    let mut last = String::new();
    let mut ran = 0;
    while let Some(line) = lines.next() {
        let Some(cmd) = line.strip_prefix("xqdb ") else {
            continue;
        };
        let cmd = cmd.split("   #").next().unwrap();
        // Words, with '…' quoting as a shell reads it.
        let mut args: Vec<String> = Vec::new();
        let mut rest = cmd.trim();
        while !rest.is_empty() {
            let (word, tail) = match rest.chars().next() {
                Some(q @ ('\'' | '"')) => {
                    let end = rest[1..].find(q).unwrap() + 1;
                    (&rest[1..end], &rest[end + 1..])
                }
                _ => rest.split_at(rest.find(' ').unwrap_or(rest.len())),
            };
            args.push(if word == "docs.xqdb" {
                ix.to_str().unwrap().to_string()
            } else {
                word.to_string()
            });
            rest = tail.trim_start();
        }
        let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
            .args(&args)
            .current_dir(root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "xqdb {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        ran += 1;
        if args[0] == "search" {
            // The README shows the answer under the command: its file and line.
            let shown = lines.next().unwrap();
            let location = shown.split_whitespace().last().unwrap();
            assert!(
                last.contains(location),
                "README shows {shown:?}; got {last}"
            );
        }
    }
    assert_eq!(ran, 3, "the README's example has changed: {block}");
    assert!(!last.trim().is_empty());
}

/// Files in the encodings people keep text in (written from real questions of
/// `../shared/data` in each language): every one is read, its passages are the text itself,
/// `start`/`end` are offsets into the file's own bytes, and each file is found by one of its
/// own sentences and by that sentence's English translation. A Latin-1 file is not read as
/// UTF-8 mojibake; UTF-16 is read with and without a byte-order mark.
#[test]
fn files_in_other_encodings_are_read_with_ranges_into_their_bytes() {
    use encoding_rs::Encoding;
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/xor-tydi");
    // Two questions from `skip` on that the encoding can write (KOI8-R has no «», say).
    let pairs = |lang: &str, skip: usize, enc: &'static Encoding| -> Vec<(String, String)> {
        std::fs::read_to_string(format!("{data}/translations.{lang}-en.jsonl"))
            .unwrap()
            .lines()
            .skip(skip)
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["native"].as_str().unwrap().to_string(),
                    v["en"].as_str().unwrap().to_string(),
                )
            })
            .filter(|(native, _)| !enc.encode(native).2)
            .take(2)
            .collect()
    };
    fn utf16(text: &str, big: bool, bom: bool) -> Vec<u8> {
        let mut out: Vec<u8> = if !bom {
            vec![]
        } else if big {
            vec![0xfe, 0xff]
        } else {
            vec![0xff, 0xfe]
        };
        for u in text.encode_utf16() {
            out.extend_from_slice(&if big {
                u.to_be_bytes()
            } else {
                u.to_le_bytes()
            });
        }
        out
    }
    // (file, language, encoding label, how it is written)
    let files: &[(&str, &str, &str, usize)] = &[
        ("ja-sjis.txt", "ja", "shift_jis", 0),
        ("ja-eucjp.txt", "ja", "euc-jp", 10),
        ("ja-utf16be-bom.txt", "ja", "utf-16be", 20),
        ("ko-euckr.txt", "ko", "euc-kr", 0),
        ("ru-cp1251.txt", "ru", "windows-1251", 0),
        ("ru-koi8r.txt", "ru", "koi8-r", 10),
        ("ru-utf16le-bom.txt", "ru", "utf-16le", 20),
        ("ar-cp1256.txt", "ar", "windows-1256", 0),
        ("fi-latin1.txt", "fi", "iso-8859-1", 0),
        ("fi-utf16le.txt", "fi", "utf-16le", 10),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let (dir, folder) = (tmp.path().join("index"), tmp.path().join("docs"));
    std::fs::create_dir_all(&folder).unwrap();
    let mut expect = Vec::new();
    for (i, &(name, lang, label, skip)) in files.iter().enumerate() {
        let enc = Encoding::for_label(label.as_bytes()).unwrap();
        let p = pairs(lang, skip, enc.output_encoding());
        let text: String = p.iter().map(|(n, _)| format!("{n}\n\n")).collect();
        let bytes = match label {
            "utf-16be" => utf16(&text, true, true),
            "utf-16le" => utf16(&text, false, name.contains("bom")),
            _ => {
                let (b, _, unmappable) = enc.encode(&text);
                assert!(!unmappable, "{name}: text not encodable in {label}");
                b.into_owned()
            }
        };
        std::fs::write(folder.join(name), &bytes).unwrap();
        expect.push((name, enc, bytes, p, i));
    }
    let index = new_index(&dir);
    let o = SyncOptions {
        chunk: xqdb::documents::ChunkOptions {
            target_words: 40,
            max_words: 60,
            overlap_sentences: 0,
        },
        ..Default::default()
    };
    let r = run(&index, &folder, &o);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert_eq!(r.added, files.len());
    for (name, enc, bytes, questions, _) in &expect {
        let ps = passages_of(&index, name);
        assert!(!ps.is_empty(), "{name}");
        for p in ps
            .iter()
            .filter(|p| p.meta.as_ref().unwrap().get("document").is_none())
        {
            let m = p.meta.as_ref().unwrap();
            let (s, e) = (
                m["start"].as_u64().unwrap() as usize,
                m["end"].as_u64().unwrap() as usize,
            );
            let (original, _) = enc.decode_without_bom_handling(&bytes[s..e]);
            // A passage joins its paragraphs with single spaces.
            let words = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(words(&original), words(&p.text), "{name}: bytes {s}..{e}");
        }
        let all: String = ps.iter().map(|p| p.text.as_str()).collect();
        for (native, _) in questions.iter() {
            assert!(
                all.contains(native.as_str()),
                "{name}: {native} not read right"
            );
        }
        // Found by one of its own sentences (first), and by its English translation (among
        // the top 3 passages of the 10 files).
        let (native, english) = &questions[1];
        for (query, depth) in [(native, 1), (english, 3)] {
            let hits = index.search_text(query, depth).unwrap();
            assert!(
                hits.iter().any(|h| h.id.starts_with(&format!("{name}#"))),
                "{name}: {query:?} found {:?}",
                hits.iter().map(|h| &h.id).collect::<Vec<_>>()
            );
        }
    }
}
