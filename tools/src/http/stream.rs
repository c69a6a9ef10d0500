//! `GET /stream`: Server-Sent Events of top-of-book changes (coalesced per symbol, at
//! most `sse_max_hz` per client), and the poller that publishes the changed slots of the
//! shm file to every client.
//!
//! A client gets, every period, one batch: each slot it wants that changed since its last
//! batch, once. Up to [`BACKLOG_BATCHES`] batches may wait for it (a burst, a slow
//! browser tab); a client further behind is dropped and counted, never slowing others.
//! When a new writer replaces the shm file (a new generation) every client is sent every
//! slot again, since the new writer's sequence numbers start over.

use std::collections::{HashMap, VecDeque};
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
    slot: u32,
    id: String,
    seq: u64,
    json: Arc<str>,
}

/// Every published slot as last polled, in slot order, and the writer generation they
/// belong to: what the SSE clients read.
#[derive(Clone, Debug, Default)]
pub(super) struct Board {
    generation: u64,
    slots: Arc<Vec<SlotView>>,
}

/// Batches that may wait for a client before it is dropped as too slow.
const BACKLOG_BATCHES: usize = 8;

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
    let (tx, rx) = mpsc::channel::<Vec<SseEvent>>(BACKLOG_BATCHES);
    let period = Duration::from_secs_f64(1.0 / app.cfg.sse_max_hz.max(0.1));
    // Relaxed: a gauge, read only for reporting.
    app.stats.sse_clients.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(feed_client(app.clone(), wanted, tx, period));
    let body = futures_util::stream::unfold(
        (rx, VecDeque::new()),
        |(mut rx, mut pending): (_, VecDeque<SseEvent>)| async move {
            while pending.is_empty() {
                pending.extend(rx.recv().await?);
            }
            let ev = pending.pop_front()?;
            Some((Ok::<_, std::convert::Infallible>(ev), (rx, pending)))
        },
    );
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
    tx: mpsc::Sender<Vec<SseEvent>>,
    period: Duration,
) {
    let mut board = app.board.clone();
    let mut sent: HashMap<String, u64> = HashMap::new();
    let mut generation = None;
    let mut tick = tokio::time::interval(period);
    // Relaxed on the SSE counters below: gauges and counters read only for reporting.
    loop {
        tick.tick().await;
        if tx.is_closed() {
            break;
        }
        let snap = board.borrow_and_update().clone();
        if generation != Some(snap.generation) {
            // A new writer: its sequence numbers start over, so send everything again.
            generation = Some(snap.generation);
            sent.clear();
        }
        let mut batch = Vec::new();
        let mut ids = Vec::new();
        for v in snap.slots.iter() {
            if !wants(wanted.as_deref(), &v.id) || sent.get(&v.id).is_some_and(|s| *s >= v.seq) {
                continue;
            }
            batch.push(
                SseEvent::default()
                    .event("tob")
                    .id(v.seq.to_string())
                    .data(&*v.json),
            );
            ids.push((v.id.clone(), v.seq));
        }
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        match tx.try_send(batch) {
            Ok(()) => {
                sent.extend(ids);
                app.stats.sse_events.fetch_add(n, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                // This client does not keep up: drop it rather than slow anyone else.
                app.stats.sse_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("SSE client too slow; dropped");
                break;
            }
            Err(_) => break,
        }
    }
    app.stats.sse_clients.fetch_sub(1, Ordering::Relaxed);
}

/// Polls the shm slots and publishes changed ones to the SSE clients.
pub(super) async fn poll_board(app: App, tx: watch::Sender<Board>, stop: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut last: Vec<SlotView> = Vec::new();
    let mut last_generation = None;
    // Relaxed: a stop request.
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let Ok(views) = app.with_reader(|r| {
            let insts = r.instruments();
            let generation = r.generation();
            if last_generation != Some(generation) {
                // A new writer (or the first open): nothing of the old board is valid.
                last.clear();
                last_generation = Some(generation);
            }
            let mut changed = insts.len() != last.len();
            let mut out = Vec::with_capacity(insts.len());
            for (k, i) in insts.iter().enumerate() {
                let seq = r.seq(i.slot);
                match last.get(k) {
                    // Unchanged (the directory only grows within a generation).
                    Some(v) if v.seq == seq && v.slot == i.slot.0 => out.push(v.clone()),
                    _ => {
                        let Some(t) = r.read(i.slot) else { continue };
                        changed = true;
                        out.push(SlotView {
                            slot: i.slot.0,
                            id: id_of(i),
                            seq: t.seq,
                            json: detail(i, &t).to_string().into(),
                        });
                    }
                }
            }
            (changed, out, generation)
        }) else {
            continue;
        };
        let (changed, out, generation) = views;
        if changed {
            last = out;
            let _ = tx.send(Board {
                generation,
                slots: Arc::new(last.clone()),
            });
        }
    }
}
