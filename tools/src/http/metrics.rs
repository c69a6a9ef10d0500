//! `GET /metrics`: the engine's, the feeds', the persister's and this server's counters
//! in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hermes_engine::metrics::metric;
use hermes_live::LiveStats;
use hermes_persist::PersistStats;

use super::state::{App, HttpStats};
use super::HttpConfig;

/// `GET /metrics`.
pub(super) async fn metrics(State(app): State<App>) -> Response {
    let mut s = String::with_capacity(8192);
    if let Some(l) = &app.cfg.live {
        feed_metrics(&mut s, l);
        venue_metrics(&mut s, l);
    }
    pipeline_metrics(&mut s, &app.cfg);
    if let Some(p) = &app.cfg.persist {
        persist_metrics(&mut s, p);
    }
    server_metrics(&mut s, &app.stats, app.started);
    let _ = writeln!(s);
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        s,
    )
        .into_response()
}

/// A counter as a sample value.
fn count(a: &AtomicU64) -> f64 {
    // Relaxed: counters read for reporting only; no other memory depends on them.
    a.load(Ordering::Relaxed) as f64
}

/// The live feeds' totals over all venues.
fn feed_metrics(s: &mut String, l: &LiveStats) {
    metric(
        s,
        "counter",
        "hermes_frames_received_total",
        "Frames received from the venues (REST snapshots and webhook ticks included).",
        &[("", count(&l.frames))],
    );
    metric(
        s,
        "counter",
        "hermes_received_bytes_total",
        "Bytes of frames received.",
        &[("", count(&l.bytes))],
    );
    metric(
        s,
        "counter",
        "hermes_parse_errors_total",
        "Frames refused as malformed.",
        &[("", count(&l.parse_errors))],
    );
    metric(
        s,
        "counter",
        "hermes_sequence_gaps_total",
        "Sequence gaps detected.",
        &[("", count(&l.gaps))],
    );
    metric(
        s,
        "counter",
        "hermes_resyncs_total",
        "Books rebuilt after a gap.",
        &[("", count(&l.resyncs))],
    );
}

/// The live feeds' counters per venue.
fn venue_metrics(s: &mut String, l: &LiveStats) {
    let venues = [
        ("venue=\"coinbase\"", &l.coinbase),
        ("venue=\"binance\"", &l.binance),
    ];
    let per = |f: &dyn Fn(&hermes_live::VenueStats) -> f64| {
        venues.iter().map(|(lb, v)| (*lb, f(v))).collect::<Vec<_>>()
    };
    metric(
        s,
        "counter",
        "hermes_reconnects_total",
        "Reconnections.",
        &per(&|v| count(&v.reconnects)),
    );
    metric(
        s,
        "counter",
        "hermes_connection_failures_total",
        "Failed connection attempts and lost connections.",
        &per(&|v| count(&v.failures)),
    );
    metric(
        s,
        "gauge",
        "hermes_feed_connected",
        "1 while the venue's connection is up.",
        &per(&|v| v.connected.load(Ordering::Relaxed) as u8 as f64),
    );
    metric(
        s,
        "gauge",
        "hermes_circuit_breaker_state",
        "0 closed, 1 open, 2 half-open.",
        &per(&|v| v.breaker() as u8 as f64),
    );
    metric(
        s,
        "counter",
        "hermes_resync_requests_total",
        "Resubscriptions / REST snapshot refetches after gaps.",
        &per(&|v| count(&v.resyncs_requested)),
    );
    metric(
        s,
        "counter",
        "hermes_rest_snapshots_total",
        "Binance REST depth snapshots fetched.",
        &per(&|v| count(&v.rest_fetches)),
    );
    metric(
        s,
        "counter",
        "hermes_rest_throttled_total",
        "REST answers 429/418 honoured.",
        &per(&|v| count(&v.rest_throttled)),
    );
    metric(
        s,
        "counter",
        "hermes_oversize_messages_total",
        "Messages over the size limit.",
        &per(&|v| count(&v.oversize)),
    );
}

