//! `hermes mirror`: another host's books in a local shm file, from NATS JetStream (the
//! latest SNAP of each instrument, then its MD).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use crate::cmd::replay::final_lines;
use crate::flags::{secs, KernelArgs, RoleHttpArgs};

/// `hermes mirror` arguments.
#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// NATS server URLs, comma-separated.
    #[arg(long, env = "HERMES_NATS_URL", value_name = "URL[,URL…]")]
    pub nats: String,
    /// The local shm file (same layout as the engine's: `hermes top`, the C/Python
    /// readers and `hermes serve` read it unchanged).
    #[arg(long, default_value = "/dev/shm/hermes-mirror")]
    pub shm: PathBuf,
    /// Slots in the shm file.
    #[arg(long, default_value_t = 256)]
    pub shm_slots: u32,
    /// Only these instruments: `SYMBOL` or `venue:SYMBOL`, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// After the run, print one JSON object per instrument (as `replay --print-final`).
    #[arg(long)]
    pub print_final: bool,
    /// Stop once no message arrived for this many seconds.
    #[arg(long)]
    pub until_idle: Option<f64>,
    /// Stop after this many seconds [default: run until SIGINT/SIGTERM].
    #[arg(long)]
    pub duration: Option<f64>,
    /// The publisher's stream prefix.
    #[arg(long, default_value = "HERMES")]
    pub nats_stream_prefix: String,
    /// The publisher's subject prefix.
    #[arg(long, default_value = "hermes")]
    pub nats_subject_prefix: String,
    /// Messages kept per instrument while it waits for a SNAP after a gap.
    #[arg(long, default_value_t = 100_000)]
    pub max_buffer: usize,
    #[command(flatten)]
    pub kernels: KernelArgs,
    #[command(flatten)]
    pub http: RoleHttpArgs,
    /// With --http: readiness fails when more MD messages than this wait in the stream
    /// after the last one delivered.
    #[arg(long, default_value_t = 10_000)]
    pub ready_max_behind: u64,
    /// With --http: require this `x-api-key` on public reads (/symbols, /status, /stream).
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

pub fn cmd_mirror(a: MirrorArgs) -> Result<()> {
    let mut nats = hermes_nats::NatsOptions::new(a.nats.clone());
    nats.stream_prefix = a.nats_stream_prefix.clone();
    nats.subject_prefix = a.nats_subject_prefix.clone();
    let opts = hermes_nats::mirror::MirrorOptions {
        nats,
        shm: Some(a.shm.clone()),
        shm_slots: a.shm_slots,
        symbols: a.symbols.clone(),
        until_idle: secs(a.until_idle, "until-idle")?,
        duration: secs(a.duration, "duration")?,
        kernels: a.kernels.config(),
        max_buffer: a.max_buffer.max(1),
    };
    let stats = Arc::new(hermes_nats::MirrorStats::default());
    // The dashboard, REST, SSE, `/metrics` (with `hermes_mirror_*`) and readiness over
    // the mirror's shm file.
    let _http = a.http.start(
        "mirror",
        Some(a.shm.clone()),
        a.api_key.clone(),
        Some((stats.clone(), a.ready_max_behind)),
        None,
    )?;
    let stop = hermes_engine::shutdown_flag();
    tracing::info!(shm = %a.shm.display(), "mirror: following {}", a.nats);
    let books = hermes_nats::mirror::run(&opts, &stats, &stop)?;
    if a.print_final {
        let mut o = std::io::stdout().lock();
        for l in final_lines(&books) {
            writeln!(o, "{l}")?;
        }
    }
    eprintln!(
        "{} (2 cores share this machine: latency figures include scheduling)",
        stats.line()
    );
    Ok(())
}
