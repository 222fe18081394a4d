//! A small HTTP JSON API over one index, for desktop apps written in other languages
//! (`xqdb serve DIR --addr 127.0.0.1:PORT`).
//!
//! On loopback it needs no credentials. Any other address needs a bearer token
//! ([`ServerOptions::token`]; `xqdb serve --token-file` or `XQDB_SERVE_TOKEN`): every route but
//! `/health` then answers 401 without `Authorization: Bearer TOKEN` (compared in constant time)
//! and does nothing. At most [`ServerOptions::threads`] requests are served at once and
//! [`ServerOptions::queue`] connections wait; further connections get 503 at once, so a flood
//! costs neither threads nor memory without bound. Each connection carries one request and
//! has [`ServerOptions::io_timeout`] for each read and write.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/health` | | `{"status": "ok", "passages", "commit_seq"}` |
//! | GET | `/stats` | | [`crate::Stats`] |
//! | POST | `/search` | `{"text" or "vector", "k", "lang": [..], "meta": {field: value or [any of these]}, "adapter", "query_lang", "first_pass", "oversample", "mode", "fusion", "depth", "by_file"}` | `{"hits": [..]}`; with `"by_file": true`, `{"files": [{"path", "score", "passages", "best"}]}` (each synced file once, with its best passage) |
//! | GET | `/passages/{id}` | | the passage, or 404 |
//! | POST | `/passages` | `{"passages": [rows as in xqdb add], "upsert": false}` | `{"added", "commit_seq"}` |
//! | DELETE | `/passages/{id}` | | `{"deleted": id, "commit_seq"}`, or 404 |
//!
//! Each `POST /passages` and `DELETE` is one atomic, durable commit: a bad row rejects the
//! whole request and nothing of it is written. Bad requests get a 4xx answer with
//! `{"error": message}` and never stop the server: 400 (malformed JSON, invalid UTF-8, bad
//! fields), 404, 405, 409 (duplicate id), 413 (body over the limit), 422 (wrong dimension,
//! non-finite vector, invalid passage), 403 (writes to a read-only server), 401 (token
//! missing or wrong), 501 (a transfer encoding other than chunked), 503 (no encoder for a
//! text request, or busy). Shutdown stops accepting, lets requests in flight finish, and
//! closes the index cleanly; nothing half-done is committed.

mod http;

use crate::error::{Error, Result};
use crate::ingest::jsonl::parse_line;
use crate::ingest::{Row, WriteMode};
use crate::{Filter, Index, SearchOptions, Writer};
use http::{fail, reply, Reply, Request};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

/// Shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Worker threads answering requests (at most this many at once).
    pub threads: usize,
    /// Accepted connections that may wait for a worker; beyond them, 503.
    pub queue: usize,
    /// Time allowed for each read and write on a connection.
    pub io_timeout: Duration,
    /// Bearer token every route but `/health` requires; needed to listen on an address
    /// other than loopback. At least [`MIN_TOKEN_LEN`] characters.
    pub token: Option<String>,
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Largest `k` a search may ask for.
    pub max_k: usize,
    /// Refuse writes (403).
    pub read_only: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            threads: 4,
            queue: 64,
            io_timeout: Duration::from_secs(10),
            token: None,
            max_body_bytes: 16 << 20,
            max_k: 10_000,
            read_only: false,
        }
    }
}

