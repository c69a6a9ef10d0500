//! Live ingest: the WebSocket connections of `hermes run` and `hermes record`, all on the
//! one ingest thread (a current-thread tokio runtime), feeding the same decoder, ring and
//! tap as replay.
//!
//! Per venue connection: jittered exponential back-off between attempts (1 s → 60 s by
//! default), a circuit breaker that opens after 5 consecutive failures and half-opens
//! after a cool-down to probe, pings, an idle timeout, a maximum frame size. On a gap the
//! affected books are marked stale in shm and rebuilt: Coinbase by resubscribing to
//! `level2` (a fresh snapshot), Binance by refetching the REST depth snapshot of that
//! symbol only, while its diffs keep being buffered and the old book stays visible with
//! the stale flag. REST calls respect a request-weight budget and honour 429/418 with
//! `Retry-After`. A lost connection marks its venue's books stale until they are rebuilt.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use hermes_ingest::capture::{CaptureWriter, Record, RecordKind};
use hermes_ingest::{DecodeStats, Decoder, EventSink, Frame, FrameKind, FrameTap, InstId, Venue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use hermes_book::clock::{rfc3339, unix_ns};

/// Connection behaviour.
#[derive(Clone, Debug)]
pub struct ConnPolicy {
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before a probe.
    pub breaker_cooldown: Duration,
    /// A connection up this long counts as healthy (resets the failure count).
    pub healthy_after: Duration,
    /// Ping interval.
    pub ping_interval: Duration,
    /// No message for this long: the connection is dead.
    pub idle_timeout: Duration,
    /// Largest accepted message.
    pub max_frame_bytes: usize,
    /// Least time between two Coinbase resubscriptions on one connection.
    pub resubscribe_interval: Duration,
    /// Binance REST request weight allowed per minute.
    pub rest_weight_per_minute: u32,
}

impl Default for ConnPolicy {
    fn default() -> Self {
        ConnPolicy {
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            healthy_after: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            max_frame_bytes: 64 << 20,
            resubscribe_interval: Duration::from_secs(1),
            rest_weight_per_minute: 3000,
        }
    }
}

/// Feeds to connect to.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Coinbase Advanced Trade WebSocket URL.
    pub coinbase_ws_url: String,
    /// Coinbase products; empty disables the venue.
    pub coinbase_products: Vec<String>,
    /// Coinbase channels to subscribe.
    pub coinbase_channels: Vec<String>,
    /// Binance WebSocket base URL (`/stream?streams=…` is appended).
    pub binance_ws_url: String,
    /// Binance REST base URL.
    pub binance_rest_url: String,
    /// Binance symbols; empty disables the venue.
    pub binance_symbols: Vec<String>,
    /// Binance streams per symbol.
    pub binance_streams: Vec<String>,
    /// Levels requested in the REST depth snapshot.
    pub binance_depth_limit: u32,
    /// Connection behaviour.
    pub policy: ConnPolicy,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            coinbase_ws_url: "wss://advanced-trade-ws.coinbase.com".into(),
            coinbase_products: Vec::new(),
            coinbase_channels: vec!["level2".into(), "market_trades".into(), "heartbeats".into()],
            binance_ws_url: "wss://stream.binance.com:9443".into(),
            binance_rest_url: "https://api.binance.com".into(),
            binance_symbols: Vec::new(),
            binance_streams: vec!["depth@100ms".into(), "trade".into(), "bookTicker".into()],
            binance_depth_limit: 1000,
            policy: ConnPolicy::default(),
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    coinbase: Option<CoinbaseFile>,
    binance: Option<BinanceFile>,
    connection: Option<ConnFile>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CoinbaseFile {
    ws_url: Option<String>,
    products: Option<Vec<String>>,
    channels: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BinanceFile {
    ws_url: Option<String>,
    rest_url: Option<String>,
    symbols: Option<Vec<String>>,
    streams: Option<Vec<String>>,
    depth_limit: Option<u32>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnFile {
    reconnect_min_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
    breaker_failures: Option<u32>,
    breaker_cooldown_ms: Option<u64>,
    healthy_after_ms: Option<u64>,
    ping_interval_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_frame_bytes: Option<usize>,
    resubscribe_interval_ms: Option<u64>,
    rest_weight_per_minute: Option<u32>,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl LiveConfig {
    /// The defaults, then the TOML file (unknown keys are errors naming the key), then
    /// the environment (`COINBASE_WS_URL`, `COINBASE_PRODUCTS`, `BINANCE_WS_URL`,
    /// `BINANCE_REST_URL`, `BINANCE_SYMBOLS`), then validation.
    pub fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<LiveConfig> {
        let mut c = LiveConfig::default();
        if let Some(p) = path {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            let f: FileConfig =
                toml::from_str(&text).with_context(|| format!("config {}", p.display()))?;
            if let Some(cb) = f.coinbase {
                c.coinbase_ws_url = cb.ws_url.unwrap_or(c.coinbase_ws_url);
                c.coinbase_products = cb.products.unwrap_or_default();
                c.coinbase_channels = cb.channels.unwrap_or(c.coinbase_channels);
            }
            if let Some(b) = f.binance {
                c.binance_ws_url = b.ws_url.unwrap_or(c.binance_ws_url);
                c.binance_rest_url = b.rest_url.unwrap_or(c.binance_rest_url);
                c.binance_symbols = b.symbols.unwrap_or_default();
                c.binance_streams = b.streams.unwrap_or(c.binance_streams);
                c.binance_depth_limit = b.depth_limit.unwrap_or(c.binance_depth_limit);
            }
            if let Some(k) = f.connection {
                let p = &mut c.policy;
                let ms = Duration::from_millis;
                p.reconnect_min = k.reconnect_min_ms.map_or(p.reconnect_min, ms);
                p.reconnect_max = k.reconnect_max_ms.map_or(p.reconnect_max, ms);
                p.breaker_failures = k.breaker_failures.unwrap_or(p.breaker_failures);
                p.breaker_cooldown = k.breaker_cooldown_ms.map_or(p.breaker_cooldown, ms);
                p.healthy_after = k.healthy_after_ms.map_or(p.healthy_after, ms);
                p.ping_interval = k.ping_interval_ms.map_or(p.ping_interval, ms);
                p.idle_timeout = k.idle_timeout_ms.map_or(p.idle_timeout, ms);
                p.max_frame_bytes = k.max_frame_bytes.unwrap_or(p.max_frame_bytes);
                p.resubscribe_interval =
                    k.resubscribe_interval_ms.map_or(p.resubscribe_interval, ms);
                p.rest_weight_per_minute =
                    k.rest_weight_per_minute.unwrap_or(p.rest_weight_per_minute);
            }
        }
        if let Some(v) = env("COINBASE_WS_URL") {
            c.coinbase_ws_url = v;
        }
        if let Some(v) = env("COINBASE_PRODUCTS") {
            c.coinbase_products = list(&v);
        }
        if let Some(v) = env("BINANCE_WS_URL") {
            c.binance_ws_url = v;
        }
        if let Some(v) = env("BINANCE_REST_URL") {
            c.binance_rest_url = v;
        }
        if let Some(v) = env("BINANCE_SYMBOLS") {
            c.binance_symbols = list(&v);
        }
        c.binance_symbols = c
            .binance_symbols
            .iter()
            .map(|s| s.to_ascii_uppercase())
            .collect();
        c.validate()?;
        Ok(c)
    }

    /// Checks that something will be ingested: a venue, or webhook ticks.
    pub fn require_feed(&self, webhook: bool) -> Result<()> {
        if self.coinbase_products.is_empty() && self.binance_symbols.is_empty() && !webhook {
            bail!("no feed configured: set COINBASE_PRODUCTS (e.g. BTC-USD,ETH-USD) and/or BINANCE_SYMBOLS (e.g. BTCUSDT), or [coinbase] products / [binance] symbols in the config file (or enable webhook ticks with --http and INGEST_USERNAME/INGEST_PASSWORD)");
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        for (name, url) in [
            ("coinbase ws_url (COINBASE_WS_URL)", &self.coinbase_ws_url),
            ("binance ws_url (BINANCE_WS_URL)", &self.binance_ws_url),
        ] {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                bail!("{name} must start with ws:// or wss://, got {url:?}");
            }
        }
        if !(self.binance_rest_url.starts_with("http://")
            || self.binance_rest_url.starts_with("https://"))
        {
            bail!(
                "binance rest_url (BINANCE_REST_URL) must start with http:// or https://, got {:?}",
                self.binance_rest_url
            );
        }
        if !matches!(self.binance_depth_limit, 1..=5000) {
            bail!(
                "binance depth_limit must be 1..=5000, got {}",
                self.binance_depth_limit
            );
        }
        let p = &self.policy;
        if p.reconnect_min.is_zero() || p.reconnect_max < p.reconnect_min {
            bail!("connection reconnect_min_ms must be > 0 and <= reconnect_max_ms");
        }
        if p.breaker_failures == 0 {
            bail!("connection breaker_failures must be at least 1");
        }
        Ok(())
    }
}

/// A validated webhook tick on its way to the ingest thread.
#[derive(Debug)]
pub struct TickRequest {
    /// The canonical webhook frame (see `hermes_ingest::webhook`).
    pub frame: Vec<u8>,
    /// Its idempotency key.
    pub event_id: String,
    /// Answered once the tick is in the ring (or refused).
    pub reply: tokio::sync::oneshot::Sender<TickOutcome>,
}

/// What became of a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TickOutcome {
    /// Decoded and pushed into the ring.
    Accepted,
    /// This `event_id` was applied before: acknowledged, not applied again.
    Duplicate,
    /// The decoder refused it.
    Rejected(String),
}

/// Event ids remembered for idempotency.
const SEEN_IDS: usize = 1 << 20;

/// Circuit-breaker states, as exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    /// Connecting normally.
    Closed = 0,
    /// Too many failures: waiting out the cool-down.
    Open = 1,
    /// Cool-down over: one probe attempt.
    HalfOpen = 2,
}

impl BreakerState {
    /// Name for logs and stats.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
    fn from_u8(v: u8) -> BreakerState {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// Per-venue connection counters, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct VenueStats {
    /// Currently connected.
    pub connected: AtomicBool,
    /// Breaker state (`BreakerState as u8`).
    pub breaker: AtomicU8,
    /// Successful connections after the first.
    pub reconnects: AtomicU64,
    /// Failed connection attempts and abnormal ends.
    pub failures: AtomicU64,
    /// Coinbase resubscriptions / Binance REST snapshot fetches for a resync.
    pub resyncs_requested: AtomicU64,
    /// REST snapshots fetched.
    pub rest_fetches: AtomicU64,
    /// REST answers 429/418 honoured.
    pub rest_throttled: AtomicU64,
    /// Messages over the size limit.
    pub oversize: AtomicU64,
}

impl VenueStats {
    /// The breaker state.
    pub fn breaker(&self) -> BreakerState {
        // Relaxed: a reported state, no data depends on it.
        BreakerState::from_u8(self.breaker.load(Ordering::Relaxed))
    }
}

/// Counters of a live run.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Coinbase connection.
    pub coinbase: VenueStats,
    /// Binance connection.
    pub binance: VenueStats,
    /// Frames received (both venues, REST snapshots included).
    pub frames: AtomicU64,
    /// Bytes received.
    pub bytes: AtomicU64,
    /// Frames refused as malformed.
    pub parse_errors: AtomicU64,
    /// Sequence gaps.
    pub gaps: AtomicU64,
    /// Books rebuilt after a gap.
    pub resyncs: AtomicU64,
    /// Unix ns of the last frame.
    pub last_frame_ns: AtomicU64,
}

impl LiveStats {
    fn publish(&self, d: &DecodeStats) {
        // Relaxed: counters for reports; nothing synchronises through them.
        self.frames.store(d.frames, Ordering::Relaxed);
        self.bytes.store(d.bytes, Ordering::Relaxed);
        self.parse_errors.store(d.parse_errors, Ordering::Relaxed);
        self.gaps.store(d.gaps, Ordering::Relaxed);
        self.resyncs.store(d.resyncs, Ordering::Relaxed);
    }

    /// One line of counters for `--stats`.
    pub fn line(&self) -> String {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let v = |s: &VenueStats| {
            format!(
                "{} breaker {} reconnects {} failures {} resync-requests {} rest {} throttled {} oversize {}",
                if s.connected.load(Ordering::Relaxed) { "up" } else { "down" },
                s.breaker().name(),
                r(&s.reconnects),
                r(&s.failures),
                r(&s.resyncs_requested),
                r(&s.rest_fetches),
                r(&s.rest_throttled),
                r(&s.oversize)
            )
        };
        format!(
            "frames {} bytes {} parse-errors {} gaps {} resyncs {} | coinbase {} | binance {}",
            r(&self.frames),
            r(&self.bytes),
            r(&self.parse_errors),
            r(&self.gaps),
            r(&self.resyncs),
            v(&self.coinbase),
            v(&self.binance)
        )
    }
}

/// When a live run ends.
#[derive(Clone, Debug, Default)]
pub struct RunLimits {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after no frame arrived for this long (once one did).
    pub until_idle: Option<Duration>,
    /// Print [`LiveStats::line`] this often.
    pub stats_every: Option<Duration>,
}

/// What a live run did.
#[derive(Debug, Default)]
pub struct LiveSummary {
    /// Decoder counters.
    pub decode: DecodeStats,
    /// First error messages.
    pub errors: Vec<String>,
    /// Instruments stale at the end.
    pub stale: Vec<String>,
}

/// Exponential back-off with jitter plus the circuit breaker.
struct Breaker {
    failures: u32,
    next_attempt: Instant,
    state: BreakerState,
    rng: fastrand::Rng,
}

impl Breaker {
    fn new(seed: u64) -> Breaker {
        Breaker {
            failures: 0,
            next_attempt: Instant::now(),
            state: BreakerState::Closed,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    fn failure(&mut self, p: &ConnPolicy, venue: &str) {
        self.failures += 1;
        if self.failures >= p.breaker_failures {
            if self.state != BreakerState::Open {
                tracing::warn!(
                    venue,
                    failures = self.failures,
                    "circuit breaker open for {:?}",
                    p.breaker_cooldown
                );
            }
            self.state = BreakerState::Open;
            self.next_attempt = Instant::now() + p.breaker_cooldown;
            return;
        }
        let exp = p
            .reconnect_min
            .saturating_mul(1u32 << (self.failures - 1).min(16));
        let cap = exp.min(p.reconnect_max);
        // Jitter: uniformly in [cap/2, cap].
        let jitter = cap.mul_f64(0.5 + (self.rng.u64(0..1000) as f64) / 2000.0);
        self.next_attempt = Instant::now() + jitter.max(p.reconnect_min.min(cap));
    }

    /// The connection stayed up long enough: forget past failures.
    fn success(&mut self, venue: &str) {
        self.connected(venue);
        self.failures = 0;
    }

    /// A connection succeeded: a half-open breaker closes (the probe worked).
    fn connected(&mut self, venue: &str) {
        if self.state != BreakerState::Closed {
            tracing::info!(venue, "circuit breaker closed: the probe connected");
        }
        self.state = BreakerState::Closed;
    }

    /// Before an attempt: an open breaker whose cool-down passed half-opens.
    fn attempt(&mut self, venue: &str) {
        if self.state == BreakerState::Open {
            tracing::info!(venue, "circuit breaker half-open: probing");
            self.state = BreakerState::HalfOpen;
        }
    }
}

/// The ingest thread's shared state (one thread, so a `RefCell`).
struct Ctx<'a, S: EventSink> {
    decoder: Decoder,
    sink: &'a mut S,
    tap: &'a mut dyn FrameTap,
    stats: &'a LiveStats,
    resync_buf: Vec<InstId>,
    /// Symbols waiting for a rebuild, per venue.
    pending_cb: Vec<String>,
    pending_bn: Vec<String>,
    next_conn: u16,
    errors: Vec<String>,
    last_frame: Option<Instant>,
    seen: std::collections::HashSet<String>,
    seen_order: VecDeque<String>,
}

impl<S: EventSink> Ctx<'_, S> {
    /// A webhook tick: applied once per `event_id`, through the tap and decoder like any
    /// frame; answered after its events are in the ring.
    fn tick(&mut self, req: TickRequest) {
        if self.seen.contains(&req.event_id) {
            let _ = req.reply.send(TickOutcome::Duplicate);
            return;
        }
        let f = Frame {
            venue: Venue::Webhook,
            kind: FrameKind::Ws,
            conn: 0,
            recv_ts_ns: unix_ns(),
            data: &req.frame,
        };
        self.tap.frame(&f);
        let outcome = match self.decoder.decode(&f, self.sink) {
            Ok(()) => {
                if self.seen_order.len() >= SEEN_IDS {
                    if let Some(old) = self.seen_order.pop_front() {
                        self.seen.remove(&old);
                    }
                }
                self.seen.insert(req.event_id.clone());
                self.seen_order.push_back(req.event_id);
                TickOutcome::Accepted
            }
            Err(e) => TickOutcome::Rejected(e.to_string()),
        };
        let _ = req.reply.send(outcome);
    }

    fn frame(&mut self, venue: Venue, kind: FrameKind<'_>, conn: u16, data: &[u8]) {
        let recv_ts_ns = unix_ns();
        let f = Frame {
            venue,
            kind,
            conn,
            recv_ts_ns,
            data,
        };
        self.tap.frame(&f);
        if let Err(e) = self.decoder.decode(&f, self.sink) {
            if self.errors.len() < 20 {
                let venue_msg = self
                    .decoder
                    .last_venue_error()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                let msg = format!(
                    "{} frame on connection {conn}: {e}{venue_msg}",
                    venue.name()
                );
                tracing::warn!(venue = venue.name(), conn, "frame refused: {e}{venue_msg}");
                self.errors.push(msg);
            }
        }
        self.last_frame = Some(Instant::now());
        // Relaxed: reported timestamp.
        self.stats
            .last_frame_ns
            .store(recv_ts_ns as u64, Ordering::Relaxed);
        self.after_decode();
    }

    fn after_decode(&mut self) {
        self.decoder.take_resyncs(&mut self.resync_buf);
        for i in 0..self.resync_buf.len() {
            if let Some((v, sym)) = self.decoder.instrument(self.resync_buf[i]) {
                let list = if v == Venue::Coinbase {
                    &mut self.pending_cb
                } else {
                    &mut self.pending_bn
                };
                if !list.iter().any(|s| s == sym) {
                    list.push(sym.to_string());
                }
            }
        }
    }

    /// A connection was lost: its venue's books are stale until rebuilt.
    fn venue_lost(&mut self, venue: Venue, symbols: &[String]) {
        for s in symbols {
            if let Some(i) = self.decoder.find(venue, s) {
                self.decoder.mark_stale(i, self.sink);
            }
        }
        self.after_decode();
        // The new connection rebuilds everything anyway.
        match venue {
            Venue::Coinbase => self.pending_cb.clear(),
            _ => self.pending_bn.clear(),
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_config(p: &ConnPolicy) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(p.max_frame_bytes))
        .max_frame_size(Some(p.max_frame_bytes))
}

/// Runs the live feeds until `stop`, the duration, or the idle limit.
#[allow(clippy::too_many_arguments)]
pub fn ingest<S: EventSink>(
    cfg: &LiveConfig,
    limits: &RunLimits,
    decoder: Decoder,
    sink: &mut S,
    tap: &mut dyn FrameTap,
    stats: &LiveStats,
    stop: &AtomicBool,
    ticks: Option<tokio::sync::mpsc::Receiver<TickRequest>>,
) -> Result<LiveSummary> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the ingest thread's runtime")?;
    let ctx = RefCell::new(Ctx {
        decoder,
        sink,
        tap,
        stats,
        resync_buf: Vec::new(),
        pending_cb: Vec::new(),
        pending_bn: Vec::new(),
        next_conn: 0,
        errors: Vec::new(),
        last_frame: None,
        seen: Default::default(),
        seen_order: VecDeque::new(),
    });
    let done = AtomicBool::new(false);
    rt.block_on(async {
        let start = Instant::now();
        let supervisor = async {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut last_stats = Instant::now();
            loop {
                tick.tick().await;
                {
                    let c = ctx.borrow();
                    stats.publish(&c.decoder.stats());
                    let idle = match (limits.until_idle, c.last_frame) {
                        (Some(lim), Some(t)) => t.elapsed() >= lim,
                        _ => false,
                    };
                    // Relaxed: a shutdown request from the signal handler.
                    if stop.load(Ordering::Relaxed)
                        || idle
                        || limits.duration.is_some_and(|d| start.elapsed() >= d)
                    {
                        done.store(true, Ordering::Relaxed);
                        return;
                    }
                }
                if let Some(every) = limits.stats_every {
                    if last_stats.elapsed() >= every {
                        last_stats = Instant::now();
                        eprintln!("stats: {}", stats.line());
                    }
                }
            }
        };
        let cb = async {
            if !cfg.coinbase_products.is_empty() {
                coinbase_loop(cfg, &ctx, stats, &done).await;
            }
        };
        let bn = async {
            if !cfg.binance_symbols.is_empty() {
                binance_loop(cfg, &ctx, stats, &done).await;
            }
        };
        let webhook = async {
            let Some(mut rx) = ticks else { return };
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    req = rx.recv() => match req {
                        Some(req) => ctx.borrow_mut().tick(req),
                        None => return,
                    },
                    _ = tick.tick() => {
                        // Relaxed: see the supervisor.
                        if done.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                }
            }
        };
        futures_util::future::join4(supervisor, cb, bn, webhook).await;
    });
    let c = ctx.into_inner();
    stats.publish(&c.decoder.stats());
    let stale = c
        .decoder
        .stale_instruments()
        .filter_map(|i| {
            c.decoder
                .instrument(i)
                .map(|(v, s)| format!("{}:{}", v.name(), s))
        })
        .collect();
    Ok(LiveSummary {
        decode: c.decoder.stats(),
        errors: c.errors,
        stale,
    })
}

/// Sleeps until `t` or until `done`.
async fn sleep_until(t: Instant, done: &AtomicBool) {
    while Instant::now() < t {
        // Relaxed: see the supervisor.
        if done.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep((t - Instant::now()).min(Duration::from_millis(20))).await;
    }
}

enum SessionEnd {
    /// We were asked to stop.
    Done,
    /// The connection failed or ended.
    Lost(String),
}

fn lost(e: impl std::fmt::Display) -> SessionEnd {
    SessionEnd::Lost(e.to_string())
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

fn subscribe_msg(kind: &str, channel: &str, products: &[String]) -> String {
    format!(
        r#"{{"type":"{kind}","product_ids":{},"channel":"{channel}"}}"#,
        serde_json::to_string(products).unwrap_or_else(|_| "[]".into())
    )
}

/// One venue's connection life: back-off and circuit breaker around `session`, which
/// runs one connection until it ends; a lost connection marks the venue's books stale.
#[allow(clippy::too_many_arguments)]
async fn reconnect_loop<S: EventSink>(
    venue: Venue,
    url: &str,
    symbols: &[String],
    p: &ConnPolicy,
    ctx: &RefCell<Ctx<'_, S>>,
    vs: &VenueStats,
    done: &AtomicBool,
    mut session: impl AsyncFnMut(Ws, u16) -> SessionEnd,
) {
    let name = venue.name();
    let mut breaker = Breaker::new(venue as u64);
    let mut first = true;
    // Relaxed: see the supervisor.
    while !done.load(Ordering::Relaxed) {
        sleep_until(breaker.next_attempt, done).await;
        if done.load(Ordering::Relaxed) {
            break;
        }
        breaker.attempt(name);
        vs.breaker.store(breaker.state as u8, Ordering::Relaxed);
        let started = Instant::now();
        let end = match connect(url, p).await {
            Err(e) => lost(format!("{e:#}")),
            Ok(ws) => {
                let conn = {
                    let mut c = ctx.borrow_mut();
                    c.next_conn = c.next_conn.wrapping_add(1);
                    c.next_conn
                };
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

async fn coinbase_loop<S: EventSink>(
    cfg: &LiveConfig,
    ctx: &RefCell<Ctx<'_, S>>,
    stats: &LiveStats,
    done: &AtomicBool,
) {
    let vs = &stats.coinbase;
    reconnect_loop(
        Venue::Coinbase,
        &cfg.coinbase_ws_url,
        &cfg.coinbase_products,
        &cfg.policy,
        ctx,
        vs,
        done,
        async |ws, conn| coinbase_session(ws, conn, cfg, ctx, vs, done).await,
    )
    .await;
}

/// What one WebSocket read gave.
enum Incoming {
    /// A frame to decode.
    Frame(tokio_tungstenite::tungstenite::Utf8Bytes),
    /// A control message (ping, pong, …): the connection is alive, nothing to decode.
    Other,
    /// A binary message that is not UTF-8 text: ignored.
    Skip,
}

/// Sorts one read: a frame (text, or binary UTF-8 where `binary_text`), a control
/// message, or the end of the session (counting messages over the size limit).
fn incoming(
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
            Ok(tokio_tungstenite::tungstenite::Utf8Bytes::try_from(b)
                .map_or(Incoming::Skip, Incoming::Frame))
        }
        Some(Ok(Message::Close(f))) => Err(lost(format!("closed by the server: {f:?}"))),
        Some(Ok(_)) => Ok(Incoming::Other),
    }
}

async fn coinbase_session<S: EventSink>(
    mut ws: Ws,
    conn: u16,
    cfg: &LiveConfig,
    ctx: &RefCell<Ctx<'_, S>>,
    vs: &VenueStats,
    done: &AtomicBool,
) -> SessionEnd {
    let p = &cfg.policy;
    for ch in &cfg.coinbase_channels {
        if let Err(e) = ws
            .send(Message::text(subscribe_msg(
                "subscribe",
                ch,
                &cfg.coinbase_products,
            )))
            .await
        {
            return lost(e);
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut last_ping = Instant::now();
    let mut last_msg = Instant::now();
    let mut last_resub: Option<Instant> = None;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let data = match incoming(msg, Venue::Coinbase, true, vs, p) {
                    Err(end) => return end,
                    Ok(Incoming::Frame(t)) => t,
                    Ok(Incoming::Other) => {
                        last_msg = Instant::now();
                        continue;
                    }
                    Ok(Incoming::Skip) => continue,
                };
                last_msg = Instant::now();
                ctx.borrow_mut().frame(Venue::Coinbase, FrameKind::Ws, conn, data.as_bytes());
            }
            _ = tick.tick() => {
                // Relaxed: see the supervisor.
                if done.load(Ordering::Relaxed) {
                    let _ = ws.close(None).await;
                    return SessionEnd::Done;
                }
                if last_msg.elapsed() > p.idle_timeout {
                    return lost(format!("no message for {:?}", p.idle_timeout));
                }
                if last_ping.elapsed() >= p.ping_interval {
                    last_ping = Instant::now();
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        return lost(e);
                    }
                }
            }
        }
        // A gap: resubscribe level2 for the stale products (a fresh snapshot each).
        let due = last_resub.is_none_or(|t| t.elapsed() >= p.resubscribe_interval);
        if due && !ctx.borrow().pending_cb.is_empty() {
            let products = std::mem::take(&mut ctx.borrow_mut().pending_cb);
            last_resub = Some(Instant::now());
            vs.resyncs_requested.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                venue = "coinbase",
                conn,
                ?products,
                "gap: resubscribing level2"
            );
            for kind in ["unsubscribe", "subscribe"] {
                if let Err(e) = ws
                    .send(Message::text(subscribe_msg(kind, "level2", &products)))
                    .await
                {
                    return lost(e);
                }
            }
        }
    }
}

/// One REST depth fetch's outcome.
enum Rest {
    Body(String),
    RetryAfter(Duration, u16),
    Failed(String),
}

fn fetch_depth(url: String) -> Rest {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    match agent.get(&url).call() {
        Err(e) => Rest::Failed(format!("{url}: {e}")),
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            if status == 429 || status == 418 {
                let secs = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1);
                return Rest::RetryAfter(Duration::from_secs(secs.max(1)), status);
            }
            let body = resp
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string();
            match (status, body) {
                (200, Ok(b)) => Rest::Body(b),
                (s, Ok(b)) => Rest::Failed(format!(
                    "{url}: HTTP {s}: {}",
                    b.chars().take(200).collect::<String>()
                )),
                (_, Err(e)) => Rest::Failed(format!("{url}: {e}")),
            }
        }
    }
}

