//! `xqdb serve` as a real process, for what the transport and the browser guard promise: a web
//! page's requests refused with nothing written, an allowed origin served with CORS headers,
//! 1,000 requests over one kept-alive connection, `Expect: 100-continue` answered at once,
//! slow clients cut at the request deadline while others are served, SIGTERM under a write
//! load exiting 0 with every acknowledged write durable, TLS, the clear-text warning and the
//! access log.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xqdb::{Index, Metric};

mod common;

fn serve(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> common::Served {
    common::serve_at(dir, "127.0.0.1:0", extra, env)
}

fn vectors_index(dir: &Path) {
    Index::builder()
        .dim(4)
        .metric(Metric::Dot)
        .create(dir)
        .unwrap();
}

/// One request on its own connection with the given extra header lines; (status, head, body).
fn raw(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    parse_response(&out)
}

fn parse_response(out: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(out);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

const JSON: &str = "Content-Type: application/json\r\n";

fn add(addr: &str, rows: &Value) -> (u16, Value) {
    let (s, _, v) = raw(
        addr,
        "POST",
        "/passages",
        JSON,
        &json!({ "passages": rows }).to_string(),
    );
    (s, v)
}

fn row(id: &str, v: [f32; 4]) -> Value {
    json!({ "id": id, "text": format!("passage {id}"), "vector": v })
}

/// Reads one answer with a Content-Length from a kept-alive connection.
fn read_one(r: &mut BufReader<TcpStream>) -> (u16, Value) {
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The requests a web page (or a rebinding attacker) can make get refused, and the index is
/// unchanged, as `stats` and `get` show.
#[test]
fn web_page_requests_are_refused_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let srv = serve(&dir, &[], &[]);
    let a = srv.addr.as_str();
    assert_eq!(add(a, &json!([row("a", [1.0, 0.0, 0.0, 0.0])])).0, 200);
    let planted = r#"{"passages":[{"id":"evil","text":"planted","vector":[1,0,0,0]}]}"#;
    let (s, _, v) = raw(
        a,
        "POST",
        "/passages",
        "Content-Type: text/plain\r\nOrigin: http://evil.example\r\n",
        planted,
    );
    assert_eq!(s, 415, "{v}");
    let (s, _, v) = raw(a, "GET", "/stats", "Host: evil.example:80\r\n", "");
    assert_eq!(s, 403, "{v}");
    let (s, _, v) = raw(
        a,
        "POST",
        "/search",
        JSON,
        r#"{"vector":[1,0,0,0],"k":3,"adpter":true}"#,
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("adpter"), "{v}");
    let (s, _, v) = raw(
        a,
        "POST",
        "/search",
        JSON,
        r#"{"vector":[1,0,0,0],"k":3,"adapter":"false"}"#,
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("adapter:"), "{v}");
    // JSON from a page whose origin is not allowed.
    let (s, _, _) = raw(
        a,
        "POST",
        "/passages",
        &format!("{JSON}Origin: http://evil.example\r\n"),
        planted,
    );
    assert_eq!(s, 403);
    let (s, _, v) = raw(a, "GET", "/stats", "", "");
    assert_eq!((s, v["passages"].as_u64()), (200, Some(1)), "{v}");
    let (s, _, _) = raw(a, "GET", "/passages/evil", "", "");
    assert_eq!(s, 404, "the planted passage is not there");
}

#[test]
fn an_allowed_origin_gets_cors_headers_and_can_search() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let srv = serve(
        &dir,
        &[
            "--allow-origin",
            "http://localhost:5173",
            "--allow-host",
            "my-box.lan",
        ],
        &[],
    );
    let a = srv.addr.as_str();
    assert_eq!(add(a, &json!([row("a", [1.0, 0.0, 0.0, 0.0])])).0, 200);
    let origin = "Origin: http://localhost:5173\r\n";
    let (s, head, _) = raw(
        a,
        "OPTIONS",
        "/search",
        &format!("{origin}Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n"),
        "",
    );
    assert!(s == 200 || s == 204, "{s} {head}");
    assert!(
        head.contains("access-control-allow-origin: http://localhost:5173"),
        "{head}"
    );
    let (s, head, v) = raw(
        a,
        "POST",
        "/search",
        &format!("{JSON}{origin}Host: my-box.lan:7700\r\n"),
        r#"{"vector":[1,0,0,0],"k":1}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert!(
        head.contains("access-control-allow-origin: http://localhost:5173"),
        "{head}"
    );
    assert_eq!(v["hits"][0]["id"], "a");
    // Another origin's preflight is refused.
    let (s, head, _) = raw(
        a,
        "OPTIONS",
        "/search",
        "Origin: http://localhost:5174\r\nAccess-Control-Request-Method: POST\r\n",
        "",
    );
    assert_eq!(s, 403);
    assert!(!head.contains("access-control-allow-origin"), "{head}");
}

#[test]
fn a_thousand_requests_over_one_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let srv = serve(&dir, &[], &[]);
    let a = srv.addr.as_str();
    assert_eq!(
        add(
            a,
            &json!([
                row("a", [1.0, 0.0, 0.0, 0.0]),
                row("b", [0.0, 1.0, 0.0, 0.0])
            ])
        )
        .0,
        200
    );
    let s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let body = r#"{"vector":[0,1,0,0],"k":1}"#;
    for i in 0..1000 {
        if i % 2 == 0 {
            write!(
                w,
                "POST /search HTTP/1.1\r\nHost: {a}\r\n{JSON}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let (st, v) = read_one(&mut r);
            assert_eq!(
                (st, v["hits"][0]["id"].as_str()),
                (200, Some("b")),
                "request {i}: {v}"
            );
        } else {
            write!(w, "GET /health HTTP/1.1\r\nHost: {a}\r\n\r\n").unwrap();
            let (st, v) = read_one(&mut r);
            assert_eq!((st, v["passages"].as_u64()), (200, Some(2)), "request {i}");
        }
    }
}

/// A client that asks before sending a 2 MiB body is told to go on at once (curl otherwise
/// waits a second for the answer).
#[test]
fn expect_100_continue_is_answered_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let srv = serve(&dir, &[], &[]);
    let a = srv.addr.as_str();
    let rows: Vec<Value> = (0..2048)
        .map(|i| json!({ "id": format!("r{i}"), "text": "x".repeat(980), "vector": [1.0, 0.0, 0.0, i as f32] }))
        .collect();
    let body = json!({ "passages": rows }).to_string();
    assert!(body.len() > 2 << 20, "{}", body.len());
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    write!(s, "POST /passages HTTP/1.1\r\nHost: {a}\r\n{JSON}Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n", body.len()).unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    let waited = started.elapsed();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );
    assert!(
        waited < Duration::from_millis(500),
        "100 Continue after {waited:?}"
    );
    s.write_all(body.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let out = &out[out.windows(4).position(|w| w == b"HTTP").unwrap()..];
    let (st, _, v) = parse_response(out);
    assert_eq!((st, v["added"].as_u64()), (200, Some(2048)), "{v}");
}

