//! The exchange simulator: serves a capture or a synthetic market over a real local
//! WebSocket, speaking Coinbase Advanced Trade's subscribe protocol or Binance's
//! combined streams plus its REST depth snapshot, with fault injection.
//!
//! One *market* task owns the books and walks the source; it is the single sequencer of
//! everything clients see. A subscription (Coinbase) or a REST snapshot request
//! (Binance) is answered by the market between two frames, so a snapshot is exactly
//! consistent with the stream that follows it, and a client that resyncs correctly ends
//! with exactly the capture's books. Each connection has its own task that numbers
//! Coinbase frames with the connection's `sequence_num` and injects faults.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use hermes_book::Decimal;
use hermes_ingest::source::{Source, SourceOptions};
use hermes_ingest::{Decoder, Event, EventSink, FrameKind, Venue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::synth::{Rng, Synth, SynthOptions};
use hermes_book::clock::{rfc3339, unix_ns};
use hermes_book::market::{Instrument, Market as Books};

/// Where the simulator's frames come from.
#[derive(Clone, Debug)]
pub enum SimSource {
    /// A capture file (native or JSON lines); frames of other venues are skipped.
    Capture(PathBuf),
    /// The synthetic random-walk market with this many instruments.
    Synthetic {
        /// Instruments.
        instruments: usize,
        /// Levels per side.
        depth: usize,
        /// Seed.
        seed: u64,
        /// Frames to emit, or endless.
        frames: Option<u64>,
    },
}

/// Pacing of the market.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// Recorded timing divided by a factor (synthetic frames are 1 ms apart).
    Recorded(f64),
    /// A fixed number of frames per second.
    Rate(f64),
    /// As fast as the slowest client reads.
    Max,
}

/// A fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Close the connection.
    Disconnect,
    /// Skip a sequence number (Coinbase) or a depth diff (Binance).
    Gap,
    /// Send a frame twice.
    Duplicate,
    /// Swap a frame with the next one.
    Reorder,
    /// Send broken JSON (it consumes a Coinbase sequence number).
    Malformed,
    /// Send a frame larger than the client's limit.
    Oversize,
    /// Pause the connection.
    Stall,
}

/// When a fault fires, counted in frames forwarded on a connection.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// With this probability per frame.
    Rate(f64),
    /// Every N-th frame.
    Every(u64),
    /// At these frame numbers (1-based).
    At(Vec<u64>),
}

/// A fault and its trigger, parsed from `KIND=RATE`, `KIND=every:N` or `KIND=at:N,M`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// What.
    pub kind: FaultKind,
    /// When.
    pub trigger: Trigger,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            format!("bad fault {s:?}: use KIND=RATE, KIND=every:N or KIND=at:N[,M…]")
        })?;
        let kind = match k {
            "disconnect" => FaultKind::Disconnect,
            "gap" => FaultKind::Gap,
            "duplicate" => FaultKind::Duplicate,
            "reorder" => FaultKind::Reorder,
            "malformed" => FaultKind::Malformed,
            "oversize" => FaultKind::Oversize,
            "stall" => FaultKind::Stall,
            _ => {
                return Err(format!(
                    "unknown fault {k:?}: disconnect, gap, duplicate, reorder, malformed, oversize, stall"
                ))
            }
        };
        let bad = || format!("bad trigger {v:?} for {k}: a probability 0..1, every:N or at:N[,M…]");
        let trigger = if let Some(n) = v.strip_prefix("every:") {
            Trigger::Every(n.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?)
        } else if let Some(list) = v.strip_prefix("at:") {
            Trigger::At(
                list.split(',')
                    .map(|n| n.parse().map_err(|_| bad()))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            let p: f64 = v.parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&p) {
                return Err(bad());
            }
            Trigger::Rate(p)
        };
        Ok(Fault { kind, trigger })
    }
}

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Venue protocol to speak.
    pub venue: Venue,
    /// Frames.
    pub source: SimSource,
    /// Listen address.
    pub listen: SocketAddr,
    /// Pacing.
    pub pacing: Pacing,
    /// Faults.
    pub faults: Vec<Fault>,
    /// Size of an `oversize` frame.
    pub oversize_bytes: usize,
    /// Length of a `stall`.
    pub stall: Duration,
    /// Seed of fault decisions.
    pub seed: u64,
    /// REST depth requests allowed per second before answering 429 with Retry-After.
    pub rest_per_second: u32,
}

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

