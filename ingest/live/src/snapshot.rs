//! The session of a venue that rebuilds a book from a REST depth snapshot (Binance spot,
//! USD-M and COIN-M futures): one combined-streams connection for all symbols, each book
//! built from a snapshot while its diffs buffer in the decoder; after a gap only the
//! affected symbol's snapshot is refetched, and the old book stays visible with the
//! stale flag until then.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use hermes_ingest::{EventSink, FrameKind};

use crate::config::{ConnPolicy, FeedConfig};
use crate::pipeline::Pipeline;
use crate::rest::{Rest, SnapshotQueue, WeightBudget};
use crate::stats::LiveStats;
use crate::ws::{incoming, reconnect_loop, Incoming, Keepalive, SessionEnd, Ws, TICK};

/// Runs the feed's connection, reconnecting, until `done`.
pub(crate) async fn run<S: EventSink>(
    feed: &FeedConfig,
    policy: &ConnPolicy,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    done: &AtomicBool,
) {
    let url = feed
        .protocol()
        .connect_url(&feed.ws_url, &feed.symbols, &feed.channels);
    // One budget per venue: each market counts its own request weight.
    let mut budget = WeightBudget::new();
    reconnect_loop(
        feed.venue,
        &url,
        &feed.symbols,
        policy,
        ctx,
        stats.venue(feed.venue),
        done,
        async |ws, conn| session(ws, conn, feed, policy, ctx, stats, done, &mut budget).await,
    )
    .await;
}

/// One connection, until it ends.
#[allow(clippy::too_many_arguments)]
async fn session<S: EventSink>(
    mut ws: Ws,
    conn: u16,
    feed: &FeedConfig,
    p: &ConnPolicy,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    done: &AtomicBool,
    budget: &mut WeightBudget,
) -> SessionEnd {
    let (venue, vs) = (feed.venue, stats.venue(feed.venue));
    let proto = feed.protocol();
    // Every symbol needs a snapshot on a new connection; diffs buffer meanwhile.
    let mut snapshots = SnapshotQueue::new(&feed.symbols, budget);
    let mut tick = tokio::time::interval(TICK);
    let mut alive = Keepalive::new();
    loop {
        tokio::select! {
            msg = ws.next() => {
                let read = match incoming(msg, venue, proto.binary_frames_are_text(), vs, p) {
                    Err(end) => return end,
                    Ok(read) => read,
                };
                alive.heard(&read);
                let Incoming::Frame(data) = read else { continue };
                ctx.borrow_mut().frame(venue, FrameKind::Ws, conn, data.as_bytes());
            }
            (symbol, rest) = snapshots.fetched(), if snapshots.fetching() => {
                snapshot_fetched(symbol, rest, conn, feed, p, ctx, stats, &mut snapshots);
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
        let pending = ctx.borrow_mut().take_pending(venue);
        for s in pending {
            if snapshots.request(&s) {
                // Relaxed: a counter for reports.
                vs.resyncs_requested.fetch_add(1, Ordering::Relaxed);
                tracing::info!(venue = venue.name(), symbol = %s, "gap: refetching the depth snapshot");
            }
        }
        // One REST call at a time, within the weight budget and any Retry-After.
        snapshots.start_next(
            proto,
            &feed.rest_url,
            feed.depth_limit,
            p.rest_weight_per_minute,
        );
    }
}

/// A depth fetch ended: decode the snapshot, or pause and queue the symbol again.
#[allow(clippy::too_many_arguments)]
fn snapshot_fetched<S: EventSink>(
    symbol: String,
    rest: Rest,
    conn: u16,
    feed: &FeedConfig,
    p: &ConnPolicy,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    snapshots: &mut SnapshotQueue<'_>,
) {
    let (venue, vs) = (feed.venue, stats.venue(feed.venue));
    match rest {
        Rest::Body(body) => {
            // Relaxed (both counters): for reports.
            vs.rest_fetches.fetch_add(1, Ordering::Relaxed);
            let kind = FrameKind::RestDepth {
                symbol: symbol.as_bytes(),
            };
            ctx.borrow_mut().frame(venue, kind, conn, body.as_bytes());
        }
        Rest::RetryAfter(d, status) => {
            vs.rest_throttled.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                venue = venue.name(),
                status,
                "REST rate limit: pausing snapshots for {d:?}"
            );
            snapshots.throttled(symbol, d);
        }
        Rest::Failed(e) => {
            tracing::warn!(venue = venue.name(), %symbol, "depth snapshot failed: {e}; retrying");
            snapshots.failed(symbol, p.reconnect_min);
        }
    }
}
