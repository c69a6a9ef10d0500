//! The Coinbase Advanced Trade session: subscribe to the configured channels, decode
//! every message, and rebuild a book after a gap by resubscribing `level2` for the
//! stale products (the venue answers with a fresh snapshot), at most once per
//! `resubscribe_interval`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use hermes_ingest::{EventSink, FrameKind, Venue};
use tokio_tungstenite::tungstenite::Message;

use crate::config::LiveConfig;
use crate::pipeline::Pipeline;
use crate::stats::LiveStats;
use crate::ws::{incoming, lost, reconnect_loop, Incoming, Keepalive, SessionEnd, Ws, TICK};

/// Runs the Coinbase connection, reconnecting, until `done`.
pub(crate) async fn run<S: EventSink>(
    cfg: &LiveConfig,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    done: &AtomicBool,
) {
    let vs = &stats.coinbase;
    reconnect_loop(
        Venue::Coinbase,
        &cfg.coinbase_ws_url,
        &cfg.coinbase_products,
        &cfg.policy,
        ctx,
        vs,
        done,
        async |ws, conn| session(ws, conn, cfg, ctx, stats, done).await,
    )
    .await;
}

fn subscribe_msg(kind: &str, channel: &str, products: &[String]) -> String {
    format!(
        r#"{{"type":"{kind}","product_ids":{},"channel":"{channel}"}}"#,
        serde_json::to_string(products).unwrap_or_else(|_| "[]".into())
    )
}

/// One connection, until it ends.
async fn session<S: EventSink>(
    mut ws: Ws,
    conn: u16,
    cfg: &LiveConfig,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    done: &AtomicBool,
) -> SessionEnd {
    let (p, vs) = (&cfg.policy, &stats.coinbase);
    for ch in &cfg.coinbase_channels {
        if let Err(e) = ws
            .send(Message::text(subscribe_msg(
                "subscribe",
                ch,
                &cfg.coinbase_products,
            )))
            .await
        {
            return lost(e);
        }
    }
    let mut tick = tokio::time::interval(TICK);
    let mut alive = Keepalive::new();
    let mut last_resub: Option<Instant> = None;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let read = match incoming(msg, Venue::Coinbase, true, vs, p) {
                    Err(end) => return end,
                    Ok(read) => read,
                };
                alive.heard(&read);
                let Incoming::Frame(data) = read else { continue };
                ctx.borrow_mut().frame(Venue::Coinbase, FrameKind::Ws, conn, data.as_bytes());
            }
            _ = tick.tick() => {
                if let Err(end) = alive.tick(&mut ws, p, done).await {
                    return end;
                }
            }
        }
        if let Err(end) = resubscribe_stale(&mut ws, conn, cfg, ctx, stats, &mut last_resub).await {
            return end;
        }
    }
}

/// After a gap: resubscribes `level2` for the stale products (a fresh snapshot each),
/// unless the last resubscription was under `resubscribe_interval` ago.
async fn resubscribe_stale<S: EventSink>(
    ws: &mut Ws,
    conn: u16,
    cfg: &LiveConfig,
    ctx: &RefCell<Pipeline<'_, S>>,
    stats: &LiveStats,
    last_resub: &mut Option<Instant>,
) -> Result<(), SessionEnd> {
    if last_resub.is_some_and(|t| t.elapsed() < cfg.policy.resubscribe_interval) {
        return Ok(());
    }
    let products = ctx.borrow_mut().take_pending(Venue::Coinbase);
    if products.is_empty() {
        return Ok(());
    }
    *last_resub = Some(Instant::now());
    // Relaxed: a counter for reports.
    stats
        .coinbase
        .resyncs_requested
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        venue = "coinbase",
        conn,
        ?products,
        "gap: resubscribing level2"
    );
    for kind in ["unsubscribe", "subscribe"] {
        ws.send(Message::text(subscribe_msg(kind, "level2", &products)))
            .await
            .map_err(lost)?;
    }
    Ok(())
}
