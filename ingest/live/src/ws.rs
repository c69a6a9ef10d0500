//! What both venues' WebSocket sessions share: connecting with the size limits, sorting
//! each read ([`incoming`]), idle detection and pings ([`Keepalive`]), and the reconnect
//! loop with back-off and the circuit breaker around one session at a time.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::SinkExt;
use hermes_ingest::{EventSink, Venue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::breaker::Breaker;
use crate::config::ConnPolicy;
use crate::pipeline::Pipeline;
use crate::stats::VenueStats;

/// A client WebSocket, plain or TLS.
pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How often a session checks for `done`, idleness and a due ping.
pub(crate) const TICK: Duration = Duration::from_millis(20);

fn ws_config(p: &ConnPolicy) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(p.max_frame_bytes))
        .max_frame_size(Some(p.max_frame_bytes))
}

async fn connect(url: &str, p: &ConnPolicy) -> Result<Ws> {
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_with_config(url, Some(ws_config(p)), true),
    )
    .await
    .with_context(|| format!("connecting to {url}: timed out"))?
    .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}

/// Sleeps until `t` or until `done`.
async fn sleep_until(t: Instant, done: &AtomicBool) {
    while Instant::now() < t {
        // Relaxed: see `supervise`.
        if done.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep((t - Instant::now()).min(TICK)).await;
    }
}

/// How one session (one connection) ended.
pub(crate) enum SessionEnd {
    /// We were asked to stop.
    Done,
    /// The connection failed or ended.
    Lost(String),
}

/// The connection ended because of `e`.
pub(crate) fn lost(e: impl std::fmt::Display) -> SessionEnd {
    SessionEnd::Lost(e.to_string())
}

/// What one WebSocket read gave.
pub(crate) enum Incoming {
    /// A frame to decode.
    Frame(Utf8Bytes),
    /// A control message (ping, pong, …): the connection is alive, nothing to decode.
    Other,
    /// A binary message that is not UTF-8 text: ignored.
    Skip,
}

/// Sorts one read: a frame (text, or binary UTF-8 where `binary_text`), a control
/// message, or the end of the session (counting messages over the size limit).
pub(crate) fn incoming(
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    venue: Venue,
    binary_text: bool,
    vs: &VenueStats,
    p: &ConnPolicy,
) -> Result<Incoming, SessionEnd> {
    match msg {
        None => Err(lost("closed by the server")),
        Some(Err(e)) => {
            if matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)) {
                // Relaxed: a counter for reports.
                vs.oversize.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    venue = venue.name(),
                    "message over the {}-byte limit; reconnecting",
                    p.max_frame_bytes
                );
            }
            Err(lost(e))
        }
        Some(Ok(Message::Text(t))) => Ok(Incoming::Frame(t)),
        Some(Ok(Message::Binary(b))) if binary_text => {
            Ok(Utf8Bytes::try_from(b).map_or(Incoming::Skip, Incoming::Frame))
        }
        Some(Ok(Message::Close(f))) => Err(lost(format!("closed by the server: {f:?}"))),
        Some(Ok(_)) => Ok(Incoming::Other),
    }
}

/// Idle detection and pings of one connection.
pub(crate) struct Keepalive {
    last_ping: Instant,
    last_msg: Instant,
}

impl Keepalive {
    pub(crate) fn new() -> Keepalive {
        Keepalive {
            last_ping: Instant::now(),
            last_msg: Instant::now(),
        }
    }

    /// Notes a read: a frame or a control message shows the connection is alive.
    pub(crate) fn heard(&mut self, read: &Incoming) {
        if !matches!(read, Incoming::Skip) {
            self.last_msg = Instant::now();
        }
    }

    /// On every [`TICK`]: closes the connection if the run is `done`, ends it if it
    /// has been idle past the limit, and pings when due.
    pub(crate) async fn tick(
        &mut self,
        ws: &mut Ws,
        p: &ConnPolicy,
        done: &AtomicBool,
    ) -> Result<(), SessionEnd> {
        // Relaxed: see `supervise`.
        if done.load(Ordering::Relaxed) {
            let _ = ws.close(None).await;
            return Err(SessionEnd::Done);
        }
        if self.last_msg.elapsed() > p.idle_timeout {
            return Err(lost(format!("no message for {:?}", p.idle_timeout)));
        }
        if self.last_ping.elapsed() >= p.ping_interval {
            self.last_ping = Instant::now();
            ws.send(Message::Ping(Vec::new().into()))
                .await
                .map_err(lost)?;
        }
        Ok(())
    }
}

/// One venue's connection life: back-off and circuit breaker around `session`, which
/// runs one connection until it ends; a lost connection marks the venue's books stale.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn reconnect_loop<S: EventSink>(
    venue: Venue,
    url: &str,
    symbols: &[String],
    p: &ConnPolicy,
    ctx: &RefCell<Pipeline<'_, S>>,
    vs: &VenueStats,
    done: &AtomicBool,
    mut session: impl AsyncFnMut(Ws, u16) -> SessionEnd,
) {
    let name = venue.name();
    let mut breaker = Breaker::new(venue as u64);
    let mut first = true;
    // Relaxed (all of `done` and `vs` here): see `supervise`; the counters are for
    // reports.
    while !done.load(Ordering::Relaxed) {
        sleep_until(breaker.next_attempt, done).await;
        if done.load(Ordering::Relaxed) {
            break;
        }
        breaker.attempt(name);
        vs.breaker.store(breaker.state as u8, Ordering::Relaxed);
        let started = Instant::now();
        let end = match connect(url, p).await {
            Err(e) => lost(crate::error_chain(&e)),
            Ok(ws) => {
                let conn = ctx.borrow_mut().new_conn();
                vs.connected.store(true, Ordering::Relaxed);
                breaker.connected(name);
                vs.breaker.store(breaker.state as u8, Ordering::Relaxed);
                if !first {
                    vs.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                first = false;
                tracing::info!(venue = name, conn, %url, "connected");
                let end = session(ws, conn).await;
                vs.connected.store(false, Ordering::Relaxed);
                if matches!(end, SessionEnd::Lost(_)) {
                    ctx.borrow_mut().venue_lost(venue, symbols);
                }
                end
            }
        };
        match end {
            SessionEnd::Done => break,
            SessionEnd::Lost(why) => {
                vs.failures.fetch_add(1, Ordering::Relaxed);
                if started.elapsed() >= p.healthy_after {
                    breaker.success(name);
                }
                tracing::warn!(venue = name, "connection lost: {why}");
                breaker.failure(p, name);
                vs.breaker.store(breaker.state as u8, Ordering::Relaxed);
            }
        }
    }
}
