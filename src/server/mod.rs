//! A small HTTP JSON API over one index, for desktop apps written in other languages
//! (`xqdb serve DIR --addr 127.0.0.1:PORT`), on hyper and tokio (a small runtime inside the
//! server; the API below is blocking).
//!
//! **Browsers.** Any web page the user visits can send requests to a local port, so the server
//! refuses what a page could abuse, with or without a token: a `Host` that is not an IP
//! address, `localhost` or a name of [`ServerOptions::allow_hosts`] (403: DNS rebinding); a
//! body not sent as `application/json` (415: "simple" cross-origin requests need no
//! preflight); a request whose `Origin` is not in [`ServerOptions::allow_origins`] (403; none
//! by default). An allowed origin gets CORS headers and its preflights answered (a Tauri or
//! Electron front-end: `--allow-origin tauri://localhost`).
//!
//! **Token.** On loopback it needs no credentials. Any other address needs a bearer token
//! ([`ServerOptions::token`]; `xqdb serve --token-file` or `XQDB_SERVE_TOKEN`): every route but
//! `/health` then answers 401 without `Authorization: Bearer TOKEN` (compared in constant time)
//! and does nothing. Off loopback, [`ServerOptions::tls`] (`--tls-cert`, `--tls-key`) keeps
//! the token off the wire in clear text.
//!
//! **Bounds.** At most [`ServerOptions::threads`] requests are worked on at once and
//! [`ServerOptions::queue`] more wait; further requests get 503 with `Retry-After` at once.
//! At most [`ServerOptions::max_connections`] connections are open (further ones get 503).
//! A request's head must arrive within [`ServerOptions::request_timeout`] (of the connection
//! opening or going idle: slow or idle connections are closed), and its body and answer
//! within it again (408). Connections are kept alive between requests; `Expect:
//! 100-continue` is answered.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/health` | | `{"status": "ok", "passages", "commit_seq"}` |
//! | GET | `/stats` | | [`crate::Stats`] |
//! | POST | `/search` | [`api::SearchRequest`]: `{"text"` or `"vector"` or `"queries": [...], "k", "lang": [..], "meta": {field: value or [any of these]}, "adapter", "query_lang", "first_pass", "oversample", "mode", "fusion", "depth", "by_file"}` | `{"hits": [..]}`; with `"by_file": true`, `{"files": [{"path", "score", "passages", "best"}]}`; for `queries`, `{"results": [one of those per query]}` |
//! | GET | `/passages?after=ID&limit=N` | | `{"passages": [..], "next": ID}` (in id order; `next` absent after the last page) |
//! | GET | `/passages/{id}` | | the passage, or 404 |
//! | POST | `/passages` | `{"passages": [rows as in xqdb add], "upsert": false}` | `{"added", "commit_seq"}` |
//! | DELETE | `/passages/{id}` | | `{"deleted": id, "commit_seq"}`, or 404 |
//! | GET | `/openapi.json` | | the OpenAPI document of these routes |
//!
//! Request bodies are typed: an unknown field or a value of the wrong type is a 400 whose
//! message names the field. Each `POST /passages` and `DELETE` is one atomic, durable commit:
//! a bad row rejects the whole request and nothing of it is written. Refusals have a
//! `{"error": message}` body and never stop the server: 400, 401, 403, 404, 405, 408, 409
//! (duplicate id), 413 (body over the limit), 415, 422 (wrong dimension, non-finite vector,
//! invalid passage), 431 (head over 16 KiB), 503 (no encoder for a text request, or busy).
//! Shutdown stops accepting, lets requests in flight finish (for at most
//! [`ServerOptions::shutdown_grace`]), and closes the index cleanly; nothing half-done is
//! committed.

pub mod api;
mod handlers;
#[cfg(feature = "legacy-server")]
mod legacy;
mod router;
mod transport;

