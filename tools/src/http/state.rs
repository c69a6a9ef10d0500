//! What every handler shares: the configuration, the server's own counters, the shm file
//! (followed across writer restarts) and the board the SSE clients read; and the
//! `x-api-key` check of public reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hermes_shm::follow::{Opened, ShmFollower};
use hermes_shm::ShmReader;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::stream::Board;
use super::{json_error, HttpConfig};

/// The server's own counters.
#[derive(Debug, Default)]
pub(super) struct HttpStats {
    /// Requests served.
    pub(super) requests: AtomicU64,
    /// SSE clients connected now.
    pub(super) sse_clients: AtomicU64,
    /// SSE clients dropped for reading too slowly.
    pub(super) sse_dropped: AtomicU64,
    /// SSE events sent.
    pub(super) sse_events: AtomicU64,
    /// Webhook ticks accepted.
    pub(super) ticks_accepted: AtomicU64,
    /// Webhook ticks acknowledged as duplicates.
    pub(super) ticks_duplicate: AtomicU64,
    /// Webhook ticks refused (auth, validation).
    pub(super) ticks_rejected: AtomicU64,
    /// Webhook ticks refused because the webhook symbol limit was reached.
    pub(super) ticks_symbol_limit: AtomicU64,
    /// TCP connections open now.
    pub(super) connections: AtomicU64,
    /// Connections refused because `max_connections` were open.
    pub(super) connections_refused: AtomicU64,
}

/// The state behind every handler.
pub(super) struct AppState {
    /// What the server was started with.
    pub(super) cfg: HttpConfig,
    /// The server's counters.
    pub(super) stats: HttpStats,
    /// Webhook symbols seen so far (at most `cfg.webhook_max_symbols`).
    pub(super) webhook_symbols: Mutex<std::collections::HashSet<String>>,
    /// The shm file at `cfg.shm_path`, reopened when a new writer replaces it.
    shm: Option<Mutex<ShmFollower>>,
    /// The last writer restart seen: the generation replaced, and when it was noticed.
    replaced: Mutex<Option<(u64, Instant)>>,
    /// The slots as the poller last saw them, for the SSE clients.
    pub(super) board: watch::Receiver<Board>,
    /// When the server started (for the uptime metric).
    pub(super) started: Instant,
}

/// The handlers' shared state.
pub(super) type App = Arc<AppState>;

impl AppState {
    /// The state of a server over `cfg`, its SSE clients reading `board`.
    pub(super) fn new(cfg: HttpConfig, board: watch::Receiver<Board>) -> AppState {
        AppState {
            shm: cfg
                .shm_path
                .as_deref()
                .map(|p| Mutex::new(ShmFollower::new(p))),
            replaced: Mutex::new(None),
            cfg,
            stats: HttpStats::default(),
            webhook_symbols: Mutex::default(),
            board,
            started: Instant::now(),
        }
    }

    /// Runs `f` on the reader of the shm file, opening it (or reopening it, when the
    /// writer replaced it) first.
    pub(super) fn with_reader<T>(&self, f: impl FnOnce(&ShmReader) -> T) -> Result<T, String> {
        let Some(shm) = &self.shm else {
            return Err("this process keeps no shm file".into());
        };
        let mut shm = shm.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: Hermes writers never truncate a published shm file; we only read.
        let (reader, opened) =
            unsafe { shm.reader() }.map_err(|e| format!("shm file unavailable: {e}"))?;
        if let Opened::Replaced { old_generation } = opened {
            tracing::info!(
                "a new writer replaced {} (generation {old_generation} → {}); following it",
                self.cfg
                    .shm_path
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display(),
                reader.generation()
            );
            *self.replaced.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((old_generation, Instant::now()));
        }
        Ok(f(reader))
    }

    /// The last writer restart this server followed: the generation it replaced and how
    /// long ago it was noticed.
    pub(super) fn last_replaced(&self) -> Option<(u64, std::time::Duration)> {
        self.replaced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(g, at)| (g, at.elapsed()))
    }

    /// Counts a request to a public read and checks its `x-api-key` (when one is
    /// required); the error is the answer to send.
    pub(super) fn admit_read(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        // Relaxed: a counter, read only for reporting.
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let Some(key) = &self.cfg.api_key else {
            return Ok(());
        };
        let given = headers
            .get("x-api-key")
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        if bool::from(given.ct_eq(key.as_bytes())) {
            Ok(())
        } else {
            Err(Box::new(json_error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong x-api-key header",
            )))
        }
    }
}
