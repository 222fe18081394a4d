//! The xqdb command-line tool. `main` parses the command line and hands each command to its
//! group's module; `output` prints every result. Every command takes `--json` for scripts.
//!
//! `--json` shapes (one JSON document on stdout; errors: `{"error": "..."}` and exit 1):
//! - `search` with one query: `{"hits": [hit, ...]}`; with a vector file of several lines:
//!   `{"results": [[hit, ...], ...]}` (one list per line). A hit is
//!   `{"id", "score", "text", "title", "lang", "meta"}` (and `"teacher_score"` with --rerank).
//! - `init`: `{"created", "dim", "metric", "dtype", "store_uuid", "model", "xqg"}`.
//! - `add`: `{"added", "lines", "commits", "commit_seq"}`; `import`/`export`: `{"index"|"file",
//!   "report", "seconds", "rows_per_second"}`.
//! - `sync`: `{"added", "changed", "removed", "unchanged", "skipped": [{"path", "reason"}],
//!   "passages_encoded", "passages_removed", "bytes_read", "dry_run", "seconds"}`; `search`
//!   hits of synced documents also carry `"location"` (`path:line`) and `"snippet"`.
//! - `get`: `{"passages": [...], "missing": [...]}`; `delete`: `{"deleted", "missing",
//!   "commit_seq"}`; `compact`: `{"rewritten", "stats"}`; `verify`: `{"ok", "report"}`;
//!   `stats`: the `Stats` object; `kernels`: `{"report", "checks", "passed"}`; `models`:
//!   `[{"name", "path", "size_bytes", "dtype", "dim", "default"}, ...]`.
//! - `queries`: `{"passages": {id: {"pending", "queries": [{"lang", "text"}]}}, "missing"}`;
//!   `re-fuse`: `{"re_fused", "unchanged", "alpha", "normalize", "seconds"}`; `augment`:
//!   `{"augmented", "queries", "remaining", "seconds"}`.
//! - `distill`: mining and training figures; `adapter`: `{"adapter": null | {...}}` or
//!   `{"dropped"}`.
//! - `eval translations`/`demo`: `{"model", "languages": {lang: metrics}, "average", ...}`;
//!   `eval trec`: the trec report; `eval xor`: `{"R@2kt": ..., "R@5kt": ...}`.

mod common;
mod distill;
mod eval;
#[cfg(feature = "interchange")]
mod interchange;
mod output;
mod search;
#[cfg(feature = "server")]
mod serve;
mod store;
mod stress;
#[cfg(feature = "documents")]
mod sync;
mod xqg;

use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "xqdb",
    version,
    about = "Embedded cross-lingual search: store passages with vectors, search them exactly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    out: Output,
}