use crate::error::{Error, Result};
use crate::Index;
use handlers::State;
use sha2::{Digest, Sha256};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// A certificate chain and its private key, PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Requests worked on at once (threads of the blocking pool).
    pub threads: usize,
    /// Requests that may wait for a thread; beyond them, 503.
    pub queue: usize,
    /// Connections open at once; beyond them, 503.
    pub max_connections: usize,
    /// The deadline of a request's head (from the connection opening or going idle), and
    /// again of its body and answer (408).
    pub request_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// Bearer token every route but `/health` requires; needed to listen on an address
    /// other than loopback. At least [`MIN_TOKEN_LEN`] characters.
    pub token: Option<String>,
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Largest `k` a search may ask for.
    pub max_k: usize,
    /// Refuse writes (403).
    pub read_only: bool,
    /// Host names accepted in the `Host` header besides IP addresses and `localhost`.
    pub allow_hosts: Vec<String>,
    /// Web origins (`scheme://host[:port]`) whose requests are accepted and get CORS headers;
    /// requests with any other `Origin` are refused.
    pub allow_origins: Vec<String>,
    /// Serve HTTPS with this certificate.
    pub tls: Option<TlsFiles>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            threads: 4,
            queue: 256,
            max_connections: 512,
            request_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            token: None,
            max_body_bytes: 16 << 20,
            max_k: 10_000,
            read_only: false,
            allow_hosts: Vec::new(),
            allow_origins: Vec::new(),
            tls: None,
        }
    }
}

/// The SHA-256 of a bearer token: tokens are compared as digests, so the comparison takes the
/// same time whatever the token's length or content.
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn new(token: &str) -> Self {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    fn matches(&self, given: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        d.ct_eq(&self.0).into()
    }
}

/// A bound server; [`Server::run`] answers requests until the shutdown flag is raised.
pub struct Server {
    listener: TcpListener,
    runtime: Option<tokio::runtime::Runtime>,
    state: Arc<State>,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    addr: SocketAddr,
}

/// The HTTP status for a library error.
fn status_of(e: &Error) -> u16 {
    match e {
        Error::DuplicateId { .. } => 409,
        Error::DimensionMismatch { .. }
        | Error::InvalidVector { .. }
        | Error::InvalidPassage { .. } => 422,
        Error::InvalidArgument(_) => 400,
        Error::ReadOnly => 403,
        Error::NoEncoder | Error::RuntimeUnavailable { .. } => 503,
        _ => 500,
    }
}

/// Connections the kernel completes and holds before they are accepted.
const BACKLOG: u32 = 1024;

