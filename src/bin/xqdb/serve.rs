//! `xqdb serve`: the local HTTP JSON API until SIGINT/SIGTERM.

use crate::common::{err, open_index, CliResult};
use clap::Args;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub(crate) struct ServeArgs {
    dir: PathBuf,
    /// Address to listen on (keep it on loopback: there is no authentication).
    #[arg(long, default_value = "127.0.0.1:7700")]
    addr: String,
    /// Worker threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Refuse writes; other processes may write meanwhile.
    #[arg(long)]
    read_only: bool,
    /// Encoder model bundle (default: the one the index records).
    #[arg(long)]
    model: Option<PathBuf>,
}

pub(crate) fn serve(a: ServeArgs) -> CliResult {
    let ServeArgs {
        dir,
        addr,
        threads,
        max_body_bytes,
        read_only,
        model,
    } = a;
    let index = open_index(&dir, model.as_deref(), read_only)?;
    let server = xqdb::server::Server::bind(
        index,
        &addr,
        xqdb::server::ServerOptions {
            threads,
            max_body_bytes,
            read_only,
            ..Default::default()
        },
    )
    .map_err(err)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    println!("listening on http://{}", server.addr());
    std::io::stdout().flush().ok();
    server.run(&stop);
    server.close();
    eprintln!("stopped; the index was closed cleanly");
    Ok(Value::Null)
}
