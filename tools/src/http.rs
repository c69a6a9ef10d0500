//! The HTTP face, off the hot path on its own (unpinned) thread: Prometheus `/metrics`,
//! `/health/liveness` and `/health/readiness`, REST over the shm file (never the book
//! thread's memory), recent trades from PostgreSQL, an SSE stream of top-of-book changes,
//! and the authenticated `POST /ingest/tick` webhook.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hermes_shm::{Instrument, ShmReader, TopOfBook};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot, watch};

use hermes_book::clock::unix_ns;
use hermes_engine::metrics::{metric, EngineMetrics};
use hermes_engine::RingStats;
use hermes_live::{BreakerState, LiveStats, TickOutcome, TickRequest};
use hermes_shm::json::tob_json;

/// Largest accepted webhook body.
pub const MAX_TICK_BODY: usize = 16 * 1024;

/// Everything the server reads.
pub struct HttpConfig {
    /// The shm file the REST and SSE endpoints read.
    pub shm_path: PathBuf,
    /// Live feed counters (`run`), if any.
    pub live: Option<Arc<LiveStats>>,
    /// Which venues `run` ingests (readiness requires them connected).
    pub venues: Vec<hermes_ingest::Venue>,
    /// Ring counters.
    pub ring: Arc<RingStats>,
    /// Book thread counters.
    pub engine: Arc<EngineMetrics>,
    /// Persister counters, if persisting.
    pub persist: Option<Arc<hermes_persist::PersistStats>>,
    /// For `/symbols/{id}/history`.
    pub database_url: Option<String>,
    /// Required `x-api-key` on public reads, if set.
    pub api_key: Option<String>,
    /// Webhook credentials (user, password); webhook disabled when `None`.
    pub ingest_auth: Option<(String, String)>,
    /// To the ingest thread (webhook ticks); `None` when nothing ingests them (replay).
    pub ticks: Option<mpsc::Sender<TickRequest>>,
    /// Most SSE events per second per client (per symbol changes are coalesced).
    pub sse_max_hz: f64,
    /// Readiness fails when the persister lags more than this.
    pub max_persist_lag: Duration,
}

/// The server's own counters.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests served.
    pub requests: AtomicU64,
    /// SSE clients connected now.
    pub sse_clients: AtomicU64,
    /// SSE clients dropped for reading too slowly.
    pub sse_dropped: AtomicU64,
    /// SSE events sent.
    pub sse_events: AtomicU64,
    /// Webhook ticks accepted.
    pub ticks_accepted: AtomicU64,
    /// Webhook ticks acknowledged as duplicates.
    pub ticks_duplicate: AtomicU64,
    /// Webhook ticks refused (auth, validation).
    pub ticks_rejected: AtomicU64,
}

/// One slot as the SSE poller last saw it.
#[derive(Clone, Debug)]
struct SlotView {
    id: String,
    seq: u64,
    json: Arc<str>,
}

struct AppState {
    cfg: HttpConfig,
    stats: HttpStats,
    reader: Mutex<Option<ShmReader>>,
    board: watch::Receiver<Arc<Vec<SlotView>>>,
    started: Instant,
}

type App = Arc<AppState>;

/// A running server; stops when dropped.
pub struct HttpServer {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        // Relaxed: a stop request polled by the server thread.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn id_of(i: &Instrument) -> String {
    format!("{}:{}", i.venue.name(), i.symbol)
}

impl AppState {
    /// Opens (or reopens, when the writer replaced the file) the shm reader.
    fn with_reader<T>(&self, f: impl FnOnce(&ShmReader) -> T) -> Result<T, String> {
        let mut g = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let stale = match g.as_ref() {
            Some(r) => matches!(
                r.writer_status(Duration::from_secs(3600)),
                hermes_shm::WriterStatus::Replaced
            ),
            None => true,
        };
        if stale {
            // SAFETY: Hermes writers never truncate a published shm file; we only read.
            *g = Some(
                unsafe { ShmReader::open(&self.cfg.shm_path) }
                    .map_err(|e| format!("shm file unavailable: {e}"))?,
            );
        }
        Ok(f(g.as_ref().expect("opened above")))
    }
}