/// One frame the market hands to connections.
#[derive(Debug)]
struct Outgoing {
    text: String,
    /// Coinbase channel name as subscribed (`level2`, `market_trades`, …), or the Binance
    /// stream name.
    route: String,
    /// Coinbase products the frame concerns.
    products: Vec<String>,
    /// A Binance depth diff (a `gap` fault applies only to those).
    diff: bool,
    /// A Coinbase level-2 snapshot from the source: only for clients still waiting for
    /// their first snapshot of one of `products`.
    snapshot: bool,
}

enum Control {
    /// A Coinbase client subscribes: answer with the confirmation and snapshots, and
    /// route matching frames to it from now on.
    Subscribe {
        client: u64,
        channel: String,
        products: Vec<String>,
        tx: mpsc::Sender<Arc<Outgoing>>,
        reply: oneshot::Sender<Vec<String>>,
    },
    Unsubscribe {
        client: u64,
        channel: String,
        products: Vec<String>,
    },
    /// A Binance client with its streams.
    Streams {
        client: u64,
        streams: Vec<String>,
        tx: mpsc::Sender<Arc<Outgoing>>,
    },
    Gone {
        client: u64,
    },
    Depth {
        symbol: String,
        limit: usize,
        reply: oneshot::Sender<Option<String>>,
    },
}

/// Frames from the source, owned.
enum Feed {
    Capture(Box<Source>),
    Synth(Box<Synth>, Option<u64>),
}

struct Owned {
    venue: Venue,
    rest_symbol: Option<String>,
    recv_ts_ns: i64,
    data: String,
}

