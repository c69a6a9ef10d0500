//! `hermes serve`: the HTTP face (dashboard, REST, SSE, `/metrics`, health) over an
//! existing shm file, from a process of its own: a strategy host, or a host mirroring
//! the shm file, can serve it without running the engine. It only reads the file, follows
//! a writer that replaces it, and takes health from the writer's heartbeat.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

/// `hermes serve` arguments.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The shm file to serve (it need not exist yet: the server waits for a writer).
    #[arg(long, env = "HERMES_SHM_PATH", default_value = "/dev/shm/hermes")]
    pub shm: PathBuf,
    /// Serve HTTP on this address (port 0: any free port; the URL is printed on stdout).
    #[arg(long, env = "HERMES_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// PostgreSQL for `/symbols/{id}/history` and the dashboard's trade tape history.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Require this `x-api-key` on the public reads (/symbols, /status, /stream); the
    /// dashboard asks for it once per browser session.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Most SSE events per second per client.
    #[arg(long, default_value_t = 20.0)]
    pub sse_max_hz: f64,
    /// A writer whose heartbeat is older than this (ms) is stalled (liveness fails).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_ms: u64,
    /// Most HTTP connections open at once; past it a new one gets a 503 and is closed.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub http_max_connections: u64,
    /// Close a connection that has not sent a whole request head within this many ms of
    /// opening (or of its last response): idle sockets cannot hold the descriptors.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub http_header_timeout_ms: u64,
}

/// Runs `hermes serve` until SIGINT or SIGTERM.
pub fn cmd_serve(a: ServeArgs) -> Result<()> {
    if !(a.sse_max_hz > 0.0 && a.sse_max_hz <= 1000.0) {
        bail!("--sse-max-hz must be in (0, 1000], got {}", a.sse_max_hz);
    }
    if !a.shm.exists() {
        tracing::warn!(
            "{} does not exist yet; serving anyway, and following it once a writer creates it",
            a.shm.display()
        );
    }
    let stop = hermes_engine::shutdown_flag();
    let server = crate::http::start(
        a.http,
        crate::http::HttpConfig {
            database_url: a.database_url.filter(|u| !u.is_empty()),
            api_key: crate::flags::api_key(a.api_key)?,
            sse_max_hz: a.sse_max_hz,
            writer_stall: Duration::from_millis(a.stall_ms),
            max_connections: a.http_max_connections as usize,
            header_timeout: Duration::from_millis(a.http_header_timeout_ms),
            ..crate::http::HttpConfig::reader(Some(a.shm.clone()))
        },
    )?;
    // The first line of stdout is the dashboard's URL (scripts and tests read it).
    println!("http://{}/", server.local_addr());
    eprintln!(
        "hermes serve: {} at http://{}/ (Ctrl-C stops)",
        a.shm.display(),
        server.local_addr()
    );
    // SeqCst: pairs with the signal handler's store (see `shutdown_flag`).
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
    Ok(())
}