/// Detail of one instrument: the report fields plus times and ages.
fn detail(i: &Instrument, t: &TopOfBook) -> Value {
    let mut v: Value = serde_json::from_str(&tob_json(
        i.venue.name(),
        &i.symbol,
        i.price_decimals,
        i.size_decimals,
        t,
    ))
    .unwrap_or(Value::Null);
    let now = unix_ns();
    let age_ms = |ts: i64| {
        if ts > 0 {
            Some((now - ts) as f64 / 1e6)
        } else {
            None
        }
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), json!(id_of(i)));
        o.insert("exch_ts_ns".into(), json!(t.exch_ts_ns));
        o.insert("recv_ts_ns".into(), json!(t.recv_ts_ns));
        o.insert("publish_ts_ns".into(), json!(t.publish_ts_ns));
        o.insert("age_ms".into(), json!(age_ms(t.publish_ts_ns)));
        o.insert(
            "crossed".into(),
            json!(t.flags & hermes_shm::FLAG_CROSSED != 0),
        );
        o.insert("trades".into(), json!(t.trades));
        if t.trades > 0 {
            let side = ["unknown", "buy", "sell"]
                .get(t.last_trade_side as usize)
                .copied()
                .unwrap_or("unknown");
            o.insert(
                "last_trade".into(),
                json!({
                    "price": hermes_book::Decimal::new(t.last_trade_px, i.price_decimals).to_string(),
                    "size": hermes_book::Decimal::new(t.last_trade_qty, i.size_decimals).to_string(),
                    "side": side,
                    "ts_ns": t.last_trade_ts_ns,
                }),
            );
        }
    }
    v
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

fn check_api_key(app: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(key) = &app.cfg.api_key else {
        return Ok(());
    };
    let given = headers
        .get("x-api-key")
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    if bool::from(given.ct_eq(key.as_bytes())) {
        Ok(())
    } else {
        Err(Box::new(err(
            StatusCode::UNAUTHORIZED,
            "missing or wrong x-api-key header",
        )))
    }
}

