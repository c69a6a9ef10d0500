//! # hermes-live
//!
//! Live ingest for the Hermes engine: the WebSocket connections of `hermes run` and
//! `hermes record`, all on the one ingest thread (a current-thread tokio runtime),
//! feeding the same decoder, ring and tap as replay.
//!
//! Per venue connection: jittered exponential back-off between attempts (1 s → 60 s by
//! default), a circuit breaker that opens after 5 consecutive failures and half-opens
//! after a cool-down to probe, pings, an idle timeout, a maximum frame size. On a gap the
//! affected books are marked stale in shm and rebuilt: Coinbase by resubscribing to
//! `level2` (a fresh snapshot), Binance by refetching the REST depth snapshot of that
//! symbol only, while its diffs keep being buffered and the old book stays visible with
//! the stale flag. REST calls respect a request-weight budget and honour 429/418 with
//! `Retry-After`. A lost connection marks its venue's books stale until they are rebuilt.
//!
//! ## Main types
//!
//! - [`LiveConfig`] (with its [`ConnPolicy`]): the feeds and the connection behaviour,
//!   loaded from defaults, an optional TOML file (unknown keys are errors) and the
//!   environment, then validated.
//! - [`ingest`]: runs the feeds until stopped, bounded by [`RunLimits`], and returns a
//!   [`LiveSummary`]. Webhook ticks ([`TickRequest`], answered with a [`TickOutcome`])
//!   join the same stream.
//! - [`LiveStats`] and [`VenueStats`]: counters shared with the reporters, including
//!   each venue's [`BreakerState`].
//! - [`Recorder`]: a frame tap writing native capture files, rotated by size or age.
//!
//! ## Example
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//!
//! use hermes_ingest::{Decoder, Event, NoTap, Venue};
//! use hermes_live::{ingest, LiveConfig, LiveStats, RunLimits};
//!
//! // The environment (here a closure) overrides the defaults and the optional file.
//! let env = |key: &str| match key {
//!     "BINANCE_SYMBOLS" => Some("btcusdt, ethusdt".to_string()),
//!     "BINANCE_WS_URL" => Some("ws://127.0.0.1:9443".to_string()),
//!     _ => None,
//! };
//! let cfg = LiveConfig::load(None, &env)?;
//! assert_eq!(cfg.feed(Venue::Binance).symbols, ["BTCUSDT", "ETHUSDT"]);
//! assert!(!cfg.feed(Venue::Coinbase).enabled(), "Coinbase is off");
//! cfg.require_feed(false)?;
//!
//! // A bad value is an error that names its key.
//! let bad = |key: &str| (key == "BINANCE_REST_URL").then(|| "ftp://example".to_string());
//! let err = LiveConfig::load(None, &bad).unwrap_err();
//! assert!(err.to_string().contains("BINANCE_REST_URL"), "{err}");
//!
//! // A run: frames go through the tap and the decoder into the sink until `stop` (set
//! // already here, with no venue configured, so it returns at once).
//! let mut events: Vec<Event> = Vec::new();
//! let stats = LiveStats::default();
//! let stop = AtomicBool::new(true);
//! let summary = ingest(
//!     &LiveConfig::default(),
//!     &RunLimits::default(),
//!     Decoder::default(),
//!     &mut events,
//!     &mut NoTap,
//!     &stats,
//!     &stop,
//!     None,
//! )?;
//! assert!(summary.errors.is_empty() && summary.stale.is_empty());
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hermes_ingest::venue::Resync;
use hermes_ingest::{DecodeStats, Decoder, EventSink, FrameTap};

mod breaker;
mod config;
mod error_text;
mod pipeline;
mod recorder;
mod rest;
mod resubscribe;
mod snapshot;
mod stats;
mod tick;
mod ws;

pub use breaker::BreakerState;
pub use config::{env_names, ConnPolicy, FeedConfig, LiveConfig};
pub use error_text::error_chain;
pub use recorder::Recorder;
pub use stats::{LiveStats, VenueStats};
pub use tick::{TickOutcome, TickRequest};

use pipeline::Pipeline;

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
    let ctx = RefCell::new(Pipeline::new(decoder, sink, tap, stats));
    let done = AtomicBool::new(false);
    rt.block_on(async {
        // One connection loop per configured venue, all on this thread.
        let feeds = futures_util::future::join_all(cfg.enabled().map(|feed| {
            // Relaxed: read by reporters, which may miss it for a moment.
            stats
                .venue(feed.venue)
                .active
                .store(true, Ordering::Relaxed);
            let (ctx, done) = (&ctx, &done);
            async move {
                match feed.protocol().resync() {
                    Resync::Resubscribe => {
                        resubscribe::run(feed, &cfg.policy, ctx, stats, done).await
                    }
                    Resync::RestSnapshot => {
                        snapshot::run(feed, &cfg.policy, ctx, stats, done).await
                    }
                }
            }
        }));
        futures_util::future::join3(
            supervise(&ctx, limits, stats, stop, &done),
            feeds,
            tick::serve(ticks, &ctx, &done),
        )
        .await;
    });
    let c = ctx.into_inner();
    stats.publish(&c.decode_stats());
    Ok(c.into_summary())
}

/// Publishes the counters, prints them every `stats_every`, and sets `done` on `stop`,
/// the duration or the idle limit.
///
/// `done` is only ever stored here and loaded by the other tasks of the same thread,
/// and `stop` carries no data: `Relaxed` is enough for both.
async fn supervise<S: EventSink>(
    ctx: &RefCell<Pipeline<'_, S>>,
    limits: &RunLimits,
    stats: &LiveStats,
    stop: &AtomicBool,
    done: &AtomicBool,
) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(ws::TICK);
    let mut last_stats = Instant::now();
    loop {
        tick.tick().await;
        {
            let c = ctx.borrow();
            stats.publish(&c.decode_stats());
            let idle = match (limits.until_idle, c.last_frame()) {
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
}
