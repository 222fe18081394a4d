//! `xqdb serve` over loopback: real HTTP requests from several threads against a real server
//! process — the routes, bad requests of every kind (the server stays up), concurrent
//! searches while adding, text search with the default model, and graceful shutdown on
//! SIGTERM leaving a cleanly closed index with every acknowledged write. Off loopback: the
//! bearer token (missing, wrong, right; nothing written without it), the refusal to listen on
//! a public address without one, and a flood of connections answered 200 or 503 by a server
//! whose threads and memory stay bounded.

mod common;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use xqdb::{Index, Metric};

type Server = common::Served;
use common::serve_at;

fn serve(dir: &Path, extra: &[&str]) -> Server {
    serve_at(dir, "127.0.0.1:0", extra, &[])
}

/// One request on its own connection; returns (status, body as JSON).
fn request(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Value) {
    request_with(addr, method, path, body, None).unwrap()
}

/// One request, with a bearer token when given; an I/O error (refused, reset, timed out)
/// comes back as an error.
fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or(b"");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    read_response(s)
}

/// Reads an answer to its end: (status, body as JSON, or null).
fn read_response(mut s: TcpStream) -> std::io::Result<(u16, Value)> {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, payload) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let value = serde_json::from_str(payload).unwrap_or(Value::Null);
    Ok((status, value))
}

fn post(addr: &str, path: &str, v: &Value) -> (u16, Value) {
    request(addr, "POST", path, Some(v.to_string().as_bytes()))
}

fn vectors_index(dir: &Path) {
    Index::builder()
        .dim(4)
        .metric(Metric::Cosine)
        .create(dir)
        .unwrap();
}

fn row(id: &str, v: [f32; 4]) -> Value {
    json!({ "id": id, "text": format!("passage {id}"), "lang": "en", "vector": v })
}

