//! The HTTP face, off the hot path on its own (unpinned) thread: the web dashboard at
//! `/`, Prometheus `/metrics`, `/health/liveness` and `/health/readiness`, REST over the
//! shm file (never the book thread's memory), the operations summary `/status`, recent
//! trades from PostgreSQL, an SSE stream of top-of-book changes, and the authenticated
//! `POST /ingest/tick` webhook.
//!
//! It runs in two kinds of process. Inside the engine (`run`, `replay --http`, `demo`) the
//! [`HttpConfig`] carries the engine's, the feeds' and the persister's counters. In
//! `hermes serve` it has nothing but the shm file: those parts are `None`, health comes
//! from the writer's heartbeat in the file, and `/metrics` and `/status` show what the
//! file shows. Either way the shm file is followed across writer restarts.
//!
//! This module binds the address, builds the router and runs the server thread; each
//! group of endpoints has its module: [`dashboard`], [`metrics`], [`health`],
//! [`symbols`], [`status`], [`history`], [`stream`] and [`webhook`], all over the shared
//! [`state`].

mod dashboard;
mod health;
mod history;
mod metrics;
mod state;
mod status;
mod stream;
mod symbols;
mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hermes_live::{LiveStats, TickRequest};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use state::{App, AppState};
use stream::Board;

/// Largest accepted webhook body.
pub const MAX_TICK_BODY: usize = 16 * 1024;

/// The default age of the shm heartbeat past which a writer is shown as stalled (the same
/// as `hermes top --stall-ms` and `hermes shm dump`).
pub const WRITER_STALL: Duration = Duration::from_millis(500);

/// Everything the server reads.
pub struct HttpConfig {
    /// The shm file the REST and SSE endpoints read. `None` in a process that keeps no
    /// books (`hermes persist --nats`): it serves only `/metrics` and `/health/*`.
    pub shm_path: Option<PathBuf>,
    /// Live feed counters (`run`), if any.
    pub live: Option<Arc<LiveStats>>,
    /// Which venues `run` ingests (readiness requires them connected).
    pub venues: Vec<hermes_ingest::Venue>,
    /// Ring counters (`None` in `hermes serve`: the ring is in another process).
    pub ring: Option<Arc<hermes_engine::RingStats>>,
    /// Book thread counters (`None` in `hermes serve`: liveness then comes from the
    /// writer's heartbeat in the shm file).
    pub engine: Option<Arc<hermes_engine::metrics::EngineMetrics>>,
    /// Persister counters, if persisting.
    pub persist: Option<Arc<hermes_persist::PersistStats>>,
    /// NATS publisher counters, with `--nats`.
    pub nats: Option<Arc<hermes_nats::PublishStats>>,
    /// The mirror's counters (`hermes mirror --http`), and the most MD messages it may
    /// be behind the stream and still be ready.
    pub mirror: Option<(Arc<hermes_nats::MirrorStats>, u64)>,
    /// The NATS persister's counters (`hermes persist --nats … --http`); readiness fails
    /// past `max_persist_lag`.
    pub nats_persist: Option<Arc<hermes_nats::persist::SinkStats>>,
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
    /// A writer whose shm heartbeat is older than this is stalled.
    pub writer_stall: Duration,
    /// Most connections open at once; past it a new one gets a 503 and is closed.
    pub max_connections: usize,
    /// Most distinct webhook symbols: their instruments are kept apart from the venues'
    /// (which the engine checks fit beside them), and a new symbol past it gets a 429.
    pub webhook_max_symbols: usize,
    /// A connection that has not sent a whole request head this long after it opened (or
    /// after its last response) is closed: idle sockets cannot hold the descriptors.
    pub header_timeout: Duration,
}

