//! The JSON form of a slot, shared by `hermes replay --print-final`, `hermes run
//! --print-final`, `hermes shm dump --json`, the HTTP face and the Python reader: one
//! object per instrument.

use std::fmt::Write;

use crate::{TopOfBook, FLAG_HAS_ASK, FLAG_HAS_BID};
use hermes_book::Decimal;

/// One line: `{"venue","symbol","bid_px","bid_qty","ask_px","ask_qty","bids","asks",
/// "seq","updates","stale"}`, prices and sizes as exact decimal strings (null for an
/// empty side), `seq` the venue update id, `updates` the slot's publication count.
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
        ",\"seq\":{},\"updates\":{},\"stale\":{}}}",
        t.update_id,
        t.updates,
        t.is_stale()
    );
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
    }
}