async fn symbols(State(app): State<App>, headers: HeaderMap) -> Response {
    app.stats.requests.fetch_add(1, Ordering::Relaxed);
    if let Err(r) = check_api_key(&app, &headers) {
        return *r;
    }
    match app.with_reader(|r| {
        r.instruments()
            .iter()
            .map(|i| {
                let t = r.try_read(i.slot);
                json!({
                    "id": id_of(i),
                    "venue": i.venue.name(),
                    "symbol": i.symbol,
                    "slot": i.slot.0,
                    "stale": t.map(|t| t.is_stale()),
                    "updates": t.map(|t| t.updates),
                })
            })
            .collect::<Vec<_>>()
    }) {
        Ok(list) => Json(json!({ "symbols": list })).into_response(),
        Err(e) => err(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// Finds an instrument by `venue:SYMBOL` or a bare symbol (if unique).
fn find(r: &ShmReader, id: &str) -> Result<Instrument, (StatusCode, String)> {
    let all = r.instruments();
    let hits: Vec<&Instrument> = all
        .iter()
        .filter(|i| id_of(i) == id || (!id.contains(':') && i.symbol.eq_ignore_ascii_case(id)))
        .collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err((
            StatusCode::NOT_FOUND,
            format!("no instrument {id:?}; GET /symbols lists them"),
        )),
        _ => Err((
            StatusCode::BAD_REQUEST,
            format!("{id:?} is ambiguous; use venue:SYMBOL"),
        )),
    }
}

async fn symbol(
    State(app): State<App>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    app.stats.requests.fetch_add(1, Ordering::Relaxed);
    if let Err(r) = check_api_key(&app, &headers) {
        return *r;
    }
    match app.with_reader(|r| find(r, &id).map(|i| (r.read(i.slot), i))) {
        Ok(Ok((Some(t), i))) => Json(detail(&i, &t)).into_response(),
        Ok(Ok((None, _))) => err(
            StatusCode::SERVICE_UNAVAILABLE,
            "the slot stayed mid-update: the writer died inside it",
        ),
        Ok(Err((s, m))) => err(s, m),
        Err(e) => err(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[derive(serde::Deserialize)]
struct HistoryQuery {
    limit: Option<i64>,
}

async fn history(
    State(app): State<App>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    app.stats.requests.fetch_add(1, Ordering::Relaxed);
    if let Err(r) = check_api_key(&app, &headers) {
        return *r;
    }
    let Some(url) = app.cfg.database_url.clone() else {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "no database configured: start with --database-url (or DATABASE_URL) to keep history",
        );
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return err(StatusCode::BAD_REQUEST, "limit must be 1..=10000");
    }
    let inst = match app.with_reader(|r| find(r, &id)) {
        Ok(Ok(i)) => i,
        Ok(Err((s, m))) => return err(s, m),
        Err(e) => return err(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let rows = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, String> {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| format!("database: {e}"))?;
        let rows = c
            .query(
                "SELECT trade_id, price::text, size::text, side, \
                 (extract(epoch from exchange_ts) * 1000000)::bigint, \
                 (extract(epoch from receive_ts) * 1000000)::bigint \
                 FROM trades WHERE venue = $1 AND symbol = $2 ORDER BY exchange_ts DESC, trade_id DESC LIMIT $3",
                &[&inst.venue.name(), &inst.symbol, &limit],
            )
            .map_err(|e| format!("database: {e}"))?;
        Ok(rows
            .iter()
            .map(|r| {
                json!({
                    "trade_id": r.get::<_, i64>(0),
                    "price": r.get::<_, String>(1),
                    "size": r.get::<_, String>(2),
                    "side": r.get::<_, String>(3),
                    "exchange_ts_us": r.get::<_, i64>(4),
                    "receive_ts_us": r.get::<_, i64>(5),
                })
            })
            .collect())
    })
    .await;
    match rows {
        Ok(Ok(trades)) => Json(json!({ "id": id, "trades": trades })).into_response(),
        Ok(Err(e)) => err(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn liveness(State(app): State<App>) -> Response {
    // Relaxed: a reported timestamp.
    let beat = app.cfg.engine.heartbeat_ns.load(Ordering::Relaxed) as i64;
    let age = Duration::from_nanos((unix_ns() - beat).max(0) as u64);
    if beat > 0 && age < Duration::from_secs(2) {
        Json(json!({ "status": "alive", "book_thread_heartbeat_ms": age.as_millis() as u64 }))
            .into_response()
    } else if beat == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting", "reason": "the book thread has not started yet" })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "dead", "reason": format!("book thread silent for {} ms", age.as_millis()) })),
        )
            .into_response()
    }
}

/// Why the engine is not ready (empty = ready).
fn unready(app: &AppState) -> Vec<String> {
    let mut why = Vec::new();
    if let Some(live) = &app.cfg.live {
        for v in &app.cfg.venues {
            let (name, vs) = match v {
                hermes_ingest::Venue::Coinbase => ("coinbase", &live.coinbase),
                _ => ("binance", &live.binance),
            };
            // Relaxed: reported states.
            if !vs.connected.load(Ordering::Relaxed) {
                why.push(format!("{name} feed disconnected"));
            }
            if vs.breaker() == BreakerState::Open {
                why.push(format!("{name} circuit breaker open"));
            }
        }
    }
    if let Some(p) = &app.cfg.persist {
        if !p.connected.load(Ordering::Relaxed) {
            why.push("persister not connected to PostgreSQL".into());
        }
        if p.halted.load(Ordering::Relaxed) {
            why.push("persister halted on a row the database refuses (see logs)".into());
        }
        let lag = Duration::from_millis(p.lag_ms.load(Ordering::Relaxed));
        if lag > app.cfg.max_persist_lag {
            why.push(format!("persister {} ms behind", lag.as_millis()));
        }
    }
    why
}

async fn readiness(State(app): State<App>) -> Response {
    let why = unready(&app);
    if why.is_empty() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reasons": why })),
        )
            .into_response()
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let mut s = String::with_capacity(8192);
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    if let Some(l) = &app.cfg.live {
        metric(
            &mut s,
            "counter",
            "hermes_frames_received_total",
            "Frames received from the venues (REST snapshots and webhook ticks included).",
            &[("", r(&l.frames))],
        );
        metric(
            &mut s,
            "counter",
            "hermes_received_bytes_total",
            "Bytes of frames received.",
            &[("", r(&l.bytes))],
        );
        metric(
            &mut s,
            "counter",
            "hermes_parse_errors_total",
            "Frames refused as malformed.",
            &[("", r(&l.parse_errors))],
        );
        metric(
            &mut s,
            "counter",
            "hermes_sequence_gaps_total",
            "Sequence gaps detected.",
            &[("", r(&l.gaps))],
        );
        metric(
            &mut s,
            "counter",
            "hermes_resyncs_total",
            "Books rebuilt after a gap.",
            &[("", r(&l.resyncs))],
        );
        let venues = [
            ("venue=\"coinbase\"", &l.coinbase),
            ("venue=\"binance\"", &l.binance),
        ];
        let per = |f: &dyn Fn(&hermes_live::VenueStats) -> f64| {
            venues.iter().map(|(lb, v)| (*lb, f(v))).collect::<Vec<_>>()
        };
        metric(
            &mut s,
            "counter",
            "hermes_reconnects_total",
            "Reconnections.",
            &per(&|v| r(&v.reconnects)),
        );
        metric(
            &mut s,
            "counter",
            "hermes_connection_failures_total",
            "Failed connection attempts and lost connections.",
            &per(&|v| r(&v.failures)),
        );
        metric(
            &mut s,
            "gauge",
            "hermes_feed_connected",
            "1 while the venue's connection is up.",
            &per(&|v| v.connected.load(Ordering::Relaxed) as u8 as f64),
        );
        metric(
            &mut s,
            "gauge",
            "hermes_circuit_breaker_state",
            "0 closed, 1 open, 2 half-open.",
            &per(&|v| v.breaker() as u8 as f64),
        );
        metric(
            &mut s,
            "counter",
            "hermes_resync_requests_total",
            "Resubscriptions / REST snapshot refetches after gaps.",
            &per(&|v| r(&v.resyncs_requested)),
        );
        metric(
            &mut s,
            "counter",
            "hermes_rest_snapshots_total",
            "Binance REST depth snapshots fetched.",
            &per(&|v| r(&v.rest_fetches)),
        );
        metric(
            &mut s,
            "counter",
            "hermes_rest_throttled_total",
            "REST answers 429/418 honoured.",
            &per(&|v| r(&v.rest_throttled)),
        );
        metric(
            &mut s,
            "counter",
            "hermes_oversize_messages_total",
            "Messages over the size limit.",
            &per(&|v| r(&v.oversize)),
        );
    }
    let pushed = r(&app.cfg.ring.pushed);
    let popped = r(&app.cfg.engine.events);
    metric(
        &mut s,
        "counter",
        "hermes_ring_pushed_events_total",
        "Events pushed into the ingest→book ring.",
        &[("", pushed)],
    );
    metric(
        &mut s,
        "gauge",
        "hermes_ring_occupancy_events",
        "Events waiting in the ring (sampled every 64 events).",
        &[("", (pushed - popped).max(0.0))],
    );
    metric(
        &mut s,
        "counter",
        "hermes_ring_full_waits_total",
        "Times the ingest thread found the ring full.",
        &[("", r(&app.cfg.ring.full_waits))],
    );
    metric(
        &mut s,
        "counter",
        "hermes_ring_dropped_events_total",
        "Events dropped by the drop-newest ring policy.",
        &[("", r(&app.cfg.ring.dropped))],
    );
    metric(
        &mut s,
        "counter",
        "hermes_book_events_applied_total",
        "Events applied by the book thread.",
        &[("", popped)],
    );
    metric(
        &mut s,
        "counter",
        "hermes_book_crossed_total",
        "Commits that left a book crossed or locked.",
        &[("", r(&app.cfg.engine.crossed))],
    );
    app.cfg.engine.apply.render(
        &mut s,
        "hermes_book_apply_seconds",
        "Book apply time per event (1 in 64 sampled).",
        "",
    );
    app.cfg.engine.recv_lag.render(
        &mut s,
        "hermes_receive_lag_seconds",
        "Receive time minus exchange time of applied frames.",
        "",
    );
    if let Some(p) = &app.cfg.persist {
        let tables = hermes_persist::TABLES;
        let rows: Vec<(String, f64)> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("table=\"{t}\""), p.rows_of(i) as f64))
            .collect();
        let rows_ref: Vec<(&str, f64)> = rows.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            &mut s,
            "counter",
            "hermes_persist_rows_written_total",
            "Rows inserted into PostgreSQL.",
            &rows_ref,
        );
        metric(
            &mut s,
            "counter",
            "hermes_persist_duplicate_rows_total",
            "Rows PostgreSQL already had (idempotent rewrites).",
            &[("", r(&p.duplicate_rows))],
        );
        metric(
            &mut s,
            "counter",
            "hermes_persist_batches_total",
            "COPY batches committed.",
            &[("", r(&p.batches))],
        );
        metric(
            &mut s,
            "gauge",
            "hermes_persist_copy_latency_seconds",
            "Last batch's COPY + insert + commit time.",
            &[("", r(&p.copy_latency_us_last) / 1e6)],
        );
        metric(
            &mut s,
            "gauge",
            "hermes_persist_copy_latency_max_seconds",
            "Slowest batch so far.",
            &[("", r(&p.copy_latency_us_max) / 1e6)],
        );
        metric(
            &mut s,
            "gauge",
            "hermes_persist_lag_bytes",
            "Journal bytes not yet in PostgreSQL.",
            &[("", r(&p.lag_bytes))],
        );
        metric(
            &mut s,
            "gauge",
            "hermes_persist_lag_seconds",
            "Time since PostgreSQL last held everything journaled.",
            &[("", r(&p.lag_ms) / 1e3)],
        );
        metric(
            &mut s,
            "gauge",
            "hermes_journal_size_bytes",
            "Size of the journal.",
            &[("", r(&p.journal_bytes))],
        );
        metric(
            &mut s,
            "counter",
            "hermes_persist_retries_total",
            "Retried database attempts.",
            &[("", r(&p.retries))],
        );
        metric(
            &mut s,
            "gauge",
            "hermes_persist_connected",
            "1 while connected to PostgreSQL.",
            &[("", p.connected.load(Ordering::Relaxed) as u8 as f64)],
        );
    }
    let h = &app.stats;
    metric(
        &mut s,
        "counter",
        "hermes_http_requests_total",
        "HTTP requests to the REST endpoints.",
        &[("", r(&h.requests))],
    );
    metric(
        &mut s,
        "gauge",
        "hermes_sse_clients",
        "SSE clients connected.",
        &[("", r(&h.sse_clients))],
    );
    metric(
        &mut s,
        "counter",
        "hermes_sse_dropped_clients_total",
        "SSE clients dropped for reading too slowly.",
        &[("", r(&h.sse_dropped))],
    );
    metric(
        &mut s,
        "counter",
        "hermes_sse_events_total",
        "SSE events sent.",
        &[("", r(&h.sse_events))],
    );
    metric(
        &mut s,
        "counter",
        "hermes_webhook_ticks_total",
        "Webhook ticks by outcome.",
        &[
            ("outcome=\"accepted\"", r(&h.ticks_accepted)),
            ("outcome=\"duplicate\"", r(&h.ticks_duplicate)),
            ("outcome=\"rejected\"", r(&h.ticks_rejected)),
        ],
    );
    metric(
        &mut s,
        "gauge",
        "hermes_uptime_seconds",
        "Seconds since the HTTP server started.",
        &[("", app.started.elapsed().as_secs_f64())],
    );
    let _ = writeln!(s);
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        s,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct StreamQuery {
    symbols: Option<String>,
}

async fn stream(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Response {
    app.stats.requests.fetch_add(1, Ordering::Relaxed);
    if let Err(r) = check_api_key(&app, &headers) {
        return *r;
    }
    let wanted: Option<Vec<String>> = q.symbols.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });
    let (tx, rx) = mpsc::channel::<SseEvent>(16);
    let mut board = app.board.clone();
    let period = Duration::from_secs_f64(1.0 / app.cfg.sse_max_hz.max(0.1));
    let app2 = app.clone();
    app.stats.sse_clients.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let mut sent: HashMap<String, u64> = HashMap::new();
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                break;
            }
            let snap = board.borrow_and_update().clone();
            let mut full = false;
            for v in snap.iter() {
                let matches = wanted.as_ref().is_none_or(|w| {
                    w.iter().any(|s| {
                        *s == v.id
                            || v.id
                                .split_once(':')
                                .is_some_and(|(_, sym)| sym.eq_ignore_ascii_case(s))
                    })
                });
                if !matches || sent.get(&v.id).is_some_and(|s| *s >= v.seq) {
                    continue;
                }
                let ev = SseEvent::default()
                    .event("tob")
                    .id(v.seq.to_string())
                    .data(&*v.json);
                match tx.try_send(ev) {
                    Ok(()) => {
                        sent.insert(v.id.clone(), v.seq);
                        app2.stats.sse_events.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        full = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if full {
                // This client does not keep up: drop it rather than slow anyone else.
                app2.stats.sse_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("SSE client too slow; dropped");
                break;
            }
        }
        app2.stats.sse_clients.fetch_sub(1, Ordering::Relaxed);
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|ev| (Ok::<_, std::convert::Infallible>(ev), rx))
    });
    Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Polls the shm slots and publishes changed ones to the SSE clients.
