//! The hand-written HTTP/1.1 transport the server had before it moved to hyper, kept (behind
//! the `legacy-server` feature) only so that `benches/serve.rs` measures the two side by side:
//! a fixed pool of worker threads fed by a bounded queue of accepted connections, one request
//! per connection (`Connection: close`), heads parsed by `httparse`, bodies by
//! `Content-Length` or chunked, time limits on every read and write, and a bearer token
//! checked in constant time. It answers `/health`, `/stats`, `POST /search` and
//! `POST /passages` with the same handlers as the real routes, and has none of the browser
//! checks: do not use it.
//!
//! Why not a connection-per-thread server: a flood of connections must not create threads
//! or buffers without bound. Here at most `threads` connections are served and `queue` wait;
//! a connection beyond that is answered `503` by one small rejecting thread (or, when even its
//! queue is full, closed), and accept errors (such as running out of file descriptors) only
//! pause accepting.

use super::TokenDigest;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers).
const MAX_HEAD_BYTES: usize = 16 << 10;
/// Most headers in a request.
const MAX_HEADERS: usize = 64;
/// Connections waiting to be told 503 before further ones are simply closed.
const REJECT_QUEUE: usize = 256;
/// How long a rejected connection may take to send its request before the 503.
const REJECT_DRAIN: Duration = Duration::from_millis(20);

/// A parsed request.
pub(super) struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// An answer: a status and a JSON body.
pub(super) struct Reply {
    pub status: u16,
    pub body: Value,
}

pub(super) fn reply(status: u16, body: Value) -> Reply {
    Reply { status, body }
}

pub(super) fn fail(status: u16, msg: impl Into<String>) -> Reply {
    reply(status, json!({ "error": msg.into() }))
}

/// Transport settings (from `ServerOptions`).
pub(super) struct Limits {
    pub threads: usize,
    pub queue: usize,
    pub max_body_bytes: usize,
    pub io_timeout: Duration,
    pub token: Option<TokenDigest>,
}

/// Accepts connections until `shutdown` is set; `handle` answers each request on one of
/// `limits.threads` workers. Returns once the connections already accepted were answered.
pub(super) fn serve(
    listener: &TcpListener,
    limits: &Limits,
    shutdown: &AtomicBool,
    handle: &(dyn Fn(Request) -> Reply + Sync),
) {
    let (work, jobs) = crossbeam::channel::bounded::<TcpStream>(limits.queue);
    let (reject, rejects) = crossbeam::channel::bounded::<TcpStream>(REJECT_QUEUE);
    std::thread::scope(|s| {
        for _ in 0..limits.threads.max(1) {
            let jobs = jobs.clone();
            s.spawn(move || {
                for stream in jobs {
                    answer(stream, limits, handle);
                }
            });
        }
        s.spawn(move || {
            for stream in rejects {
                busy(stream);
            }
        });
        while !shutdown.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let ready = stream.set_nonblocking(false).is_ok()
                        && stream.set_read_timeout(Some(limits.io_timeout)).is_ok()
                        && stream.set_write_timeout(Some(limits.io_timeout)).is_ok();
                    if !ready {
                        continue;
                    }
                    if let Err(e) = work.try_send(stream) {
                        // Full: tell the client to come back; if even that queue is full,
                        // the connection is closed unanswered.
                        let _ = reject.try_send(e.into_inner());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                // Out of descriptors, a connection reset before accept: pause, keep serving.
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        drop(work);
        drop(reject);
    });
}

/// Reads one request from `stream`, answers it and closes the connection.
fn answer(mut stream: TcpStream, limits: &Limits, handle: &(dyn Fn(Request) -> Reply + Sync)) {
    let r = match read_request(&mut stream, limits) {
        Ok(req) => handle(req),
        Err(Some(r)) => r,
        // The client went away or stalled: nothing to answer.
        Err(None) => return,
    };
    let _ = write_reply(&mut stream, &r);
    let _ = stream.shutdown(Shutdown::Write);
    drain(&mut stream, Duration::from_millis(100), 1 << 20);
}

/// Reads and discards what the client still sends, for at most `within` and `max_bytes`, so
/// that closing does not reset the connection before the client has read the answer (a body
/// refused unread, a request that came to a full queue).
fn drain(stream: &mut TcpStream, within: Duration, max_bytes: usize) {
    let _ = stream.set_read_timeout(Some(within));
    let mut sink = [0u8; 8192];
    let (start, mut left) = (Instant::now(), max_bytes);
    while left > 0 && start.elapsed() < within {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Answers 503 to a connection no worker can take.
fn busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(REJECT_DRAIN * 5));
    drain(&mut stream, REJECT_DRAIN, 64 << 10);
    let r = fail(503, "the server is busy; try again");
    let _ = write_reply(&mut stream, &r);
    let _ = stream.shutdown(Shutdown::Write);
}

/// `Err(Some(reply))` for a request to refuse with an answer, `Err(None)` for a connection
/// to drop (closed, timed out).
fn read_request(stream: &mut TcpStream, limits: &Limits) -> Result<Request, Option<Reply>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(Some(fail(431, "the request head is too large")));
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return if buf.is_empty() {
                    Err(None)
                } else {
                    Err(Some(fail(400, "the request ended inside its head")))
                }
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Err(None),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err(Some(fail(400, "not an HTTP/1.x request")))
        }
    }
    let method = req.method.unwrap_or("").to_string();
    let path = req.path.unwrap_or("").to_string();
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if let Some(token) = &limits.token {
        let route = path.split('?').next().unwrap_or("");
        let given = header("authorization");
        let ok = given
            .as_deref()
            // The scheme name is case-insensitive (RFC 9110, 11.1).
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest)
            })
            .is_some_and(|t| token.matches(t.trim()));
        if route != "/health" && !ok {
            return Err(Some(fail(
                401,
                "missing or wrong bearer token (Authorization: Bearer TOKEN)",
            )));
        }
    }
    let max = limits.max_body_bytes;
    let (encoding, length) = (header("transfer-encoding"), header("content-length"));
    let rest = buf.split_off(head_len);
    let body = match encoding {
        Some(te) if te.eq_ignore_ascii_case("chunked") => read_chunked(stream, rest, max)?,
        Some(te) => {
            return Err(Some(fail(
                501,
                format!("transfer encoding {te:?} is not supported"),
            )))
        }
        None => {
            let len = match length {
                None => 0,
                Some(v) => v
                    .parse::<usize>()
                    .map_err(|_| Some(fail(400, "Content-Length is not a number")))?,
            };
            if len > max {
                return Err(Some(too_large(max)));
            }
            let mut body = rest;
            body.truncate(len);
            if body.len() < len {
                let start = body.len();
                body.resize(len, 0);
                if stream.read_exact(&mut body[start..]).is_err() {
                    // Cut off mid-body (or too slow): nobody is left to read an answer.
                    return Err(None);
                }
            }
            body
        }
    };
    Ok(Request { method, path, body })
}

