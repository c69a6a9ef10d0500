//! The Binance session: one combined-streams connection for all symbols, each book
//! built from a REST depth snapshot while its diffs buffer in the decoder; after a gap
//! only the affected symbol's snapshot is refetched, and the old book stays visible
//! with the stale flag until then.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use hermes_ingest::{EventSink, FrameKind, Venue};

use crate::config::LiveConfig;
use crate::pipeline::Pipeline;
use crate::rest::{Rest, SnapshotQueue, WeightBudget};
use crate::stats::LiveStats;
use crate::ws::{incoming, reconnect_loop, Incoming, Keepalive, SessionEnd, Ws, TICK};

/// Runs the Binance connection, reconnecting, until `done`.
pub(crate) async fn run<S: EventSink>(
    cfg: &LiveConfig,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    done: &AtomicBool,
) {
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
    let mut budget = WeightBudget::new();
    reconnect_loop(
        Venue::Binance,
        &url,
        &cfg.binance_symbols,
        &cfg.policy,
        ctx,
        &stats.binance,
        done,
        async |ws, conn| session(ws, conn, cfg, ctx, stats, done, &mut budget).await,
    )
    .await;
}

/// One connection, until it ends.
async fn session<S: EventSink>(
    mut ws: Ws,
    conn: u16,
    cfg: &LiveConfig,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    done: &AtomicBool,
    budget: &mut WeightBudget,
) -> SessionEnd {
    let (p, vs) = (&cfg.policy, &stats.binance);
    // Every symbol needs a snapshot on a new connection; diffs buffer meanwhile.
    let mut snapshots = SnapshotQueue::new(&cfg.binance_symbols, budget);
    let mut tick = tokio::time::interval(TICK);
    let mut alive = Keepalive::new();
    loop {
        tokio::select! {
            msg = ws.next() => {
                let read = match incoming(msg, Venue::Binance, false, vs, p) {
                    Err(end) => return end,
                    Ok(read) => read,
                };
                alive.heard(&read);
                let Incoming::Frame(data) = read else { continue };
                ctx.borrow_mut().frame(Venue::Binance, FrameKind::Ws, conn, data.as_bytes());
            }
            (symbol, rest) = snapshots.fetched(), if snapshots.fetching() => {
                snapshot_fetched(symbol, rest, conn, cfg, ctx, stats, &mut snapshots);
            }
            _ = tick.tick() => {
                if let Err(end) = alive.tick(&mut ws, p, done).await {
                    if matches!(end, SessionEnd::Done) {
                        snapshots.abort();
                    }
                    return end;
                }
            }
        }
        // Gaps: refetch the snapshot of those symbols only.
        let pending = ctx.borrow_mut().take_pending(Venue::Binance);
        for s in pending {
            if snapshots.request(&s) {
                // Relaxed: a counter for reports.
                vs.resyncs_requested.fetch_add(1, Ordering::Relaxed);
                tracing::info!(venue = "binance", symbol = %s, "gap: refetching the depth snapshot");
            }
        }
        // One REST call at a time, within the weight budget and any Retry-After.
        snapshots.start_next(
            &cfg.binance_rest_url,
            cfg.binance_depth_limit,
            p.rest_weight_per_minute,
        );
    }
}

/// A depth fetch ended: decode the snapshot, or pause and queue the symbol again.
fn snapshot_fetched<S: EventSink>(
    symbol: String,
    rest: Rest,
    conn: u16,
    cfg: &LiveConfig,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    snapshots: &mut SnapshotQueue<'_>,
) {
    let vs = &stats.binance;
    match rest {
        Rest::Body(body) => {
            // Relaxed (both counters): for reports.
            vs.rest_fetches.fetch_add(1, Ordering::Relaxed);
            let kind = FrameKind::RestDepth {
                symbol: symbol.as_bytes(),
            };
            ctx.borrow_mut()
                .frame(Venue::Binance, kind, conn, body.as_bytes());
        }
        Rest::RetryAfter(d, status) => {
            vs.rest_throttled.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                venue = "binance",
                status,
                "REST rate limit: pausing snapshots for {d:?}"
            );
            snapshots.throttled(symbol, d);
        }
        Rest::Failed(e) => {
            tracing::warn!(venue = "binance", %symbol, "depth snapshot failed: {e}; retrying");
            snapshots.failed(symbol, cfg.policy.reconnect_min);
        }
    }
}