/// Binance's documented weight of a depth request.
fn depth_weight(limit: u32) -> u32 {
    match limit {
        0..=100 => 5,
        101..=500 => 25,
        501..=1000 => 50,
        _ => 250,
    }
}

async fn binance_loop<S: EventSink>(
    cfg: &LiveConfig,
    ctx: &RefCell<Ctx<'_, S>>,
    stats: &LiveStats,
    done: &AtomicBool,
) {
    let vs = &stats.binance;
    let streams: Vec<String> = cfg
        .binance_symbols
        .iter()
        .flat_map(|s| {
            cfg.binance_streams
                .iter()
                .map(move |st| format!("{}@{}", s.to_ascii_lowercase(), st))
        })
        .collect();
    let url = format!(
        "{}/stream?streams={}",
        cfg.binance_ws_url.trim_end_matches('/'),
        streams.join("/")
    );
    // The REST weight budget and any Retry-After outlive a connection.
    let mut weights: VecDeque<(Instant, u32)> = VecDeque::new();
    let mut rest_paused_until = Instant::now();
    reconnect_loop(
        Venue::Binance,
        &url,
        &cfg.binance_symbols,
        &cfg.policy,
        ctx,
        vs,
        done,
        async |ws, conn| {
            binance_session(
                ws,
                conn,
                cfg,
                ctx,
                vs,
                done,
                &mut weights,
                &mut rest_paused_until,
            )
            .await
        },
    )
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn binance_session<S: EventSink>(
    mut ws: Ws,
    conn: u16,
    cfg: &LiveConfig,
    ctx: &RefCell<Ctx<'_, S>>,
    vs: &VenueStats,
    done: &AtomicBool,
    weights: &mut VecDeque<(Instant, u32)>,
    rest_paused_until: &mut Instant,
) -> SessionEnd {
    let p = &cfg.policy;
    // Every symbol needs a snapshot on a new connection; diffs buffer meanwhile.
    let mut queue: VecDeque<String> = cfg.binance_symbols.iter().cloned().collect();
    let mut in_flight: Option<(String, tokio::task::JoinHandle<Rest>)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut last_ping = Instant::now();
    let mut last_msg = Instant::now();
    let weight = depth_weight(cfg.binance_depth_limit);
    loop {
        tokio::select! {
            msg = ws.next() => {
                let data = match incoming(msg, Venue::Binance, false, vs, p) {
                    Err(end) => return end,
                    Ok(Incoming::Frame(t)) => t,
                    Ok(Incoming::Other) => {
                        last_msg = Instant::now();
                        continue;
                    }
                    Ok(Incoming::Skip) => continue,
                };
                last_msg = Instant::now();
                ctx.borrow_mut().frame(Venue::Binance, FrameKind::Ws, conn, data.as_bytes());
            }
            r = async { (&mut in_flight.as_mut().expect("guarded").1).await }, if in_flight.is_some() => {
                let (symbol, _) = in_flight.take().expect("guarded");
                match r.unwrap_or_else(|e| Rest::Failed(e.to_string())) {
                    Rest::Body(body) => {
                        vs.rest_fetches.fetch_add(1, Ordering::Relaxed);
                        ctx.borrow_mut().frame(Venue::Binance, FrameKind::RestDepth { symbol: symbol.as_bytes() }, conn, body.as_bytes());
                    }
                    Rest::RetryAfter(d, status) => {
                        vs.rest_throttled.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(venue = "binance", status, "REST rate limit: pausing snapshots for {d:?}");
                        *rest_paused_until = Instant::now() + d;
                        queue.push_front(symbol);
                    }
                    Rest::Failed(e) => {
                        tracing::warn!(venue = "binance", %symbol, "depth snapshot failed: {e}; retrying");
                        *rest_paused_until = Instant::now() + p.reconnect_min;
                        queue.push_back(symbol);
                    }
                }
            }
            _ = tick.tick() => {
                // Relaxed: see the supervisor.
                if done.load(Ordering::Relaxed) {
                    let _ = ws.close(None).await;
                    if let Some((_, h)) = in_flight.take() {
                        h.abort();
                    }
                    return SessionEnd::Done;
                }
                if last_msg.elapsed() > p.idle_timeout {
                    return lost(format!("no message for {:?}", p.idle_timeout));
                }
                if last_ping.elapsed() >= p.ping_interval {
                    last_ping = Instant::now();
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        return lost(e);
                    }
                }
            }
        }
        // Gaps: refetch the snapshot of those symbols only.
        let pending = std::mem::take(&mut ctx.borrow_mut().pending_bn);
        for s in pending {
            if !queue.contains(&s) && in_flight.as_ref().is_none_or(|(f, _)| *f != s) {
                vs.resyncs_requested.fetch_add(1, Ordering::Relaxed);
                tracing::info!(venue = "binance", symbol = %s, "gap: refetching the depth snapshot");
                queue.push_back(s);
            }
        }
        // One REST call at a time, within the weight budget and any Retry-After.
        let now = Instant::now();
        while weights
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= Duration::from_secs(60))
        {
            weights.pop_front();
        }
        let used: u32 = weights.iter().map(|(_, w)| w).sum();
        if in_flight.is_none()
            && now >= *rest_paused_until
            && used + weight <= p.rest_weight_per_minute.max(weight)
        {
            if let Some(symbol) = queue.pop_front() {
                weights.push_back((now, weight));
                let url = format!(
                    "{}/api/v3/depth?symbol={}&limit={}",
                    cfg.binance_rest_url.trim_end_matches('/'),
                    symbol,
                    cfg.binance_depth_limit
                );
                in_flight = Some((
                    symbol,
                    tokio::task::spawn_blocking(move || fetch_depth(url)),
                ));
            }
        }
    }
}

