//! `GET /status`: what the dashboard's operations panel shows. The writer of the shm file
//! (pid, generation, alive / stalled / dead / closed / replaced, heartbeat age, stale and
//! crossed books) in every process; the feeds, breakers, gaps and resyncs, the ring and
//! the persister only inside the engine's process (`null` in `hermes serve`, which has
//! nothing but the file).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hermes_book::clock::unix_ns;
use hermes_shm::{WriterStatus, FLAG_CROSSED};
use serde_json::{json, Value};

use super::state::{App, AppState};

/// The writer of the shm file as a reader sees it.
#[derive(Clone, Debug)]
pub(super) struct WriterView {
    /// Its pid.
    pub(super) pid: u32,
    /// The generation of the file.
    pub(super) generation: u64,
    /// Alive, closed, dead, stalled or replaced.
    pub(super) status: WriterStatus,
    /// Age of its last heartbeat.
    pub(super) heartbeat_age: Duration,
    /// Instruments published.
    pub(super) instruments: usize,
    /// Slots in the file.
    pub(super) slots: u32,
    /// Books flagged stale (resyncing after a gap).
    pub(super) stale: usize,
    /// Books crossed or locked.
    pub(super) crossed: usize,
}

/// One word for a writer state, as the dashboard and `/metrics` label it.
pub(super) fn state_word(st: &WriterStatus) -> &'static str {
    match st {
        WriterStatus::Alive { .. } => "alive",
        WriterStatus::Closed => "closed",
        WriterStatus::Dead { .. } => "dead",
        WriterStatus::Stalled { .. } => "stalled",
        WriterStatus::Replaced => "replaced",
    }
}

/// Every state word, for the one-hot `/metrics` gauge.
pub(super) const STATE_WORDS: [&str; 5] = ["alive", "closed", "dead", "stalled", "replaced"];

/// Reads the writer's state from the shm file (reopening it if it was replaced).
pub(super) fn writer_view(app: &AppState) -> Result<WriterView, String> {
    app.with_reader(|r| {
        let insts = r.instruments();
        let (mut stale, mut crossed) = (0, 0);
        for i in &insts {
            if let Some(b) = r.read_bbo(i.slot) {
                stale += (b.flags & hermes_shm::FLAG_STALE != 0) as usize;
                crossed += (b.flags & FLAG_CROSSED != 0) as usize;
            }
        }
        WriterView {
            pid: r.writer_pid(),
            generation: r.generation(),
            status: r.writer_status(app.cfg.writer_stall),
            heartbeat_age: Duration::from_nanos((unix_ns() - r.heartbeat_ns()).max(0) as u64),
            instruments: insts.len(),
            slots: r.slot_count(),
            stale,
            crossed,
        }
    })
}

/// A counter's value for reporting.
fn n(a: &AtomicU64) -> u64 {
    // Relaxed: counters read for reporting only; no other memory depends on them.
    a.load(Ordering::Relaxed)
}

/// The writer part of `/status`.
fn writer_json(app: &AppState) -> Value {
    let replaced = app
        .last_replaced()
        .map(|(g, ago)| json!({ "old_generation": g, "ago_ms": ago.as_millis() as u64 }));
    match writer_view(app) {
        Ok(w) => json!({
            "path": app.cfg.shm_path.as_deref().unwrap_or(std::path::Path::new("")).display().to_string(),
            "state": state_word(&w.status),
            "text": w.status.to_string(),
            "pid": w.pid,
            "generation": w.generation,
            "heartbeat_age_ms": w.heartbeat_age.as_millis() as u64,
            "stall_ms": app.cfg.writer_stall.as_millis() as u64,
            "instruments": w.instruments,
            "slots": w.slots,
            "stale": w.stale,
            "crossed": w.crossed,
            "replaced": replaced,
        }),
        Err(e) => json!({
            "path": app.cfg.shm_path.as_deref().unwrap_or(std::path::Path::new("")).display().to_string(),
            "state": "unavailable",
            "text": e,
            "replaced": replaced,
        }),
    }
}

/// The live feeds (`null` outside `run`).
fn feeds_json(app: &AppState) -> Value {
    let Some(l) = &app.cfg.live else {
        return Value::Null;
    };
    let venues: Vec<Value> = app
        .cfg
        .venues
        .iter()
        .map(|v| {
            let (name, vs) = (v.name(), l.venue(*v));
            json!({
                "venue": name,
                // Relaxed: a reported state.
                "connected": vs.connected.load(Ordering::Relaxed),
                "breaker": vs.breaker().name(),
                "reconnects": n(&vs.reconnects),
                "failures": n(&vs.failures),
                "resync_requests": n(&vs.resyncs_requested),
                "rest_snapshots": n(&vs.rest_fetches),
                "rest_throttled": n(&vs.rest_throttled),
            })
        })
        .collect();
    json!({
        "venues": venues,
        "frames": n(&l.frames),
        "bytes": n(&l.bytes),
        "parse_errors": n(&l.parse_errors),
        "gaps": n(&l.gaps),
        "resyncs": n(&l.resyncs),
    })
}

/// The ingest→book ring (`null` in `serve`).
fn ring_json(app: &AppState) -> Value {
    let (Some(ring), Some(eng)) = (&app.cfg.ring, &app.cfg.engine) else {
        return Value::Null;
    };
    let pushed = n(&ring.pushed);
    let applied = n(&eng.events);
    json!({
        "pushed": pushed,
        "applied": applied,
        "occupancy": pushed.saturating_sub(applied),
        "full_waits": n(&ring.full_waits),
        "dropped": n(&ring.dropped),
        "crossed_commits": n(&eng.crossed),
    })
}

/// The persister (`null` when not persisting in this process).
fn persist_json(app: &AppState) -> Value {
    let Some(p) = &app.cfg.persist else {
        return Value::Null;
    };
    json!({
        // Relaxed: reported states.
        "connected": p.connected.load(Ordering::Relaxed),
        "halted": p.halted.load(Ordering::Relaxed),
        "lag_ms": n(&p.lag_ms),
        "lag_bytes": n(&p.lag_bytes),
        "journal_bytes": n(&p.journal_bytes),
        "journal_dir_bytes": n(&p.journal_dir_bytes),
        "journal_segments": n(&p.journal_segments),
        "journal_failing": p.journal_failing.load(Ordering::Relaxed),
        "frames_not_kept": p.not_kept(),
        "batches": n(&p.batches),
        "retries": n(&p.retries),
        "rows": hermes_persist::TABLES.iter().enumerate()
            .map(|(i, t)| (t.to_string(), json!(p.rows_of(i))))
            .collect::<serde_json::Map<_, _>>(),
        "last_error": p.last_error(),
    })
}

/// `GET /status`.
pub(super) async fn status(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(r) = app.admit_read(&headers) {
        return *r;
    }
    let in_engine = app.cfg.engine.is_some();
    Json(json!({
        "process": if in_engine { "engine" } else { "serve" },
        "now_ns": unix_ns(),
        "writer": writer_json(&app),
        "feeds": feeds_json(&app),
        "ring": ring_json(&app),
        "persist": persist_json(&app),
        "database": app.cfg.database_url.is_some(),
        "http": {
            "sse_clients": n(&app.stats.sse_clients),
            "sse_dropped": n(&app.stats.sse_dropped),
            "sse_events": n(&app.stats.sse_events),
            "sse_max_hz": app.cfg.sse_max_hz,
            "requests": n(&app.stats.requests),
            "uptime_s": app.started.elapsed().as_secs_f64(),
        },
    }))
    .into_response()
}
