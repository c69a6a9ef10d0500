//! `HttpArgs`: the HTTP face's address, keys and limits, and starting it beside an
//! engine.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use hermes_book::Venue;
use hermes_engine::EngineOptions;

/// The HTTP face (metrics, health, REST, SSE, webhook).
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Serve HTTP on this address (port 0: any free port; the address is logged)
    /// [default: `run` and `record` serve on 127.0.0.1:9100; `replay` and `demo` do not serve].
    #[arg(long, env = "HERMES_HTTP_ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// Require this `x-api-key` on public reads (/symbols, /stream).
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Webhook Basic Auth user (with INGEST_PASSWORD; webhook off without both).
    #[arg(long, env = "INGEST_USERNAME")]
    pub ingest_username: Option<String>,
    /// Webhook Basic Auth password.
    #[arg(long, env = "INGEST_PASSWORD", hide_env_values = true)]
    pub ingest_password: Option<String>,
    /// Most SSE events per second per client.
    #[arg(long, default_value_t = 20.0)]
    pub sse_max_hz: f64,
    /// Readiness fails when the persister lags more than this many seconds.
    #[arg(long, default_value_t = 5)]
    pub ready_max_lag_secs: u64,
    /// Most distinct symbols webhook ticks may bring (each takes an shm slot; the venues'
    /// instruments must fit beside them); a new symbol past it gets a 429.
    #[arg(long, env = "HERMES_WEBHOOK_MAX_SYMBOLS", default_value_t = 32)]
    pub webhook_max_symbols: usize,
    /// Most HTTP connections open at once; past it a new one gets a 503 and is closed.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub http_max_connections: u64,
    /// Close a connection that has not sent a whole request head within this many ms of
    /// opening (or of its last response): idle sockets cannot hold the descriptors.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub http_header_timeout_ms: u64,
}

impl HttpArgs {
    #[allow(clippy::too_many_arguments)]
    /// Starts the HTTP face when an address is given (or `default`); `None` when not
    /// serving.
    pub fn start(
        &self,
        default: Option<std::net::SocketAddr>,
        eng: &EngineOptions,
        live: Option<(std::sync::Arc<hermes_live::LiveStats>, Vec<Venue>)>,
        persist: Option<std::sync::Arc<hermes_persist::PersistStats>>,
        database_url: Option<String>,
        ticks: Option<tokio::sync::mpsc::Sender<hermes_live::TickRequest>>,
        nats: Option<std::sync::Arc<hermes_nats::PublishStats>>,
    ) -> Result<Option<crate::http::HttpServer>> {
        let Some(addr) = self.http.or(default) else {
            return Ok(None);
        };
        let explicit = self.http.is_some();
        let Some(shm) = eng.shm_path.clone() else {
            return Ok(None);
        };
        let ingest_auth = match (&self.ingest_username, &self.ingest_password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => bail!(
                "set both INGEST_USERNAME and INGEST_PASSWORD (non-empty) to enable webhook ticks"
            ),
        };
        let (live, venues) = match live {
            Some((l, v)) => (Some(l), v),
            None => (None, Vec::new()),
        };
        let server = crate::http::start(
            addr,
            crate::http::HttpConfig {
                shm_path: Some(shm),
                live,
                venues,
                ring: Some(eng.ring_stats.clone()),
                engine: Some(eng.metrics.clone()),
                persist,
                nats,
                mirror: None,
                nats_persist: None,
                database_url,
                api_key: api_key(self.api_key.clone())?,
                ticks: if ingest_auth.is_some() { ticks } else { None },
                ingest_auth,
                sse_max_hz: self.sse_max_hz,
                max_persist_lag: Duration::from_secs(self.ready_max_lag_secs),
                writer_stall: crate::http::WRITER_STALL,
                max_connections: self.http_max_connections as usize,
                webhook_max_symbols: self.webhook_max_symbols,
                header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            },
        );
        match server {
            Ok(s) => Ok(Some(s)),
            // The default address may be taken (another engine on this host): go on
            // without HTTP, and say how to get it.
            Err(e) if !explicit => {
                tracing::warn!(
                    "HTTP not started: {e:#}; pass --http ADDR (port 0 picks a free one)"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// `API_KEY` / `--api-key`: set but empty is an error, never a silent "no key".
pub fn api_key(key: Option<String>) -> Result<Option<String>> {
    match key {
        Some(k) if k.trim().is_empty() => bail!(
            "API_KEY (--api-key) is set but empty: unset it to serve without a key, or give a key"
        ),
        k => Ok(k),
    }
}

/// The HTTP face of a NATS role on another host: `hermes mirror` (its shm file, so the
/// dashboard, REST, SSE and `/metrics` of `hermes serve`, plus the mirror's counters) and
/// `hermes persist --nats` (no shm file: `/metrics` and `/health/*` only).
#[derive(Args, Debug, Clone)]
pub struct RoleHttpArgs {
    /// Serve HTTP on this address (port 0: any free port; the URL is printed on stderr)
    /// [default: no HTTP].
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
}

impl RoleHttpArgs {
    /// Starts the server when `--http` is given; says where on stderr.
    pub fn start(
        &self,
        role: &str,
        shm: Option<std::path::PathBuf>,
        api_key: Option<String>,
        mirror: Option<(std::sync::Arc<hermes_nats::MirrorStats>, u64)>,
        nats_persist: Option<(std::sync::Arc<hermes_nats::persist::SinkStats>, Duration)>,
    ) -> Result<Option<crate::http::HttpServer>> {
        let Some(addr) = self.http else {
            return Ok(None);
        };
        let server = crate::http::start(
            addr,
            crate::http::HttpConfig {
                max_persist_lag: nats_persist
                    .as_ref()
                    .map_or(Duration::from_secs(5), |(_, lag)| *lag),
                mirror,
                nats_persist: nats_persist.map(|(p, _)| p),
                api_key: self::api_key(api_key)?,
                ..crate::http::HttpConfig::reader(shm)
            },
        )?;
        eprintln!("{role}: HTTP on http://{}/", server.local_addr());
        Ok(Some(server))
    }
}