/// 50 clients trickling a request one byte a second hold nothing others need: `/health` and
/// `/search` answer meanwhile, and each slow client is cut at the request deadline.
#[test]
fn slow_clients_are_cut_at_the_deadline_and_others_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let deadline = 3.0;
    let srv = serve(
        &dir,
        &["--timeout-secs", "3", "--threads", "2", "--queue", "4"],
        &[],
    );
    let a = srv.addr.clone();
    assert_eq!(add(&a, &json!([row("a", [1.0, 0.0, 0.0, 0.0])])).0, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let cut_after = Arc::new(Mutex::new(Vec::new()));
    let slow: Vec<_> = (0..50)
        .map(|i| {
            let (a, stop, cut_after) = (a.clone(), stop.clone(), cut_after.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&a).unwrap();
                let started = Instant::now();
                // Half trickle their head, half a body after a complete head.
                let msg = if i % 2 == 0 {
                    "POST /search HTTP/1.1\r\nHost: localhost\r\n".repeat(4).to_string()
                } else {
                    format!("POST /search HTTP/1.1\r\nHost: localhost\r\n{JSON}Content-Length: 200\r\n\r\n{}", " ".repeat(200))
                };
                for b in msg.bytes() {
                    if stop.load(Ordering::SeqCst) || s.write_all(&[b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                cut_after.lock().unwrap().push((i, started.elapsed()));
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Meanwhile others are answered promptly.
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(raw(&a, "GET", "/health", "", "").0, 200);
        let (s, _, v) = raw(&a, "POST", "/search", JSON, r#"{"vector":[1,0,0,0],"k":1}"#);
        assert_eq!((s, v["hits"][0]["id"].as_str()), (200, Some("a")));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    for t in slow {
        t.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let cut = cut_after.lock().unwrap();
    assert_eq!(cut.len(), 50);
    for (i, after) in cut.iter() {
        // A write fails once the server has closed (the first write after the close may
        // still succeed): cut between the deadline and a few seconds after it.
        let secs = after.as_secs_f64();
        assert!(
            secs >= deadline - 0.5 && secs <= deadline + 4.0,
            "slow client {i} cut after {secs:.1} s"
        );
    }
}

/// SIGTERM while clients write: the server exits 0 within the grace bound, and every write it
/// acknowledged is in the index.
#[test]
fn sigterm_under_load_keeps_every_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let mut srv = serve(&dir, &["--threads", "4"], &[]);
    let a = srv.addr.clone();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (a, acked) = (a.clone(), acked.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    let id = format!("w{w}-{i}");
                    let body = json!({ "passages": [row(&id, [1.0, w as f32, i as f32, 0.0])] }).to_string();
                    let Ok(mut s) = TcpStream::connect(&a) else { break };
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let sent = write!(s, "POST /passages HTTP/1.1\r\nHost: {a}\r\n{JSON}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    let mut out = Vec::new();
                    if sent.is_err() || s.read_to_end(&mut out).is_err() || out.is_empty() {
                        break;
                    }
                    if parse_response(&out).0 == 200 {
                        acked.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let before = acked.lock().unwrap().len();
    assert!(before > 0, "no write was acknowledged under load");
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
    let signalled = Instant::now();
    let status = loop {
        if let Some(s) = srv.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "no exit within the grace bound"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for t in writers {
        t.join().unwrap();
    }
    assert!(status.success(), "{status:?}");
    let index = Index::open(&dir).unwrap();
    let acked = acked.lock().unwrap();
    for id in acked.iter() {
        assert!(
            index.get(id).unwrap().is_some(),
            "acknowledged {id} is missing"
        );
    }
    println!(
        "{} writes acknowledged, all present; exit {:?} after SIGTERM",
        acked.len(),
        signalled.elapsed()
    );
}

/// A self-signed certificate for `localhost`, written as PEM files.
fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

#[test]
fn tls_serves_https_and_refuses_clear_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let (cert, key, der) = certificate(tmp.path());
    let token = "a-token-of-sufficient-length";
    let srv = serve(
        &dir,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[("XQDB_SERVE_TOKEN", token)],
    );
    let a = srv.addr.clone();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .unwrap();
    #[allow(deprecated)] // the server's provider; see src/server/transport.rs
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(&a).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(tls, "GET /stats HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let (st, _, v) = parse_response(&out);
    assert_eq!((st, v["passages"].as_u64()), (200, Some(0)), "{v}");
    // Clear text on the TLS port gets no HTTP answer.
    let mut s = TcpStream::connect(&a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        !out.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

/// Off loopback without TLS the token would travel in clear text: a warning names the flags.
/// A missing certificate is an error that names the file.
#[test]
fn clear_text_off_loopback_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args(["serve", dir.to_str().unwrap(), "--addr", "0.0.0.0:0"])
        .env("XQDB_SERVE_TOKEN", "a-token-of-sufficient-length")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on http://"), "{line}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-cert") && err.contains("--tls-key"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_xqdb"))
        .args([
            "serve",
            dir.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}

#[test]
fn the_access_log_has_a_line_per_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let mut srv = serve(&dir, &["--log", "json"], &[]);
    let a = srv.addr.clone();
    assert_eq!(raw(&a, "GET", "/health", "", "").0, 200);
    assert_eq!(raw(&a, "GET", "/nowhere", "", "").0, 404);
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
    srv.child.wait().unwrap();
    let mut err = String::new();
    srv.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let lines: Vec<Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "xqdb::access")
        .collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert_eq!(lines[0]["fields"]["path"], "/health");
    assert_eq!(lines[0]["fields"]["status"], 200);
    assert_eq!(lines[1]["fields"]["status"], 404);
}

/// A head over 16 KiB is refused with 431 and the server goes on answering.
#[test]
fn an_oversized_head_is_refused_with_431() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    vectors_index(&dir);
    let srv = serve(&dir, &[], &[]);
    let a = srv.addr.as_str();
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let big = "x".repeat(20 << 10);
    let _ = write!(
        s,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n"
    );
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        out.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&out[..out.len().min(80)])
    );
    assert_eq!(raw(a, "GET", "/health", "", "").0, 200);
}
