//! `GET /metrics` over HTTP/1.1 for Prometheus: a small blocking server on its own thread (a
//! scrape every few seconds needs no more).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Metrics;
use crate::dataflow::time::now_ms;

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
    let listener = TcpListener::bind(listen_addr(addr))
        .with_context(|| format!("metrics: cannot listen on `{addr}`"))?;
    let local = listener.local_addr()?;
    let started = now_ms();
    std::thread::Builder::new()
        .name("tickflow-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &metrics, started) {
                    tracing::debug!(error = %e, "metrics request");
                }
            }
        })?;
    tracing::info!(url = %format!("http://{local}/metrics"), "serving Prometheus metrics");
    Ok(local)
}

fn answer(stream: TcpStream, metrics: &Metrics, started: i64) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // A request is a line and a few headers: a client cannot make us buffer more.
    let mut reader = BufReader::new(std::io::Read::take(stream.try_clone()?, 16 * 1024));
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            super::prometheus::render(metrics, started),
        ),
        ("GET", "/") | ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        _ => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