impl Feed {
    fn next(&mut self) -> Result<Option<Owned>> {
        match self {
            Feed::Synth(s, left) => {
                if let Some(n) = left {
                    if *n == 0 {
                        return Ok(None);
                    }
                    *n -= 1;
                }
                let f = s.next_frame();
                Ok(Some(Owned {
                    venue: f.venue,
                    rest_symbol: f.rest_symbol,
                    recv_ts_ns: f.recv_ts_ns,
                    data: f.data,
                }))
            }
            Feed::Capture(src) => loop {
                match src.next_frame() {
                    Ok(Some(f)) => {
                        return Ok(Some(Owned {
                            venue: f.venue,
                            rest_symbol: match f.kind {
                                FrameKind::RestDepth { symbol } => {
                                    Some(String::from_utf8_lossy(symbol).into_owned())
                                }
                                FrameKind::Ws => None,
                            },
                            recv_ts_ns: f.recv_ts_ns,
                            data: String::from_utf8_lossy(f.data).into_owned(),
                        }))
                    }
                    Ok(None) => return Ok(None),
                    Err(hermes_ingest::source::SourceError::BadLine { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            },
        }
    }
}

/// Events applied straight to the simulator's books.
struct Apply<'a>(&'a mut Books);

impl EventSink for Apply<'_> {
    fn push(&mut self, ev: Event) {
        self.0.apply(&ev);
    }
}

/// A connection's queue of frames to send.
type ClientTx = mpsc::Sender<Arc<Outgoing>>;

/// The market: source, books, subscriptions.
struct Market {
    venue: Venue,
    feed: Feed,
    decoder: Decoder,
    books: Books,
    /// Coinbase: client → (channel → products).
    cb_subs: HashMap<u64, (ClientTx, HashMap<String, HashSet<String>>)>,
    /// Coinbase: client → level-2 products it waits a first snapshot for.
    awaiting: HashMap<u64, HashSet<String>>,
    /// Binance: a REST snapshot went by in the source.
    saw_rest: bool,
    /// Binance: client → streams.
    bn_subs: HashMap<u64, (ClientTx, HashSet<String>)>,
    stats: Arc<SimStats>,
    pending: Option<Owned>,
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Text of a mantissa with exactly `decimals` decimals.
fn fixed(m: i64, decimals: u8) -> String {
    if decimals == 0 {
        return m.to_string();
    }
    let p = 10i64.pow(decimals as u32);
    format!(
        "{}{}.{:0w$}",
        if m < 0 { "-" } else { "" },
        (m / p).abs(),
        (m % p).abs(),
        w = decimals as usize
    )
}

impl Market {
    /// Applies a frame to the books; returns how to route it, or `None` if clients do not
    /// get it as is (snapshots and subscription confirmations are per connection).
    fn absorb(&mut self, f: &Owned) -> Option<Outgoing> {
        let frame = hermes_ingest::Frame {
            venue: f.venue,
            kind: match &f.rest_symbol {
                Some(s) => FrameKind::RestDepth {
                    symbol: s.as_bytes(),
                },
                None => FrameKind::Ws,
            },
            conn: 0,
            recv_ts_ns: f.recv_ts_ns,
            data: f.data.as_bytes(),
        };
        let _ = self.decoder.decode(&frame, &mut Apply(&mut self.books));
        if f.rest_symbol.is_some() || f.venue != self.venue {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&f.data).ok()?;
        match self.venue {
            Venue::Coinbase => {
                let channel = v.get("channel")?.as_str()?;
                let route = match channel {
                    "l2_data" => "level2",
                    "market_trades" | "ticker" | "heartbeats" | "candles" | "ticker_batch" => {
                        channel
                    }
                    _ => return None,
                };
                let mut products = Vec::new();
                let mut snapshot = false;
                for ev in v.get("events")?.as_array()? {
                    snapshot |= ev.get("type").and_then(|t| t.as_str()) == Some("snapshot");
                    if let Some(p) = ev.get("product_id").and_then(|p| p.as_str()) {
                        products.push(p.to_string());
                    }
                    for list in ["trades", "tickers", "candles"] {
                        for t in ev
                            .get(list)
                            .and_then(|t| t.as_array())
                            .into_iter()
                            .flatten()
                        {
                            if let Some(p) = t.get("product_id").and_then(|p| p.as_str()) {
                                products.push(p.to_string());
                            }
                        }
                    }
                }
                products.sort();
                products.dedup();
                // Book snapshots are made per subscription; a source snapshot only goes
                // to clients that subscribed before the simulator had that book.
                let snapshot = route == "level2" && snapshot;
                Some(Outgoing {
                    text: f.data.clone(),
                    route: route.into(),
                    products,
                    diff: false,
                    snapshot,
                })
            }
            _ => {
                let stream = v.get("stream")?.as_str()?.to_string();
                let diff = v
                    .get("data")
                    .and_then(|d| d.get("e"))
                    .and_then(|e| e.as_str())
                    == Some("depthUpdate");
                Some(Outgoing {
                    text: f.data.clone(),
                    route: stream,
                    products: Vec::new(),
                    diff,
                    snapshot: false,
                })
            }
        }
    }

    fn book_of(&self, symbol: &str) -> Option<&Instrument> {
        self.books.find(self.venue, symbol)
    }

    fn coinbase_snapshot(&self, product: &str) -> Option<String> {
        let i = self.book_of(product)?;
        let (pd, sd) = (i.scale.price_decimals, i.scale.size_decimals);
        let time = rfc3339(unix_ns());
        let mut ups = Vec::new();
        for (side, levels) in [
            ("bid", i.book.bids().collect::<Vec<_>>()),
            ("offer", i.book.asks().collect()),
        ] {
            for l in levels {
                ups.push(format!(
                    r#"{{"side":"{side}","event_time":"{time}","price_level":"{}","new_quantity":"{}"}}"#,
                    Decimal::new(l.price.0, pd),
                    Decimal::new(l.qty.0, sd)
                ));
            }
        }
        Some(format!(
            r#"{{"type":"snapshot","product_id":{},"updates":[{}]}}"#,
            json_str(product),
            ups.join(",")
        ))
    }