#[test]
fn routes_and_bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let srv = serve(&dir, &["--max-body-bytes", "4096"]);
    let a = srv.addr.as_str();
    assert_eq!(request(a, "GET", "/health", None).0, 200);
    let (st, v) = post(
        a,
        "/passages",
        &json!({ "passages": [row("a/1", [1.0, 0.0, 0.0, 0.0]), row("b", [0.0, 1.0, 0.0, 0.0])] }),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["added"], 2);
    let (st, v) = post(
        a,
        "/search",
        &json!({ "vector": [0.9, 0.1, 0.0, 0.0], "k": 1 }),
    );
    assert_eq!(st, 200);
    assert_eq!(v["hits"][0]["id"], "a/1");
    let (st, v) = request(a, "GET", "/passages/a%2F1", None);
    assert_eq!((st, v["text"].as_str()), (200, Some("passage a/1")));

    // Bad requests: each gets its status and message, and nothing is written.
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("POST", "/search", b"{not json".to_vec(), 400),
        ("POST", "/search", vec![b'"', 0xff, 0xfe, b'"'], 400),
        ("POST", "/search", br#"{"vector":[1,0,0]}"#.to_vec(), 422),
        ("POST", "/search", br#"{"vector":[1e39,0,0,0]}"#.to_vec(), 422),
        ("POST", "/search", br#"{"vector":["x",0,0,0]}"#.to_vec(), 400),
        ("POST", "/search", br#"{"vector":[1,0,0,0],"k":-1}"#.to_vec(), 400),
        ("POST", "/search", br#"{"text":"no encoder"}"#.to_vec(), 503),
        ("POST", "/search", br#"[1,2]"#.to_vec(), 400),
        ("POST", "/passages", br#"{"rows":[]}"#.to_vec(), 400),
        (
            "POST",
            "/passages",
            json!({ "passages": [row("c", [0.0, 0.0, 1.0, 0.0]), row("b", [0.0, 0.0, 0.0, 1.0])] })
                .to_string()
                .into_bytes(),
            409,
        ),
        (
            "POST",
            "/passages",
            json!({ "passages": [row("d", [0.0, 0.0, 1.0, 0.0]), { "id": "e", "text": "", "vector": [1, 0, 0, 0] }] })
                .to_string()
                .into_bytes(),
            422,
        ),
        ("POST", "/passages", vec![b' '; 5000], 413),
        ("GET", "/passages/nope", vec![], 404),
        ("DELETE", "/passages/nope", vec![], 404),
        ("GET", "/passages/%zz", vec![], 400),
        ("GET", "/search", vec![], 405),
        ("PUT", "/passages/b", vec![], 405),
        ("GET", "/nowhere", vec![], 404),
    ];
    for (method, path, body, want) in &cases {
        let (st, v) = request(a, method, path, Some(body));
        assert_eq!(st, *want, "{method} {path}: {v}");
        if *want != 404 || path.starts_with("/passages") {
            assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        }
    }
    let (_, v) = request(a, "GET", "/stats", None);
    assert_eq!(v["passages"], 2, "a rejected request wrote something: {v}");
    // A request cut off mid-body and a garbage request line do not take the server down.
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(b"POST /passages HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"passa")
        .unwrap();
    drop(s);
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    drop(s);
    let (st, v) = request(a, "DELETE", "/passages/b", None);
    assert_eq!((st, v["deleted"].as_str()), (200, Some("b")));
    let (st, v) = request(a, "GET", "/health", None);
    assert_eq!((st, v["passages"].as_u64()), (200, Some(1)));
}

#[test]
fn concurrent_searches_while_adding_then_a_clean_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let mut srv = serve(&dir, &["--threads", "4"]);
    let a = srv.addr.clone();
    let batches = 20;
    std::thread::scope(|s| {
        let searchers: Vec<_> = (0..3)
            .map(|t| {
                let a = a.clone();
                s.spawn(move || {
                    let mut last = 0;
                    for i in 0..40 {
                        let q = json!({ "vector": [1.0, (i % 3) as f32, t as f32, 0.5], "k": 5 });
                        let (st, v) = post(&a, "/search", &q);
                        assert_eq!(st, 200, "{v}");
                        let n = v["hits"].as_array().unwrap().len();
                        // Committed batches only grow, and every hit is a whole passage.
                        assert!(n >= last.min(5), "{n} hits after {last}");
                        last = n;
                        for h in v["hits"].as_array().unwrap() {
                            assert!(h["text"].as_str().unwrap().starts_with("passage "));
                        }
                    }
                })
            })
            .collect();
        for b in 0..batches {
            let rows: Vec<Value> = (0..10)
                .map(|i| row(&format!("b{b}-{i}"), [1.0, i as f32, b as f32, 0.25]))
                .collect();
            let (st, v) = post(&a, "/passages", &json!({ "passages": rows }));
            assert_eq!(st, 200, "{v}");
        }
        for h in searchers {
            h.join().unwrap();
        }
    });
    // SIGTERM: the server stops accepting, finishes, and closes the index cleanly.
    // SAFETY: kill(2) with a live child's pid and a valid signal number.
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let index = Index::open(&dir).unwrap();
    assert!(index.was_closed_cleanly());
    assert_eq!(index.verify().unwrap().passages, batches * 10);
}

#[test]
fn text_search_with_the_default_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    common::xqdb_json(&["init", dir.to_str().unwrap()]);
    let srv = serve(&dir, &[]);
    let a = srv.addr.as_str();
    let (st, v) = post(
        a,
        "/passages",
        &json!({ "passages": [
            { "id": "helsinki", "text": "Helsinki is the capital of Finland.", "lang": "en" },
            { "id": "tokyo", "text": "Tokyo is the capital of Japan.", "lang": "en" }
        ] }),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(
        a,
        "/search",
        &json!({ "text": "Mikä on Suomen pääkaupunki?", "k": 2 }),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["hits"][0]["id"], "helsinki");
    let (st, v) = post(a, "/search", &json!({ "text": 7 }));
    assert_eq!(st, 400, "{v}");
}

#[test]
fn a_read_only_server_refuses_writes_and_a_busy_port_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let srv = serve(&dir, &["--read-only"]);
    let (st, v) = post(
        &srv.addr,
        "/passages",
        &json!({ "passages": [row("x", [1.0, 0.0, 0.0, 0.0])] }),
    );
    assert_eq!(st, 403, "{v}");
    assert_eq!(request(&srv.addr, "DELETE", "/passages/x", None).0, 403);
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args([
            "serve",
            dir.to_str().unwrap(),
            "--addr",
            &srv.addr,
            "--read-only",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

const TOKEN: &str = "a-test-token-0123456789";

#[test]
fn a_token_guards_every_route_but_health() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    // A token file others may read is refused, naming the fix.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(["serve", dir.to_str().unwrap(), "--addr", "127.0.0.1:0"])
        .args(["--token-file", token_file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let srv = serve(&dir, &["--token-file", token_file.to_str().unwrap()]);
    let a = srv.addr.as_str();
    let add = json!({ "passages": [row("x", [1.0, 0.0, 0.0, 0.0])] }).to_string();
    let search = json!({ "vector": [1.0, 0.0, 0.0, 0.0] }).to_string();
    assert_eq!(request(a, "GET", "/health", None).0, 200);
    for token in [None, Some("wrong-token-0123456789"), Some("")] {
        for (method, path, body) in [
            ("GET", "/stats", None),
            ("POST", "/passages", Some(add.as_bytes())),
            ("POST", "/search", Some(search.as_bytes())),
            ("GET", "/passages/x", None),
            ("DELETE", "/passages/x", None),
        ] {
            let (st, v) = request_with(a, method, path, body, token).unwrap();
            assert_eq!(st, 401, "{method} {path} with {token:?}: {v}");
            assert!(v["error"].as_str().unwrap().contains("token"), "{v}");
        }
    }
    let (st, v) = request_with(a, "GET", "/stats", None, Some(TOKEN)).unwrap();
    assert_eq!((st, v["passages"].as_u64()), (200, Some(0)), "{v}");
    // The scheme name is case-insensitive (RFC 9110).
    let mut s = TcpStream::connect(a).unwrap();
    write!(
        s,
        "GET /stats HTTP/1.1\r\nHost: {a}\r\nauthorization: bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(s).unwrap().0, 200);
    let (st, v) = request_with(a, "POST", "/passages", Some(add.as_bytes()), Some(TOKEN)).unwrap();
    assert_eq!((st, v["added"].as_u64()), (200, Some(1)), "{v}");
    let (st, v) = request_with(a, "POST", "/search", Some(search.as_bytes()), Some(TOKEN)).unwrap();
    assert_eq!((st, v["hits"][0]["id"].as_str()), (200, Some("x")), "{v}");
}

#[test]
fn a_public_address_needs_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(["serve", dir.to_str().unwrap(), "--addr", "0.0.0.0:0"])
        .env_remove("XQDB_SERVE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without a bearer token") && err.contains("--token-file"),
        "{err}"
    );
    // A token too short to be one is refused as well.
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(["serve", dir.to_str().unwrap(), "--addr", "0.0.0.0:0"])
        .env("XQDB_SERVE_TOKEN", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));
    // With a token from the environment it listens on every interface and wants the token.
    let srv = serve_at(&dir, "0.0.0.0:0", &[], &[("XQDB_SERVE_TOKEN", TOKEN)]);
    let port = srv.addr.rsplit(':').next().unwrap();
    let local = format!("127.0.0.1:{port}");
    assert_eq!(request(&local, "GET", "/stats", None).0, 401);
    let (st, _) = request_with(&local, "GET", "/stats", None, Some(TOKEN)).unwrap();
    assert_eq!(st, 200);
}

/// Threads and peak resident memory of a process, from /proc.
fn threads_and_peak_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("Threads:"), field("VmHWM:"))
}

#[test]
fn a_flood_of_connections_gets_200_or_503_and_the_server_keeps_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let (workers, queue, connections) = (2usize, 8usize, 16usize);
    let srv = serve(
        &dir,
        &[
            "--threads",
            &workers.to_string(),
            "--queue",
            &queue.to_string(),
            "--max-connections",
            &connections.to_string(),
            "--timeout-secs",
            "2",
        ],
    );
    let a = srv.addr.clone();
    let (st, _) = post(
        &a,
        "/passages",
        &json!({ "passages": [row("p", [1.0, 0.0, 0.0, 0.0])] }),
    );
    assert_eq!(st, 200);
    let (threads_before, peak_before) = threads_and_peak_kib(srv.child.id());

    // Idle connections that send nothing take every connection slot: the next request is
    // told 503 at once instead of waiting or hanging; the server closes the idle ones at the
    // request deadline.
    let opened = std::time::Instant::now();
    let idle: Vec<TcpStream> = (0..connections)
        .map(|_| TcpStream::connect(&a).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let (st, v) = request_with(&a, "GET", "/health", None, None).unwrap();
    assert_eq!(st, 503, "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "503 took {:?}",
        started.elapsed()
    );
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        assert!(
            matches!(s.read(&mut buf), Ok(0)),
            "an idle connection was not closed"
        );
    }
    let closed = opened.elapsed();
    assert!(
        closed >= Duration::from_secs(2) && closed < Duration::from_secs(4),
        "idle connections closed after {closed:?} (deadline 2 s)"
    );
    assert_eq!(request(&a, "GET", "/health", None).0, 200);

    // 200 clients at once: each gets 200 or 503, none hangs (30 s read timeout).
    let body = json!({ "vector": [1.0, 0.0, 0.0, 0.0], "k": 1 }).to_string();
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let (a, body) = (a.clone(), body.clone());
            std::thread::spawn(move || {
                request_with(&a, "POST", "/search", Some(body.as_bytes()), None)
            })
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for c in clients {
        let (st, v) = c.join().unwrap().expect("a client got no answer");
        if st == 200 {
            assert_eq!(v["hits"][0]["id"], "p", "{v}");
        }
        *counts.entry(st).or_insert(0usize) += 1;
    }
    assert!(counts.keys().all(|s| *s == 200 || *s == 503), "{counts:?}");
    assert!(counts.get(&200).is_some_and(|&n| n > 0), "{counts:?}");
    let (threads_after, peak_after) = threads_and_peak_kib(srv.child.id());
    println!(
        "200 clients: {counts:?}; server threads {threads_before} -> {threads_after}, peak RSS {} -> {} KiB",
        peak_before, peak_after
    );
    // The workers and the runtime's two I/O threads: no thread per connection.
    assert!(
        threads_after <= threads_before + 1,
        "{threads_before} -> {threads_after}"
    );
    assert!(
        threads_after <= workers as u64 + 4,
        "{threads_after} threads"
    );
    assert!(
        peak_after < peak_before + 64 * 1024,
        "peak RSS grew {peak_before} -> {peak_after} KiB"
    );
    // Still answering.
    assert_eq!(request(&a, "GET", "/health", None).0, 200);
}

/// Sends raw bytes on one connection and returns the answer's status.
fn raw_status(addr: &str, bytes: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(bytes).unwrap();
    read_response(s).unwrap().0
}

#[test]
fn chunked_bodies_are_read_and_limited() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let srv = serve(&dir, &["--max-body-bytes", "4096"]);
    let a = srv.addr.as_str();
    let body = json!({ "passages": [row("c", [0.0, 1.0, 0.0, 0.0])] }).to_string();
    let (first, second) = body.split_at(body.len() / 2);
    let chunked = format!(
        "POST /passages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    assert_eq!(raw_status(a, chunked.as_bytes()), 200);
    let (_, v) = request(a, "GET", "/passages/c", None);
    assert_eq!(v["id"], "c", "{v}");
    // Over the limit in chunks: 413; a broken chunk: 400; nothing written by either.
    let big = "x".repeat(3000);
    let over = format!(
        "POST /passages HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len(),
        big.len()
    );
    assert_eq!(raw_status(a, over.as_bytes()), 413);
    let broken =
        "POST /passages HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    assert_eq!(raw_status(a, broken.as_bytes()), 400);
    let (_, v) = request(a, "GET", "/stats", None);
    assert_eq!(v["passages"], 1, "{v}");
}

/// The codes contract scripts use: `init --codes`, `stats --json`, `search --first-pass
/// --oversample`, and the HTTP `/search` body's `"first_pass"` and `"oversample"`.
#[test]
fn codes_and_first_passes_from_the_cli_and_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let xqdb = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let d = dir.to_str().unwrap();
    let init = xqdb(&[
        "init",
        d,
        "--dim",
        "4",
        "--metric",
        "dot",
        "--codes",
        "binary,i8",
    ]);
    assert_eq!(init["codes"], json!(["binary", "i8"]), "{init}");
    assert_eq!(
        (init["first_pass"].as_str(), init["oversample"].as_u64()),
        (Some("binary"), Some(48))
    );
    let rows: String = (0..40)
        .map(|i| {
            let v = [
                (i % 7) as f32 - 3.0,
                (i % 5) as f32 - 2.0,
                (i % 3) as f32,
                1.0,
            ];
            format!("{}\n", row(&format!("r{i}"), v))
        })
        .collect();
    let file = tmp.path().join("rows.jsonl");
    std::fs::write(&file, rows).unwrap();
    xqdb(&["add", d, file.to_str().unwrap()]);
    xqdb(&["compact", d]); // seals the tail: a segment with codes
    let stats = xqdb(&["stats", d]);
    assert_eq!(stats["codes"], json!(["binary", "i8"]), "{stats}");
    assert!(stats["code_bytes"].as_u64().unwrap() > 0, "{stats}");
    let q = tmp.path().join("q.json");
    std::fs::write(&q, "[1, -0.5, 0.25, 2]").unwrap();
    let qs = q.to_str().unwrap();
    let exact = xqdb(&[
        "search",
        d,
        "--vector-file",
        qs,
        "-k",
        "5",
        "--first-pass",
        "exact",
    ]);
    assert_eq!(exact["hits"].as_array().unwrap().len(), 5);
    for pass in ["i8", "binary"] {
        let got = xqdb(&[
            "search",
            d,
            "--vector-file",
            qs,
            "-k",
            "5",
            "--first-pass",
            pass,
            "--oversample",
            "8",
        ]);
        assert_eq!(
            got["hits"], exact["hits"],
            "{pass}: oversampling covers every row"
        );
    }
    let bad = xqdb(&["search", d, "--vector-file", qs, "--oversample", "0"]);
    assert!(
        bad["error"].as_str().unwrap().contains("oversampling"),
        "{bad}"
    );

    let srv = serve(&dir, &[]);
    let a = srv.addr.as_str();
    let body = |pass: &str| json!({ "vector": [1, -0.5, 0.25, 2], "k": 5, "first_pass": pass, "oversample": 8 });
    let (st, want) = post(a, "/search", &body("exact"));
    assert_eq!(st, 200, "{want}");
    assert_eq!(want["hits"], exact["hits"]);
    for pass in ["i8", "binary"] {
        let (st, v) = post(a, "/search", &body(pass));
        assert_eq!((st, &v["hits"]), (200, &want["hits"]), "{pass}");
    }
    // A query language selects a text query's adapter; vector queries are never mapped.
    let mut with_lang = body("exact");
    with_lang["query_lang"] = json!("fi");
    let (st, v) = post(a, "/search", &with_lang);
    assert_eq!((st, &v["hits"]), (200, &want["hits"]));
    for bad in [
        json!({ "vector": [1, 0, 0, 0], "first_pass": "fast" }),
        json!({ "vector": [1, 0, 0, 0], "first_pass": 3 }),
        json!({ "vector": [1, 0, 0, 0], "oversample": 0 }),
        json!({ "vector": [1, 0, 0, 0], "oversample": "many" }),
        json!({ "vector": [1, 0, 0, 0], "query_lang": 5 }),
    ] {
        let (st, v) = post(a, "/search", &bad);
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    drop(srv);
    // An index without codes refuses a first pass over them, naming the fix.
    let plain = tmp.path().join("plain");
    vectors_index(&plain);
    let srv = serve(&plain, &[]);
    let (st, v) = post(
        srv.addr.as_str(),
        "/search",
        &json!({ "vector": [1, 0, 0, 0], "first_pass": "binary" }),
    );
    assert!(
        st >= 400 && v["error"].as_str().unwrap().contains("--codes binary"),
        "{st} {v}"
    );
}

/// Keyword and hybrid search with the default model: the CLI's modes and fusions, `xqdb
/// lexical` on an index made without one, and the HTTP API's `mode`, `fusion`, `depth`.
#[test]
fn keyword_and_hybrid_search_from_the_cli_and_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let d = dir.to_str().unwrap();
    let run = |args: &[&str]| -> (bool, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        // A failure is `{"error": …}` under --json (clap's too): its message as a string.
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out.stderr).into()));
        let v = match v.get("error") {
            Some(e) if !out.status.success() => e.clone(),
            _ => v,
        };
        (out.status.success(), v)
    };
    common::xqdb_json(&["init", d]);
    let rows = [
        json!({ "id": "helsinki", "text": "Helsinki is the capital of Finland.", "lang": "en" }),
        json!({ "id": "tokyo", "text": "Tokyo is the capital of Japan.", "lang": "en" }),
        json!({ "id": "disk", "text": "Error E1234: the disk is full.", "lang": "en" }),
    ];
    let file = tmp.path().join("rows.jsonl");
    let lines: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    common::xqdb_json(&["add", d, file.to_str().unwrap()]);
    let (ok, v) = run(&["search", d, "E1234", "--mode", "lexical"]);
    assert!(
        !ok && v.as_str().unwrap().contains("no lexical index"),
        "{v}"
    );
    let (ok, v) = run(&["lexical", d]);
    assert!(ok, "{v}");
    assert_eq!(
        (v["enabled"].as_bool(), v["passages"].as_u64()),
        (Some(true), Some(3))
    );
    assert!(v["postings"].as_u64().unwrap() >= 12, "{v}");
    let (ok, v) = run(&["search", d, "e1234 full", "--mode", "lexical"]);
    assert!(ok, "{v}");
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{v}");
    assert_eq!(hits[0]["id"], "disk");
    assert!(hits[0]["lexical_score"].as_f64().unwrap() > 0.0);
    assert_eq!(
        hits[0]["snippet"],
        "Error <mark>E1234</mark>: the disk is <mark>full</mark>."
    );
    assert!(hits[0].get("dense_score").is_none());
    for fusion in ["weighted", "rrf"] {
        let (ok, v) = run(&[
            "search",
            d,
            "Mikä on Suomen pääkaupunki?",
            "--mode",
            "hybrid",
            "--fusion",
            fusion,
        ]);
        assert!(ok, "{v}");
        assert_eq!(v["hits"][0]["id"], "helsinki", "{fusion}: {v}");
        assert!(v["hits"][0]["dense_score"].as_f64().unwrap() > 0.5, "{v}");
    }
    // An exact code wins a hybrid search even where the dense list is unsure.
    let (ok, v) = run(&["search", d, "E1234", "--mode", "hybrid", "-k", "1"]);
    assert!(ok, "{v}");
    assert_eq!(v["hits"][0]["id"], "disk", "{v}");
    assert!(v["hits"][0]["lexical_score"].as_f64().is_some(), "{v}");
    let (ok, v) = run(&["search", d, "x", "--mode", "fuzzy"]);
    assert!(
        !ok && v.as_str().unwrap().contains("unknown search mode"),
        "{v}"
    );
    let (ok, v) = run(&[
        "search",
        d,
        "x",
        "--mode",
        "hybrid",
        "--fusion",
        "weighted",
        "--lexical-weight",
        "2",
    ]);
    assert!(
        !ok && v.as_str().unwrap().contains("weighted fusion"),
        "{v}"
    );
    // A stemming index: the CLI detects the query's language to stem it like the passages.
    let stem_dir = tmp.path().join("stem");
    let sd = stem_dir.to_str().unwrap();
    let (ok, v) = run(&["init", sd, "--dim", "2", "--lexical", "--stem"]);
    assert!(ok && v["lexical"]["stem"] == json!(true), "{v}");
    let rows = tmp.path().join("stem.jsonl");
    std::fs::write(
        &rows,
        "{\"id\":\"dogs\",\"text\":\"Dogs running parks\",\"lang\":\"en\",\"vector\":[1,0]}\n",
    )
    .unwrap();
    common::xqdb_json(&["add", sd, rows.to_str().unwrap()]);
    let q = "Why are these dogs running across parks?";
    let (ok, v) = run(&["search", sd, q, "--mode", "lexical"]);
    assert!(ok, "{v}");
    assert_eq!(
        v["hits"][0]["id"], "dogs",
        "stemmed by the detected language: {v}"
    );
    let (ok, v) = run(&["search", sd, q, "--mode", "lexical", "--query-lang", "xx"]);
    assert!(
        ok && v["hits"].as_array().unwrap().is_empty(),
        "unstemmed words miss: {v}"
    );

    let srv = serve(&dir, &[]);
    let a = srv.addr.as_str();
    let (st, v) = post(
        a,
        "/search",
        &json!({ "text": "capital Japan", "mode": "lexical", "k": 5 }),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["hits"][0]["id"], "tokyo", "{v}");
    assert_eq!(
        v["hits"].as_array().unwrap().len(),
        2,
        "only passages with the words: {v}"
    );
    let (st, v) = post(
        a,
        "/search",
        &json!({ "text": "東京はどの国の首都?", "mode": "hybrid", "fusion": { "kind": "rrf", "k": 60, "lexical_weight": 1 }, "depth": 3 }),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["hits"][0]["id"], "tokyo", "{v}");
    for bad in [
        json!({ "text": "x", "mode": "fuzzy" }),
        json!({ "text": "x", "mode": 3 }),
        json!({ "text": "x", "mode": "hybrid", "fusion": { "kind": "weighted", "lexical_weight": 2 } }),
        json!({ "text": "x", "mode": "hybrid", "depth": 0 }),
        json!({ "vector": vec![0.0; 384], "mode": "lexical" }),
    ] {
        let (st, v) = post(a, "/search", &bad);
        assert_eq!(st, 400, "{bad}: {v}");
    }
}