async fn poll_board(app: App, tx: watch::Sender<Arc<Vec<SlotView>>>, stop: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut last: Vec<SlotView> = Vec::new();
    // Relaxed: a stop request.
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let Ok(views) = app.with_reader(|r| {
            let insts = r.instruments();
            let mut changed = insts.len() != last.len();
            let mut out = Vec::with_capacity(insts.len());
            for (k, i) in insts.iter().enumerate() {
                let seq = r.seq(i.slot);
                match last.get(k) {
                    Some(v) if v.seq == seq && !changed => out.push(v.clone()),
                    _ => {
                        let Some(t) = r.read(i.slot) else { continue };
                        changed = true;
                        out.push(SlotView {
                            id: id_of(i),
                            seq: t.seq,
                            json: detail(i, &t).to_string().into(),
                        });
                    }
                }
            }
            (changed, out)
        }) else {
            continue;
        };
        if views.0 {
            last = views.1;
            let _ = tx.send(Arc::new(last.clone()));
        }
    }
}

/// A JSON field's raw text exactly as sent (numbers as written, strings unquoted).
fn raw_field(body: &[u8], key: &str) -> Option<String> {
    let v = sonic_rs::get_from_slice(body, &[key]).ok()?;
    let raw = v.as_raw_str();
    if raw == "null" {
        return None;
    }
    Some(
        match raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(s) => s.to_string(),
            None => raw.to_string(),
        },
    )
}