    fn binance_depth(&self, symbol: &str, limit: usize) -> Option<String> {
        let i = self.book_of(symbol)?;
        let (pd, sd) = (i.scale.price_decimals, i.scale.size_decimals);
        let side = |levels: Vec<hermes_book::Level>| {
            levels
                .iter()
                .take(limit)
                .map(|l| format!(r#"["{}","{}"]"#, fixed(l.price.0, pd), fixed(l.qty.0, sd)))
                .collect::<Vec<_>>()
                .join(",")
        };
        Some(format!(
            r#"{{"lastUpdateId":{},"bids":[{}],"asks":[{}]}}"#,
            i.top.update_id,
            side(i.book.bids().collect()),
            side(i.book.asks().collect())
        ))
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::Subscribe {
                client,
                channel,
                products,
                tx,
                reply,
            } => {
                let mut out = Vec::new();
                if channel == "level2" {
                    for p in &products {
                        match self.coinbase_snapshot(p) {
                            Some(s) => out.push(("l2_data".to_string(), s)),
                            None => {
                                self.awaiting.entry(client).or_default().insert(p.clone());
                            }
                        }
                    }
                }
                let entry = self
                    .cb_subs
                    .entry(client)
                    .or_insert_with(|| (tx, HashMap::new()));
                entry
                    .1
                    .entry(channel.clone())
                    .or_default()
                    .extend(products.iter().cloned());
                let mut subs = Vec::new();
                for (ch, ps) in &entry.1 {
                    let mut ps: Vec<&String> = ps.iter().collect();
                    ps.sort();
                    let list: Vec<String> = ps.iter().map(|p| json_str(p)).collect();
                    subs.push(format!("{}:[{}]", json_str(ch), list.join(",")));
                }
                subs.sort();
                let confirm = format!(r#"{{"subscriptions":{{{}}}}}"#, subs.join(","));
                let mut frames = vec![format!("subscriptions\u{0}{confirm}")];
                frames.extend(out.into_iter().map(|(ch, ev)| format!("{ch}\u{0}{ev}")));
                let _ = reply.send(frames);
            }
            Control::Unsubscribe {
                client,
                channel,
                products,
            } => {
                if let Some((_, subs)) = self.cb_subs.get_mut(&client) {
                    if let Some(set) = subs.get_mut(&channel) {
                        for p in &products {
                            set.remove(p);
                        }
                    }
                }
            }
            Control::Streams {
                client,
                streams,
                tx,
            } => {
                self.bn_subs
                    .insert(client, (tx, streams.into_iter().collect()));
            }
            Control::Gone { client } => {
                self.awaiting.remove(&client);
                self.cb_subs.remove(&client);
                self.bn_subs.remove(&client);
            }
            Control::Depth {
                symbol,
                limit,
                reply,
            } => {
                let _ = reply.send(self.binance_depth(&symbol, limit));
            }
        }
    }

    fn has_clients(&self) -> bool {
        !self.cb_subs.is_empty() || !self.bn_subs.is_empty()
    }

    /// Whether the source is still in its opening part, consumed before anyone
    /// connects so the books exist: Coinbase subscription confirmations and snapshots up
    /// to the first level-2 update; Binance frames until a first REST snapshot, REST
    /// snapshots, and diffs of symbols not yet synced.
    fn is_setup(&self, f: &Owned) -> bool {
        match f.venue {
            _ if f.rest_symbol.is_some() => true,
            Venue::Coinbase => {
                !f.data.contains("\"type\":\"update\"")
                    || !f.data.contains("\"channel\":\"l2_data\"")
            }
            _ => {
                if !self.saw_rest {
                    return true;
                }
                if !f.data.contains("depthUpdate") {
                    return false;
                }
                let sym = f
                    .data
                    .split("\"s\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("");
                self.book_of(sym).is_none_or(|i| i.top.update_id == 0)
            }
        }
    }

    async fn route(&mut self, out: Outgoing, pacing: Pacing, ctrl: &mut mpsc::Receiver<Control>) {
        let out = Arc::new(out);
        let mut targets = Vec::new();
        match self.venue {
            Venue::Coinbase if out.snapshot => {
                for (id, (tx, _)) in &self.cb_subs {
                    if let Some(set) = self.awaiting.get_mut(id) {
                        if out.products.iter().any(|p| set.remove(p)) {
                            targets.push((*id, tx.clone()));
                        }
                    }
                }
            }
            Venue::Coinbase => {
                for (id, (tx, subs)) in &self.cb_subs {
                    if let Some(ps) = subs.get(&out.route) {
                        if out.route == "heartbeats" || out.products.iter().any(|p| ps.contains(p))
                        {
                            targets.push((*id, tx.clone()));
                        }
                    }
                }
            }
            _ => {
                for (id, (tx, streams)) in &self.bn_subs {
                    if streams.contains(&out.route) {
                        targets.push((*id, tx.clone()));
                    }
                }
            }
        }
        for (id, tx) in targets {
            let ok = if pacing == Pacing::Max {
                // Wait for the client to read, but keep answering requests meanwhile: a
                // client may be waiting for the answer to a subscription before it reads.
                let send = tx.send(out.clone());
                tokio::pin!(send);
                loop {
                    tokio::select! {
                        r = &mut send => break r.is_ok(),
                        c = ctrl.recv() => match c {
                            Some(c) => self.control(c),
                            None => break false,
                        },
                    }
                }
            } else {
                match tx.try_send(out.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.stats.slow_clients.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            client = id,
                            "client reads too slowly for the pacing; dropping it"
                        );
                        false
                    }
                    Err(_) => false,
                }
            };
            if !ok {
                self.cb_subs.remove(&id);
                self.bn_subs.remove(&id);
            }
        }
    }
}

async fn market(mut m: Market, pacing: Pacing, mut ctrl: mpsc::Receiver<Control>) -> Result<()> {
    // Consume the source's opening (snapshots) so the books exist before anyone asks.
    loop {
        let Some(f) = m.feed.next()? else { break };
        if m.is_setup(&f) {
            m.saw_rest |= f.rest_symbol.is_some();
            m.absorb(&f);
            m.stats.frames.fetch_add(1, Ordering::Relaxed);
        } else {
            m.pending = Some(f);
            break;
        }
    }
    let mut clock: Option<(i64, Instant)> = None;
    let mut n = 0u64;
    let start = Instant::now();
    loop {
        while let Ok(c) = ctrl.try_recv() {
            m.control(c);
        }
        if !m.has_clients() || m.stats.done.load(Ordering::Relaxed) {
            // Nobody to serve (the market waits for its first client) or nothing left:
            // just answer requests.
            match ctrl.recv().await {
                Some(c) => m.control(c),
                None => return Ok(()),
            }
            continue;
        }
        let f = match m.pending.take() {
            Some(f) => f,
            None => match m.feed.next()? {
                Some(f) => f,
                None => {
                    m.stats.done.store(true, Ordering::Relaxed);
                    tracing::info!(
                        "source exhausted after {} frames; still serving snapshots",
                        m.stats.frames.load(Ordering::Relaxed)
                    );
                    continue;
                }
            },
        };
        let due = match pacing {
            Pacing::Max => None,
            Pacing::Rate(r) => Some(start + Duration::from_secs_f64(n as f64 / r)),
            Pacing::Recorded(x) => {
                let (t0, w0) = *clock.get_or_insert((f.recv_ts_ns, Instant::now()));
                Some(w0 + Duration::from_nanos(((f.recv_ts_ns - t0).max(0) as f64 / x) as u64))
            }
        };
        if let Some(due) = due {
            let sleep = tokio::time::sleep_until(due.into());
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    c = ctrl.recv() => match c {
                        Some(c) => m.control(c),
                        None => return Ok(()),
                    },
                }
            }
        }
        n += 1;
        m.stats.frames.fetch_add(1, Ordering::Relaxed);
        m.saw_rest |= f.rest_symbol.is_some();
        if let Some(out) = m.absorb(&f) {
            m.route(out, pacing, &mut ctrl).await;
        }
    }
}

/// Runs the simulator until the process ends. Prints nothing; call [`bind`] first to
/// learn the address.
pub async fn serve(listener: TcpListener, opts: SimOptions, stats: Arc<SimStats>) -> Result<()> {
    let feed = match &opts.source {
        SimSource::Capture(p) => Feed::Capture(Box::new(
            Source::open(p, &SourceOptions::default())
                .with_context(|| format!("opening {}", p.display()))?,
        )),
        SimSource::Synthetic {
            instruments,
            depth,
            seed,
            frames,
        } => Feed::Synth(
            Box::new(Synth::new(SynthOptions {
                venues: vec![opts.venue],
                instruments: *instruments,
                depth: *depth,
                seed: *seed,
                ..SynthOptions::default()
            })),
            *frames,
        ),
    };
    let (ctrl_tx, ctrl_rx) = mpsc::channel(1024);
    let m = Market {
        venue: opts.venue,
        feed,
        decoder: Decoder::default(),
        books: Books::default(),
        cb_subs: HashMap::new(),
        awaiting: HashMap::new(),
        saw_rest: false,
        bn_subs: HashMap::new(),
        stats: stats.clone(),
        pending: None,
    };
    let pacing = opts.pacing;
    let mut market_task = tokio::spawn(market(m, pacing, ctrl_rx));
    let opts = Arc::new(opts);
    let rest = Arc::new(RestLimiter::default());
    let mut next_client = 0u64;
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, _) = r.context("accepting a connection")?;
                let _ = stream.set_nodelay(true);
                next_client += 1;
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let (ctrl, opts, stats, rest) = (ctrl_tx.clone(), opts.clone(), stats.clone(), rest.clone());
                let id = next_client;
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, id, ctrl.clone(), opts, stats, rest).await {
                        tracing::debug!(client = id, "connection ended: {e:#}");
                    }
                    let _ = ctrl.send(Control::Gone { client: id }).await;
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