impl HttpConfig {
    /// A server of a process without an engine (`hermes serve`, the NATS roles): every
    /// engine, feed and persister part `None`, health from the shm file's writer, no
    /// webhook, the default limits.
    pub fn reader(shm_path: Option<PathBuf>) -> HttpConfig {
        HttpConfig {
            shm_path,
            live: None,
            venues: Vec::new(),
            ring: None,
            engine: None,
            persist: None,
            nats: None,
            mirror: None,
            nats_persist: None,
            database_url: None,
            api_key: None,
            ingest_auth: None,
            ticks: None,
            sse_max_hz: 20.0,
            max_persist_lag: Duration::from_secs(5),
            writer_stall: WRITER_STALL,
            max_connections: 128,
            webhook_max_symbols: 0,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// A running server; stops when dropped.
pub struct HttpServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
}

impl HttpServer {
    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
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

/// An error answer: `status` with `{"error": msg}`.
fn json_error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// Binds `addr` and serves on a new thread until the returned server is dropped.
pub fn start(addr: SocketAddr, cfg: HttpConfig) -> Result<HttpServer> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the HTTP address {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (board_tx, board_rx) = watch::channel(Board::default());
    let with_shm = cfg.shm_path.is_some();
    let app: App = Arc::new(AppState::new(cfg, board_rx));
    let thread = std::thread::Builder::new()
        .name("hermes-http".into())
        .spawn({
            let stop = stop.clone();
            move || serve(listener, app, board_tx, stop)
        })
        .context("starting the HTTP thread")?;
    if with_shm {
        tracing::info!(
            "HTTP on http://{bound} (dashboard at /; /metrics, /health/*, /status, /symbols, /stream, /ingest/tick)"
        );
    } else {
        tracing::info!("HTTP on http://{bound} (/metrics, /health/*)");
    }
    Ok(HttpServer {
        stop,
        thread: Some(thread),
        addr: bound,
    })
}

/// The server thread: one current-thread runtime serving `listener` and polling the shm
/// board until `stop` is set.
fn serve(
    listener: std::net::TcpListener,
    app: App,
    board_tx: watch::Sender<Board>,
    stop: Arc<AtomicBool>,
) {
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
        let router = router(app.clone());
        if app.cfg.shm_path.is_some() {
            tokio::spawn(stream::poll_board(app.clone(), board_tx, stop.clone()));
        }
        let stopped = async move {
            // Relaxed: a stop request.
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            () = accept_loop(listener, router, app) => {}
            () = stopped => {}
        }
    });
}

/// Accepts connections up to the cap, each served by hyper's HTTP/1 with a header-read
/// timeout; past the cap a connection gets a short 503 and is closed.
async fn accept_loop(listener: tokio::net::TcpListener, router: Router, app: App) {
    let cap = app.cfg.max_connections.max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    loop {
        let (sock, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, say: wait a little rather than spin.
                tracing::warn!("HTTP accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Relaxed (all counters here): statistics for /metrics.
            app.stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(sock));
            continue;
        };
        app.stats.connections.fetch_add(1, Ordering::Relaxed);
        let (router, app, timeout) = (router.clone(), app.clone(), app.cfg.header_timeout);
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(router);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(sock), service);
            // A client that goes away or times out ends its connection; nothing to report.
            let _ = conn.await;
            app.stats.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// The answer to a connection past the cap.
async fn refuse(mut sock: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = "{\"error\":\"too many connections; retry\"}";
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), sock.write_all(head.as_bytes())).await;
}

/// Every route and its handler (without a shm file, only `/metrics` and `/health/*`).
fn router(app: App) -> Router {
    if app.cfg.shm_path.is_none() {
        return Router::new()
            .route("/metrics", get(metrics::metrics))
            .route("/health/liveness", get(health::liveness))
            .route("/health/readiness", get(health::readiness))
            .with_state(app);
    }
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{*file}", get(dashboard::asset))
        .route("/metrics", get(metrics::metrics))
        .route("/status", get(status::status))
        .route("/health/liveness", get(health::liveness))
        .route("/health/readiness", get(health::readiness))
        .route("/symbols", get(symbols::symbols))
        .route("/symbols/{id}", get(symbols::symbol))
        .route("/symbols/{id}/history", get(history::history))
        .route("/stream", get(stream::stream))
        .route(
            "/ingest/tick",
            post(webhook::tick).layer(DefaultBodyLimit::max(MAX_TICK_BODY)),
        )
        .with_state(app)
}