/// Writes every frame to native capture files, rotated by size or age.
///
/// Durability: records are flushed to the OS at least once a second (a crash of the
/// process loses nothing older), and each file is fsynced when it is rotated and at the
/// end (a power loss can lose the unsynced tail of the current file).
pub struct Recorder {
    dir: PathBuf,
    writer: Option<CaptureWriter>,
    rotate_bytes: u64,
    rotate_after: Duration,
    opened: Instant,
    last_flush: Instant,
    files: Vec<PathBuf>,
    /// The first write error, if any (recording stops there).
    pub error: Option<String>,
    /// Frames recorded.
    pub frames: u64,
}

impl Recorder {
    /// A recorder writing into `dir` (created if needed).
    pub fn new(dir: &Path, rotate_bytes: u64, rotate_after: Duration) -> Result<Recorder> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut r = Recorder {
            dir: dir.to_path_buf(),
            writer: None,
            rotate_bytes,
            rotate_after,
            opened: Instant::now(),
            last_flush: Instant::now(),
            files: Vec::new(),
            error: None,
            frames: 0,
        };
        r.rotate()?;
        Ok(r)
    }

    fn rotate(&mut self) -> Result<()> {
        if let Some(mut w) = self.writer.take() {
            w.sync()?;
        }
        let name = format!(
            "hermes-{}-{:04}.hcap",
            rfc3339(unix_ns())
                .replace([':', '.'], "")
                .chars()
                .take(17)
                .collect::<String>(),
            self.files.len()
        );
        let path = self.dir.join(name);
        self.writer = Some(CaptureWriter::create(&path)?);
        tracing::info!(file = %path.display(), "recording");
        self.files.push(path);
        self.opened = Instant::now();
        Ok(())
    }

    /// The files written so far.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Flushes and fsyncs the current file.
    pub fn finish(&mut self) -> Result<()> {
        if let Some(w) = &mut self.writer {
            w.sync()?;
        }
        Ok(())
    }

    fn write(&mut self, f: &Frame<'_>) -> Result<()> {
        let (kind, tag) = match f.kind {
            FrameKind::Ws => (RecordKind::Ws, &b""[..]),
            FrameKind::RestDepth { symbol } => (RecordKind::RestDepth, symbol),
        };
        let w = self.writer.as_mut().context("recorder closed")?;
        w.append(&Record {
            recv_ts_ns: f.recv_ts_ns,
            venue: f.venue,
            kind,
            conn: f.conn,
            tag,
            data: f.data,
        })?;
        self.frames += 1;
        if w.offset() >= self.rotate_bytes || self.opened.elapsed() >= self.rotate_after {
            self.rotate()?;
        } else if self.last_flush.elapsed() >= Duration::from_secs(1) {
            self.last_flush = Instant::now();
            w.flush()?;
        }
        Ok(())
    }
}