#[test]
fn search_by_file_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let srv = serve(&dir, &[]);
    let a = srv.addr.as_str();
    let in_file = |id: &str, path: &str, v: [f32; 4]| json!({ "id": id, "text": format!("passage {id}"), "vector": v, "meta": { "path": path } });
    let (st, v) = post(
        a,
        "/passages",
        &json!({ "passages": [
            in_file("a#0", "a.md", [1.0, 0.0, 0.0, 0.0]),
            in_file("a#1", "a.md", [0.9, 0.1, 0.0, 0.0]),
            in_file("b#0", "b.md", [0.8, 0.3, 0.0, 0.0]),
            row("loose", [0.0, 1.0, 0.0, 0.0]),
        ] }),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(
        a,
        "/search",
        &json!({ "vector": [1.0, 0.0, 0.0, 0.0], "k": 3, "by_file": true }),
    );
    assert_eq!(st, 200, "{v}");
    let files = v["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    // Each file once, best passage first; a passage of no file stands for itself.
    assert_eq!(paths, ["a.md", "b.md", "loose"], "{v}");
    assert_eq!(files[0]["best"]["id"], "a#0");
    assert_eq!(files[0]["passages"], 2);
    assert_eq!(files[0]["score"], files[0]["best"]["score"]);
    let (st, v) = post(
        a,
        "/search",
        &json!({ "vector": [1.0, 0.0, 0.0, 0.0], "by_file": "yes" }),
    );
    assert_eq!(st, 400, "{v}");
}

/// What a first-time user meets over HTTP: an empty text query is refused, a metadata value
/// given as an array matches any of its values, and a duplicate id is named at its own place.
#[test]
fn empty_queries_sets_of_values_and_duplicates_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let srv = serve(&dir, &[]);
    let a = srv.addr.as_str();
    let mut rows = Vec::new();
    for (id, topic, v) in [
        ("a", "food", [1.0, 0.0, 0.0, 0.0]),
        ("b", "tech", [0.0, 1.0, 0.0, 0.0]),
        ("c", "travel", [0.0, 0.0, 1.0, 0.0]),
    ] {
        let mut r = row(id, v);
        r["meta"] = json!({ "topic": topic });
        rows.push(r);
    }
    let (st, v) = post(a, "/passages", &json!({ "passages": rows }));
    assert_eq!(st, 200, "{v}");
    for text in ["", "   "] {
        let (st, v) = post(a, "/search", &json!({ "text": text }));
        assert_eq!(st, 400, "{v}");
        assert!(v["error"].as_str().unwrap().contains("empty"), "{v}");
    }
    let (st, v) = post(
        a,
        "/search",
        &json!({ "vector": [1, 1, 1, 1], "meta": { "topic": ["food", "tech"] } }),
    );
    assert_eq!(st, 200, "{v}");
    let mut ids: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    let dup =
        json!({ "passages": [row("n", [1.0, 0.0, 0.0, 0.0]), row("n", [0.0, 1.0, 0.0, 0.0])] });
    let (st, v) = post(a, "/passages", &dup);
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().starts_with("passage 1:"),
        "{v}"
    );
}

