//! The generator scripts a user runs (`scripts/make_target_vocab.py`,
//! `scripts/optimize_generator.py`), run with the set-up venv's Python. Shared by
//! `tests/generator_variants.rs` and `benches/generate.rs` (each includes this file).

use std::path::Path;
use std::process::Command;

fn script(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    p.to_str().expect("UTF-8 path").to_string()
}

fn arg(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_string()
}

/// Runs the set-up venv's Python with `args`; panics with its stderr when it fails.
fn run(args: &[String]) {
    let py = xqdb::model::xqdb_home().join("venv/bin/python");
    assert!(py.exists(), "{} is missing: run `make setup`", py.display());
    let out = Command::new(&py).args(args).output().expect("start Python");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

/// `make_target_vocab.py GENERATOR --out OUT EXTRA...`.
pub fn make_target_vocab(generator: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![script("make_target_vocab.py"), arg(generator)];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--out".to_string(), arg(out)]);
    run(&args);
}

/// `optimize_generator.py SRC DST FLAGS...`, with `vocab` after a `--vocab` flag.
pub fn optimize_generator(src: &Path, dst: &Path, vocab: &Path, flags: &[&str]) {
    let mut args = vec![script("optimize_generator.py"), arg(src), arg(dst)];
    for f in flags {
        args.push(f.to_string());
        if *f == "--vocab" {
            args.push(arg(vocab));
        }
    }
    run(&args);
}
