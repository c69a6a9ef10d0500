//! `GET /stream`: Server-Sent Events of top-of-book changes (coalesced per symbol, at
//! most `sse_max_hz` per client), and the poller that publishes the changed slots of the
//! shm file to every client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, watch};

use super::state::App;
use super::symbols::{detail, id_of};

/// One slot as the SSE poller last saw it.
#[derive(Clone, Debug)]
pub(super) struct SlotView {
    id: String,
    seq: u64,
    json: Arc<str>,
}

/// Every published slot as last polled, in slot order: what the SSE clients read.
pub(super) type Board = Arc<Vec<SlotView>>;

#[derive(serde::Deserialize)]
pub(super) struct StreamQuery {
    symbols: Option<String>,
}

/// `GET /stream?symbols=a,b`: `tob` events, each the slot's JSON with its sequence
/// number as the event id.
pub(super) async fn stream(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Response {
    if let Err(r) = app.admit_read(&headers) {
        return *r;
    }
    let wanted: Option<Vec<String>> = q.symbols.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });
    let (tx, rx) = mpsc::channel::<SseEvent>(16);
    let period = Duration::from_secs_f64(1.0 / app.cfg.sse_max_hz.max(0.1));
    // Relaxed: a gauge, read only for reporting.
    app.stats.sse_clients.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(feed_client(app.clone(), wanted, tx, period));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|ev| (Ok::<_, std::convert::Infallible>(ev), rx))
    });
    Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Whether a client that asked for `wanted` (ids or bare symbols; `None`: all) wants the
/// slot `id` (`venue:SYMBOL`).
fn wants(wanted: Option<&[String]>, id: &str) -> bool {
    wanted.is_none_or(|w| {
        w.iter().any(|s| {
            *s == id
                || id
                    .split_once(':')
                    .is_some_and(|(_, sym)| sym.eq_ignore_ascii_case(s))
        })
    })
}

/// Sends one client, every `period`, the slots it wants that changed since it last heard
/// of them, until it disconnects or falls behind.
async fn feed_client(
    app: App,
    wanted: Option<Vec<String>>,
    tx: mpsc::Sender<SseEvent>,
    period: Duration,
) {
    let mut board = app.board.clone();
    let mut sent: HashMap<String, u64> = HashMap::new();
    let mut tick = tokio::time::interval(period);
    // Relaxed on the SSE counters below: gauges and counters read only for reporting.
    loop {
        tick.tick().await;
        if tx.is_closed() {
            break;
        }
        let snap = board.borrow_and_update().clone();
        let mut full = false;
        for v in snap.iter() {
            if !wants(wanted.as_deref(), &v.id) || sent.get(&v.id).is_some_and(|s| *s >= v.seq) {
                continue;
            }
            let ev = SseEvent::default()
                .event("tob")
                .id(v.seq.to_string())
                .data(&*v.json);
            match tx.try_send(ev) {
                Ok(()) => {
                    sent.insert(v.id.clone(), v.seq);
                    app.stats.sse_events.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    full = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if full {
            // This client does not keep up: drop it rather than slow anyone else.
            app.stats.sse_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("SSE client too slow; dropped");
            break;
        }
    }
    app.stats.sse_clients.fetch_sub(1, Ordering::Relaxed);
}

/// Polls the shm slots and publishes changed ones to the SSE clients.
pub(super) async fn poll_board(app: App, tx: watch::Sender<Board>, stop: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut last: Vec<SlotView> = Vec::new();
    // Relaxed: a stop request.
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let Ok(views) = app.with_reader(|r| {
            let insts = r.instruments();
            let mut changed = insts.len() != last.len();
            let mut out = Vec::with_capacity(insts.len());
            for (k, i) in insts.iter().enumerate() {
                let seq = r.seq(i.slot);
                match last.get(k) {
                    Some(v) if v.seq == seq && !changed => out.push(v.clone()),
                    _ => {
                        let Some(t) = r.read(i.slot) else { continue };
                        changed = true;
                        out.push(SlotView {
                            id: id_of(i),
                            seq: t.seq,
                            json: detail(i, &t).to_string().into(),
                        });
                    }
                }
            }
            (changed, out)
        }) else {
            continue;
        };
        if views.0 {
            last = views.1;
            let _ = tx.send(Arc::new(last.clone()));
        }
    }
}