/// Validates a webhook body and builds the canonical frame.
fn validate_tick(body: &[u8]) -> Result<(Vec<u8>, String), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let o = v.as_object().ok_or("body must be a JSON object")?;
    for k in ["symbol", "price", "volume", "source", "ts", "event_id"] {
        if !o.contains_key(k) {
            return Err(format!("missing field `{k}`"));
        }
    }
    let symbol = o["symbol"].as_str().ok_or("`symbol` must be a string")?;
    if symbol.is_empty()
        || symbol.len() > 32
        || !symbol
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/.".contains(c))
    {
        return Err("`symbol` must be 1-32 characters of A-Z, a-z, 0-9, - _ / .".into());
    }
    let number = |k: &str| -> Result<String, String> {
        let text = raw_field(body, k).ok_or(format!("`{k}` must be a number"))?;
        let m = hermes_book::parse_decimal(text.as_bytes(), 8)
            .map_err(|e| format!("`{k}` is not an exact decimal with at most 8 decimals: {e}"))?;
        if m < 0 {
            return Err(format!("`{k}` must not be negative"));
        }
        Ok(hermes_book::Decimal::new(m, 8).to_string())
    };
    let price = number("price")?;
    if price == "0" {
        return Err("`price` must be > 0".into());
    }
    let volume = number("volume")?;
    let source = o["source"].as_str().ok_or("`source` must be a string")?;
    if source.is_empty() || source.len() > 64 {
        return Err("`source` must be 1-64 characters".into());
    }
    let ts_ns = match &o["ts"] {
        Value::String(s) => hermes_ingest::json::parse_rfc3339_ns(s.as_bytes()).ok_or(
            "`ts` must be an RFC 3339 time like 2026-08-09T21:05:48.5Z or epoch milliseconds",
        )?,
        Value::Number(n) => {
            let ms = n
                .as_i64()
                .filter(|ms| *ms > 0)
                .ok_or("`ts` in epoch milliseconds must be a positive integer")?;
            ms.checked_mul(1_000_000).ok_or("`ts` is out of range")?
        }
        _ => return Err("`ts` must be an RFC 3339 string or epoch milliseconds".into()),
    };
    if ts_ns <= 0 {
        return Err("`ts` must be after 1970".into());
    }
    let event_id = match &o["event_id"] {
        Value::String(s) if !s.is_empty() && s.len() <= 128 => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("`event_id` must be a non-empty string of at most 128 characters".into()),
    };
    let frame = json!({
        "symbol": symbol, "price": price, "volume": volume, "source": source, "ts_ns": ts_ns, "event_id": event_id,
    });
    Ok((frame.to_string().into_bytes(), event_id))
}