/// The ingest→book ring and the book thread.
fn pipeline_metrics(s: &mut String, cfg: &HttpConfig) {
    let pushed = count(&cfg.ring.pushed);
    let popped = count(&cfg.engine.events);
    metric(
        s,
        "counter",
        "hermes_ring_pushed_events_total",
        "Events pushed into the ingest→book ring.",
        &[("", pushed)],
    );
    metric(
        s,
        "gauge",
        "hermes_ring_occupancy_events",
        "Events waiting in the ring (sampled every 64 events).",
        &[("", (pushed - popped).max(0.0))],
    );
    metric(
        s,
        "counter",
        "hermes_ring_full_waits_total",
        "Times the ingest thread found the ring full.",
        &[("", count(&cfg.ring.full_waits))],
    );
    metric(
        s,
        "counter",
        "hermes_ring_dropped_events_total",
        "Events dropped by the drop-newest ring policy.",
        &[("", count(&cfg.ring.dropped))],
    );
    metric(
        s,
        "counter",
        "hermes_book_events_applied_total",
        "Events applied by the book thread.",
        &[("", popped)],
    );
    metric(
        s,
        "counter",
        "hermes_book_crossed_total",
        "Commits that left a book crossed or locked.",
        &[("", count(&cfg.engine.crossed))],
    );
    cfg.engine.apply.render(
        s,
        "hermes_book_apply_seconds",
        "Book apply time per event (1 in 64 sampled).",
        "",
    );
    cfg.engine.recv_lag.render(
        s,
        "hermes_receive_lag_seconds",
        "Receive time minus exchange time of applied frames.",
        "",
    );
}

/// The persister (rows, batches, lag, connection).
fn persist_metrics(s: &mut String, p: &PersistStats) {
    let tables = hermes_persist::TABLES;
    let rows: Vec<(String, f64)> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("table=\"{t}\""), p.rows_of(i) as f64))
        .collect();
    let rows_ref: Vec<(&str, f64)> = rows.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        s,
        "counter",
        "hermes_persist_rows_written_total",
        "Rows inserted into PostgreSQL.",
        &rows_ref,
    );
    metric(
        s,
        "counter",
        "hermes_persist_duplicate_rows_total",
        "Rows PostgreSQL already had (idempotent rewrites).",
        &[("", count(&p.duplicate_rows))],
    );
    metric(
        s,
        "counter",
        "hermes_persist_batches_total",
        "COPY batches committed.",
        &[("", count(&p.batches))],
    );
    metric(
        s,
        "gauge",
        "hermes_persist_copy_latency_seconds",
        "Last batch's COPY + insert + commit time.",
        &[("", count(&p.copy_latency_us_last) / 1e6)],
    );
    metric(
        s,
        "gauge",
        "hermes_persist_copy_latency_max_seconds",
        "Slowest batch so far.",
        &[("", count(&p.copy_latency_us_max) / 1e6)],
    );
    metric(
        s,
        "gauge",
        "hermes_persist_lag_bytes",
        "Journal bytes not yet in PostgreSQL.",
        &[("", count(&p.lag_bytes))],
    );
    metric(
        s,
        "gauge",
        "hermes_persist_lag_seconds",
        "Time since PostgreSQL last held everything journaled.",
        &[("", count(&p.lag_ms) / 1e3)],
    );
    metric(
        s,
        "gauge",
        "hermes_journal_size_bytes",
        "Size of the journal.",
        &[("", count(&p.journal_bytes))],
    );
    metric(
        s,
        "counter",
        "hermes_persist_retries_total",
        "Retried database attempts.",
        &[("", count(&p.retries))],
    );
    metric(
        s,
        "gauge",
        "hermes_persist_connected",
        "1 while connected to PostgreSQL.",
        &[("", p.connected.load(Ordering::Relaxed) as u8 as f64)],
    );
}

/// This server's own counters (requests, SSE, webhook) and uptime.
fn server_metrics(s: &mut String, h: &HttpStats, started: Instant) {
    metric(
        s,
        "counter",
        "hermes_http_requests_total",
        "HTTP requests to the REST endpoints.",
        &[("", count(&h.requests))],
    );
    metric(
        s,
        "gauge",
        "hermes_sse_clients",
        "SSE clients connected.",
        &[("", count(&h.sse_clients))],
    );
    metric(
        s,
        "counter",
        "hermes_sse_dropped_clients_total",
        "SSE clients dropped for reading too slowly.",
        &[("", count(&h.sse_dropped))],
    );
    metric(
        s,
        "counter",
        "hermes_sse_events_total",
        "SSE events sent.",
        &[("", count(&h.sse_events))],
    );
    metric(
        s,
        "counter",
        "hermes_webhook_ticks_total",
        "Webhook ticks by outcome.",
        &[
            ("outcome=\"accepted\"", count(&h.ticks_accepted)),
            ("outcome=\"duplicate\"", count(&h.ticks_duplicate)),
            ("outcome=\"rejected\"", count(&h.ticks_rejected)),
        ],
    );
    metric(
        s,
        "gauge",
        "hermes_uptime_seconds",
        "Seconds since the HTTP server started.",
        &[("", started.elapsed().as_secs_f64())],
    );
}
