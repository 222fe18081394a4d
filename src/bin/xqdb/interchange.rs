//! Parquet and Arrow IPC: export and import.

use crate::common::{err, load_encoder, open_index, CliResult};
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};
use xqdb::Index;

#[derive(Args)]
pub(crate) struct ExportArgs {
    dir: PathBuf,
    /// Output file: .parquet or .arrow.
    file: PathBuf,
    /// Store vectors as f16.
    #[arg(long)]
    f16: bool,
    /// Rows per record batch.
    #[arg(long, default_value_t = 8192)]
    batch_rows: usize,
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    dir: PathBuf,
    /// A .parquet or .arrow file, or a folder of them (the part files a Spark or Ray job
    /// writes), imported in name order, each in its own commits.
    file: PathBuf,
    /// Replace passages whose id exists instead of failing.
    #[arg(long)]
    upsert: bool,
    /// Rows per durable commit.
    #[arg(long, default_value_t = 65_536)]
    commit_rows: usize,
    /// Encoder bundle for rows without vectors (default: the index's, or the default
    /// bundle for a new index whose file names a model).
    #[arg(long)]
    model: Option<PathBuf>,
}

pub(crate) fn export(a: ExportArgs) -> CliResult {
    let ExportArgs {
        dir,
        file,
        f16,
        batch_rows,
    } = a;
    let index = Index::builder().read_only(true).open(&dir).map_err(err)?;
    let start = std::time::Instant::now();
    let r = xqdb::interchange::export(
        &index,
        &file,
        &xqdb::interchange::ExportOptions { batch_rows, f16 },
    )
    .map_err(err)?;
    let secs = start.elapsed().as_secs_f64();
    Ok(
        json!({ "file": file, "report": r, "seconds": secs, "rows_per_second": r.rows as f64 / secs }),
    )
}

pub(crate) fn import(a: ImportArgs) -> CliResult {
    let ImportArgs {
        dir,
        file,
        upsert,
        commit_rows,
        model,
    } = a;
    let options = xqdb::interchange::ImportOptions {
        commit_rows,
        upsert,
        stop: Some(crate::common::interruptible()),
        ..Default::default()
    };
    let files = input_files(&file)?;
    let start = std::time::Instant::now();
    let mut r = xqdb::interchange::TransferReport::default();
    let mut index = if dir.join("catalog.redb").exists() {
        Some(open_index(&dir, model.as_deref(), false)?)
    } else {
        None
    };
    for file in &files {
        let one = match &index {
            Some(index) => {
                let source =
                    xqdb::interchange::Source::open(file, options.batch_rows).map_err(err)?;
                xqdb::interchange::import(index, source, &options).map_err(err)?
            }
            None => {
                let source =
                    xqdb::interchange::Source::open(file, options.batch_rows).map_err(err)?;
                let names_model = source.metadata().contains_key("xqdb.model_fingerprint");
                drop(source);
                let encoder = if model.is_some() || names_model {
                    Some(load_encoder(model.as_deref())?)
                } else {
                    None
                };
                let (created, one) =
                    xqdb::interchange::import_new(&dir, file, encoder, &options).map_err(err)?;
                index = Some(created);
                one
            }
        };
        r.rows += one.rows;
        r.augmented += one.augmented;
        r.encoded += one.encoded;
        r.commits += one.commits;
        r.bytes += one.bytes;
        if one.interrupted {
            r.interrupted = true;
            crate::common::tell_interrupted(&format!(
                "{} rows are committed; the batch in flight was not written",
                r.rows
            ));
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(
        json!({ "index": dir, "files": files.len(), "report": r, "seconds": secs, "rows_per_second": r.rows as f64 / secs }),
    )
}

/// `path` itself, or the Parquet and Arrow IPC files directly in the folder `path`, by name.
fn input_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
        let p = entry
            .map_err(|e| format!("{}: {e}", path.display()))?
            .path();
        if p.is_file() && xqdb::interchange::FileKind::from_path(&p).is_ok() {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(format!(
            "{}: no Parquet or Arrow files (.parquet, .pq, .arrow, .feather, .ipc) in this folder",
            path.display()
        ));
    }
    files.sort();
    Ok(files)
}
