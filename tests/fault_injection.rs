//! Crash at the N-th I/O call: the store runs on a simulated disk (`xqdb::faults::SimDisk`)
//! where the catalog (redb's storage backend) and the segment files keep a volatile and a
//! durable view, and every I/O call from the N-th on fails. Random operation sequences
//! (insert, upsert, delete, commit with automatic merges, seal, compact, re-fusion with a new
//! α; binary and i8 codes in every segment) run until the disk fails; then the disk
//! "loses power" (only synced state survives), the store is reopened on what is left, and
//! it must verify, hold exactly the last acknowledged state (or, when the failing call was
//! a commit, possibly that commit's state), leave no orphan segment, and accept new writes.

use proptest::prelude::*;
use std::collections::BTreeMap;
use xqdb::faults::SimDisk;
use xqdb::{Augmentation, Index, Metric, Passage, XqgProfile};

const DIM: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, [i8; DIM]),
    Delete(u8),
    Commit,
    Seal,
    Compact,
    ReFuse(bool),
    /// Replace the query adapters (shared and Finnish) with adapter n, or drop them (0).
    Adapters(u8),
}

/// The stress adapter n: a diagonal of 1 + n/100, recording n, for `lang`.
fn adapter(n: u8, lang: Option<&str>) -> (xqdb::distill::Adapter, xqdb::distill::AdapterInfo) {
    let mut m = vec![0f32; DIM * DIM];
    for i in 0..DIM {
        m[i * DIM + i] = 1.0 + n as f32 / 100.0;
    }
    let info = xqdb::distill::AdapterInfo {
        examples: n as usize,
        lang: lang.map(String::from),
        ..Default::default()
    };
    (xqdb::distill::Adapter::from_matrix(DIM, m).unwrap(), info)
}

/// Every passage's one "query" vector; with α ∈ {0.5, 0.25} fusion is exact in f32.
const QUERY: [f32; DIM] = [1.0, -1.0, 2.0, 0.0];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..30, prop::array::uniform4(-3i8..=3)).prop_map(|(i, v)| Op::Put(i, v)),
        2 => (0u8..30).prop_map(Op::Delete),
        3 => Just(Op::Commit),
        1 => Just(Op::Seal),
        1 => Just(Op::Compact),
        1 => any::<bool>().prop_map(Op::ReFuse),
        1 => (0u8..4).prop_map(Op::Adapters),
    ]
}

type State = BTreeMap<String, Vec<f32>>;

/// Passage vectors E(p) by id, and the α they are fused with.
type Oracle = (State, f32);

fn fused((passages, alpha): &Oracle) -> State {
    passages
        .iter()
        .map(|(id, v)| {
            let f = v
                .iter()
                .zip(QUERY)
                .map(|(p, q)| (1.0 - alpha) * p + alpha * q)
                .collect();
            (id.clone(), f)
        })
        .collect()
}

fn builder() -> xqdb::IndexBuilder {
    Index::builder()
        .dim(DIM)
        .metric(Metric::Dot)
        .xqg(XqgProfile {
            alpha: 0.5,
            normalize: false,
            ..Default::default()
        })
        .seal_rows(6)
        .direct_segment_rows(5)
        .merge_fan_in(3)
        .codes(xqdb::Codes::parse("binary,i8").unwrap())
        .lexical(xqdb::LexicalSettings::default())
        .threads(1)
}

fn state_of(index: &Index) -> State {
    let snap = index.snapshot();
    snap.ids()
        .unwrap()
        .into_iter()
        .map(|id| {
            let v = snap.vector(&id).unwrap().unwrap();
            (id, v)
        })
        .collect()
}