/// Decodes a chunked body (`rest`: what followed the head in the first reads), refusing one
/// larger than `max` bytes.
fn read_chunked(
    stream: &mut TcpStream,
    mut rest: Vec<u8>,
    max: usize,
) -> Result<Vec<u8>, Option<Reply>> {
    let mut body = Vec::new();
    let mut chunk = [0u8; 4096];
    // Reads more into `rest`; Err(None) when the client is gone.
    let mut more = |rest: &mut Vec<u8>| -> Result<(), Option<Reply>> {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => Err(None),
            Ok(n) => {
                rest.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    };
    loop {
        let (start, size) = loop {
            match httparse::parse_chunk_size(&rest) {
                Ok(httparse::Status::Complete((start, size))) => break (start, size),
                Ok(httparse::Status::Partial) if rest.len() < 1024 => more(&mut rest)?,
                _ => return Err(Some(fail(400, "a malformed chunk size"))),
            }
        };
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > max.saturating_sub(body.len()) {
            return Err(Some(too_large(max)));
        }
        // The chunk's data and its CRLF (after the last chunk: the empty trailer line).
        while rest.len() < start + size + 2 {
            more(&mut rest)?;
        }
        if &rest[start + size..start + size + 2] != b"\r\n" {
            return Err(Some(fail(400, "a chunk does not end with CRLF")));
        }
        body.extend_from_slice(&rest[start..start + size]);
        rest.drain(..start + size + 2);
        if size == 0 {
            return Ok(body);
        }
    }
}

/// The 413 answer for a body over `max` bytes.
fn too_large(max: usize) -> Reply {
    fail(413, format!("the body exceeds the limit of {max} bytes"))
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn write_reply(stream: &mut TcpStream, r: &Reply) -> std::io::Result<()> {
    let body = serde_json::to_vec(&r.body).unwrap_or_else(|_| b"{}".to_vec());
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        body.len()
    );
    match r.status {
        401 => head.push_str("WWW-Authenticate: Bearer\r\n"),
        503 => head.push_str("Retry-After: 1\r\n"),
        _ => {}
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        501 => "Not Implemented",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The routes the load benchmark uses, answered by the same handlers as the real server.
pub(super) fn route(state: &super::State, req: Request) -> Reply {
    use super::api::{parse, ApiError};
    fn answer<T: serde::Serialize>(r: Result<T, ApiError>) -> Reply {
        match r {
            Ok(v) => reply(200, json!(v)),
            Err(e) => fail(e.status.as_u16(), e.message),
        }
    }
    let path = req.path.split('?').next().unwrap_or("");
    match (path, req.method.as_str()) {
        ("/health", "GET") => answer(Ok(state.health())),
        ("/stats", "GET") => answer(state.stats()),
        ("/search", "POST") => answer(parse(&req.body).and_then(|r| state.search(r))),
        ("/passages", "POST") => answer(parse(&req.body).and_then(|r| state.add(r))),
        _ => fail(404, format!("no route {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
