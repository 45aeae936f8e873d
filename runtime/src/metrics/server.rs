//! `GET /metrics` over HTTP/1.1 for Prometheus (and `/healthz`): a small async server on its own
//! thread and single-threaded tokio runtime. Connections are served concurrently, each must send
//! its request head within [`HEAD_DEADLINE`] (a client trickling bytes is cut off), and at most
//! [`MAX_CONNECTIONS`] are open at once: when they are all taken, the oldest connection still
//! waiting for its request head is closed to make room (one that is being answered never is),
//! so idle or slow clients can never keep a probe or a scrape from being answered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Metrics;
use crate::base::time::now_ms;

/// How long a client has to send its whole request line and headers.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// How long writing a response may take.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// The largest request head read (a request is a line and a few headers).
const MAX_HEAD: usize = 16 * 1024;

/// `HOST:PORT` as users write it, `:PORT` meaning every interface.
pub fn listen_addr(addr: &str) -> String {
    match addr.trim().strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.trim().to_string(),
    }
}

/// Whether `addr` (as users write it) names a socket address.
pub fn check_addr(addr: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    match listen_addr(addr).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(_)) => Ok(()),
        _ => Err(format!(
            "`{addr}` is not an address to listen on (HOST:PORT, e.g. 127.0.0.1:9464, or :9464)"
        )),
    }
}

/// Listens on `addr` and serves the metrics until the process exits. Returns the address bound
/// (useful with port 0).
pub fn serve(addr: &str, metrics: Arc<Metrics>) -> Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(listen_addr(addr))
        .with_context(|| format!("metrics: cannot listen on `{addr}`"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("metrics: starting the HTTP server")?;
    let started = now_ms();
    std::thread::Builder::new()
        .name("tickflow-metrics".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "metrics: cannot serve");
                        return;
                    }
                };
                let open = Arc::new(Mutex::new(Open::default()));
                let mut next_id: u64 = 0;
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    if !lock(&open).make_room() {
                        drop(stream); // every connection is being answered: close at once
                        continue;
                    }
                    next_id += 1;
                    let id = next_id;
                    let metrics = Arc::clone(&metrics);
                    let mine = Arc::clone(&open);
                    // NB: registered before the task can run (single-threaded runtime), so a
                    // finished task's removal always finds it.
                    let task = tokio::spawn(async move {
                        let _gone = Gone(Arc::clone(&mine), id);
                        if let Err(e) =
                            answer(stream, &metrics, started, || lock(&mine).answering(id)).await
                        {
                            tracing::debug!(error = %e, "metrics request");
                        }
                    });
                    lock(&open).waiting.insert(id, task.abort_handle());
                }
            });
        })?;
    tracing::info!(url = %format!("http://{local}/metrics"), "serving Prometheus metrics");
    Ok(local)
}

/// The open connections: those still waiting for their request head (by age: ids grow) and
/// those being answered.
#[derive(Default)]
struct Open {
    waiting: BTreeMap<u64, tokio::task::AbortHandle>,
    answering: std::collections::BTreeSet<u64>,
}

impl Open {
    /// Makes room for one more connection: at the cap, closes the oldest one still waiting for
    /// its request head. False when every connection is being answered.
    fn make_room(&mut self) -> bool {
        if self.waiting.len() + self.answering.len() < MAX_CONNECTIONS {
            return true;
        }
        match self.waiting.pop_first() {
            Some((_, oldest)) => {
                oldest.abort();
                true
            }
            None => false,
        }
    }
    /// Connection `id` has sent its request head: it is not closed to make room any more.
    fn answering(&mut self, id: u64) {
        if self.waiting.remove(&id).is_some() {
            self.answering.insert(id);
        }
    }
}

fn lock(open: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a connection out of [`Open`] when its task ends (or is aborted).
struct Gone(Arc<Mutex<Open>>, u64);

impl Drop for Gone {
    fn drop(&mut self) {
        let mut open = lock(&self.0);
        open.waiting.remove(&self.1);
        open.answering.remove(&self.1);
    }
}

/// Reads the request head (until an empty line), at most [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(head);
        }
        head.extend_from_slice(&buf[..n]);
        if memchr::memmem::find(&head, b"\r\n\r\n").is_some()
            || memchr::memmem::find(&head, b"\n\n").is_some()
            || head.len() >= MAX_HEAD
        {
            return Ok(head);
        }
    }
}

/// Answers one connection; `headed` is called once its request head has come.
async fn answer(
    mut stream: tokio::net::TcpStream,
    metrics: &Metrics,
    started: i64,
    headed: impl FnOnce(),
) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_DEADLINE, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request head not received in time",
            ));
        }
    };
    headed();
    let request = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let request = String::from_utf8_lossy(request);
    let mut parts = request.split_whitespace();
    let (method, path, version) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let path = path.split('?').next().unwrap_or("");
    let known = matches!(path, "/" | "/healthz" | "/readyz" | "/metrics");
    // HEAD is answered as GET, without the body.
    let head_only = method == "HEAD";
    let (status, ctype, body) = match (if head_only { "GET" } else { method }, path) {
        _ if !version.starts_with("HTTP/1.")
            || parts.next().is_some()
            || !path.starts_with('/') =>
        {
            (
                "400 Bad Request",
                "text/plain",
                "not an HTTP/1.x request line\n".to_string(),
            )
        }
        (m, _) if known && m != "GET" => (
            "405 Method Not Allowed\r\nAllow: GET, HEAD",
            "text/plain",
            "use GET\n".to_string(),
        ),
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            super::prometheus::render(metrics, started),
        ),
        ("GET", "/") | ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if metrics.ready.load(std::sync::atomic::Ordering::Acquire) => {
            ("200 OK", "text/plain", "ready\n".to_string())
        }
        ("GET", "/readyz") => (
            "503 Service Unavailable",
            "text/plain",
            "joining the cluster\n".to_string(),
        ),
        _ => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body.as_str() }
    );
    match tokio::time::timeout(WRITE_DEADLINE, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "response not taken in time",
        )),
    }
}