/// Binds the listen address (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

#[derive(Default)]
struct RestLimiter {
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
async fn peek_head(stream: &TcpStream) -> Result<String> {
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

async fn connection(
    mut stream: TcpStream,
    id: u64,
    ctrl: mpsc::Sender<Control>,
    opts: Arc<SimOptions>,
    stats: Arc<SimStats>,
    rest: Arc<RestLimiter>,
) -> Result<()> {
    let head = peek_head(&stream).await?;
    let lower = head.to_ascii_lowercase();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    if !lower.contains("upgrade: websocket") {
        // Plain HTTP: the Binance REST depth snapshot.
        let mut sink = vec![0u8; head.len() + 4];
        stream.read_exact(&mut sink).await?;
        let (status, body, extra) = rest_response(&path, &ctrl, &opts, &stats, &rest).await;
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        );
        stream.write_all(resp.as_bytes()).await?;
        stream.shutdown().await.ok();
        return Ok(());
    }
    let ws = tokio_tungstenite::accept_async(stream)
        .await
        .context("WebSocket handshake")?;
    let (tx, rx) = mpsc::channel::<Arc<Outgoing>>(if opts.pacing == Pacing::Max {
        64
    } else {
        65_536
    });
    match opts.venue {
        Venue::Coinbase => coinbase_conn(ws, id, ctrl, tx, rx, opts, stats).await,
        _ => {
            let streams: Vec<String> = path
                .split_once("streams=")
                .map(|(_, s)| {
                    s.split('&')
                        .next()
                        .unwrap_or("")
                        .split('/')
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if streams.is_empty() {
                bail!("Binance connection without ?streams=: {path}");
            }
            ctrl.send(Control::Streams {
                client: id,
                streams,
                tx,
            })
            .await
            .ok();
            binance_conn(ws, id, rx, opts, stats).await
        }
    }
}

async fn rest_response(
    path: &str,
    ctrl: &mpsc::Sender<Control>,
    opts: &SimOptions,
    stats: &SimStats,
    rest: &RestLimiter,
) -> (&'static str, String, String) {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    if route != "/api/v3/depth" || opts.venue != Venue::Binance {
        return (
            "404 Not Found",
            r#"{"code":-1,"msg":"not found"}"#.into(),
            String::new(),
        );
    }
    if !rest.admit(opts.rest_per_second) {
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
            Some(("limit", l)) => limit = l.parse().unwrap_or(100).clamp(1, 5000),
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
    if ctrl
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

/// Per-connection fault decisions.
struct Faults {
    list: Vec<Fault>,
    rng: Rng,
    n: u64,
}

impl Faults {
    fn next(&mut self) -> Vec<FaultKind> {
        self.n += 1;
        let n = self.n;
        let mut fired = Vec::new();
        for f in &self.list {
            let hit = match &f.trigger {
                Trigger::Rate(p) => (self.rng.below(1_000_000) as f64) < p * 1_000_000.0,
                Trigger::Every(k) => n % k == 0,
                Trigger::At(list) => list.contains(&n),
            };
            if hit {
                fired.push(f.kind);
            }
        }
        fired
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

fn renumber(text: &str, seq: u64) -> String {
    const KEY: &str = "\"sequence_num\":";
    match text.find(KEY) {
        Some(i) => {
            let start = i + KEY.len();
            let end = text[start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(text.len(), |e| start + e);
            format!("{}{}{}", &text[..start], seq, &text[end..])
        }
        None => text.to_string(),
    }
}

fn envelope(channel: &str, seq: u64, events: &str) -> String {
    format!(
        r#"{{"channel":"{channel}","client_id":"","timestamp":"{}","sequence_num":{seq},"events":[{events}]}}"#,
        rfc3339(unix_ns())
    )
}

/// Sends one forwarded frame with faults; `Ok(false)` = close the connection.
async fn send_with_faults(
    ws: &mut Ws,
    faults: &mut Faults,
    held: &mut Option<String>,
    text: String,
    skippable: bool,
    opts: &SimOptions,
    stats: &SimStats,
) -> Result<bool> {
    let mut out = vec![text];
    for f in faults.next() {
        stats.faults.fetch_add(1, Ordering::Relaxed);
        match f {
            FaultKind::Disconnect => {
                ws.close(None).await.ok();
                return Ok(false);
            }
            FaultKind::Gap if skippable => out.clear(),
            FaultKind::Gap => {}
            FaultKind::Duplicate => {
                if let Some(t) = out.first().cloned() {
                    out.push(t);
                }
            }
            FaultKind::Reorder => {
                if held.is_none() {
                    *held = out.pop();
                }
            }
            FaultKind::Malformed => {
                if let Some(t) = out.first_mut() {
                    t.truncate(t.len() / 2);
                }
            }
            FaultKind::Oversize => {
                let pad = "x".repeat(opts.oversize_bytes);
                out.insert(0, format!(r#"{{"channel":"status","pad":"{pad}"}}"#));
            }
            FaultKind::Stall => tokio::time::sleep(opts.stall).await,
        }
    }
    if !out.is_empty() {
        if let Some(h) = held.take() {
            out.push(h);
        }
    }
    for t in out {
        stats.sent.fetch_add(1, Ordering::Relaxed);
        ws.feed(Message::text(t)).await?;
    }
    ws.flush().await?;
    Ok(true)
}

#[derive(serde::Deserialize)]
struct SubscribeMsg {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    product_ids: Vec<String>,
    #[serde(default)]
    channel: Option<String>,
}

async fn coinbase_conn(
    mut ws: Ws,
    id: u64,
    ctrl: mpsc::Sender<Control>,
    tx: mpsc::Sender<Arc<Outgoing>>,
    mut rx: mpsc::Receiver<Arc<Outgoing>>,
    opts: Arc<SimOptions>,
    stats: Arc<SimStats>,
) -> Result<()> {
    let mut seq = 0u64;
    let mut faults = Faults {
        list: opts.faults.clone(),
        rng: Rng::new(opts.seed ^ id),
        n: 0,
    };
    let mut held = None;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(msg) = msg else { return Ok(()) };
                let text = match msg? {
                    Message::Text(t) => t.as_str().to_string(),
                    Message::Close(_) => return Ok(()),
                    _ => continue,
                };
                let Ok(sub) = serde_json::from_str::<SubscribeMsg>(&text) else {
                    let err = format!(r#"{{"type":"error","message":"failure to parse: {}"}}"#, text.len());
                    ws.send(Message::text(err)).await?;
                    continue;
                };
                let Some(channel) = sub.channel else {
                    ws.send(Message::text(r#"{"type":"error","message":"channel is required"}"#)).await?;
                    continue;
                };
                match sub.kind.as_str() {
                    "subscribe" => {
                        let (reply, answer) = oneshot::channel();
                        ctrl.send(Control::Subscribe { client: id, channel, products: sub.product_ids, tx: tx.clone(), reply }).await?;
                        for f in answer.await? {
                            let (ch, events) = f.split_once('\u{0}').unwrap_or(("subscriptions", &f));
                            ws.feed(Message::text(envelope(ch, seq, events))).await?;
                            seq += 1;
                            stats.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        ws.flush().await?;
                    }
                    "unsubscribe" => {
                        ctrl.send(Control::Unsubscribe { client: id, channel, products: sub.product_ids }).await?;
                    }
                    other => {
                        ws.send(Message::text(format!(r#"{{"type":"error","message":"unknown type {other}"}}"#))).await?;
                    }
                }
            }
            out = rx.recv() => {
                let Some(out) = out else { return Ok(()) };
                let text = renumber(&out.text, seq);
                seq += 1;
                if !send_with_faults(&mut ws, &mut faults, &mut held, text, true, &opts, &stats).await? {
                    return Ok(());
                }
            }
        }
    }
}

async fn binance_conn(
    mut ws: Ws,
    id: u64,
    mut rx: mpsc::Receiver<Arc<Outgoing>>,
    opts: Arc<SimOptions>,
    stats: Arc<SimStats>,
) -> Result<()> {
    let mut faults = Faults {
        list: opts.faults.clone(),
        rng: Rng::new(opts.seed ^ id),
        n: 0,
    };
    let mut held = None;
    loop {
        tokio::select! {
            msg = ws.next() => {
                match msg {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(_)) => {}
                }
            }
            out = rx.recv() => {
                let Some(out) = out else { return Ok(()) };
                if !send_with_faults(&mut ws, &mut faults, &mut held, out.text.clone(), out.diff, &opts, &stats).await? {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        assert_eq!(
            "gap=0.01".parse::<Fault>().unwrap(),
            Fault {
                kind: FaultKind::Gap,
                trigger: Trigger::Rate(0.01)
            }
        );
        assert_eq!(
            "disconnect=every:500".parse::<Fault>().unwrap().trigger,
            Trigger::Every(500)
        );
        assert_eq!(
            "stall=at:3,9".parse::<Fault>().unwrap().trigger,
            Trigger::At(vec![3, 9])
        );
        assert!("gap=2".parse::<Fault>().is_err());
        assert!("boom=0.1"
            .parse::<Fault>()
            .unwrap_err()
            .contains("unknown fault"));
    }

    #[test]
    fn renumbers_sequence() {
        assert_eq!(
            renumber(r#"{"a":1,"sequence_num":1234,"b":2}"#, 7),
            r#"{"a":1,"sequence_num":7,"b":2}"#
        );
        assert_eq!(fixed(6_183_763_000_000, 8), "61837.63000000");
        assert_eq!(fixed(5, 2), "0.05");
    }
}