#[derive(Args, Clone, Copy)]
struct Output {
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create an empty index: for text with a model (default: the default bundle), or
    /// for vectors only with --dim.
    Init(store::InitArgs),
    /// Add a lexical (keyword) index to an index, indexing every passage and its queries
    /// in one commit (nothing changes when it has one); prints the settings in force.
    Lexical(store::EnableLexicalArgs),
    /// Show the queries generated (or imported) for passages.
    Queries(xqg::QueriesArgs),
    /// Recompute every fused vector with a new alpha, without generating again (`refuse`
    /// is its former name).
    #[command(name = "re-fuse", alias = "refuse")]
    ReFuse(xqg::ReFuseArgs),
    /// Generate queries for passages added with deferred generation, within a budget.
    Augment(xqg::AugmentArgs),
    /// Add passages from a JSONL file: {"id","text",["title","lang","meta","vector",
    /// "generated_queries"]} a line.
    Add(store::AddArgs),
    /// Search by text (encoded with the index's model) or by vector; one query prints
    /// {"hits": [...]} with --json, a batch of vectors {"results": [[...], ...]}.
    Search(search::SearchArgs),
    /// Mine a distillation set with a teacher and train a query adapter stored in the index.
    Distill(distill::DistillArgs),
    /// Show (default) or remove the index's query adapter.
    Adapter(distill::AdapterArgs),
    /// Answer a local HTTP JSON API (search, get, add, delete, stats, health) until
    /// interrupted; see the `xqdb::server` docs for the routes.
    #[cfg(feature = "server")]
    Serve(serve::ServeArgs),
    /// Write every passage (text, queries, vectors) to a Parquet or Arrow IPC file.
    #[cfg(feature = "interchange")]
    Export(interchange::ExportArgs),
    /// Store the rows of a Parquet or Arrow IPC file in the schema of `export` (creating
    /// the index from the file's metadata when DIR does not exist).
    #[cfg(feature = "interchange")]
    Import(interchange::ImportArgs),
    /// Index a folder of .txt, .md, .html and .pdf files (only what changed since the last sync:
    /// each file's passages are replaced in one commit, removed files' passages deleted).
    #[cfg(feature = "documents")]
    Sync(sync::SyncArgs),
    /// Print stored passages.
    Get(store::GetArgs),
    /// Delete passages.
    Delete(store::DeleteArgs),
    /// Seal the tail and merge all segments, dropping deleted rows.
    Compact(store::DirArgs),
    /// Check every segment and catalog row.
    Verify(store::DirArgs),
    /// Counts and sizes.
    Stats(store::DirArgs),
    /// Show the CPU and the scoring kernels searches use on it; with --check, run every
    /// kernel this CPU can execute against exact sums (exit status 1 on a failure).
    Kernels(store::KernelsArgs),
    /// List the encoder bundles the set-up installed (* marks the default); `--model NAME`
    /// takes their names. With --measure, time each one on this machine.
    Models(store::ModelsArgs),
    /// Evaluate retrieval quality.
    Eval {
        #[command(subcommand)]
        task: eval::EvalTask,
    },
    /// The main job: index the bundled XOR-TyDi sample (English questions) and answer the
    /// native-language originals across languages, printing hits and R@1 per language.
    Demo(eval::DemoArgs),
    /// Test helper: insert and commit batches forever, printing each committed batch.
    #[command(hide = true)]
    StressWriter(stress::StressWriterArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return output::parse_error(e),
    };
    let json = cli.out.json;
    let result = match cli.command {
        Command::Init(a) => store::init(a),
        Command::Lexical(a) => store::enable_lexical(a),
        Command::Queries(a) => xqg::queries(a),
        Command::ReFuse(a) => xqg::re_fuse(a),
        Command::Augment(a) => xqg::augment(a),
        Command::Add(a) => store::add(a),
        Command::Search(a) => search::search(a),
        Command::Distill(a) => distill::distill(a),
        Command::Adapter(a) => distill::adapter(a),
        #[cfg(feature = "server")]
        Command::Serve(a) => serve::serve(a),
        #[cfg(feature = "interchange")]
        Command::Export(a) => interchange::export(a),
        #[cfg(feature = "interchange")]
        Command::Import(a) => interchange::import(a),
        #[cfg(feature = "documents")]
        Command::Sync(a) => sync::sync(a, json),
        Command::Get(a) => store::get(a),
        Command::Delete(a) => store::delete(a),
        Command::Compact(a) => store::compact(a),
        Command::Verify(a) => store::verify(a),
        Command::Stats(a) => store::stats(a),
        Command::Kernels(a) => store::kernels(a, json),
        Command::Models(a) => store::models(a, json),
        Command::Eval { task } => eval::eval(task, json),
        Command::Demo(a) => eval::demo(a, json),
        Command::StressWriter(a) => stress::run(a),
    };
    let code = output::finish(result, json);
    if common::interrupted() {
        if !common::told() {
            // The signal came after the command's work: what it printed holds.
            eprintln!("interrupted: after the command had finished; its output above holds");
        }
        // The command stopped at a safe point after SIGINT/SIGTERM (128 + SIGINT).
        return ExitCode::from(130);
    }
    code
}
