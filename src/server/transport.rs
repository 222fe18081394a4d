//! The transport: hyper's HTTP/1.1 (keep-alive, `100-continue`, header limits) on a small
//! tokio runtime owned by the server, with TLS (rustls) when configured.
//!
//! Bounds: at most `max_connections` connections are served at once; one beyond that is
//! answered 503 and closed (and beyond a further [`REFUSING`] being answered, closed at once),
//! so a flood costs neither tasks nor memory without bound. Each connection must send a
//! request's head within the request deadline of opening or of its previous answer (hyper's
//! header read timeout, so an idle keep-alive connection is closed too); the TLS handshake has
//! the same deadline; the body and the answer have it again (the router's timeout layer, 408).

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections over the limit being told 503 at once (each reads the request it was sent, for
/// at most [`REFUSE_READ`], so that closing does not reset the connection before the client
/// has read the answer); beyond them a connection is closed unanswered.
const REFUSING: usize = 2048;
/// How long a refused connection may take to send its request's head.
const REFUSE_READ: Duration = Duration::from_millis(500);
/// Largest request head (request line and headers); 431 above it.
const MAX_HEAD_BYTES: usize = 16 << 10;
/// How often the accept loop looks at the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// Transport settings.
pub(super) struct Settings {
    pub max_connections: usize,
    pub deadline: Duration,
    pub grace: Duration,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves `app` on `listener` until `shutdown` is set; then stops accepting, lets each
/// connection finish the request it is answering (for at most `grace`) and returns.
pub(super) async fn serve(
    listener: std::net::TcpListener,
    app: axum::Router,
    settings: Settings,
    shutdown: &AtomicBool,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let refusing = Arc::new(Semaphore::new(REFUSING));
    let mut tick = tokio::time::interval(SHUTDOWN_POLL);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.deadline)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let builder = Arc::new(builder);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    // Out of descriptors, a connection reset before accept: pause, keep serving.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    if let Ok(permit) = refusing.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            busy(stream).await;
                            drop(permit);
                        });
                    }
                    continue;
                };
                let service = TowerToHyperService::new(app.clone());
                let (builder, tls, deadline) = (builder.clone(), settings.tls.clone(), settings.deadline);
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    match tls {
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            let _ = watcher.watch(conn).await;
                        }
                        Some(acceptor) => {
                            let Ok(Ok(stream)) =
                                tokio::time::timeout(deadline, acceptor.accept(stream)).await
                            else {
                                return;
                            };
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            let _ = watcher.watch(conn).await;
                        }
                    }
                    drop(slot);
                });
            }
            _ = tick.tick() => {
                if shutdown.load(Ordering::SeqCst) {
                    break;
                }
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(settings.grace, graceful.shutdown()).await;
    Ok(())
}

/// Answers 503 to a connection over the limit: reads the head it sent first (briefly, at most
/// 16 KiB), so that closing does not reset the connection before the client reads the answer.
async fn busy<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut sink = [0u8; 4096];
    let read_head = async {
        let (mut seen, mut tail) = (0usize, [0u8; 4]);
        while seen < MAX_HEAD_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen += n;
                    // The head ends at the first blank line (possibly split across reads).
                    let mut window = tail.to_vec();
                    window.extend_from_slice(&sink[..n]);
                    if window.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                    let keep = window.len().min(4);
                    tail = [0; 4];
                    tail[4 - keep..].copy_from_slice(&window[window.len() - keep..]);
                }
            }
        }
    };
    let _ = tokio::time::timeout(REFUSE_READ, read_head).await;
    let body = br#"{"error":"the server is busy; try again"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(Duration::from_millis(200), write)
        .await
        .is_ok()
    {
        let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(Duration::from_millis(100), drain).await;
    }
}

/// The TLS acceptor for a PEM certificate chain and private key.
pub(super) fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use tokio_rustls::rustls;
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let cert_pem = read(cert)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key_pem = read(key)?;
    let key_der = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key in it", key.display()))?;
    // ring builds with a C compiler alone; its provider lacks post-quantum key exchange
    // (which aws-lc-rs has, at the cost of a much heavier build).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
