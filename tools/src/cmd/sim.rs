//! `hermes sim`: the exchange simulator on a local WebSocket.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use hermes_engine::Speed;

use crate::flags::VenueArg;

/// `hermes sim` arguments.
#[derive(Args, Debug)]
pub struct SimArgs {
    /// Venue protocol to speak.
    #[arg(long, value_enum)]
    pub venue: VenueArg,
    /// Serve this capture (native or JSON lines).
    #[arg(
        long,
        conflicts_with = "synthetic",
        required_unless_present = "synthetic"
    )]
    pub capture: Option<PathBuf>,
    /// Serve a synthetic random-walk market with this many instruments.
    #[arg(long)]
    pub synthetic: Option<usize>,
    /// Listen address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Pacing: realtime, a factor such as 10x, or max (as fast as clients read).
    #[arg(long, default_value = "realtime")]
    pub speed: Speed,
    /// A fixed rate in frames per second, overriding --speed [default: none: --speed
    /// paces].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Fault injection [default: none]: KIND=RATE (probability per frame), KIND=every:N or KIND=at:N,M;
    /// kinds disconnect, gap, duplicate, reorder, malformed, oversize, stall. Repeatable.
    #[arg(long)]
    pub fault: Vec<hermes_sim::Fault>,
    /// Levels per side of synthetic books.
    #[arg(long, default_value_t = 50)]
    pub depth: usize,
    /// Frames of the synthetic market [default: endless].
    #[arg(long)]
    pub frames: Option<u64>,
    /// Seed of the synthetic market and of fault decisions.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Size of an `oversize` frame in bytes.
    #[arg(long, default_value_t = 80 << 20)]
    pub oversize_bytes: usize,
    /// Length of a `stall` in ms.
    #[arg(long, default_value_t = 2000)]
    pub stall_ms: u64,
    /// REST depth requests per second before answering 429 with Retry-After.
    #[arg(long, default_value_t = 20)]
    pub rest_per_second: u32,
}

pub fn cmd_sim(a: SimArgs) -> Result<()> {
    use hermes_sim::{Pacing, SimOptions, SimSource};
    let source = match (&a.capture, a.synthetic) {
        (Some(p), _) => SimSource::Capture(p.clone()),
        (None, Some(n)) if n > 0 => SimSource::Synthetic {
            instruments: n,
            depth: a.depth.max(1),
            seed: a.seed,
            frames: a.frames,
        },
        _ => bail!("give --capture FILE or --synthetic N (N >= 1)"),
    };
    let pacing = match (a.rate, a.speed) {
        (Some(r), _) if r.is_finite() && r > 0.0 => Pacing::Rate(r),
        (Some(r), _) => bail!("--rate must be a positive number of frames per second, got {r}"),
        (None, Speed::Max) => Pacing::Max,
        (None, Speed::Times(x)) => Pacing::Recorded(x),
    };
    let opts = SimOptions {
        venue: a.venue.into(),
        source,
        listen: a.listen,
        pacing,
        faults: a.fault.clone(),
        oversize_bytes: a.oversize_bytes,
        stall: Duration::from_millis(a.stall_ms),
        seed: a.seed,
        rest_per_second: a.rest_per_second.max(1),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = hermes_engine::shutdown_flag();
    rt.block_on(async move {
        let listener = hermes_sim::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        // The first line says where to connect; scripts and tests read it.
        println!("ws://{addr}");
        std::io::stdout().flush()?;
        eprintln!(
            "sim: serving {} on ws://{addr}{}",
            opts.venue.name(),
            hermes_sim::endpoints(opts.venue, addr)
        );
        let stats = std::sync::Arc::new(hermes_sim::SimStats::default());
        let serve = hermes_sim::serve(listener, opts, stats.clone());
        tokio::pin!(serve);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                r = &mut serve => return r,
                _ = tick.tick() => {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        use std::sync::atomic::Ordering::Relaxed;
                        eprintln!(
                            "sim: stopping; {} frames walked, {} sent, {} connections, {} faults, {} REST snapshots ({} throttled)",
                            stats.frames.load(Relaxed), stats.sent.load(Relaxed), stats.connections.load(Relaxed),
                            stats.faults.load(Relaxed), stats.rest.load(Relaxed), stats.rest_limited.load(Relaxed)
                        );
                        return Ok(());
                    }
                }
            }
        }
    })
}
