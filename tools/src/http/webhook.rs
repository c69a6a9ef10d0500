//! `POST /ingest/tick`: the webhook that feeds ticks to the ingest thread, behind HTTP
//! Basic Auth; validating a body and turning it into the canonical frame.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hermes_live::{TickOutcome, TickRequest};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use super::json_error;
use super::state::App;
use super::state::AppState;

/// A JSON field's raw text exactly as sent (numbers as written, strings unquoted).
fn raw_field(body: &[u8], key: &str) -> Option<String> {
    let v = sonic_rs::get_from_slice(body, &[key]).ok()?;
    let raw = v.as_raw_str();
    if raw == "null" {
        return None;
    }
    Some(
        match raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(s) => s.to_string(),
            None => raw.to_string(),
        },
    )
}

/// Validates a webhook body and builds the canonical frame.
fn validate_tick(body: &[u8]) -> Result<(Vec<u8>, String, String), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let o = v.as_object().ok_or("body must be a JSON object")?;
    for k in ["symbol", "price", "volume", "source", "ts", "event_id"] {
        if !o.contains_key(k) {
            return Err(format!("missing field `{k}`"));
        }
    }
    let symbol = o["symbol"].as_str().ok_or("`symbol` must be a string")?;
    if symbol.is_empty()
        || symbol.len() > 32
        || !symbol
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/.".contains(c))
    {
        return Err("`symbol` must be 1-32 characters of A-Z, a-z, 0-9, - _ / .".into());
    }
    let number = |k: &str| -> Result<String, String> {
        let text = raw_field(body, k).ok_or(format!("`{k}` must be a number"))?;
        let m = hermes_book::parse_decimal(text.as_bytes(), 8)
            .map_err(|e| format!("`{k}` is not an exact decimal with at most 8 decimals: {e}"))?;
        if m < 0 {
            return Err(format!("`{k}` must not be negative"));
        }
        Ok(hermes_book::Decimal::new(m, 8).to_string())
    };
    let price = number("price")?;
    if price == "0" {
        return Err("`price` must be > 0".into());
    }
    let volume = number("volume")?;
    let source = o["source"].as_str().ok_or("`source` must be a string")?;
    if source.is_empty() || source.len() > 64 {
        return Err("`source` must be 1-64 characters".into());
    }
    let ts_ns = match &o["ts"] {
        Value::String(s) => hermes_ingest::json::parse_rfc3339_ns(s.as_bytes()).ok_or(
            "`ts` must be an RFC 3339 time like 2026-08-09T21:05:48.5Z or epoch milliseconds",
        )?,
        Value::Number(n) => {
            let ms = n
                .as_i64()
                .filter(|ms| *ms > 0)
                .ok_or("`ts` in epoch milliseconds must be a positive integer")?;
            ms.checked_mul(1_000_000).ok_or("`ts` is out of range")?
        }
        _ => return Err("`ts` must be an RFC 3339 string or epoch milliseconds".into()),
    };
    if ts_ns <= 0 {
        return Err("`ts` must be after 1970".into());
    }
    let event_id = match &o["event_id"] {
        Value::String(s) if !s.is_empty() && s.len() <= 128 => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("`event_id` must be a non-empty string of at most 128 characters".into()),
    };
    let frame = json!({
        "symbol": symbol, "price": price, "volume": volume, "source": source, "ts_ns": ts_ns, "event_id": event_id,
    });
    Ok((frame.to_string().into_bytes(), event_id, symbol.to_string()))
}

/// Admits `symbol` among the webhook's symbols, or `Err(limit)` when it is new and the
/// limit is reached: webhook ticks can never take the shm slots the venues need.
fn admit_symbol(app: &AppState, symbol: &str) -> Result<(), usize> {
    let limit = app.cfg.webhook_max_symbols;
    let mut seen = app
        .webhook_symbols
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if seen.contains(symbol) {
        return Ok(());
    }
    if seen.len() >= limit {
        return Err(limit);
    }
    seen.insert(symbol.to_string());
    Ok(())
}

/// Whether `headers` carry HTTP Basic credentials equal to `user:pass`.
fn basic_auth_ok(headers: &HeaderMap, user: &str, pass: &str) -> bool {
    use base64::Engine;
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let expected = format!("{user}:{pass}");
    // Constant time over the expected length: the comparison does not leak how many
    // leading bytes matched.
    bool::from(raw.ct_eq(expected.as_bytes()))
}

