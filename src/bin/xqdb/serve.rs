//! `xqdb serve`: the HTTP JSON API until SIGINT/SIGTERM.

use crate::common::{err, open_index, CliResult};
use clap::Args;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable that may hold the bearer token (instead of --token-file).
const TOKEN_ENV: &str = "XQDB_SERVE_TOKEN";

#[derive(Args)]
pub(crate) struct ServeArgs {
    dir: PathBuf,
    /// Address to listen on. Loopback needs no token; any other address needs one
    /// (--token-file or the XQDB_SERVE_TOKEN environment variable).
    #[arg(long, default_value = "127.0.0.1:7700")]
    addr: String,
    /// Worker threads: requests served at once.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Connections that may wait for a worker; further ones get 503.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Seconds allowed for each read and write on a connection.
    #[arg(long, default_value_t = 10.0)]
    timeout_secs: f64,
    /// A file whose content (trimmed) is the bearer token every route but /health requires.
    /// Tokens are never taken on the command line, where other users can see them.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Refuse writes; other processes may write meanwhile.
    #[arg(long)]
    read_only: bool,
    /// Encoder model bundle, a folder or a name `xqdb models` lists (default: the one the index records).
    #[arg(long)]
    model: Option<PathBuf>,
}

/// A token file others can read is refused (as ssh refuses such a key): the token would be
/// theirs too.
fn check_private(f: &std::path::Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f)
            .map_err(|e| format!("--token-file {}: {e}", f.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "--token-file {}: other users may read it (mode {:o}); run `chmod 600 {}`",
                f.display(),
                mode & 0o777,
                f.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = f;
    Ok(())
}

pub(crate) fn serve(a: ServeArgs) -> CliResult {
    let token = match (&a.token_file, std::env::var(TOKEN_ENV)) {
        (Some(f), _) => {
            check_private(f)?;
            Some(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("--token-file {}: {e}", f.display()))?
                    .trim()
                    .to_string(),
            )
        }
        (None, Ok(t)) => Some(t.trim().to_string()),
        (None, Err(_)) => None,
    };
    if !(a.timeout_secs.is_finite() && a.timeout_secs > 0.0) {
        return Err("--timeout-secs must be a positive number".into());
    }
    let index = open_index(&a.dir, a.model.as_deref(), a.read_only)?;
    let server = xqdb::server::Server::bind(
        index,
        &a.addr,
        xqdb::server::ServerOptions {
            threads: a.threads,
            queue: a.queue,
            io_timeout: Duration::from_secs_f64(a.timeout_secs),
            token,
            max_body_bytes: a.max_body_bytes,
            read_only: a.read_only,
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
