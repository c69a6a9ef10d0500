//! `GET /health/liveness` (the book thread's heartbeat is fresh; in `hermes serve`, the
//! shm writer's heartbeat) and `GET /health/readiness` (feeds connected, breakers closed,
//! persister keeping up; in `hermes serve`, the writer alive).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hermes_book::clock::unix_ns;
use hermes_live::BreakerState;
use serde_json::json;

use super::state::{App, AppState};
use super::status::{state_word, writer_view};

/// `GET /health/liveness`: alive while the book thread beat within the last 2 s (in
/// `hermes serve`: while the shm writer's heartbeat is fresh).
pub(super) async fn liveness(State(app): State<App>) -> Response {
    let Some(engine) = &app.cfg.engine else {
        if app.cfg.shm_path.is_none() {
            // A role without books (`hermes persist --nats`): answering is being alive;
            // readiness says whether it does its job.
            return Json(json!({ "status": "alive" })).into_response();
        }
        return writer_liveness(&app);
    };
    // Relaxed: a reported timestamp.
    let beat = engine.heartbeat_ns.load(Ordering::Relaxed) as i64;
    let age = Duration::from_nanos((unix_ns() - beat).max(0) as u64);
    if beat > 0 && age < Duration::from_secs(2) {
        Json(json!({ "status": "alive", "book_thread_heartbeat_ms": age.as_millis() as u64 }))
            .into_response()
    } else if beat == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting", "reason": "the book thread has not started yet" })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "dead", "reason": format!("book thread silent for {} ms", age.as_millis()) })),
        )
            .into_response()
    }
}

/// Liveness from the shm file alone: 200 while its writer's heartbeat is fresh, 503 with
/// the writer's state otherwise (closed, dead, stalled, or the file unreadable).
fn writer_liveness(app: &AppState) -> Response {
    match writer_view(app) {
        Ok(w) if matches!(w.status, hermes_shm::WriterStatus::Alive { .. }) => Json(json!({
            "status": "alive",
            "writer_pid": w.pid,
            "generation": w.generation,
            "writer_heartbeat_ms": w.heartbeat_age.as_millis() as u64,
        }))
        .into_response(),
        Ok(w) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": state_word(&w.status),
                "reason": format!("shm writer {}", w.status),
                "writer_pid": w.pid,
                "generation": w.generation,
            })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "reason": e })),
        )
            .into_response(),
    }
}

/// Why the engine is not ready (empty = ready).
fn unready(app: &AppState) -> Vec<String> {
    let mut why = Vec::new();
    if app.cfg.engine.is_none() && app.cfg.shm_path.is_some() {
        // `hermes serve` and `hermes mirror`: only the file tells; the writer must be
        // alive.
        match writer_view(app) {
            Ok(w) if matches!(w.status, hermes_shm::WriterStatus::Alive { .. }) => {}
            Ok(w) => why.push(format!("shm writer {}", w.status)),
            Err(e) => why.push(e),
        }
    }
    if let Ok((n, slots)) = app.with_reader(|r| (r.instruments().len(), r.slot_count())) {
        if n as u64 >= u64::from(slots) {
            why.push(format!(
                "shm directory full ({n} of {slots} slots): new instruments are refused; restart with more --shm-slots"
            ));
        }
    }
    if let Some(live) = &app.cfg.live {
        for v in &app.cfg.venues {
            let (name, vs) = (v.name(), live.venue(*v));
            // Relaxed: reported states.
            if !vs.connected.load(Ordering::Relaxed) {
                why.push(format!("{name} feed disconnected"));
            }
            if vs.breaker() == BreakerState::Open {
                why.push(format!("{name} circuit breaker open"));
            }
        }
    }
    if let Some(n) = &app.cfg.nats {
        if let Some(w) = n.not_ready() {
            why.push(w);
        }
    }
    if let Some((m, max_pending)) = &app.cfg.mirror {
        if let Some(w) = m.not_ready(*max_pending) {
            why.push(w);
        }
    }
    if let Some(p) = &app.cfg.nats_persist {
        if let Some(w) = p.not_ready(app.cfg.max_persist_lag) {
            why.push(w);
        }
    }
    if let Some(p) = &app.cfg.persist {
        if !p.connected.load(Ordering::Relaxed) {
            why.push("persister not connected to PostgreSQL".into());
        }
        if p.halted.load(Ordering::Relaxed) {
            why.push(format!(
                "persister halted: {}",
                p.last_error().unwrap_or_else(|| "see logs".into())
            ));
        }
        if p.journal_failing.load(Ordering::Relaxed) {
            why.push(format!(
                "journal writes failing: frames are not being kept ({} so far: {})",
                p.not_kept(),
                p.not_kept_by_venue()
            ));
        }
        let lag = Duration::from_millis(p.lag_ms.load(Ordering::Relaxed));
        if lag > app.cfg.max_persist_lag {
            why.push(format!("persister {} ms behind", lag.as_millis()));
        }
    }
    why
}

/// `GET /health/readiness`: ready, or not ready with the reasons.
pub(super) async fn readiness(State(app): State<App>) -> Response {
    let why = unready(&app);
    if why.is_empty() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reasons": why })),
        )
            .into_response()
    }
}
