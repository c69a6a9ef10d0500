//! # hermes-sim
//!
//! The exchange simulator and the synthetic market generator, for tests, benchmarks
//! and the demo: no network access needed to exercise the live ingest end to end.
//!
//! The simulator serves a capture or a synthetic market over a real local WebSocket,
//! speaking one venue's protocol, with fault injection:
//!
//! | venue | client subscribes | book snapshot | a `gap` drops |
//! |---|---|---|---|
//! | `coinbase` (Advanced Trade) | `subscribe` message, one `channel` | `l2_data` snapshot on each `level2` subscribe | any frame (per-connection `sequence_num`) |
//! | `coinbase-exchange` | `subscribe`/`unsubscribe` with `channels` (names or `{"name","product_ids"}`) | `snapshot` on each `level2`/`level2_batch` subscribe; `last_match` on `matches` | a `match` (`trade_id` jumps by 2); level-2 frames have no sequence, so never those |
//! | `binance` (spot) | `/stream?streams=…` | REST `/api/v3/depth` on the same port | a depth diff (`U` ≠ previous `u` + 1) |
//! | `binance-usdm` | `/stream?streams=…` | REST `/fapi/v1/depth` | a depth diff (`pu` ≠ previous `u`) |
//! | `binance-coinm` | `/stream?streams=…` | REST `/dapi/v1/depth` | a depth diff (`pu` ≠ previous `u`) |
//!
//! One *market* task owns the books and walks the source; it is the single sequencer of
//! everything clients see. A subscription (Coinbase) or a REST snapshot request
//! (Binance) is answered by the market between two frames, so a snapshot is exactly
//! consistent with the stream that follows it, and a client that resyncs correctly ends
//! with exactly the capture's books. A futures snapshot's `lastUpdateId` is the `U` of
//! the next diff the market will send (it reads ahead in the source for it), so the
//! first diff a client applies after it straddles it, as Binance documents. Each
//! connection has its own task that stamps frames (Coinbase Advanced Trade's
//! `sequence_num`) and injects faults.
//!
//! What differs between venues is one module each behind one trait (`venue::SimVenue`:
//! routing a source frame, reading a client's subscriptions from its URL or messages, the
//! answer to a subscription, the REST body), registered in one table (`venue::of`).
//!
//! ## Main types
//!
//! - [`SimOptions`]: the venue to speak, the [`SimSource`] of frames, the [`Pacing`],
//!   the [`Fault`]s to inject (parsed from `KIND=RATE`, `KIND=every:N` or
//!   `KIND=at:N[,M…]`) and the REST rate limit.
//! - [`bind`] then [`serve`]: listen (port 0 picks a free port) and run, counting into
//!   [`SimStats`].
//! - [`synth`]: the deterministic synthetic market ([`synth::Synth`]) of every venue above,
//!   which also feeds benchmarks and generated captures (`hermes generate`).
//! - [`endpoints`]: what to tell a client of a venue beyond `ws://ADDR` (the `hermes sim`
//!   banner).
//!
//! ## Example
//!
//! A synthetic Coinbase market on a free loopback port, with a gap every 100 frames,
//! served for 50 ms with nobody connecting:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use hermes_ingest::Venue;
//! use hermes_sim::{Pacing, SimOptions, SimSource, SimStats};
//!
//! let opts = SimOptions {
//!     venue: Venue::Coinbase,
//!     source: SimSource::Synthetic { instruments: 2, depth: 10, seed: 7, frames: Some(1_000) },
//!     listen: "127.0.0.1:0".parse()?,
//!     pacing: Pacing::Rate(1_000.0),
//!     faults: vec!["gap=every:100".parse()?],
//!     oversize_bytes: 1 << 20,
//!     stall: Duration::from_millis(100),
//!     seed: 1,
//!     rest_per_second: 10,
//! };
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let listener = hermes_sim::bind(opts.listen).await?;
//!     assert_ne!(listener.local_addr()?.port(), 0);
//!     let stats = Arc::new(SimStats::default());
//!     // `serve` runs until the process ends; stop it after 50 ms.
//!     let serving = hermes_sim::serve(listener, opts, stats.clone());
//!     assert!(tokio::time::timeout(Duration::from_millis(50), serving).await.is_err());
//!     anyhow::Ok(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use hermes_ingest::Venue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

