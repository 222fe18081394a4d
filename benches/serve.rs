//! The HTTP server against the transport it had before, side by side in one run
//! (`make bench-serve`; `cargo bench --bench serve --features legacy-server`). Each server runs
//! in a child process of this benchmark (so that its threads and peak memory are its own),
//! with the default settings (4 workers; a queue of 256 for the new one, 64 for the old):
//!
//! 1. latency of a vector search on a 10-row index: a new connection per request (both), and
//!    one kept-alive connection (the new server; the old one closes after each answer);
//! 2. load: 200 concurrent clients × 50 searches each on a 20,000 × 384 index (keep-alive
//!    where the server has it); a 503 is retried after 5 ms; throughput counts answered
//!    searches;
//! 3. a flood of 2,000 connections at once, each asking `/health`: how many got 200, 503, or
//!    no answer (an error).
//!
//! Writes `target/bench-serve.json`. `XQDB_BENCH_SERVE_QUICK=1` runs a tenth of each.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const JSON: &str = "Content-Type: application/json\r\n";

/// Child mode: `serve new|legacy DIR`; prints the address, serves until stdin closes.
fn child(kind: &str, dir: &str) {
    let index = xqdb::Index::open(dir).expect("the index");
    // The old transport's default queue was 64 connections.
    let queue = if kind == "legacy" { 64 } else { 256 };
    let options = xqdb::server::ServerOptions {
        queue,
        ..Default::default()
    };
    let server = xqdb::server::Server::bind(index, "127.0.0.1:0", options).expect("bind");
    println!("{}", server.addr());
    std::io::stdout().flush().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        s.store(true, Ordering::SeqCst);
    });
    if kind == "legacy" {
        server.run_legacy(&stop);
    } else {
        server.run(&stop);
    }
    server.close();
}

struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(kind: &str, dir: &Path) -> Served {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--child", kind, dir.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Served {
            child,
            addr: line.trim().to_string(),
        }
    }

    /// (threads, peak RSS in KiB) of the server process.
    fn threads_and_peak(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("Threads:"), field("VmHWM:"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Reads one answer (with a Content-Length); the status, or None when the connection ended.
fn read_answer(r: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut status = None;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if status.is_none() {
            status = line.split(' ').nth(1)?.parse().ok();
        } else if line == "\r\n" {
            break;
        } else if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    status
}

fn search_request(addr: &str, body: &str, keep_alive: bool) -> String {
    let close = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    format!(
        "POST /search HTTP/1.1\r\nHost: {addr}\r\n{JSON}{close}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One search on a new connection: its status, or None.
fn once(addr: &str, request: &str) -> Option<u16> {
    let s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.set_nodelay(true).ok()?;
    let mut w = s.try_clone().ok()?;
    w.write_all(request.as_bytes()).ok()?;
    read_answer(&mut BufReader::new(s))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Median and p99 (ms) of `n` vector searches, on new connections or one kept-alive one.
fn latency(addr: &str, n: usize, keep_alive: bool) -> (f64, f64) {
    let request = search_request(addr, r#"{"vector":[1,0,0,0],"k":3}"#, keep_alive);
    let mut times = Vec::with_capacity(n);
    if keep_alive {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        for i in 0..n + n / 10 {
            let t = Instant::now();
            w.write_all(request.as_bytes()).unwrap();
            assert_eq!(read_answer(&mut r), Some(200));
            if i >= n / 10 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    } else {
        for i in 0..n + n / 10 {
            let t = Instant::now();
            assert_eq!(once(addr, &request), Some(200));
            if i >= n / 10 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    times.sort_by(f64::total_cmp);
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

#[derive(Default, Debug)]
struct Load {
    seconds: f64,
    searches_per_s: f64,
    busy_503: usize,
    errors: usize,
    threads: u64,
    peak_rss_kib: u64,
}

/// `clients` threads each completing `each` searches (503s retried after 5 ms).
fn load(server: &Served, clients: usize, each: usize, dim: usize, keep_alive: bool) -> Load {
    let (busy, errors) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, busy, errors) = (server.addr.clone(), busy.clone(), errors.clone());
            std::thread::spawn(move || {
                let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
                let mut done = 0;
                let mut attempt = 0u64;
                while done < each {
                    attempt += 1;
                    let q: Vec<f32> = (0..dim)
                        .map(|d| {
                            (((c * 7919 + d * 104_729) as u64 + attempt) % 1000) as f32 / 1000.0
                                - 0.5
                        })
                        .collect();
                    let body = serde_json::json!({ "vector": q, "k": 10 }).to_string();
                    let request = search_request(&addr, &body, keep_alive);
                    let status = if keep_alive {
                        if conn.is_none() {
                            conn = TcpStream::connect(&addr).ok().map(|s| {
                                s.set_nodelay(true).unwrap();
                                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                                (s.try_clone().unwrap(), BufReader::new(s))
                            });
                        }
                        let st = conn.as_mut().and_then(|(w, r)| {
                            w.write_all(request.as_bytes()).ok()?;
                            read_answer(r)
                        });
                        if st != Some(200) {
                            conn = None;
                        }
                        st
                    } else {
                        once(&addr, &request)
                    };
                    match status {
                        Some(200) => done += 1,
                        Some(503) => {
                            busy.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    let (threads, peak) = server.threads_and_peak();
    Load {
        seconds,
        searches_per_s: (clients * each) as f64 / seconds,
        busy_503: busy.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        threads,
        peak_rss_kib: peak,
    }
}

/// `n` connections at once, each sending `GET /health` as soon as it is open; then 16 threads
/// read the answers: (200s, 503s, no answer).
fn flood(addr: &str, n: usize) -> (usize, usize, usize) {
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let opened: Vec<Option<TcpStream>> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(request.as_bytes()).ok()?;
            Some(s)
        })
        .collect();
    let chunks: Vec<Vec<Option<TcpStream>>> = {
        let mut it = opened.into_iter();
        (0..16)
            .map(|_| it.by_ref().take(n.div_ceil(16)).collect())
            .collect()
    };
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|conns| {
            std::thread::spawn(move || {
                let mut counts = (0, 0, 0);
                for s in conns {
                    let st = s.and_then(|s| {
                        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
                        read_answer(&mut BufReader::new(s))
                    });
                    match st {
                        Some(200) => counts.0 += 1,
                        Some(503) => counts.1 += 1,
                        _ => counts.2 += 1,
                    }
                }
                counts
            })
        })
        .collect();
    threads.into_iter().fold((0, 0, 0), |a, t| {
        let c = t.join().unwrap();
        (a.0 + c.0, a.1 + c.1, a.2 + c.2)
    })
}

fn make_index(dir: &Path, rows: usize, dim: usize) {
    let index = xqdb::Index::builder()
        .dim(dim)
        .metric(xqdb::Metric::Dot)
        .create(dir)
        .unwrap();
    let mut w = index.writer().unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..rows {
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        w.insert(
            xqdb::Passage::new(format!("p{i}"), format!("passage {i}")),
            &v,
        )
        .unwrap();
    }
    w.commit().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1], &args[i + 2]);
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var("XQDB_BENCH_SERVE_QUICK").is_ok_and(|v| v == "1");
    let scale = |n: usize| if quick { n.div_ceil(10) } else { n };
    let tmp = tempfile::tempdir().unwrap();
    let (small, big) = (tmp.path().join("small"), tmp.path().join("big"));
    make_index(&small, 10, 4);
    make_index(&big, 20_000, 384);
    let n = scale(2000);
    let mut report = serde_json::Map::new();

    println!(
        "## Latency: a vector search on a 10-row index ({n} requests, after {} warm-up)",
        n / 10
    );
    println!("| server | connection | median ms | p99 ms |\n|---|---|---|---|");
    for kind in ["legacy", "new"] {
        let s = Served::start(kind, &small);
        let modes: &[bool] = if kind == "new" {
            &[false, true]
        } else {
            &[false]
        };
        for &keep in modes {
            let (median, p99) = latency(&s.addr, n, keep);
            let conn = if keep {
                "kept alive"
            } else {
                "new per request"
            };
            println!("| {kind} | {conn} | {median:.3} | {p99:.3} |");
            report.insert(
                format!(
                    "latency_{kind}_{}",
                    if keep { "keepalive" } else { "new_connection" }
                ),
                serde_json::json!({ "median_ms": median, "p99_ms": p99 }),
            );
        }
    }

    let (clients, each) = (200, scale(50));
    println!("\n## Load: {clients} concurrent clients x {each} searches, 20,000 x 384 index");
    println!("| server | connections | s | searches/s | 503s (retried) | errors | server threads | server peak RSS MiB |\n|---|---|---|---|---|---|---|---|");
    let mut rates = Vec::new();
    for kind in ["legacy", "new"] {
        let s = Served::start(kind, &big);
        let keep = kind == "new";
        let l = load(&s, clients, each, 384, keep);
        println!(
            "| {kind} | {} | {:.2} | {:.0} | {} | {} | {} | {:.1} |",
            if keep {
                "kept alive"
            } else {
                "new per request"
            },
            l.seconds,
            l.searches_per_s,
            l.busy_503,
            l.errors,
            l.threads,
            l.peak_rss_kib as f64 / 1024.0
        );
        rates.push(l.searches_per_s);
        report.insert(format!("load_{kind}"), serde_json::json!(format!("{l:?}")));
    }
    println!("new / legacy throughput: {:.2}x", rates[1] / rates[0]);

    let conns = scale(2000);
    println!("\n## Flood: {conns} connections at once, each GET /health");
    println!("| server | 200 | 503 | no answer | server threads | server peak RSS MiB |\n|---|---|---|---|---|---|");
    for kind in ["legacy", "new"] {
        let s = Served::start(kind, &small);
        let (ok, busy, none) = flood(&s.addr, conns);
        let (threads, peak) = s.threads_and_peak();
        println!(
            "| {kind} | {ok} | {busy} | {none} | {threads} | {:.1} |",
            peak as f64 / 1024.0
        );
        report.insert(
            format!("flood_{kind}"),
            serde_json::json!({ "ok": ok, "busy_503": busy, "no_answer": none, "threads": threads, "peak_rss_kib": peak }),
        );
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-serve.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nwrote {}", out.display());
}