impl FrameTap for Recorder {
    fn frame(&mut self, f: &Frame<'_>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write(f) {
            tracing::error!("recording stopped: {e:#}");
            self.error = Some(format!("{e:#}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_layers_and_errors() {
        let dir = std::env::temp_dir().join(format!("hermes-live-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "[coinbase]\nproducts = [\"BTC-USD\"]\n[connection]\nreconnect_min_ms = 50\n",
        )
        .unwrap();
        let env = |k: &str| (k == "BINANCE_SYMBOLS").then(|| "btcusdt, ethusdt".to_string());
        let c = LiveConfig::load(Some(&f), &env).unwrap();
        assert_eq!(c.coinbase_products, ["BTC-USD"]);
        assert_eq!(c.binance_symbols, ["BTCUSDT", "ETHUSDT"]);
        assert_eq!(c.policy.reconnect_min, Duration::from_millis(50));
        std::fs::write(&f, "[coinbase]\nproduct = [\"BTC-USD\"]\n").unwrap();
        let e = format!("{:#}", LiveConfig::load(Some(&f), &|_| None).unwrap_err());
        assert!(e.contains("unknown field `product`"), "{e}");
        let e = format!(
            "{:#}",
            LiveConfig::load(None, &|_| None)
                .unwrap()
                .require_feed(false)
                .unwrap_err()
        );
        assert!(e.contains("no feed configured"), "{e}");
        LiveConfig::load(None, &|_| None)
            .unwrap()
            .require_feed(true)
            .unwrap();
        let env = |k: &str| match k {
            "COINBASE_PRODUCTS" => Some("BTC-USD".to_string()),
            "COINBASE_WS_URL" => Some("http://x".to_string()),
            _ => None,
        };
        assert!(format!("{:#}", LiveConfig::load(None, &env).unwrap_err()).contains("ws://"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backoff_grows_caps_and_opens_the_breaker() {
        let p = ConnPolicy {
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(8),
            ..Default::default()
        };
        let mut b = Breaker::new(3);
        let mut delays = Vec::new();
        for _ in 0..4 {
            let before = Instant::now();
            b.failure(&p, "t");
            delays.push(b.next_attempt.duration_since(before));
            assert_eq!(b.state, BreakerState::Closed);
        }
        // Jittered in [cap/2, cap] with caps 1, 2, 4, 8 s.
        for (d, cap) in delays.iter().zip([1.0, 2.0, 4.0, 8.0]) {
            let s = d.as_secs_f64();
            assert!(s >= cap / 2.0 - 0.01 && s <= cap + 0.01, "{s} vs cap {cap}");
        }
        b.failure(&p, "t");
        assert_eq!(b.state, BreakerState::Open);
        b.attempt("t");
        assert_eq!(b.state, BreakerState::HalfOpen);
        b.success("t");
        assert_eq!((b.state, b.failures), (BreakerState::Closed, 0));
        assert_eq!(depth_weight(1000), 50);
        assert_eq!(depth_weight(5000), 250);
    }
}