fn basic_auth_ok(headers: &HeaderMap, user: &str, pass: &str) -> bool {
    use base64::Engine;
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let expected = format!("{user}:{pass}");
    // Constant time over the expected length: the comparison does not leak how many
    // leading bytes matched.
    bool::from(raw.ct_eq(expected.as_bytes()))
}

async fn tick(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Some((user, pass)) = &app.cfg.ingest_auth else {
        return err(
            StatusCode::NOT_FOUND,
            "webhook ticks are disabled: set INGEST_USERNAME and INGEST_PASSWORD",
        );
    };
    if !basic_auth_ok(&headers, user, pass) {
        app.stats.ticks_rejected.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"hermes\"")],
            Json(json!({ "error": "missing or wrong credentials (HTTP Basic)" })),
        )
            .into_response();
    }
    let (frame, event_id) = match validate_tick(&body) {
        Ok(v) => v,
        Err(e) => {
            app.stats.ticks_rejected.fetch_add(1, Ordering::Relaxed);
            return err(StatusCode::UNPROCESSABLE_ENTITY, e);
        }
    };
    let Some(tx) = &app.cfg.ticks else {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "nothing ingests ticks here: webhook ticks need `hermes run`",
        );
    };
    let (reply, answer) = oneshot::channel();
    if tx
        .send(TickRequest {
            frame,
            event_id: event_id.clone(),
            reply,
        })
        .await
        .is_err()
    {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ingest thread has stopped",
        );
    }
    match answer.await {
        Ok(TickOutcome::Accepted) => {
            app.stats.ticks_accepted.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::ACCEPTED,
                Json(json!({ "status": "accepted", "event_id": event_id })),
            )
                .into_response()
        }
        Ok(TickOutcome::Duplicate) => {
            app.stats.ticks_duplicate.fetch_add(1, Ordering::Relaxed);
            Json(json!({ "status": "duplicate", "event_id": event_id })).into_response()
        }
        Ok(TickOutcome::Rejected(e)) => {
            app.stats.ticks_rejected.fetch_add(1, Ordering::Relaxed);
            err(StatusCode::UNPROCESSABLE_ENTITY, e)
        }
        Err(_) => err(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ingest thread has stopped",
        ),
    }
}