fn run(ops: Vec<Op>, fail_at: u64) -> (u64, bool, bool) {
    let disk = SimDisk::new();
    let index = builder().open_simulated(&disk).unwrap();
    disk.fail_from(fail_at);
    let start = disk.calls();
    let mut op_calls = 0;
    let mut committed: Oracle = (State::new(), 0.5);
    let mut pending = committed.clone();
    let mut maybe: Vec<Oracle> = Vec::new();
    let mut failed = false;
    let mut in_re_fuse = false;
    // The adapter stored (its n), and the one a failed adapter step may have stored.
    let (mut adapters, mut adapters_maybe) = (None::<u8>, None::<Option<u8>>);
    if let Ok(mut w) = index.writer() {
        for op in ops {
            let r = match &op {
                Op::Put(i, v) => {
                    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                    let id = format!("p{i}");
                    let q = vec![("fi".to_string(), format!("kysymys {i}"))];
                    let a = Augmentation::new(v.clone(), q, &[QUERY.to_vec()], false);
                    let r = w.upsert_augmented(Passage::new(&id, "t"), a);
                    if r.is_ok() {
                        pending.0.insert(id, v);
                    }
                    r.map(|_| ())
                }
                Op::Delete(i) => {
                    let id = format!("p{i}");
                    let r = w.delete(&id);
                    if r.is_ok() {
                        pending.0.remove(&id);
                    }
                    r.map(|_| ())
                }
                Op::Commit => w.commit().map(|_| ()),
                Op::Seal => w.seal().map(|_| ()),
                Op::Compact => w.compact().map(|_| ()),
                Op::ReFuse(quarter) => {
                    let alpha = if *quarter { 0.25 } else { 0.5 };
                    // The buffered changes commit first, then the re-fusion commits.
                    maybe.push(pending.clone());
                    pending.1 = alpha;
                    w.re_fuse(alpha, false).map(|_| ())
                }
                Op::Adapters(n) => {
                    adapters_maybe = Some((*n > 0).then_some(*n));
                    if *n == 0 {
                        w.drop_adapter().map(|_| ())
                    } else {
                        w.replace_adapters(&[adapter(*n, None), adapter(*n, Some("fi"))])
                    }
                }
            };
            match r {
                Ok(()) => {
                    if let Some(a) = adapters_maybe.take() {
                        adapters = a;
                    }
                    maybe.clear();
                    if !matches!(op, Op::Put(..) | Op::Delete(..)) {
                        committed = pending.clone();
                    }
                }
                Err(e) => {
                    // The call that failed may have committed before failing (a commit's
                    // changes, or the data commit inside seal/compact/re-fusion).
                    if !matches!(op, Op::Put(..) | Op::Delete(..)) {
                        maybe.push(pending.clone());
                    }
                    assert!(!e.to_string().is_empty());
                    failed = true;
                    in_re_fuse = matches!(op, Op::ReFuse(_));
                    break;
                }
            }
        }
        op_calls = disk.calls() - start;
        // After a failure the writer is poisoned: nothing is retried.
        if failed {
            assert!(matches!(w.commit(), Err(xqdb::Error::Poisoned { .. })));
        }
    }
    drop(index);

    let after = disk.crash();
    let index = builder()
        .open_simulated(&after)
        .unwrap_or_else(|e| panic!("reopen after crash at call {fail_at}: {e}"));
    index
        .verify()
        .unwrap_or_else(|e| panic!("verify after crash at call {fail_at}: {e}"));
    let got = state_of(&index);
    // The query adapters: the acknowledged ones, or those of the step that failed; the shared
    // and the Finnish one always together.
    let snap = index.snapshot();
    let shared = snap.adapter().map(|a| a.info.examples as u8);
    let fi = snap
        .lang_adapters()
        .find(|(l, _)| *l == "fi")
        .map(|(_, a)| a.info.examples as u8);
    assert_eq!(shared, fi, "crash at call {fail_at}: adapters apart");
    assert!(
        shared == adapters || adapters_maybe == Some(shared),
        "crash at call {fail_at}: adapter {shared:?}, acknowledged {adapters:?}"
    );
    if let Some(n) = shared {
        assert_eq!(snap.adapter().unwrap().adapter, adapter(n, None).0);
    }
    drop(snap);
    assert!(
        got == fused(&committed) || maybe.iter().any(|m| fused(m) == got),
        "crash at call {fail_at}: store holds {got:?}, acknowledged {committed:?}, in flight {maybe:?}"
    );
    // The stored E(p) survive with the vectors: a re-fusion now gives the oracle's vectors.
    let recovered = maybe
        .iter()
        .find(|m| fused(m) == got)
        .unwrap_or(&committed)
        .clone();
    let alpha = index.snapshot().xqg_profile().unwrap().alpha;
    assert!(
        fused(&(recovered.0.clone(), alpha)) == got,
        "the recorded α matches the vectors"
    );
    // Codes came back with their rows: first passes covering every row answer exactly.
    let snap = index.snapshot();
    let q = [1.0, 2.0, -1.0, 0.5];
    let exact = snap
        .search_with(
            &q,
            &xqdb::SearchOptions::new(5).first_pass(xqdb::FirstPass::Exact),
        )
        .unwrap();
    for pass in [xqdb::FirstPass::I8, xqdb::FirstPass::Binary] {
        let opts = xqdb::SearchOptions::new(5).first_pass(pass).oversample(64);
        assert_eq!(
            snap.search_with(&q, &opts).unwrap(),
            exact,
            "crash at call {fail_at}: {pass:?}"
        );
    }
    drop(snap);
    // Every file in segments/ is listed (verify checks it) and the store keeps working.
    let mut w = index.writer().unwrap();
    w.upsert(Passage::new("after", "t"), &[1.0, 0.0, 0.0, 0.0])
        .unwrap();
    w.commit().unwrap();
    w.compact().unwrap();
    drop(w);
    assert!(index.snapshot().contains("after").unwrap());
    index.verify().unwrap();
    (op_calls, failed, in_re_fuse)
}