/// The README's HTTP example, run as written (the address of this test's server in place of
/// `localhost:7700`): every request succeeds and the search finds the passage — the language
/// filter matches because `POST /passages` tags untagged passages it is sure of.
#[test]
fn the_readme_http_example_works_as_written() {
    let block = common::readme_block("## Local HTTP API");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    common::xqdb_json(&["init", dir.to_str().unwrap()]);
    let srv = serve(&dir, &[]);
    let mut ran = 0;
    for line in block.lines().filter(|l| l.starts_with("curl ")) {
        let line = line.split("  #").next().unwrap().trim();
        let method = if line.contains("-XPOST") {
            "POST"
        } else {
            "GET"
        };
        let url = line
            .split_whitespace()
            .map(|w| w.trim_matches('\''))
            .find(|w| w.starts_with("localhost:7700"))
            .unwrap();
        let path = &url["localhost:7700".len()..];
        let body = line
            .split_once(" -d '")
            .map(|(_, b)| b.trim_end_matches('\''));
        // Exactly the headers the line sends (curl sends a form's content type otherwise).
        let headers: String = line
            .split(" -H '")
            .skip(1)
            .filter_map(|h| h.split_once('\''))
            .map(|(h, _)| format!("{h}\r\n"))
            .collect();
        let path = path.trim_end_matches('\'');
        let body = body.unwrap_or("");
        let mut s = TcpStream::connect(&srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost:7700\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let (st, v) = read_response(s).unwrap();
        if path.starts_with("/openapi.json") {
            assert_eq!(st, 200);
            assert!(v["paths"]["/search"]["post"].is_object(), "{v}");
            ran += 1;
            continue;
        }
        assert_eq!(st, 200, "{line}: {v}");
        if path.starts_with("/passages?") {
            assert_eq!(v["passages"][0]["id"], "p1", "{line}: {v}");
        }
        if v.get("results").is_some() {
            for r in v["results"].as_array().unwrap() {
                assert_eq!(r["hits"][0]["id"], "p1", "{line}: {v}");
            }
        }
        if path == "/search" && v.get("results").is_none() {
            assert_eq!(v["hits"][0]["id"], "p1", "{line}: {v}");
        }
        if path == "/passages/p1" {
            assert_eq!(v["lang"], "en", "{v}");
        }
        ran += 1;
    }
    assert_eq!(ran, 7, "the README's example has changed: {block}");
}

/// The README's table of `POST /search` fields names exactly the fields the request type
/// takes (as the OpenAPI document, generated from that type, lists them).
#[test]
fn the_readme_search_fields_are_the_request_types() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Local HTTP API").unwrap()..];
    let table = &section[section.find("| field | type | meaning |").unwrap()..];
    let mut in_readme: Vec<String> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.split('|')
                .nth(1)
                .unwrap()
                .trim()
                .trim_matches('`')
                .to_string()
        })
        .collect();
    in_readme.sort();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let srv = serve(&dir, &[]);
    let (st, doc) = request(&srv.addr, "GET", "/openapi.json", None);
    assert_eq!(st, 200);
    let mut in_type: Vec<String> = doc["components"]["schemas"]["SearchRequest"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    in_type.sort();
    assert_eq!(in_readme, in_type);
}