/// Binds `addr` and serves on a new thread until the returned server is dropped.
pub fn start(addr: SocketAddr, cfg: HttpConfig) -> Result<HttpServer> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the HTTP address {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (board_tx, board_rx) = watch::channel(Arc::new(Vec::new()));
    let app: App = Arc::new(AppState {
        cfg,
        stats: HttpStats::default(),
        reader: Mutex::new(None),
        board: board_rx,
        started: Instant::now(),
    });
    let thread = std::thread::Builder::new()
        .name("hermes-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("HTTP runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let router = Router::new()
                    .route("/metrics", get(metrics))
                    .route("/health/liveness", get(liveness))
                    .route("/health/readiness", get(readiness))
                    .route("/symbols", get(symbols))
                    .route("/symbols/{id}", get(symbol))
                    .route("/symbols/{id}/history", get(history))
                    .route("/stream", get(stream))
                    .route(
                        "/ingest/tick",
                        post(tick).layer(DefaultBodyLimit::max(MAX_TICK_BODY)),
                    )
                    .with_state(app.clone());
                tokio::spawn(poll_board(app, board_tx, stop2.clone()));
                let shutdown = async move {
                    // Relaxed: a stop request.
                    while !stop2.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!("HTTP server: {e}");
                }
            });
        })
        .context("starting the HTTP thread")?;
    tracing::info!("HTTP on http://{bound} (/metrics, /health/*, /symbols, /stream, /ingest/tick)");
    Ok(HttpServer {
        addr: bound,
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_validation() {
        let ok = br#"{"symbol":"BTC-USD","price":65000.5,"volume":"0.25","source":"desk","ts":"2026-08-09T21:05:48.5Z","event_id":"e-1"}"#;
        let (frame, id) = validate_tick(ok).unwrap();
        assert_eq!(id, "e-1");
        let f: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(f["price"], "65000.5");
        assert_eq!(f["ts_ns"], 1_786_309_548_500_000_000i64);
        let ms = br#"{"symbol":"X","price":"1","volume":0,"source":"s","ts":1786309548500,"event_id":7}"#;
        assert_eq!(validate_tick(ms).unwrap().1, "7");
        for (bad, why) in [
            (&br#"{"symbol":"X","price":0,"volume":1,"source":"s","ts":1,"event_id":"a"}"#[..], "> 0"),
            (br#"{"symbol":"X","price":-1,"volume":1,"source":"s","ts":1,"event_id":"a"}"#, "negative"),
            (br#"{"symbol":"X","price":1,"volume":-2,"source":"s","ts":1,"event_id":"a"}"#, "negative"),
            (br#"{"symbol":"X","price":1,"volume":1,"source":"s","ts":"yesterday","event_id":"a"}"#, "RFC 3339"),
            (br#"{"symbol":"X","price":1,"volume":1,"source":"s","ts":1}"#, "missing field `event_id`"),
            (br#"{"symbol":"X","price":1e5,"volume":1,"source":"s","ts":1,"event_id":"a"}"#, "exact decimal"),
            (br#"not json"#, "not JSON"),
            (br#"[1]"#, "object"),
        ] {
            let e = validate_tick(bad).unwrap_err();
            assert!(e.contains(why), "{e} should say {why}");
        }
    }
}