mod connection;
mod faults;
mod feed;
mod market;
mod options;
mod rest;
pub mod synth;
#[cfg(test)]
mod tests;
mod venue;

pub use options::{Fault, FaultKind, Pacing, SimOptions, SimSource, Trigger};

use feed::Feed;
use market::{Control, Market};
use rest::RestLimiter;
use venue::{Outgoing, SimVenue};

/// A server-side WebSocket.
type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Counters the simulator keeps.
#[derive(Debug, Default)]
pub struct SimStats {
    /// Source frames walked.
    pub frames: AtomicU64,
    /// Frames sent to clients (all connections).
    pub sent: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Faults injected.
    pub faults: AtomicU64,
    /// REST snapshots served.
    pub rest: AtomicU64,
    /// REST requests refused with 429.
    pub rest_limited: AtomicU64,
    /// Clients dropped for reading too slowly.
    pub slow_clients: AtomicU64,
    /// The source is exhausted.
    pub done: AtomicBool,
}

/// What every connection task shares.
pub(crate) struct Shared {
    /// The venue's protocol.
    pub(crate) sim: &'static dyn SimVenue,
    /// Requests to the market.
    pub(crate) ctrl: mpsc::Sender<Control>,
    pub(crate) opts: SimOptions,
    pub(crate) stats: Arc<SimStats>,
    /// The REST rate limit.
    pub(crate) rest: RestLimiter,
}

/// Binds the listen address (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// Where a client of `venue` connects on a simulator at `addr`, beyond `ws://ADDR`
/// itself (the combined streams and REST endpoint of Binance venues, the environment
/// variables the live client reads), for a banner; empty if nothing more to say.
pub fn endpoints(venue: Venue, addr: SocketAddr) -> String {
    venue::of(venue).map_or_else(String::new, |v| v.endpoints(addr))
}

/// Runs the simulator until the process ends. Prints nothing; call [`bind`] first to
/// learn the address.
pub async fn serve(listener: TcpListener, opts: SimOptions, stats: Arc<SimStats>) -> Result<()> {
    let sim = venue::of(opts.venue)
        .ok_or_else(|| anyhow!("the simulator does not speak {}", opts.venue))?;
    let feed = Feed::open(&opts)?;
    let (ctrl_tx, ctrl_rx) = mpsc::channel(1024);
    let m = Market::new(opts.venue, sim, feed, stats.clone());
    let mut market_task = tokio::spawn(market::run(m, opts.pacing, ctrl_rx));
    let shared = Arc::new(Shared {
        sim,
        ctrl: ctrl_tx,
        opts,
        stats: stats.clone(),
        rest: RestLimiter::default(),
    });
    let mut next_client = 0u64;
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, _) = r.context("accepting a connection")?;
                let _ = stream.set_nodelay(true);
                next_client += 1;
                // Relaxed: a counter for reports.
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                let id = next_client;
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, id, &shared).await {
                        tracing::debug!(client = id, "connection ended: {e:#}");
                    }
                    let _ = shared.ctrl.send(Control::Gone { client: id }).await;
                });
            }
            r = &mut market_task => {
                return match r {
                    Ok(r) => r.context("the market stopped"),
                    Err(e) => bail!("the market task failed: {e}"),
                };
            }
        }
    }
}

/// One accepted connection: a REST request, or a WebSocket client of the venue.
async fn connection(stream: TcpStream, id: u64, shared: &Arc<Shared>) -> Result<()> {
    let head = rest::peek_head(&stream).await?;
    let lower = head.to_ascii_lowercase();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    if !lower.contains("upgrade: websocket") {
        // Plain HTTP: the REST depth snapshot.
        return rest::serve_http(stream, head.len(), &path, shared).await;
    }
    let url_subs = shared.sim.url_subscriptions(&path);
    let ws = tokio_tungstenite::accept_async(stream)
        .await
        .context("WebSocket handshake")?;
    let url_subs = url_subs.map_err(|e| anyhow!(e))?;
    let (tx, rx) = mpsc::channel::<Arc<Outgoing>>(if shared.opts.pacing == Pacing::Max {
        64
    } else {
        65_536
    });
    connection::serve(ws, id, url_subs, tx, rx, shared.clone()).await
}
