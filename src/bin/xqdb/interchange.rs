//! Parquet and Arrow IPC: export and import.

use crate::common::{err, load_encoder, open_index, CliResult};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
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
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let r = if dir.join("catalog.redb").exists() {
        let index = open_index(&dir, model.as_deref(), false)?;
        let source = xqdb::interchange::Source::open(&file, options.batch_rows).map_err(err)?;
        xqdb::interchange::import(&index, source, &options).map_err(err)?
    } else {
        let source = xqdb::interchange::Source::open(&file, options.batch_rows).map_err(err)?;
        let names_model = source.metadata().contains_key("xqdb.model_fingerprint");
        drop(source);
        let encoder = if model.is_some() || names_model {
            Some(load_encoder(model.as_deref())?)
        } else {
            None
        };
        xqdb::interchange::import_new(&dir, &file, encoder, &options)
            .map_err(err)?
            .1
    };
    let secs = start.elapsed().as_secs_f64();
    Ok(
        json!({ "index": dir, "report": r, "seconds": secs, "rows_per_second": r.rows as f64 / secs }),
    )
}
