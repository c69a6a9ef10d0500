//! `GET /metrics`: the engine's, the feeds', the persister's and this server's counters
//! in the Prometheus text format, and what the shm file shows (writer state, heartbeat,
//! per-instrument updates, trades, staleness and age) — all that `hermes serve` has.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hermes_engine::metrics::metric;
use hermes_live::LiveStats;
use hermes_persist::PersistStats;

use super::state::{App, AppState, HttpStats};
use super::status::{state_word, writer_view, STATE_WORDS};
use super::symbols::id_of;

/// `GET /metrics`.
pub(super) async fn metrics(State(app): State<App>) -> Response {
    let mut s = String::with_capacity(8192);
    if let Some(l) = &app.cfg.live {
        feed_metrics(&mut s, l);
        venue_metrics(&mut s, l);
    }
    if let (Some(ring), Some(engine)) = (&app.cfg.ring, &app.cfg.engine) {
        pipeline_metrics(&mut s, ring, engine);
    }
    if app.cfg.shm_path.is_some() {
        shm_metrics(&mut s, &app);
    }
    if let Some(n) = &app.cfg.nats {
        n.render(&mut s);
    }
    if let Some((m, _)) = &app.cfg.mirror {
        m.render(&mut s);
    }
    if let Some(p) = &app.cfg.nats_persist {
        p.render(&mut s);
        persist_metrics(&mut s, &p.db);
    }
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
    // Coinbase and Binance spot always (dashboards expect their series), every other
    // venue when it runs.
    let venues: Vec<(String, &hermes_live::VenueStats)> = hermes_ingest::venue::LIVE_VENUES
        .into_iter()
        .filter(|v| {
            matches!(v, hermes_ingest::Venue::Coinbase | hermes_ingest::Venue::Binance)
                // Relaxed: set once when the venue's connection starts.
                || l.venue(*v).active.load(Ordering::Relaxed)
        })
        .map(|v| (format!("venue=\"{}\"", v.name()), l.venue(v)))
        .collect();
    let per = |f: &dyn Fn(&hermes_live::VenueStats) -> f64| {
        venues
            .iter()
            .map(|(lb, v)| (lb.as_str(), f(v)))
            .collect::<Vec<_>>()
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
fn pipeline_metrics(
    s: &mut String,
    ring: &hermes_engine::RingStats,
    engine: &hermes_engine::metrics::EngineMetrics,
) {
    let pushed = count(&ring.pushed);
    let popped = count(&engine.events);
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
        &[("", count(&ring.full_waits))],
    );
    metric(
        s,
        "counter",
        "hermes_ring_dropped_events_total",
        "Events dropped by the drop-newest ring policy.",
        &[("", count(&ring.dropped))],
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
        &[("", count(&engine.crossed))],
    );
    engine.apply.render(
        s,
        "hermes_book_apply_seconds",
        "Book apply time per event (1 in 64 sampled).",
        "",
    );
    engine.recv_lag.render(
        s,
        "hermes_receive_lag_seconds",
        "Receive time minus exchange time of applied frames.",
        "",
    );
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One instrument's slot, for the per-instrument shm metrics.
struct SlotSample {
    /// `venue="…",symbol="…",id="…"`.
    labels: String,
    updates: u64,
    trades: u64,
    stale: bool,
    /// Seconds since its last publication (NaN before the first).
    age_s: f64,
}

/// What the shm file shows: the writer's state and heartbeat, and per instrument its
/// publications, trades, staleness and the age of its last update.
fn shm_metrics(s: &mut String, app: &AppState) {
    let Ok(w) = writer_view(app) else {
        metric(
            s,
            "gauge",
            "hermes_shm_readable",
            "1 while the shm file can be opened and read.",
            &[("", 0.0)],
        );
        return;
    };
    metric(
        s,
        "gauge",
        "hermes_shm_readable",
        "1 while the shm file can be opened and read.",
        &[("", 1.0)],
    );
    let state = state_word(&w.status);
    let states: Vec<(String, f64)> = STATE_WORDS
        .iter()
        .map(|st| (format!("state=\"{st}\""), (*st == state) as u8 as f64))
        .collect();
    let states_ref: Vec<(&str, f64)> = states.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        s,
        "gauge",
        "hermes_shm_writer_state",
        "1 for the shm writer's current state (alive, closed, dead, stalled, replaced).",
        &states_ref,
    );
    metric(
        s,
        "gauge",
        "hermes_shm_writer_heartbeat_age_seconds",
        "Age of the shm writer's last heartbeat.",
        &[("", w.heartbeat_age.as_secs_f64())],
    );
    metric(
        s,
        "gauge",
        "hermes_shm_generation",
        "Writer generation of the shm file.",
        &[("", w.generation as f64)],
    );
    metric(
        s,
        "gauge",
        "hermes_shm_instruments",
        "Instruments published in the shm file.",
        &[("", w.instruments as f64)],
    );
    metric(
        s,
        "gauge",
        "hermes_shm_stale_books",
        "Books flagged stale (resyncing after a gap).",
        &[("", w.stale as f64)],
    );
    let now = hermes_book::clock::unix_ns();
    let per: Vec<SlotSample> = app
        .with_reader(|r| {
            r.instruments()
                .iter()
                .filter_map(|i| {
                    let t = r.read(i.slot)?;
                    let l = format!(
                        "venue=\"{}\",symbol=\"{}\",id=\"{}\"",
                        label(i.venue.name()),
                        label(&i.symbol),
                        label(&id_of(i))
                    );
                    let age = if t.publish_ts_ns > 0 {
                        (now - t.publish_ts_ns).max(0) as f64 / 1e9
                    } else {
                        f64::NAN
                    };
                    Some(SlotSample {
                        labels: l,
                        updates: t.updates,
                        trades: t.trades,
                        stale: t.is_stale(),
                        age_s: age,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let col = |f: &dyn Fn(&SlotSample) -> f64| {
        per.iter()
            .map(|r| (r.labels.as_str(), f(r)))
            .collect::<Vec<_>>()
    };
    metric(
        s,
        "counter",
        "hermes_shm_slot_updates_total",
        "Publications of the instrument's slot by the current writer.",
        &col(&|r| r.updates as f64),
    );
    metric(
        s,
        "counter",
        "hermes_shm_slot_trades_total",
        "Trades seen on the instrument by the current writer.",
        &col(&|r| r.trades as f64),
    );
    metric(
        s,
        "gauge",
        "hermes_shm_slot_stale",
        "1 while the instrument's book is stale (resyncing after a gap).",
        &col(&|r| r.stale as u8 as f64),
    );
    metric(
        s,
        "gauge",
        "hermes_shm_slot_age_seconds",
        "Time since the instrument's slot was last published.",
        &col(&|r| r.age_s),
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
        "Size of the journal segment being written.",
        &[("", count(&p.journal_bytes))],
    );
    metric(
        s,
        "gauge",
        "hermes_journal_dir_bytes",
        "Bytes of every segment in the journal directory (what retention keeps).",
        &[("", count(&p.journal_dir_bytes))],
    );
    metric(
        s,
        "gauge",
        "hermes_journal_segments",
        "Segments in the journal directory.",
        &[("", count(&p.journal_segments))],
    );
    metric(
        s,
        "counter",
        "hermes_journal_segments_deleted_total",
        "Committed segments deleted by --journal-retention.",
        &[("", count(&p.segments_deleted))],
    );
    let not_kept: Vec<(String, f64)> = hermes_ingest::Venue::ALL
        .iter()
        .zip(&p.frames_not_kept)
        .map(|(v, c)| (format!("venue=\"{}\"", v.name()), count(c)))
        .collect();
    let not_kept: Vec<(&str, f64)> = not_kept.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        s,
        "counter",
        "hermes_journal_frames_not_kept_total",
        "Frames that could not be journaled (full or failing disk): in shm, never in the database.",
        &not_kept,
    );
    metric(
        s,
        "gauge",
        "hermes_journal_failing",
        "1 while journal writes fail (frames are being counted as not kept).",
        &[("", p.journal_failing.load(Ordering::Relaxed) as u8 as f64)],
    );
    metric(
        s,
        "counter",
        "hermes_journal_damaged_bytes_total",
        "Bytes of damaged journal regions skipped (kept aside in .corrupt files).",
        &[("", count(&p.damaged_bytes))],
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
        "counter",
        "hermes_webhook_symbol_limit_total",
        "Webhook ticks refused (429) because the webhook symbol limit was reached.",
        &[("", count(&h.ticks_symbol_limit))],
    );
    metric(
        s,
        "gauge",
        "hermes_http_connections",
        "TCP connections open to the HTTP face.",
        &[("", count(&h.connections))],
    );
    metric(
        s,
        "counter",
        "hermes_http_connections_refused_total",
        "Connections refused (503) because the connection cap was reached.",
        &[("", count(&h.connections_refused))],
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

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("BTC-USD"), "BTC-USD");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