#[test]
fn crash_at_any_io_call_keeps_exactly_the_acknowledged_state() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let cases = proptest::collection::vec(op(), 1..60);
    let (mut crashed, mut calls, mut in_re_fuse) = (0, 0, 0);
    let rounds = 400;
    for round in 0..rounds as u64 {
        let ops = cases.new_tree(&mut runner).unwrap().current();
        // Spread the fault over the whole range of calls a sequence makes.
        let fail_at = 1 + (round * 7919) % 200;
        let (n, failed, refusing) = run(ops, fail_at);
        crashed += failed as usize;
        in_re_fuse += refusing as usize;
        calls += n;
    }
    eprintln!(
        "{rounds} sequences, {calls} I/O calls, {crashed} ended by an injected fault and a crash \
         ({in_re_fuse} of them inside a re-fusion)"
    );
    assert!(in_re_fuse > 0, "no fault landed inside a re-fusion");
    assert!(
        crashed >= rounds / 4,
        "too few sequences reached their fault: {crashed}"
    );
    assert!(
        crashed < rounds,
        "every sequence failed: the fault points are too early to test commits"
    );
}

#[test]
fn the_simulated_disk_really_fails_and_loses_unsynced_writes() {
    // Without a fault, a long sequence runs through and survives a crash whole.
    let ops: Vec<Op> = (0..40)
        .map(|i| {
            if i % 5 == 4 {
                Op::Commit
            } else {
                Op::Put(i as u8, [1, 2, 3, i as i8 % 3])
            }
        })
        .collect();
    let (calls, failed, _) = run(ops.clone(), 0);
    assert!(!failed && calls > 50, "calls {calls}");
    // With a fault at every tenth of the way through those calls, each run fails.
    for k in 1..10 {
        let (_, failed, _) = run(ops.clone(), calls * k / 10);
        assert!(
            failed,
            "fault at call {} did not fail the run",
            calls * k / 10
        );
    }
}
