//! The plain-HTTP side of the listener: telling a request from a WebSocket upgrade, and
//! the venue's REST depth endpoint (Binance `/api/v3/depth?symbol=…&limit=…`, USD-M
//! `/fapi/v1/depth`, COIN-M `/dapi/v1/depth`), answered by the market and rate-limited per
//! second with `429` and `Retry-After`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::market::Control;
use crate::Shared;

/// The REST request limit, per one-second window (shared by all connections).
#[derive(Default)]
pub(crate) struct RestLimiter {
    /// The window's start and the requests counted in it.
    window: std::sync::Mutex<(Option<Instant>, u32)>,
}

impl RestLimiter {
    /// `true` if a request may be served now.
    fn admit(&self, per_second: u32) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match w.0 {
            Some(t) if now.duration_since(t) < Duration::from_secs(1) => {
                w.1 += 1;
                w.1 <= per_second
            }
            _ => {
                *w = (Some(now), 1);
                true
            }
        }
    }
}

/// Reads an HTTP request head without consuming it.
pub(crate) async fn peek_head(stream: &TcpStream) -> Result<String> {
    let mut buf = vec![0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        stream.readable().await?;
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            bail!("connection closed before a request");
        }
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
        if n == buf.len() || Instant::now() > deadline {
            bail!("request head too long or too slow");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Answers one plain HTTP request whose head (`head_len` bytes, without the blank
/// line) asked for `path`, then closes the connection.
pub(crate) async fn serve_http(
    mut stream: TcpStream,
    head_len: usize,
    path: &str,
    shared: &Shared,
) -> Result<()> {
    let mut sink = vec![0u8; head_len + 4];
    stream.read_exact(&mut sink).await?;
    let (status, body, extra) = rest_response(path, shared).await;
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await.ok();
    Ok(())
}

/// Status, body and extra header lines of a REST answer.
///
/// The counters are for reports: `Relaxed`.
async fn rest_response(path: &str, shared: &Shared) -> (&'static str, String, String) {
    let (stats, limiter) = (&shared.stats, &shared.rest);
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let Some(rest) = shared.sim.rest().filter(|r| r.path == route) else {
        return (
            "404 Not Found",
            r#"{"code":-1,"msg":"not found"}"#.into(),
            String::new(),
        );
    };
    if !limiter.admit(shared.opts.rest_per_second) {
        stats.rest_limited.fetch_add(1, Ordering::Relaxed);
        return (
            "429 Too Many Requests",
            r#"{"code":-1003,"msg":"Too many requests."}"#.into(),
            "Retry-After: 1\r\n".into(),
        );
    }
    let mut symbol = None;
    let mut limit = 100usize;
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("symbol", s)) => symbol = Some(s.to_ascii_uppercase()),
            Some(("limit", l)) => limit = l.parse().unwrap_or(100).clamp(1, rest.max_limit),
            _ => {}
        }
    }
    let Some(symbol) = symbol else {
        return (
            "400 Bad Request",
            r#"{"code":-1102,"msg":"Mandatory parameter 'symbol' was not sent."}"#.into(),
            String::new(),
        );
    };
    let (reply, rx) = oneshot::channel();
    if shared
        .ctrl
        .send(Control::Depth {
            symbol,
            limit,
            reply,
        })
        .await
        .is_err()
    {
        return ("503 Service Unavailable", "{}".into(), String::new());
    }
    match rx.await.ok().flatten() {
        Some(body) => {
            stats.rest.fetch_add(1, Ordering::Relaxed);
            ("200 OK", body, String::new())
        }
        None => (
            "400 Bad Request",
            r#"{"code":-1121,"msg":"Invalid symbol."}"#.into(),
            String::new(),
        ),
    }
}