/// A bound server; [`Server::run`] answers requests until the shutdown flag is raised.
pub struct Server {
    listener: TcpListener,
    limits: http::Limits,
    index: Index,
    writer: Option<Mutex<Writer>>,
    options: ServerOptions,
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

fn from_error(e: Error) -> Reply {
    fail(status_of(&e), e.to_string())
}

/// Decodes `%XX` escapes of a path segment; `None` for bad escapes or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
        let listener = TcpListener::bind(&addrs[..]).map_err(|e| cannot(&e))?;
        listener.set_nonblocking(true).map_err(|e| cannot(&e))?;
        let addr = listener.local_addr().map_err(|e| cannot(&e))?;
        let writer = if options.read_only {
            None
        } else {
            Some(Mutex::new(index.writer()?))
        };
        let limits = http::Limits {
            threads: options.threads.max(1),
            queue: options.queue.max(1),
            max_body_bytes: options.max_body_bytes,
            io_timeout: options.io_timeout,
            token: token.map(http::TokenDigest::new),
        };
        Ok(Server {
            listener,
            limits,
            index,
            writer,
            options,
            addr,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers requests on `options.threads` threads until `shutdown` is set, then lets the
    /// requests already accepted finish and returns.
    pub fn run(&self, shutdown: &AtomicBool) {
        http::serve(&self.listener, &self.limits, shutdown, &|req| {
            self.route(req)
        });
    }

    fn body(req: &Request) -> std::result::Result<Value, Reply> {
        let text = std::str::from_utf8(&req.body)
            .map_err(|e| fail(400, format!("the body is not UTF-8: {e}")))?;
        serde_json::from_str(text).map_err(|e| fail(400, format!("the body is not JSON: {e}")))
    }

    fn route(&self, req: Request) -> Reply {
        let path = req.path.split('?').next().unwrap_or("");
        match (path, req.method.as_str()) {
            ("/health", "GET") => {
                let snap = self.index.snapshot();
                reply(
                    200,
                    json!({ "status": "ok", "passages": snap.len(), "commit_seq": snap.commit_seq() }),
                )
            }
            ("/stats", "GET") => match self.index.stats() {
                Ok(s) => reply(200, json!(s)),
                Err(e) => from_error(e),
            },
            ("/search", "POST") => match Self::body(&req) {
                Ok(b) => self.search(&b),
                Err(r) => r,
            },
            ("/passages", "POST") => match Self::body(&req) {
                Ok(b) => self.add(&b),
                Err(r) => r,
            },
            (p, m) if p.starts_with("/passages/") => {
                let Some(id) = percent_decode(&p["/passages/".len()..]) else {
                    return fail(400, "the passage id is not valid percent-encoded UTF-8");
                };
                match m {
                    "GET" => match self.index.get(&id) {
                        Ok(Some(p)) => reply(200, json!(p)),
                        Ok(None) => fail(404, format!("no passage {id:?}")),
                        Err(e) => from_error(e),
                    },
                    "DELETE" => self.delete(&id),
                    _ => fail(405, "use GET or DELETE on /passages/{id}"),
                }
            }
            ("/health" | "/stats", _) => fail(405, "use GET"),
            ("/search" | "/passages", _) => fail(405, "use POST"),
            _ => fail(404, format!("no route {path}")),
        }
    }

    fn search(&self, b: &Value) -> Reply {
        let Some(obj) = b.as_object() else {
            return fail(400, "the body must be a JSON object");
        };
        let k = match obj.get("k") {
            None => 10,
            Some(v) => match v.as_u64() {
                Some(k) if k as usize <= self.options.max_k => k as usize,
                _ => {
                    return fail(
                        400,
                        format!("k must be an integer from 0 to {}", self.options.max_k),
                    )
                }
            },
        };
        let mut filter = Filter::new();
        if let Some(langs) = obj.get("lang") {
            let Some(list) = langs.as_array().and_then(|a| {
                a.iter()
                    .map(|l| l.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
            }) else {
                return fail(400, "lang must be an array of strings");
            };
            filter = filter.langs(list);
        }
        if let Some(meta) = obj.get("meta") {
            let Some(m) = meta.as_object() else {
                return fail(400, "meta must be an object of field: value");
            };
            for (field, value) in m {
                filter = match value {
                    Value::Array(any_of) => filter.meta_in(field, any_of.clone()),
                    value => filter.meta_eq(field, value.clone()),
                };
            }
        }
        let adapter = obj.get("adapter").and_then(Value::as_bool).unwrap_or(true);
        let mut options = SearchOptions::new(k).filter(filter).adapter(adapter);
        match obj.get("query_lang") {
            None | Some(Value::Null) => {}
            Some(Value::String(l)) => options.query_lang = Some(l.clone()),
            Some(_) => return fail(400, "query_lang must be a language code (a string)"),
        }
        match obj.get("first_pass") {
            None | Some(Value::Null) => {}
            Some(Value::String(p)) => match p.parse() {
                Ok(p) => options.first_pass = Some(p),
                Err(e) => return fail(400, e.to_string()),
            },
            Some(_) => return fail(400, "first_pass must be \"exact\", \"i8\" or \"binary\""),
        }
        match obj.get("oversample") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(o) if o >= 1 && o <= crate::index::MAX_OVERSAMPLE as u64 => {
                    options.oversample = Some(o as usize)
                }
                _ => {
                    return fail(
                        400,
                        format!(
                            "oversample must be an integer from 1 to {}",
                            crate::index::MAX_OVERSAMPLE
                        ),
                    )
                }
            },
        }
        match obj.get("mode") {
            None | Some(Value::Null) => {}
            Some(Value::String(m)) => match m.parse() {
                Ok(m) => options.mode = m,
                Err(e) => return fail(400, e),
            },
            Some(_) => return fail(400, "mode must be \"dense\", \"lexical\" or \"hybrid\""),
        }
        match obj.get("fusion") {
            None | Some(Value::Null) => {}
            Some(f) => match serde_json::from_value::<crate::types::Fusion>(f.clone()) {
                Ok(f) if f.validate().is_ok() => options.fusion = f,
                _ => {
                    return fail(
                        400,
                        "fusion must be {\"kind\": \"rrf\", \"k\", \"lexical_weight\"} or \
                         {\"kind\": \"weighted\", \"lexical_weight\" in [0, 1]}",
                    )
                }
            },
        }
        match obj.get("depth") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(d) if d >= 1 && d as usize <= self.options.max_k.max(1000) => {
                    options.depth = Some(d as usize)
                }
                _ => {
                    return fail(
                        400,
                        "depth must be a positive integer (at most max_k or 1000)",
                    )
                }
            },
        }
        let by_file = match obj.get("by_file") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return fail(400, "by_file must be true or false"),
        };
        // A by-file search groups the passages of a deeper search of the same query.
        let ranking = crate::FileRanking::default();
        let searched = if by_file {
            ranking.candidates(&options)
        } else {
            options.clone()
        };
        let hits = match (obj.get("text"), obj.get("vector")) {
            (Some(Value::String(t)), None) => self.index.search_text_with(t, &searched),
            (None, Some(v)) => {
                let Some(vector) = vector_of(v) else {
                    return fail(400, "vector must be an array of numbers");
                };
                self.index.search_with(&vector, &searched)
            }
            _ => return fail(400, "give exactly one of text (a string) or vector"),
        };
        match hits {
            Ok(h) if by_file => reply(
                200,
                json!({ "files": crate::group_by_file(h, &ranking, options.k) }),
            ),
            Ok(h) => reply(200, json!({ "hits": h })),
            Err(e) => from_error(e),
        }
    }

    fn writer(&self) -> std::result::Result<std::sync::MutexGuard<'_, Writer>, Reply> {
        match &self.writer {
            None => Err(fail(403, "this server is read-only")),
            Some(w) => Ok(w.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }

    fn add(&self, b: &Value) -> Reply {
        let Some(rows) = b.get("passages").and_then(Value::as_array) else {
            return fail(400, "the body must be {\"passages\": [...]}");
        };
        let upsert = b.get("upsert").and_then(Value::as_bool).unwrap_or(false);
        let mut parsed = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let bytes = serde_json::to_vec(row).expect("JSON values serialise");
            match parse_line(&bytes) {
                Ok(Some(r)) => parsed.push(Row::from(r)),
                Ok(None) => return fail(400, format!("passage {i} is empty")),
                Err(msg) => return fail(400, format!("passage {i}: {msg}")),
            }
        }
        let mut w = match self.writer() {
            Ok(w) => w,
            Err(r) => return r,
        };
        let n = parsed.len();
        let mode = if upsert {
            WriteMode::Upsert
        } else {
            WriteMode::Insert
        };
        #[cfg(feature = "documents")]
        crate::documents::tag_rows(&crate::documents::Detector::default(), &mut parsed);
        let fits = self.index.check_fits(&parsed);
        if let Err(e) = fits.and_then(|()| w.stage_rows(parsed, mode, &|_| {})) {
            w.rollback();
            let status = status_of(&e.error);
            return match e.row {
                Some(i) => fail(status, format!("passage {i}: {}", e.error)),
                None => fail(status, e.error.to_string()),
            };
        }
        match w.commit() {
            Ok(info) => reply(200, json!({ "added": n, "commit_seq": info.commit_seq })),
            Err(e) => from_error(e),
        }
    }

    fn delete(&self, id: &str) -> Reply {
        let mut w = match self.writer() {
            Ok(w) => w,
            Err(r) => return r,
        };
        match w.delete(id) {
            Ok(true) => match w.commit() {
                Ok(info) => reply(200, json!({ "deleted": id, "commit_seq": info.commit_seq })),
                Err(e) => from_error(e),
            },
            Ok(false) => {
                w.rollback();
                fail(404, format!("no passage {id:?}"))
            }
            Err(e) => {
                w.rollback();
                from_error(e)
            }
        }
    }

    /// Finishes: drops the writer (nothing is buffered between requests) so that the index
    /// closes cleanly.
    pub fn close(self) {
        drop(self.writer);
        drop(self.index);
    }
}

/// A JSON array of numbers as a query vector.
fn vector_of(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn path_ids_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%E3%81%82").as_deref(), Some("あ"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
