//! The session of a venue that rebuilds a book by subscribing again (Coinbase Advanced
//! Trade, Coinbase Exchange): send the venue's subscribe messages, decode every message,
//! and after a gap resubscribe the book channel for the stale products only (the venue
//! answers with a fresh snapshot each), at most once per `resubscribe_interval`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use hermes_ingest::{EventSink, FrameKind};
use tokio_tungstenite::tungstenite::Message;

use crate::config::{ConnPolicy, FeedConfig};
use crate::pipeline::Pipeline;
use crate::stats::LiveStats;
use crate::ws::{incoming, lost, reconnect_loop, Incoming, Keepalive, SessionEnd, Ws, TICK};

/// Runs the feed's connection, reconnecting, until `done`.
pub(crate) async fn run<S: EventSink>(
    feed: &FeedConfig,
    policy: &ConnPolicy,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    done: &AtomicBool,
) {
    let p = feed.protocol();
    let url = p.connect_url(&feed.ws_url, &feed.symbols, &feed.channels);
    reconnect_loop(
        feed.venue,
        &url,
        &feed.symbols,
        policy,
        ctx,
        stats.venue(feed.venue),
        done,
        async |ws, conn| session(ws, conn, feed, policy, ctx, stats, done).await,
    )
    .await;
}

/// One connection, until it ends.
async fn session<S: EventSink>(
    mut ws: Ws,
    conn: u16,
    feed: &FeedConfig,
    policy: &ConnPolicy,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    done: &AtomicBool,
) -> SessionEnd {
    let (proto, vs) = (feed.protocol(), stats.venue(feed.venue));
    for msg in proto.subscribe(&feed.symbols, &feed.channels) {
        if let Err(e) = ws.send(Message::text(msg)).await {
            return lost(e);
        }
    }
    let mut tick = tokio::time::interval(TICK);
    let mut alive = Keepalive::new();
    let mut last_resub: Option<Instant> = None;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let read = match incoming(msg, feed.venue, proto.binary_frames_are_text(), vs, policy) {
                    Err(end) => return end,
                    Ok(read) => read,
                };
                alive.heard(&read);
                let Incoming::Frame(data) = read else { continue };
                ctx.borrow_mut().frame(feed.venue, FrameKind::Ws, conn, data.as_bytes());
            }
            _ = tick.tick() => {
                if let Err(end) = alive.tick(&mut ws, policy, done).await {
                    return end;
                }
            }
        }
        if let Err(end) =
            resubscribe_stale(&mut ws, conn, feed, policy, ctx, stats, &mut last_resub).await
        {
            return end;
        }
    }
}

/// After a gap: resubscribes the book channel for the stale products (a fresh snapshot
/// each), unless the last resubscription was under `resubscribe_interval` ago.
async fn resubscribe_stale<S: EventSink>(
    ws: &mut Ws,
    conn: u16,
    feed: &FeedConfig,
    policy: &ConnPolicy,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    last_resub: &mut Option<Instant>,
) -> Result<(), SessionEnd> {
    if last_resub.is_some_and(|t| t.elapsed() < policy.resubscribe_interval) {
        return Ok(());
    }
    let products = ctx.borrow_mut().take_pending(feed.venue);
    if products.is_empty() {
        return Ok(());
    }
    *last_resub = Some(Instant::now());
    // Relaxed: a counter for reports.
    stats
        .venue(feed.venue)
        .resyncs_requested
        .fetch_add(1, Ordering::Relaxed);
    let proto = feed.protocol();
    tracing::info!(
        venue = feed.venue.name(),
        conn,
        ?products,
        "gap: resubscribing {}",
        proto.book_channel(&feed.channels)
    );
    for msg in proto.resubscribe(&products, &feed.channels) {
        ws.send(Message::text(msg)).await.map_err(lost)?;
    }
    Ok(())
}
