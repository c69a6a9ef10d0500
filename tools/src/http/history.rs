//! `GET /symbols/{id}/history`: an instrument's recent trades from PostgreSQL.

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hermes_shm::Instrument;
use serde_json::{json, Value};

use super::json_error;
use super::state::App;
use super::symbols::find;

#[derive(serde::Deserialize)]
pub(super) struct HistoryQuery {
    limit: Option<i64>,
}

/// `GET /symbols/{id}/history?limit=N`: the newest `N` trades (100 by default).
pub(super) async fn history(
    State(app): State<App>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    if let Err(r) = app.admit_read(&headers) {
        return *r;
    }
    let Some(url) = app.cfg.database_url.clone() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no database configured: start with --database-url (or DATABASE_URL) to keep history",
        );
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return json_error(StatusCode::BAD_REQUEST, "limit must be 1..=10000");
    }
    let inst = match app.with_reader(|r| find(r, &id)) {
        Ok(Ok(i)) => i,
        Ok(Err((s, m))) => return json_error(s, m),
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let rows = tokio::task::spawn_blocking(move || recent_trades(&url, &inst, limit)).await;
    match rows {
        Ok(Ok(trades)) => Json(json!({ "id": id, "trades": trades })).into_response(),
        Ok(Err(e)) => json_error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The newest `limit` trades of `inst`, newest first, from the database at `url`
/// (blocking).
fn recent_trades(url: &str, inst: &Instrument, limit: i64) -> Result<Vec<Value>, String> {
    let mut c =
        postgres::Client::connect(url, postgres::NoTls).map_err(|e| format!("database: {e}"))?;
    let rows = c
        .query(
            "SELECT trade_id, price::text, size::text, side, \
             (extract(epoch from exchange_ts) * 1000000)::bigint, \
             (extract(epoch from receive_ts) * 1000000)::bigint \
             FROM trades WHERE venue = $1 AND symbol = $2 ORDER BY exchange_ts DESC, trade_id DESC LIMIT $3",
            &[&inst.venue.name(), &inst.symbol, &limit],
        )
        .map_err(|e| format!("database: {e}"))?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({
                "trade_id": r.get::<_, i64>(0),
                "price": r.get::<_, String>(1),
                "size": r.get::<_, String>(2),
                "side": r.get::<_, String>(3),
                "exchange_ts_us": r.get::<_, i64>(4),
                "receive_ts_us": r.get::<_, i64>(5),
            })
        })
        .collect())
}
