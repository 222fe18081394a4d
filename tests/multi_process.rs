//! Several processes: while a child process (`xqdb stress-writer`) inserts, deletes, seals,
//! re-fuses and compacts, this process opens the index read-only — one long-lived handle
//! that follows the writer's commits, and fresh handles opened again and again — and every
//! view it gets is one committed state exactly. Other `xqdb` processes read at the same
//! time; a second writer process is refused with a clear error.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xqdb::{Index, Snapshot};

mod common;

use common::stress::{expected, DIM};

/// Checks that `snap` shows exactly the state after some batch; returns that batch.
fn check_consistent(snap: &Snapshot) -> Option<u64> {
    let mut last = None;
    while snap
        .contains(&format!("b{}-1", last.map_or(0, |b: u64| b + 1)))
        .unwrap()
    {
        last = Some(last.map_or(0, |b| b + 1));
    }
    let ids: BTreeSet<String> = snap.ids().unwrap().into_iter().collect();
    assert_eq!(ids, expected(last), "a reader saw a state no commit made");
    assert_eq!(snap.len() as usize, ids.len());
    last
}

struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_writer(dir: &std::path::Path) -> Writer {
    let child = common::stress::command(dir, 0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xqdb stress-writer");
    Writer(child)
}

#[test]
fn readers_in_other_processes_see_committed_states_while_one_process_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let mut writer = start_writer(&dir);
    // Wait for the first commit.
    let start = Instant::now();
    let follower = loop {
        if let Ok(ix) = Index::builder().read_only(true).open(&dir) {
            if !ix.snapshot().is_empty() {
                break ix;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the writer committed nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let first = check_consistent(&follower.snapshot()).unwrap();
    let (mut views, mut reopened, mut verified) = (0, 0, 0);
    let mut last_seen = first;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        // The long-lived handle follows the writer: never backwards.
        let snap = follower.snapshot();
        let b = check_consistent(&snap).unwrap();
        assert!(
            b >= last_seen,
            "a reader went back from batch {last_seen} to {b}"
        );
        last_seen = b;
        views += 1;
        if views % 10 == 0 {
            snap.verify().unwrap();
            verified += 1;
        }
        // Fresh read-only handles open beside the writer.
        let fresh = Index::builder().read_only(true).open(&dir).unwrap();
        check_consistent(&fresh.snapshot());
        reopened += 1;
        // A search against a view whose segments the writer may be compacting away.
        let hits = snap.search(&[1.0; DIM], 5).unwrap();
        assert_eq!(hits.len(), 5);
    }
    assert!(
        last_seen > first,
        "the follower never saw a newer commit ({first})"
    );
    // Other processes read at the same time; a second writer process is refused.
    let stats = common::xqdb_json(&["stats", dir.to_str().unwrap()]);
    assert!(stats["passages"].as_u64().unwrap() > 0);
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(["delete", dir.to_str().unwrap(), "b0-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("for writing"), "{err}");
    assert!(writer.0.try_wait().unwrap().is_none(), "the writer died");
    eprintln!(
        "{views} follower views ({verified} fully verified), {reopened} fresh read-only opens; batches {first}..{last_seen}"
    );
}
