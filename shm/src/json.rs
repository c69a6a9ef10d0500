//! The JSON form of a slot, shared by `hermes replay --print-final`, `hermes run
//! --print-final`, `hermes shm dump --json`, the HTTP face and the Python reader: one
//! object per instrument.

use std::fmt::Write;

use crate::layout::DERIV_DECIMALS;
use crate::{TopOfBook, FLAG_HAS_ASK, FLAG_HAS_BID};
use hermes_book::Decimal;

/// One line: `{"venue","symbol","bid_px","bid_qty","ask_px","ask_qty","bids","asks",
/// "seq","updates","stale"}`, prices and sizes as exact decimal strings (null for an
/// empty side), `seq` the venue update id, `updates` the slot's publication count.
///
/// Then, only for a slot with [`FLAG_HAS_DERIVS`](crate::FLAG_HAS_DERIVS) (a perpetual
/// or future), `"derivs":{"mark_px","index_px","funding_rate","next_funding_ns","ts_ns"}`
/// with the prices and the (signed) rate as exact decimal strings at
/// [`DERIV_DECIMALS`]; and only when it is not 0, `"liquidations":N`. A line without
/// either is exactly what layout version 2 printed.
pub fn tob_json(
    venue: &str,
    symbol: &str,
    price_decimals: u8,
    size_decimals: u8,
    t: &TopOfBook,
) -> String {
    let px = |v: i64| Decimal::new(v, price_decimals);
    let sz = |v: i64| Decimal::new(v, size_decimals);
    let mut s = String::with_capacity(512);
    let quoted = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
    let _ = write!(
        s,
        "{{\"venue\":{},\"symbol\":{}",
        quoted(venue),
        quoted(symbol)
    );
    for (name, has, p, q) in [
        ("bid", t.flags & FLAG_HAS_BID != 0, t.bid_px, t.bid_qty),
        ("ask", t.flags & FLAG_HAS_ASK != 0, t.ask_px, t.ask_qty),
    ] {
        if has {
            let _ = write!(
                s,
                ",\"{name}_px\":\"{}\",\"{name}_qty\":\"{}\"",
                px(p),
                sz(q)
            );
        } else {
            let _ = write!(s, ",\"{name}_px\":null,\"{name}_qty\":null");
        }
    }
    for (name, levels) in [("bids", t.bid_levels()), ("asks", t.ask_levels())] {
        let _ = write!(s, ",\"{name}\":[");
        for (k, (p, q)) in levels.iter().enumerate() {
            if k > 0 {
                s.push(',');
            }
            let _ = write!(s, "[\"{}\",\"{}\"]", px(*p), sz(*q));
        }
        s.push(']');
    }
    let _ = write!(
        s,
        ",\"seq\":{},\"updates\":{},\"stale\":{}",
        t.update_id,
        t.updates,
        t.is_stale()
    );
    if t.has_derivs() {
        let d = |v: i64| Decimal::new(v, DERIV_DECIMALS);
        let _ = write!(
            s,
            ",\"derivs\":{{\"mark_px\":\"{}\",\"index_px\":\"{}\",\"funding_rate\":\"{}\",\"next_funding_ns\":{},\"ts_ns\":{}}}",
            d(t.mark_px),
            d(t.index_px),
            d(t.funding_rate),
            t.next_funding_ns,
            t.derivs_ts_ns
        );
    }
    if t.liquidations > 0 {
        let _ = write!(s, ",\"liquidations\":{}", t.liquidations);
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_exact() {
        let mut t = TopOfBook {
            flags: FLAG_HAS_BID | crate::FLAG_STALE,
            bid_px: 6_183_763_000_000,
            bid_qty: 378_826_000,
            bid_levels: 1,
            update_id: 7,
            updates: 3,
            ..Default::default()
        };
        t.bids[0] = (6_183_763_000_000, 378_826_000);
        assert_eq!(
            tob_json("binance", "BTCUSDT", 8, 8, &t),
            r#"{"venue":"binance","symbol":"BTCUSDT","bid_px":"61837.63","bid_qty":"3.78826","ask_px":null,"ask_qty":null,"bids":[["61837.63","3.78826"]],"asks":[],"seq":7,"updates":3,"stale":true}"#
        );
        // Derivs words without the flag are not shown (nor are liquidations at 0).
        t.mark_px = 1;
        assert!(!tob_json("binance", "BTCUSDT", 8, 8, &t).contains("derivs"));
    }

    #[test]
    fn derivs_and_liquidations_only_when_present() {
        let mut t = TopOfBook {
            flags: crate::FLAG_HAS_DERIVS,
            mark_px: 6_185_012_000_000,
            index_px: 6_184_990_050_000,
            funding_rate: -37_500,
            next_funding_ns: 1_723_104_000_000_000_000,
            derivs_ts_ns: 1_723_100_000_123_000_000,
            liquidations: 2,
            update_id: 1,
            updates: 4,
            ..Default::default()
        };
        let head = r#"{"venue":"binance-usdm","symbol":"BTCUSDT","bid_px":null,"bid_qty":null,"ask_px":null,"ask_qty":null,"bids":[],"asks":[],"seq":1,"updates":4,"stale":false"#;
        assert_eq!(
            tob_json("binance-usdm", "BTCUSDT", 2, 3, &t),
            format!(
                "{head}{}",
                r#","derivs":{"mark_px":"61850.12","index_px":"61849.9005","funding_rate":"-0.000375","next_funding_ns":1723104000000000000,"ts_ns":1723100000123000000},"liquidations":2}"#
            )
        );
        t.liquidations = 0;
        t.index_px = 0;
        t.funding_rate = 0;
        assert!(tob_json("binance-usdm", "BTCUSDT", 2, 3, &t).ends_with(
            r#""stale":false,"derivs":{"mark_px":"61850.12","index_px":"0","funding_rate":"0","next_funding_ns":1723104000000000000,"ts_ns":1723100000123000000}}"#
        ));
        t.flags = 0;
        t.liquidations = 1;
        assert_eq!(
            tob_json("binance-usdm", "BTCUSDT", 2, 3, &t),
            format!("{head},\"liquidations\":1}}")
        );
    }
}
