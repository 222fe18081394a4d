//! What a first-time user meets on the command line: counts bounded with a typed error,
//! errors as JSON under `--json` (clap's too), empty queries refused, filters that say when they
//! cannot match, duplicate ids reported at the duplicate, messages that name real commands, and
//! the rough edges of a first session (one row each in `rough_edges`). Vectors-only indexes, so
//! that no model is needed.

mod common;

use common::xqdb_json;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

fn xqdb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A failure the user can read: exit status 1 or 2 (never a panic's 101 or an abort's 134),
/// no "panicked" on stderr, and the message on stderr.
fn fails_with(out: &Output, wanted: &str) {
    let (stdout, stderr) = text(out);
    let code = out.status.code();
    assert!(
        matches!(code, Some(1) | Some(2)),
        "exit {code:?}: {stdout} {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(wanted), "wanted {wanted:?} in: {stderr}");
}

fn write(path: &Path, lines: &[Value]) {
    let body: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(path, body.join("\n") + "\n").unwrap();
}

/// An index of dimension 4 with four passages: two English, one Japanese, one untagged;
/// topics food, tech, food, travel.
fn small_index(dir: &Path) -> String {
    let ix = dir.join("ix");
    let ix_s = ix.to_str().unwrap().to_string();
    assert!(xqdb(&["init", &ix_s, "--dim", "4", "--lexical"])
        .status
        .success());
    let rows = [
        (
            "a",
            "bread and butter, a > b",
            Some("en"),
            "food",
            [1.0, 0.0, 0.0, 0.0],
        ),
        (
            "b",
            "chips and boards",
            Some("en"),
            "tech",
            [0.0, 1.0, 0.0, 0.0],
        ),
        (
            "c",
            "寿司と天ぷら",
            Some("ja"),
            "food",
            [0.0, 0.0, 1.0, 0.0],
        ),
        (
            "d",
            "trains and boats",
            None,
            "travel",
            [0.0, 0.0, 0.0, 1.0],
        ),
    ];
    let lines: Vec<Value> = rows
        .iter()
        .map(|(id, t, lang, topic, v)| {
            let mut row = json!({ "id": id, "text": t, "vector": v, "meta": { "topic": topic } });
            if let Some(l) = lang {
                row["lang"] = json!(l);
            }
            row
        })
        .collect();
    let file = dir.join("rows.jsonl");
    write(&file, &lines);
    assert!(xqdb(&["add", &ix_s, file.to_str().unwrap()])
        .status
        .success());
    std::fs::write(dir.join("q.json"), "[1, 0.5, 0.5, 0.5]").unwrap();
    ix_s
}

fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn huge_counts_are_refused_with_a_typed_error_and_json_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let ix = small_index(tmp.path());
    let q = tmp.path().join("q.json");
    let q = q.to_str().unwrap();
    for k in ["4294967296", "9223372036854775807", "100001"] {
        let out = xqdb(&["search", &ix, "--vector-file", q, "-k", k]);
        fails_with(&out, "at most 100000");
        let out = xqdb(&["search", &ix, "--vector-file", q, "-k", k, "--json"]);
        fails_with(&out, "at most 100000");
        let v: Value = serde_json::from_str(text(&out).0.trim()).unwrap();
        assert!(v["error"].as_str().unwrap().contains(k), "{v}");
    }
    // The largest k is served (four rows there are).
    let v = xqdb_json(&["search", &ix, "--vector-file", q, "-k", "100000"]);
    assert_eq!(v["hits"].as_array().unwrap().len(), 4);
    // A count clap cannot parse is a JSON error too under --json, with clap's exit status.
    let out = xqdb(&["search", &ix, "--vector-file", q, "-k", "-3", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_str(text(&out).0.trim()).unwrap();
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    let out = xqdb(&["stats", "--json", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_str(text(&out).0.trim()).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("--no-such-flag"),
        "{v}"
    );
}

#[test]
fn empty_queries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ix = small_index(tmp.path());
    for q in ["", "   ", "\t\n"] {
        for mode in ["dense", "lexical", "hybrid"] {
            let out = xqdb(&["search", &ix, q, "--mode", mode]);
            fails_with(&out, "the query is empty");
        }
    }
    // The library says the same.
    let index = xqdb::Index::open(&ix).unwrap();
    let e = index.search_text(" ", 3).unwrap_err();
    assert!(matches!(e, xqdb::Error::InvalidArgument(_)), "{e}");
}

#[test]
fn filters_take_lists_refuse_unknown_languages_and_match_any_of_a_set() {
    let tmp = tempfile::tempdir().unwrap();
    let ix = small_index(tmp.path());
    let q = tmp.path().join("q.json");
    let q = q.to_str().unwrap();
    let search = |extra: &[&str]| {
        let mut args = vec!["search", &ix, "--vector-file", q];
        args.extend_from_slice(extra);
        xqdb_json(&args)
    };
    assert_eq!(ids(&search(&["--lang", "en,ja"])), ["a", "b", "c"]);
    assert_eq!(
        ids(&search(&["--lang", "en", "--lang", "ja"])),
        ["a", "b", "c"]
    );
    assert_eq!(ids(&search(&["--lang", "ja"])), ["c"]);
    let out = xqdb(&["search", &ix, "--vector-file", q, "--lang", "xx"]);
    fails_with(&out, "no passage of the index has language xx");
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("en (2)") && stderr.contains("ja (1)"),
        "{stderr}"
    );
    assert_eq!(
        ids(&search(&["--meta", r#"topic=["food","tech"]"#])),
        ["a", "b", "c"]
    );
    assert_eq!(ids(&search(&["--meta", "topic=travel"])), ["d"]);
    // Stats count passages by language and those without one.
    let stats = xqdb_json(&["stats", &ix]);
    assert_eq!(stats["languages"], json!({ "en": 2, "ja": 1 }), "{stats}");
    assert_eq!(stats["untagged"], 1, "{stats}");
    // `add --lang` tags rows that name no language; rows that name one keep it; without it,
    // a row in a clear language is tagged by detection.
    let file = tmp.path().join("more.jsonl");
    write(
        &file,
        &[
            json!({ "id": "e", "text": "x", "vector": [1, 1, 0, 0] }),
            json!({ "id": "f", "text": "x", "lang": "ja", "vector": [1, 1, 0, 0] }),
        ],
    );
    xqdb_json(&["add", &ix, file.to_str().unwrap(), "--lang", "fi"]);
    let got = xqdb_json(&["get", &ix, "e", "f"]);
    let langs: Vec<&str> = got["passages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["lang"].as_str().unwrap())
        .collect();
    assert_eq!(langs, ["fi", "ja"], "{got}");
    write(
        &file,
        &[
            json!({ "id": "g", "text": "Le musée ouvre à neuf heures du matin.", "vector": [0, 1, 1, 0] }),
        ],
    );
    xqdb_json(&["add", &ix, file.to_str().unwrap()]);
    assert_eq!(xqdb_json(&["get", &ix, "g"])["passages"][0]["lang"], "fr");
}

#[test]
fn a_duplicate_id_is_reported_at_the_duplicate_with_the_way_out() {
    let tmp = tempfile::tempdir().unwrap();
    let ix = small_index(tmp.path());
    let file = tmp.path().join("dup.jsonl");
    let row = |id: &str| json!({ "id": id, "text": "t", "vector": [0.5, 0.5, 0.5, 0.5] });
    // Text rows are encoded together after the vector rows: use vectors for all but check
    // both paths through the library below.
    write(
        &file,
        &[row("n1"), row("n2"), row("n3"), row("n4"), row("n3")],
    );
    let out = xqdb(&["add", &ix, file.to_str().unwrap()]);
    fails_with(&out, "dup.jsonl:5:");
    fails_with(&out, "--upsert");
    // A duplicate of a committed passage is reported at its own line.
    write(&file, &[row("n1"), row("a")]);
    fails_with(&xqdb(&["add", &ix, file.to_str().unwrap()]), "dup.jsonl:2:");
    // Rows the index encodes: the second occurrence is the one named.
    let index = xqdb::Index::builder()
        .dim(2)
        .create(tmp.path().join("lib"))
        .unwrap();
    let mut w = index.writer().unwrap();
    let rows = vec![
        xqdb::ingest::Row::text(xqdb::Passage::new("x", "one")),
        xqdb::ingest::Row::text(xqdb::Passage::new("y", "two")),
        xqdb::ingest::Row::text(xqdb::Passage::new("x", "three")),
    ];
    let e = w
        .stage_rows(rows, xqdb::ingest::WriteMode::Insert, &|_| {})
        .unwrap_err();
    assert_eq!(e.row, Some(2), "{}", e.error);
    assert!(matches!(e.error, xqdb::Error::DuplicateId { .. }));
}

/// Every command a message of the binary names (`` `xqdb NAME …` `` in its text) exists, and
/// so do the lowercase words after it (subcommands): arguments are written as placeholders
/// (`DIR`, `ID`), so a lowercase word that is not a subcommand names something that is not
/// there (`xqdb lexical enable` was one).
#[test]
fn messages_name_commands_that_exist() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_xqdb")).unwrap();
    let hay = String::from_utf8_lossy(&binary);
    let mut phrases = std::collections::BTreeSet::new();
    for (i, _) in hay.match_indices("`xqdb ") {
        // The words up to the closing backtick (or the end of the literal).
        let words: Vec<String> = hay[i + 6..]
            .chars()
            .take_while(|&c| c != '`' && (c.is_ascii_graphic() || c == ' '))
            .collect::<String>()
            .split(' ')
            .map(str::to_string)
            .collect();
        if words.first().is_some_and(|w| !w.is_empty()) {
            phrases.insert(words);
        }
    }
    let names: std::collections::BTreeSet<&str> = phrases.iter().map(|w| w[0].as_str()).collect();
    assert!(
        names.contains("lexical") && names.contains("models"),
        "the scan found {names:?}"
    );
    for words in &phrases {
        let name = &words[0];
        let out = xqdb(&[name.as_str(), "--help"]);
        let (help, stderr) = text(&out);
        assert!(
            out.status.success(),
            "a message names `xqdb {name}`, which does not exist: {stderr}"
        );
        // Lowercase words after the command must be its subcommands.
        let subcommands: Vec<&str> = help
            .split("Commands:")
            .nth(1)
            .map(|c| {
                c.lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .collect()
            })
            .unwrap_or_default();
        for word in words[1..]
            .iter()
            .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()) && !w.is_empty())
        {
            assert!(
                subcommands.contains(&word.as_str()),
                "a message names `xqdb {}`: {name} has no subcommand {word:?}",
                words.join(" ")
            );
        }
    }
}

/// The rough edges of a first session, one row each: the command, and what it must say.
#[test]
fn rough_edges() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let ix = small_index(t);
    let q = t.join("q.json");
    let q = q.to_str().unwrap();
    let file = |name: &str, body: &str| {
        let p = t.join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let bad_json = file(
        "bad.jsonl",
        "{\"id\": \"z\", \"text\": \"t\", \"vector\": [1,0,0,0]}\n{oops\n",
    );
    let bom = file(
        "bom.jsonl",
        "\u{feff}{\"id\": \"bom\", \"text\": \"t\", \"vector\": [1,0,0,0]}\n",
    );
    let batches = file(
        "batches.jsonl",
        &[
            r#"{"id": "p1", "text": "t", "vector": [1,0,0,0]}"#,
            r#"{"id": "p2", "text": "t", "vector": [1,0,0,0]}"#,
            r#"{"id": "p3", "text": "t", "vector": [1,0,0]}"#,
        ]
        .join("\n"),
    );
    let empty = file("empty.jsonl", "\n\n");
    let a_file = file("plain.txt", "not a folder");
    let busy = t.join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    let busy = busy.to_str().unwrap();
    let new_dir = t.join("new").to_string_lossy().into_owned();
    let failing: &[(&[&str], &str)] = &[
        (
            &["search", &ix, "text", "--vector-file", q],
            "cannot be used with",
        ),
        (
            &[
                "search",
                &ix,
                "bread",
                "--mode",
                "hybrid",
                "--lexical-weight",
                "5",
            ],
            "must be from 0 to 1",
        ),
        (
            &["search", &ix, "--vector-file", q, "--fusion", "rrf"],
            "--mode hybrid",
        ),
        (&["lexical", &ix, "--stem"], "settings are fixed"),
        (&["add", &ix, &bad_json], "bad.jsonl:2:"),
        (
            &["add", &ix, &batches, "--batch-size", "2"],
            "earlier batches are committed",
        ),
        (&["init", &a_file, "--dim", "4"], "is a file"),
        (&["init", busy, "--dim", "4"], "not empty"),
        (&["init", &ix, "--dim", "4"], "already holds an index"),
        (
            &["init", &new_dir, "--model", "nosuch"],
            "no model bundle nosuch",
        ),
        (&["get", &ix], "required"),
        (&["delete", &ix], "required"),
    ];
    for (args, wanted) in failing {
        fails_with(&xqdb(args), wanted);
    }
    // serde's own "line 1 column N" does not leak next to the file's line.
    let (_, stderr) = text(&xqdb(&["add", &ix, &bad_json]));
    assert!(!stderr.contains("line 1 column"), "{stderr}");
    // A file saved with a byte-order mark reads.
    assert_eq!(xqdb_json(&["add", &ix, &bom])["added"], 1);
    // No hits says so.
    let out = xqdb(&["search", &ix, "--vector-file", q, "--meta", "topic=none"]);
    assert!(out.status.success());
    assert!(text(&out).0.contains("no hits"), "{}", text(&out).0);
    // Settings print as given, not as f32 noise.
    let v = xqdb_json(&[
        "init",
        &t.join("fresh").to_string_lossy(),
        "--dim",
        "4",
        "--lexical",
    ]);
    assert_eq!(v["lexical"]["k1"], json!(1.2), "{v}");
    // The help names no model by a stale name.
    let (help, _) = text(&xqdb(&["init", "--help"]));
    assert!(help.contains("`xqdb models` marks"), "{help}");
    // Keyword snippets are terminal text: marks as [..], escapes decoded.
    let out = xqdb(&["search", &ix, "butter", "--mode", "lexical"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("[butter], a > b"), "{stdout}");
    assert!(
        !stdout.contains("<mark>") && !stdout.contains("&gt;"),
        "{stdout}"
    );
    // No-ops write no commit; compact says it rewrote when it sealed the tail.
    let seq = || xqdb_json(&["stats", &ix])["commit_seq"].as_u64().unwrap();
    let before = seq();
    assert_eq!(
        xqdb_json(&["delete", &ix, "nosuch"])["missing"],
        json!(["nosuch"])
    );
    assert_eq!(xqdb_json(&["add", &ix, &empty])["added"], 0);
    assert_eq!(
        seq(),
        before,
        "a delete of nothing or an empty add wrote a commit"
    );
    assert_eq!(xqdb_json(&["compact", &ix])["rewritten"], true);
    let after = seq();
    assert_eq!(xqdb_json(&["compact", &ix])["rewritten"], false);
    assert_eq!(seq(), after, "a compact with nothing to do wrote a commit");
}

/// SIGINT during `xqdb add` at moments drawn from a seeded generator: the process exits 0 (it
/// had finished) or 130 (it stopped at a batch boundary, saying what was committed); after it,
/// a read-only `stats` and `search` work with no writer having opened the index, and the index
/// holds whole batches. A SIGKILL mid-write leaves a catalog that needs recovery: readers
/// recover it themselves.
#[test]
fn interrupted_adds_leave_whole_batches_and_readers_recover_alone() {
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    const BATCH: usize = 500;
    let rows: Vec<Value> = (0..20 * BATCH)
        .map(|i| {
            let x = (i as f32 * 0.37).sin();
            json!({ "id": format!("r{i}"), "text": "t", "vector": [x, 1.0, -x, 0.5] })
        })
        .collect();
    let file = tmp.path().join("rows.jsonl");
    write(&file, &rows);
    std::fs::write(tmp.path().join("q.json"), "[1, 0, 0, 0]").unwrap();
    let q = tmp.path().join("q.json");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(35);
    // How long a whole add takes here, so that the signals fall inside one.
    let whole = {
        let ix = tmp.path().join("whole");
        assert!(xqdb(&["init", ix.to_str().unwrap(), "--dim", "4"])
            .status
            .success());
        let started = std::time::Instant::now();
        let out = xqdb(&[
            "add",
            ix.to_str().unwrap(),
            file.to_str().unwrap(),
            "--batch-size",
            "500",
        ]);
        assert!(out.status.success());
        started.elapsed().as_secs_f64()
    };
    let mut stopped = 0;
    for round in 0..12 {
        let ix = tmp.path().join(format!("ix{round}"));
        let ix = ix.to_str().unwrap();
        assert!(xqdb(&["init", ix, "--dim", "4"]).status.success());
        let child = Command::new(env!("CARGO_BIN_EXE_xqdb"))
            .args(["add", ix, file.to_str().unwrap(), "--batch-size"])
            .arg(BATCH.to_string())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Process start-up is a part of `whole`: aim past it, before the end.
        std::thread::sleep(std::time::Duration::from_secs_f64(
            whole * rng.random_range(0.3..0.9),
        ));
        let kill = round % 4 == 3;
        let sig = if kill { libc::SIGKILL } else { libc::SIGINT };
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().unwrap();
        let code = out.status.code();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if kill {
            assert!(
                code.is_none() || code == Some(0),
                "round {round}: {code:?} {stderr}"
            );
        } else {
            assert!(
                matches!(code, Some(0) | Some(130)),
                "round {round}: {code:?} {stderr}"
            );
            if code == Some(130) {
                assert!(stderr.contains("interrupted:"), "round {round}: {stderr}");
                stopped += 1;
            }
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        let stats = xqdb_json(&["stats", ix]);
        let n = stats["passages"].as_u64().unwrap() as usize;
        assert_eq!(
            n % BATCH,
            0,
            "round {round}: {n} passages is not whole batches"
        );
        let hits = xqdb_json(&[
            "search",
            ix,
            "--vector-file",
            q.to_str().unwrap(),
            "-k",
            "3",
        ]);
        assert_eq!(
            hits["hits"].as_array().unwrap().len(),
            n.min(3),
            "round {round}"
        );
    }
    assert!(
        stopped >= 3,
        "only {stopped} of 9 SIGINTs came before the add ended"
    );
}

mod any_input {
    //! Whatever a user types into `search` and `add` — counts, filters, odd or invalid UTF-8,
    //! byte-order marks, huge lines — the CLI exits 0, 1 (a refused request) or 2 (a refused
    //! command line), never with a panic (101) or an abort (134).
    use super::*;
    use proptest::prelude::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    fn arg() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"0".to_vec()),
            Just(b"18446744073709551615".to_vec()),
            Just(b"4294967296".to_vec()),
            Just(b"-1".to_vec()),
            Just(b"en,ja,,xx".to_vec()),
            Just("\u{feff}en".as_bytes().to_vec()),
            Just(b"topic=[1,{\"a\":null}]".to_vec()),
            Just(b"=".to_vec()),
            Just(vec![0xff, 0xfe, b'a']),
            Just("x".repeat(100_000).into_bytes()),
            "\\PC{0,40}".prop_map(String::into_bytes),
            proptest::collection::vec(1u8..=255, 0..40),
        ]
    }

    fn line() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"{\"id\":\"a\",\"text\":\"t\",\"vector\":[1,0,0,0]}".to_vec()),
            Just(
                "\u{feff}{\"id\":\"b\",\"text\":\"t\",\"vector\":[0,1,0,0]}"
                    .as_bytes()
                    .to_vec()
            ),
            Just(b"{\"id\":\"c\",\"text\":\"t\",\"vector\":[1e39,0,0,0]}".to_vec()),
            Just(b"{\"id\":\"\",\"text\":\"\"}".to_vec()),
            Just(
                format!(
                    "{{\"id\":\"d\",\"text\":\"{}\",\"vector\":[1,0,0,0]}}",
                    "y".repeat(300_000)
                )
                .into_bytes()
            ),
            proptest::collection::vec(1u8..=255, 0..80),
        ]
    }

    fn check(out: &Output) -> Result<(), TestCaseError> {
        let (stdout, stderr) = text(out);
        prop_assert!(
            matches!(out.status.code(), Some(0..=2)),
            "exit {:?}: {stdout} {stderr}",
            out.status.code()
        );
        prop_assert!(!stderr.contains("panicked"), "{stderr}");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn search_and_add_never_crash(
            flags in proptest::collection::vec((0usize..6, arg()), 0..4),
            query in arg(),
            lines in proptest::collection::vec(line(), 0..4),
            json in any::<bool>(),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let ix = small_index(tmp.path());
            let names = ["-k", "--lang", "--meta", "--mode", "--depth", "--oversample"];
            let mut args: Vec<OsString> = vec!["search".into(), ix.clone().into()];
            args.push(OsString::from_vec(query));
            for (i, value) in flags {
                args.push(names[i].into());
                args.push(OsString::from_vec(value));
            }
            if json {
                args.push("--json".into());
            }
            let out = Command::new(env!("CARGO_BIN_EXE_xqdb")).args(&args).output().unwrap();
            check(&out)?;
            let file = tmp.path().join("in.jsonl");
            std::fs::write(&file, lines.join(&b'\n')).unwrap();
            let out = xqdb(&["add", &ix, file.to_str().unwrap()]);
            check(&out)?;
        }
    }
}
