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
    /// Worker threads: requests worked on at once.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Requests that may wait for a worker; further ones get 503.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Connections open at once; further ones get 503.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// The request deadline in seconds: a request's head must arrive within it (of the
    /// connection opening or its previous answer), and its body and answer within it again
    /// (408).
    #[arg(long, default_value_t = 10.0)]
    timeout_secs: f64,
    /// A host name the Host header may carry besides IP addresses and localhost (repeatable);
    /// other names are refused, so that a web page cannot reach the server through DNS
    /// rebinding.
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
    /// A web origin whose pages may call the API (repeatable), e.g. http://localhost:3000 or
    /// tauri://localhost: it gets CORS headers. Requests from any other origin are refused.
    #[arg(long, value_name = "URL")]
    allow_origin: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Write an access log to stderr, one line per request, as text or JSON (RUST_LOG sets
    /// the level and targets; set alone it logs as text).
    #[arg(long, value_name = "FORMAT")]
    log: Option<LogFormat>,
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

/// How the access log is written.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Sends `tracing` events (the access log, target `xqdb::access`) to stderr.
fn start_log(format: Option<LogFormat>) -> Result<(), String> {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let format = match (format, &from_env) {
        (Some(f), _) => f,
        (None, Some(_)) => LogFormat::Text,
        (None, None) => return Ok(()),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(from_env.as_deref().unwrap_or("xqdb=info"))
        .map_err(|e| format!("RUST_LOG: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let done = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    done.map_err(|e| format!("cannot start the log: {e}"))
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
    start_log(a.log)?;
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(xqdb::server::TlsFiles { cert, key }),
        _ => None,
    };
    let index = open_index(&a.dir, a.model.as_deref(), a.read_only)?;
    let server = xqdb::server::Server::bind(
        index,
        &a.addr,
        xqdb::server::ServerOptions {
            threads: a.threads,
            queue: a.queue,
            max_connections: a.max_connections,
            request_timeout: Duration::from_secs_f64(a.timeout_secs),
            token,
            max_body_bytes: a.max_body_bytes,
            read_only: a.read_only,
            allow_hosts: a.allow_host,
            allow_origins: a.allow_origin,
            tls,
            ..Default::default()
        },
    )
    .map_err(err)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    if !server.addr().ip().is_loopback() && !server.is_tls() {
        eprintln!(
            "warning: the bearer token travels in clear text to {}; give --tls-cert FILE \
             --tls-key FILE to serve HTTPS",
            server.addr()
        );
    }
    let scheme = if server.is_tls() { "https" } else { "http" };
    println!("listening on {scheme}://{}", server.addr());
    std::io::stdout().flush().ok();
    server.run(&stop);
    server.close();
    eprintln!("stopped; the index was closed cleanly");
    Ok(Value::Null)
}
