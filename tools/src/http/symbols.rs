//! `GET /symbols` and `GET /symbols/{id}`: the instruments of the shm file and one
//! instrument's top of book, as JSON; and finding an instrument by its id.

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hermes_book::clock::unix_ns;
use hermes_shm::json::tob_json;
use hermes_shm::{Instrument, ShmReader, TopOfBook};
use serde_json::{json, Value};

use super::json_error;
use super::state::App;

/// An instrument's id in URLs and JSON: `venue:SYMBOL`.
pub(super) fn id_of(i: &Instrument) -> String {
    format!("{}:{}", i.venue.name(), i.symbol)
}

/// Detail of one instrument: the report fields (with, for a perpetual or future, its
/// `derivs` object and `liquidations`, as in `hermes shm dump --json`) plus times, ages,
/// what a size counts (`size_unit`: `contracts` on COIN-M, else `base`), and for a
/// derivative the time to its next funding (`derivs.next_funding_in_ms`).
pub(super) fn detail(i: &Instrument, t: &TopOfBook) -> Value {
    let mut v: Value = serde_json::from_str(&tob_json(
        i.venue.name(),
        &i.symbol,
        i.price_decimals,
        i.size_decimals,
        t,
    ))
    .unwrap_or(Value::Null);
    let now = unix_ns();
    let age_ms = |ts: i64| {
        if ts > 0 {
            Some((now - ts) as f64 / 1e6)
        } else {
            None
        }
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), json!(id_of(i)));
        o.insert("size_unit".into(), json!(i.venue.size_unit()));
        if let Some(d) = o.get_mut("derivs").and_then(Value::as_object_mut) {
            let next = t.next_funding_ns;
            d.insert(
                "next_funding_in_ms".into(),
                json!((next > 0).then(|| (next - now).max(0) as f64 / 1e6)),
            );
        }
        o.insert("exch_ts_ns".into(), json!(t.exch_ts_ns));
        o.insert("recv_ts_ns".into(), json!(t.recv_ts_ns));
        o.insert("publish_ts_ns".into(), json!(t.publish_ts_ns));
        o.insert("age_ms".into(), json!(age_ms(t.publish_ts_ns)));
        o.insert(
            "crossed".into(),
            json!(t.flags & hermes_shm::FLAG_CROSSED != 0),
        );
        o.insert("trades".into(), json!(t.trades));
        o.insert("kernels".into(), kernels_json(i, t));
        if t.trades > 0 {
            let side = ["unknown", "buy", "sell"]
                .get(t.last_trade_side as usize)
                .copied()
                .unwrap_or("unknown");
            o.insert(
                "last_trade".into(),
                json!({
                    "price": hermes_book::Decimal::new(t.last_trade_px, i.price_decimals).to_string(),
                    "size": hermes_book::Decimal::new(t.last_trade_qty, i.size_decimals).to_string(),
                    "side": side,
                    "ts_ns": t.last_trade_ts_ns,
                }),
            );
        }
    }
    v
}

/// The slot's analytics kernels: prices and sizes as exact decimal strings (`null` when
/// the kernel had no value), ratios as decimal strings of a fraction of 1, the windows in
/// nanoseconds. Definitions: `hermes_book::kernels` and `shm/LAYOUT.md`.
fn kernels_json(i: &Instrument, t: &TopOfBook) -> Value {
    let k = &t.kernels;
    let dec = |m: i64, d: u8| {
        if d > 18 {
            Value::Null
        } else {
            json!(hermes_book::Decimal::new(m, d).to_string())
        }
    };
    let opt = |v: Option<i64>, d: u8| v.map_or(Value::Null, |m| dec(m, d));
    let (p, s, kp) = (i.price_decimals, i.size_decimals, k.price_decimals);
    json!({
        "time_ns": k.time_ns,
        "spread": opt(k.spread_ticks, p),
        "spread_bps": opt(k.spread_bps_x100, 2),
        "mid": opt(k.mid_px, kp),
        "microprice": opt(k.microprice_px, kp),
        "levels": k.levels,
        "bid_depth": dec(k.bid_depth, s),
        "ask_depth": dec(k.ask_depth, s),
        "imbalance": opt(k.imbalance_ppm, 6),
        "vwap_qty": dec(k.vwap_qty, s),
        "vwap_buy": opt(k.vwap_buy_px, kp),
        "vwap_sell": opt(k.vwap_sell_px, kp),
        "volatility_bps": k.volatility_bps,
        "vol_half_life_ns": k.vol_half_life_ns,
        "trade_window_ns": k.trade_window_ns,
        "trade_buy_qty": dec(k.trade_buy_qty, s),
        "trade_sell_qty": dec(k.trade_sell_qty, s),
        "trade_imbalance": opt(k.trade_imbalance_ppm, 6),
        "ofi_window": dec(k.ofi_window, s),
        "ofi_total": dec(k.ofi_total, s),
        "updates_per_s": dec(k.updates_per_s_x100.min(i64::MAX as u64) as i64, 2),
        "rate_window_ns": k.rate_window_ns,
    })
}

/// Finds an instrument by `venue:SYMBOL` or a bare symbol (if unique).
pub(super) fn find(r: &ShmReader, id: &str) -> Result<Instrument, (StatusCode, String)> {
    let all = r.instruments();
    let hits: Vec<&Instrument> = all
        .iter()
        .filter(|i| id_of(i) == id || (!id.contains(':') && i.symbol.eq_ignore_ascii_case(id)))
        .collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err((
            StatusCode::NOT_FOUND,
            format!("no instrument {id:?}; GET /symbols lists them"),
        )),
        _ => Err((
            StatusCode::BAD_REQUEST,
            format!("{id:?} is ambiguous; use venue:SYMBOL"),
        )),
    }
}

/// `GET /symbols`: every instrument with its slot, staleness and update count.
pub(super) async fn symbols(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(r) = app.admit_read(&headers) {
        return *r;
    }
    match app.with_reader(|r| {
        r.instruments()
            .iter()
            .map(|i| {
                let t = r.try_read(i.slot);
                json!({
                    "id": id_of(i),
                    "venue": i.venue.name(),
                    "symbol": i.symbol,
                    "slot": i.slot.0,
                    "stale": t.map(|t| t.is_stale()),
                    "updates": t.map(|t| t.updates),
                })
            })
            .collect::<Vec<_>>()
    }) {
        Ok(list) => Json(json!({ "symbols": list })).into_response(),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `GET /symbols/{id}`: one instrument's [`detail`].
pub(super) async fn symbol(
    State(app): State<App>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if let Err(r) = app.admit_read(&headers) {
        return *r;
    }
    match app.with_reader(|r| find(r, &id).map(|i| (r.read(i.slot), i))) {
        Ok(Ok((Some(t), i))) => Json(detail(&i, &t)).into_response(),
        Ok(Ok((None, _))) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the slot stayed mid-update: the writer died inside it",
        ),
        Ok(Err((s, m))) => json_error(s, m),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}