/// `POST /ingest/tick`: a validated tick handed to the ingest thread; `202` accepted,
/// `200` duplicate (by `event_id`), `401` without the credentials, `422` invalid.
pub(super) async fn tick(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Some((user, pass)) = &app.cfg.ingest_auth else {
        return json_error(
            StatusCode::NOT_FOUND,
            "webhook ticks are disabled: set INGEST_USERNAME and INGEST_PASSWORD",
        );
    };
    // Relaxed on the tick counters: read only for reporting.
    if !basic_auth_ok(&headers, user, pass) {
        app.stats.ticks_rejected.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"hermes\"")],
            Json(json!({ "error": "missing or wrong credentials (HTTP Basic)" })),
        )
            .into_response();
    }
    let (frame, event_id, symbol) = match validate_tick(&body) {
        Ok(v) => v,
        Err(e) => {
            app.stats.ticks_rejected.fetch_add(1, Ordering::Relaxed);
            return json_error(StatusCode::UNPROCESSABLE_ENTITY, e);
        }
    };
    if let Err(limit) = admit_symbol(&app, &symbol) {
        app.stats.ticks_symbol_limit.fetch_add(1, Ordering::Relaxed);
        return json_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("webhook symbol {symbol:?} refused: the limit of {limit} webhook symbols is reached (--webhook-max-symbols); ticks of the symbols already seen are still taken"),
        );
    }
    let Some(tx) = &app.cfg.ticks else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "nothing ingests ticks here: webhook ticks need `hermes run`",
        );
    };
    let (reply, answer) = oneshot::channel();
    if tx
        .send(TickRequest {
            frame,
            event_id: event_id.clone(),
            reply,
        })
        .await
        .is_err()
    {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ingest thread has stopped",
        );
    }
    match answer.await {
        Ok(TickOutcome::Accepted) => {
            app.stats.ticks_accepted.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::ACCEPTED,
                Json(json!({ "status": "accepted", "event_id": event_id })),
            )
                .into_response()
        }
        Ok(TickOutcome::Duplicate) => {
            app.stats.ticks_duplicate.fetch_add(1, Ordering::Relaxed);
            Json(json!({ "status": "duplicate", "event_id": event_id })).into_response()
        }
        Ok(TickOutcome::Rejected(e)) => {
            app.stats.ticks_rejected.fetch_add(1, Ordering::Relaxed);
            json_error(StatusCode::UNPROCESSABLE_ENTITY, e)
        }
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ingest thread has stopped",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_validation() {
        let ok = br#"{"symbol":"BTC-USD","price":65000.5,"volume":"0.25","source":"desk","ts":"2026-08-09T21:05:48.5Z","event_id":"e-1"}"#;
        let (frame, id, symbol) = validate_tick(ok).unwrap();
        assert_eq!(symbol, "BTC-USD");
        assert_eq!(id, "e-1");
        let f: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(f["price"], "65000.5");
        assert_eq!(f["ts_ns"], 1_786_309_548_500_000_000i64);
        let ms = br#"{"symbol":"X","price":"1","volume":0,"source":"s","ts":1786309548500,"event_id":7}"#;
        assert_eq!(validate_tick(ms).unwrap().1, "7");
        for (bad, why) in [
            (&br#"{"symbol":"X","price":0,"volume":1,"source":"s","ts":1,"event_id":"a"}"#[..], "> 0"),
            (br#"{"symbol":"X","price":-1,"volume":1,"source":"s","ts":1,"event_id":"a"}"#, "negative"),
            (br#"{"symbol":"X","price":1,"volume":-2,"source":"s","ts":1,"event_id":"a"}"#, "negative"),
            (br#"{"symbol":"X","price":1,"volume":1,"source":"s","ts":"yesterday","event_id":"a"}"#, "RFC 3339"),
            (br#"{"symbol":"X","price":1,"volume":1,"source":"s","ts":1}"#, "missing field `event_id`"),
            (br#"{"symbol":"X","price":1e5,"volume":1,"source":"s","ts":1,"event_id":"a"}"#, "exact decimal"),
            (br#"not json"#, "not JSON"),
            (br#"[1]"#, "object"),
        ] {
            let e = validate_tick(bad).unwrap_err();
            assert!(e.contains(why), "{e} should say {why}");
        }
    }
}