/// A non-blocking listener on the first of `addrs` that binds, with a backlog of [`BACKLOG`]
/// (the standard library's is 128: a burst of connections would wait for SYN retries).
fn listen(runtime: &tokio::runtime::Runtime, addrs: &[SocketAddr]) -> std::io::Result<TcpListener> {
    let _in = runtime.enter();
    let mut last = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address");
    for addr in addrs {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(*addr).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return listener.into_std(),
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`Server::addr`]). A writable index
    /// takes its writer for the server's lifetime.
    ///
    /// ```no_run
    /// use std::sync::atomic::AtomicBool;
    /// use xqdb::server::{Server, ServerOptions};
    /// # fn main() -> xqdb::Result<()> {
    /// let index = xqdb::Index::open("my-index")?;
    /// let server = Server::bind(index, "127.0.0.1:7700", ServerOptions::default())?;
    /// let stop = AtomicBool::new(false); // set it (e.g. from a signal handler) to stop
    /// server.run(&stop);
    /// server.close();
    /// # Ok(()) }
    /// ```
    pub fn bind(index: Index, addr: &str, options: ServerOptions) -> Result<Server> {
        let cannot = |e: &dyn std::fmt::Display| {
            Error::InvalidArgument(format!("cannot listen on {addr}: {e}"))
        };
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| cannot(&e))?.collect();
        let token = options.token.as_deref().map(str::trim);
        if let Some(t) = token {
            if t.chars().count() < MIN_TOKEN_LEN {
                return Err(Error::InvalidArgument(format!(
                    "the bearer token must have at least {MIN_TOKEN_LEN} characters"
                )));
            }
        }
        if token.is_none() && addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(Error::InvalidArgument(format!(
                "refusing to listen on {addr} without a bearer token: anyone who can reach it \
                 could read and change the index. Give a token (xqdb serve --token-file FILE, \
                 or XQDB_SERVE_TOKEN), or listen on loopback (127.0.0.1)"
            )));
        }
        if options.request_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "the request deadline must be positive".into(),
            ));
        }
        for o in &options.allow_origins {
            let n = router::normal_origin(o);
            let host = n.split_once("://").map_or("", |(_, host)| host);
            if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
                return Err(Error::InvalidArgument(format!(
                    "--allow-origin {o:?} is not an origin (scheme://host[:port], such as \
                     http://localhost:3000 or tauri://localhost)"
                )));
            }
        }
        let tls = match &options.tls {
            None => None,
            Some(f) => Some(
                transport::tls_acceptor(&f.cert, &f.key)
                    .map_err(|e| Error::InvalidArgument(format!("TLS: {e}")))?,
            ),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(options.threads.max(1))
            .thread_name("xqdb-serve")
            .enable_all()
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start the server: {e}")))?;
        let listener = listen(&runtime, &addrs).map_err(|e| cannot(&e))?;
        let addr = listener.local_addr().map_err(|e| cannot(&e))?;
        let writer = if options.read_only {
            None
        } else {
            Some(Mutex::new(index.writer()?))
        };
        let guard = Arc::new(router::Guard::new(&options));
        let state = Arc::new(State {
            index,
            writer,
            options,
        });
        let app = router::app(state.clone(), guard);
        Ok(Server {
            listener,
            runtime: Some(runtime),
            state,
            app,
            tls,
            addr,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Answers requests until `shutdown` is set, then stops accepting, lets the requests in
    /// flight finish (for at most [`ServerOptions::shutdown_grace`]) and returns.
    pub fn run(&self, shutdown: &AtomicBool) {
        let (Some(rt), Ok(listener)) = (&self.runtime, self.listener.try_clone()) else {
            return;
        };
        let o = &self.state.options;
        let settings = transport::Settings {
            max_connections: o.max_connections,
            deadline: o.request_timeout,
            grace: o.shutdown_grace,
            tls: self.tls.clone(),
        };
        let _ = rt.block_on(transport::serve(
            listener,
            self.app.clone(),
            settings,
            shutdown,
        ));
    }

    /// Serves with the hand-written transport the server had before (see `legacy.rs`): for
    /// `benches/serve.rs` only.
    #[cfg(feature = "legacy-server")]
    #[doc(hidden)]
    pub fn run_legacy(&self, shutdown: &AtomicBool) {
        let o = &self.state.options;
        let limits = legacy::Limits {
            threads: o.threads.max(1),
            queue: o.queue.max(1),
            max_body_bytes: o.max_body_bytes,
            io_timeout: o.request_timeout,
            token: None,
        };
        legacy::serve(&self.listener, &limits, shutdown, &|req| {
            legacy::route(&self.state, req)
        });
    }

    /// Finishes: waits for work in flight (for at most [`ServerOptions::shutdown_grace`]),
    /// then drops the writer (nothing is buffered between requests) so that the index closes
    /// cleanly.
    pub fn close(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(self.state.options.shutdown_grace);
        }
        drop(self.app);
        drop(self.state);
    }
}

#[cfg(test)]
mod tests;

/// An in-memory index of dimension 4 served by the real router (no socket), and a way to send
/// it one request: for the unit tests and the `http_request` fuzz target.
#[doc(hidden)]
pub mod harness {
    use super::*;
    use tower::ServiceExt;

    /// The router over an in-memory index, with `options`.
    pub struct Harness {
        runtime: tokio::runtime::Runtime,
        app: axum::Router,
        state: Arc<State>,
    }

    impl Harness {
        /// A fresh in-memory index (dot product, dimension 4) behind the router.
        pub fn new(options: ServerOptions) -> Harness {
            let index = Index::builder()
                .dim(4)
                .metric(crate::Metric::Dot)
                .in_memory()
                .expect("an in-memory index");
            let writer = Some(Mutex::new(index.writer().expect("its writer")));
            let guard = Arc::new(router::Guard::new(&options));
            let state = Arc::new(State {
                index,
                writer,
                options,
            });
            let app = router::app(state.clone(), guard);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            Harness {
                runtime,
                app,
                state,
            }
        }

        /// Sends one request; returns the status, the headers and the body's bytes.
        pub fn send(
            &self,
            method: &str,
            uri: &str,
            headers: &[(&str, &str)],
            body: &[u8],
        ) -> Option<(u16, axum::http::HeaderMap, Vec<u8>)> {
            let mut b = axum::http::Request::builder().method(method).uri(uri);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            let req = b.body(axum::body::Body::from(body.to_vec())).ok()?;
            let app = self.app.clone();
            self.runtime.block_on(async move {
                let r = app.oneshot(req).await.ok()?;
                let (parts, body) = r.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.ok()?;
                Some((parts.status.as_u16(), parts.headers, bytes.to_vec()))
            })
        }

        /// Live passages.
        pub fn passages(&self) -> u64 {
            self.state.index.snapshot().len()
        }
    }

    /// Whether the server answers with this status somewhere (the fuzz target's check).
    pub fn is_documented(status: u16) -> bool {
        axum::http::StatusCode::from_u16(status).is_ok_and(router::is_documented)
    }
}
