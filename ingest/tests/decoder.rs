//! Integration tests of the frame decoder through its public API: Coinbase sequencing,
//! gaps and duplicates, Binance diff-depth sync, malformed input (all-or-nothing per
//! frame), property tests, and replay sources.

use hermes_book::{Decimal, Price, Qty, Side};
use hermes_ingest::{
    DecodeError, DecodeStats, Decoder, DecoderOptions, ErrorKind, Event, Frame, FrameKind, InstId,
    TradeSide, Venue,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const TS: &str = "2026-08-09T21:05:48.505350477Z";
const ET: &str = "2026-08-09T21:05:48.210883Z";

/// Decodes one WebSocket frame, returning the result and the events it produced.
fn feed(
    dec: &mut Decoder,
    venue: Venue,
    conn: u16,
    data: &str,
) -> (Result<(), DecodeError>, Vec<Event>) {
    feed_bytes(dec, venue, conn, data.as_bytes())
}

fn feed_bytes(
    dec: &mut Decoder,
    venue: Venue,
    conn: u16,
    data: &[u8],
) -> (Result<(), DecodeError>, Vec<Event>) {
    let mut out = Vec::new();
    let r = dec.decode(
        &Frame {
            venue,
            kind: FrameKind::Ws,
            conn,
            recv_ts_ns: 42,
            data,
        },
        &mut out,
    );
    (r, out)
}

/// Decodes a good frame and returns its events.
fn ok(dec: &mut Decoder, venue: Venue, conn: u16, data: &str) -> Vec<Event> {
    let (r, ev) = feed(dec, venue, conn, data);
    r.unwrap_or_else(|e| panic!("frame refused: {e}\n{data}"));
    ev
}

fn cb_ok(dec: &mut Decoder, conn: u16, data: &str) -> Vec<Event> {
    ok(dec, Venue::Coinbase, conn, data)
}

fn bn_ok(dec: &mut Decoder, data: &str) -> Vec<Event> {
    ok(dec, Venue::Binance, 0, data)
}

/// A Binance REST depth snapshot for `symbol`.
fn bn_rest(dec: &mut Decoder, symbol: &str, data: &str) -> (Result<(), DecodeError>, Vec<Event>) {
    let mut out = Vec::new();
    let r = dec.decode(
        &Frame {
            venue: Venue::Binance,
            kind: FrameKind::RestDepth {
                symbol: symbol.as_bytes(),
            },
            conn: 0,
            recv_ts_ns: 7,
            data: data.as_bytes(),
        },
        &mut out,
    );
    (r, out)
}

/// One Coinbase level: (side, price, qty).
type Lv<'a> = (&'a str, &'a str, &'a str);

fn cb_levels(levels: &[Lv<'_>]) -> String {
    let v: Vec<String> = levels
        .iter()
        .map(|(side, px, q)| {
            format!(
                r#"{{"side":"{side}","event_time":"{ET}","price_level":"{px}","new_quantity":"{q}"}}"#
            )
        })
        .collect();
    format!("[{}]", v.join(","))
}

/// One l2_data event object.
fn cb_l2_event(typ: &str, product: &str, levels: &[Lv<'_>]) -> String {
    format!(
        r#"{{"type":"{typ}","product_id":"{product}","updates":{}}}"#,
        cb_levels(levels)
    )
}

/// A Coinbase envelope with raw `events` JSON.
fn cb_frame(channel: &str, seq: u64, events: &str) -> String {
    format!(
        r#"{{"channel":"{channel}","client_id":"","timestamp":"{TS}","sequence_num":{seq},"events":{events}}}"#
    )
}

fn cb_l2(seq: u64, typ: &str, product: &str, levels: &[Lv<'_>]) -> String {
    cb_frame(
        "l2_data",
        seq,
        &format!("[{}]", cb_l2_event(typ, product, levels)),
    )
}

fn cb_heartbeat(seq: u64) -> String {
    cb_frame(
        "heartbeats",
        seq,
        r#"[{"current_time":"2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.260485341","heartbeat_counter":41691}]"#,
    )
}

/// Binance diff depth, wrapped in the combined-stream envelope.
fn bn_depth(
    sym: &str,
    first: u64,
    last: u64,
    bids: &[(&str, &str)],
    asks: &[(&str, &str)],
) -> String {
    let side = |l: &[(&str, &str)]| {
        let v: Vec<String> = l.iter().map(|(p, q)| format!(r#"["{p}","{q}"]"#)).collect();
        format!("[{}]", v.join(","))
    };
    format!(
        r#"{{"stream":"{}@depth@100ms","data":{{"e":"depthUpdate","E":1723161255208,"s":"{sym}","U":{first},"u":{last},"b":{},"a":{}}}}}"#,
        sym.to_lowercase(),
        side(bids),
        side(asks)
    )
}

fn bn_snapshot_body(last: u64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> String {
    let side = |l: &[(&str, &str)]| {
        let v: Vec<String> = l.iter().map(|(p, q)| format!(r#"["{p}","{q}"]"#)).collect();
        format!("[{}]", v.join(","))
    };
    format!(
        r#"{{"lastUpdateId":{last},"bids":{},"asks":{}}}"#,
        side(bids),
        side(asks)
    )
}

/// Mantissa at the default 8 decimals.
fn m8(s: &str) -> i64 {
    hermes_book::parse_decimal(s.as_bytes(), 8).unwrap()
}

fn levels_of(ev: &[Event]) -> Vec<(InstId, Side, i64, i64)> {
    ev.iter()
        .filter_map(|e| match *e {
            Event::Level {
                inst,
                side,
                price: Price(p),
                qty: Qty(q),
            } => Some((inst, side, p, q)),
            _ => None,
        })
        .collect()
}

fn stales_of(ev: &[Event]) -> Vec<(InstId, bool)> {
    ev.iter()
        .filter_map(|e| match *e {
            Event::Stale { inst, stale } => Some((inst, stale)),
            _ => None,
        })
        .collect()
}

fn commits_of(ev: &[Event]) -> Vec<(InstId, u64)> {
    ev.iter()
        .filter_map(|e| match *e {
            Event::Commit {
                inst, update_id, ..
            } => Some((inst, update_id)),
            _ => None,
        })
        .collect()
}

fn inst_of(dec: &Decoder, venue: Venue, symbol: &str) -> InstId {
    dec.instruments()
        .find(|(_, v, s, _)| *v == venue && *s == symbol)
        .map(|(i, ..)| i)
        .unwrap_or_else(|| panic!("{symbol} not registered"))
}

fn no_book_events(ev: &[Event]) -> bool {
    ev.iter().all(|e| matches!(e, Event::Define { .. }))
}

fn stats(dec: &Decoder) -> DecodeStats {
    dec.stats()
}

// ---------------------------------------------------------------------------------------
// Coinbase
// ---------------------------------------------------------------------------------------

mod coinbase {
    use super::*;

    #[test]
    fn snapshot_then_updates_in_order_with_exact_mantissas() {
        let mut dec = Decoder::default();
        let ev = cb_ok(
            &mut dec,
            0,
            &cb_l2(
                13,
                "snapshot",
                "BTC-USD",
                &[
                    ("bid", "65083.66", "0.20371215"),
                    ("offer", "65083.67", "1.5"),
                ],
            ),
        );
        assert_eq!(ev.len(), 5, "{ev:?}");
        let inst = match ev[0] {
            Event::Define {
                inst,
                venue,
                symbol,
                scale,
            } => {
                assert_eq!(venue, Venue::Coinbase);
                assert_eq!(symbol.as_str(), "BTC-USD");
                assert_eq!((scale.price_decimals, scale.size_decimals), (8, 8));
                inst
            }
            ref e => panic!("expected Define, got {e:?}"),
        };
        assert_eq!(ev[1], Event::Snapshot { inst });
        assert_eq!(
            ev[2],
            Event::Level {
                inst,
                side: Side::Bid,
                price: Price(6_508_366_000_000),
                qty: Qty(20_371_215),
            }
        );
        assert_eq!(
            ev[3],
            Event::Level {
                inst,
                side: Side::Ask,
                price: Price(6_508_367_000_000),
                qty: Qty(150_000_000),
            }
        );
        match ev[4] {
            Event::Commit {
                inst: i,
                update_id,
                exch_ts_ns,
                recv_ts_ns,
            } => {
                assert_eq!((i, update_id, recv_ts_ns), (inst, 13, 42));
                // event_time 2026-08-09T21:05:48.210883Z
                assert_eq!(exch_ts_ns % 1_000_000_000, 210_883_000);
                assert!(exch_ts_ns > 1_700_000_000_000_000_000);
            }
            ref e => panic!("expected Commit, got {e:?}"),
        }

        let ev = cb_ok(
            &mut dec,
            0,
            &cb_l2(
                14,
                "update",
                "BTC-USD",
                &[("bid", "65062.5", "0.00583"), ("offer", "65090", "0")],
            ),
        );
        assert_eq!(
            ev,
            vec![
                Event::Level {
                    inst,
                    side: Side::Bid,
                    price: Price(6_506_250_000_000),
                    qty: Qty(583_000),
                },
                Event::Level {
                    inst,
                    side: Side::Ask,
                    price: Price(6_509_000_000_000),
                    qty: Qty(0),
                },
                ev[2],
            ]
        );
        assert_eq!(commits_of(&ev), vec![(inst, 14)]);
        let st = stats(&dec);
        assert_eq!((st.frames, st.levels, st.snapshots), (2, 4, 1));
        assert_eq!((st.gaps, st.stale_frames, st.parse_errors), (0, 0, 0));
    }

    /// Two books on connection 0, one on connection 1.
    fn three_books(dec: &mut Decoder) -> (InstId, InstId, InstId) {
        cb_ok(
            dec,
            0,
            &cb_l2(1, "snapshot", "BTC-USD", &[("bid", "100", "1")]),
        );
        cb_ok(
            dec,
            0,
            &cb_l2(2, "snapshot", "ETH-USD", &[("bid", "10", "1")]),
        );
        cb_ok(
            dec,
            1,
            &cb_l2(1, "snapshot", "SOL-USD", &[("bid", "1", "1")]),
        );
        (
            inst_of(dec, Venue::Coinbase, "BTC-USD"),
            inst_of(dec, Venue::Coinbase, "ETH-USD"),
            inst_of(dec, Venue::Coinbase, "SOL-USD"),
        )
    }

    #[test]
    fn gap_of_one_marks_every_l2_book_of_that_connection_stale() {
        let mut dec = Decoder::default();
        let (btc, eth, sol) = three_books(&mut dec);
        // Sequence 3 is missing: 4 follows 2.
        let ev = cb_ok(
            &mut dec,
            0,
            &cb_l2(4, "update", "BTC-USD", &[("bid", "101", "2")]),
        );
        assert_eq!(stats(&dec).gaps, 1);
        let st = stales_of(&ev);
        assert!(
            st.contains(&(btc, true)) && st.contains(&(eth, true)),
            "{ev:?}"
        );
        assert!(
            !st.iter().any(|(i, _)| *i == sol),
            "other connection untouched: {ev:?}"
        );
        let mut stale: Vec<InstId> = dec.stale_instruments().collect();
        stale.sort();
        assert_eq!(stale, vec![btc, eth]);
        // The gap frame's own commit carries its sequence number.
        assert_eq!(commits_of(&ev), vec![(btc, 4)]);

        // Connection 1 continues without a gap.
        let ev = cb_ok(
            &mut dec,
            1,
            &cb_l2(2, "update", "SOL-USD", &[("bid", "1", "3")]),
        );
        assert!(stales_of(&ev).is_empty(), "{ev:?}");
        assert_eq!(stats(&dec).gaps, 1);

        // A later gap while already stale counts again but emits no second Stale{true}.
        let ev = cb_ok(&mut dec, 0, &cb_heartbeat(9));
        assert_eq!(stats(&dec).gaps, 2);
        assert!(stales_of(&ev).is_empty(), "{ev:?}");

        // The next snapshot of BTC-USD resyncs it (only it).
        let ev = cb_ok(
            &mut dec,
            0,
            &cb_l2(10, "snapshot", "BTC-USD", &[("bid", "100", "5")]),
        );
        assert_eq!(stales_of(&ev), vec![(btc, false)]);
        assert_eq!(ev[0], Event::Snapshot { inst: btc });
        assert_eq!(stats(&dec).resyncs, 1);
        assert_eq!(dec.stale_instruments().collect::<Vec<_>>(), vec![eth]);

        let ev = cb_ok(&mut dec, 0, &cb_l2(11, "snapshot", "ETH-USD", &[]));
        assert_eq!(stales_of(&ev), vec![(eth, false)]);
        assert_eq!(stats(&dec).resyncs, 2);
        assert_eq!(dec.stale_instruments().count(), 0);
        // A snapshot of a book that was not stale is not a resync.
        let ev = cb_ok(&mut dec, 0, &cb_l2(12, "snapshot", "ETH-USD", &[]));
        assert!(stales_of(&ev).is_empty());
        assert_eq!(stats(&dec).resyncs, 2);
    }

    #[test]
    fn gap_detected_on_another_channel_marks_books_stale() {
        let mut dec = Decoder::default();
        let (btc, eth, _) = three_books(&mut dec);
        let ev = cb_ok(&mut dec, 0, &cb_heartbeat(5));
        let mut st = stales_of(&ev);
        st.sort();
        assert_eq!(st, vec![(btc, true), (eth, true)]);
        assert_eq!(stats(&dec).heartbeats, 1);
    }

    #[test]
    fn duplicate_and_older_sequence_numbers_are_skipped() {
        let mut dec = Decoder::default();
        let (btc, _, _) = three_books(&mut dec);
        let before = stats(&dec);
        for seq in [2, 1, 0] {
            let ev = cb_ok(
                &mut dec,
                0,
                &cb_l2(seq, "update", "BTC-USD", &[("bid", "1", "1")]),
            );
            assert!(ev.is_empty(), "seq {seq}: {ev:?}");
        }
        // A duplicated trade frame too.
        let ev = cb_ok(
            &mut dec,
            0,
            &trades_frame(2, &[("BTC-USD", "9", "1", "1", "BUY")]),
        );
        assert!(ev.is_empty());
        let st = stats(&dec);
        assert_eq!(st.stale_frames, before.stale_frames + 4);
        assert_eq!((st.gaps, st.levels, st.trades), (0, before.levels, 0));
        // The sequence goes on from 2.
        let ev = cb_ok(
            &mut dec,
            0,
            &cb_l2(3, "update", "BTC-USD", &[("bid", "1", "1")]),
        );
        assert_eq!(commits_of(&ev), vec![(btc, 3)]);
        assert_eq!(stats(&dec).gaps, 0);
    }

    #[test]
    fn reset_connection_restarts_the_sequence() {
        let mut dec = Decoder::default();
        three_books(&mut dec);
        dec.reset_coinbase_connection(0);
        let ev = cb_ok(&mut dec, 0, &cb_heartbeat(0));
        assert!(ev.is_empty());
        let st = stats(&dec);
        assert_eq!((st.gaps, st.stale_frames), (0, 0));
    }

    /// A market_trades frame: (product, trade_id, price, size, side).
    fn trades_frame(seq: u64, trades: &[(&str, &str, &str, &str, &str)]) -> String {
        let v: Vec<String> = trades
            .iter()
            .map(|(p, id, px, sz, side)| {
                format!(
                    r#"{{"product_id":"{p}","trade_id":"{id}","price":"{px}","size":"{sz}","time":"{ET}","side":"{side}"}}"#
                )
            })
            .collect();
        cb_frame(
            "market_trades",
            seq,
            &format!(r#"[{{"type":"update","trades":[{}]}}]"#, v.join(",")),
        )
    }

    #[test]
    fn market_trades_frame_yields_every_trade() {
        let mut dec = Decoder::default();
        let ev = cb_ok(
            &mut dec,
            0,
            &trades_frame(
                9,
                &[
                    ("BTC-USD", "1068572091", "65083.67", "0.01034361", "SELL"),
                    ("BTC-USD", "1068572092", "65083.68", "0.5", "BUY"),
                    ("ETH-USD", "77", "1919.41", "2", "SELL"),
                ],
            ),
        );
        let btc = inst_of(&dec, Venue::Coinbase, "BTC-USD");
        let eth = inst_of(&dec, Venue::Coinbase, "ETH-USD");
        let trades: Vec<_> = ev
            .iter()
            .filter_map(|e| match *e {
                Event::Trade {
                    inst,
                    side,
                    trade_id,
                    price,
                    qty,
                    ts_ns,
                } => {
                    assert_eq!(ts_ns % 1_000_000_000, 210_883_000);
                    Some((inst, side, trade_id, price.0, qty.0))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            trades,
            vec![
                (
                    btc,
                    TradeSide::Sell,
                    1_068_572_091,
                    6_508_367_000_000,
                    1_034_361
                ),
                (
                    btc,
                    TradeSide::Buy,
                    1_068_572_092,
                    6_508_368_000_000,
                    50_000_000
                ),
                (eth, TradeSide::Sell, 77, 191_941_000_000, 200_000_000),
            ]
        );
        assert_eq!(stats(&dec).trades, 3);
        // Trades do not make a book: no Commit, no Level.
        assert!(commits_of(&ev).is_empty() && levels_of(&ev).is_empty());
    }

    #[test]
    fn one_frame_with_two_products_yields_both() {
        let mut dec = Decoder::default();
        let events = format!(
            "[{},{}]",
            cb_l2_event(
                "snapshot",
                "BTC-USD",
                &[("bid", "65000", "1"), ("offer", "65001", "2")]
            ),
            cb_l2_event("snapshot", "ETH-USD", &[("bid", "1900.5", "3")])
        );
        let ev = cb_ok(&mut dec, 0, &cb_frame("l2_data", 0, &events));
        let btc = inst_of(&dec, Venue::Coinbase, "BTC-USD");
        let eth = inst_of(&dec, Venue::Coinbase, "ETH-USD");
        assert_ne!(btc, eth);
        assert_eq!(commits_of(&ev), vec![(btc, 0), (eth, 0)]);
        assert_eq!(
            levels_of(&ev),
            vec![
                (btc, Side::Bid, m8("65000"), m8("1")),
                (btc, Side::Ask, m8("65001"), m8("2")),
                (eth, Side::Bid, m8("1900.5"), m8("3")),
            ]
        );
        // Each product's events are bracketed: Snapshot … Commit.
        let kinds: Vec<&str> = ev
            .iter()
            .map(|e| match e {
                Event::Define { .. } => "D",
                Event::Snapshot { .. } => "S",
                Event::Level { .. } => "L",
                Event::Commit { .. } => "C",
                _ => "?",
            })
            .collect();
        let no_defines: String = kinds.iter().filter(|k| **k != "D").copied().collect();
        assert_eq!(no_defines, "SLLCSLC");
        // Defines come before any other event of their instrument.
        for inst in [btc, eth] {
            let d = ev
                .iter()
                .position(|e| matches!(e, Event::Define { inst: i, .. } if *i == inst))
                .unwrap();
            let first_other = ev
                .iter()
                .position(|e| !matches!(e, Event::Define { .. }) && e.inst() == inst)
                .unwrap();
            assert!(d < first_other);
        }
    }

    #[test]
    fn ticker_yields_a_quote_with_update_id_zero() {
        let mut dec = Decoder::default();
        let events = r#"[{"type":"update","tickers":[{"type":"ticker","product_id":"ETH-USD","price":"1919.41","volume_24_h":"19975.95927439","low_24_h":"1911.04","high_24_h":"1925","low_52_w":"1505","high_52_w":"4955.9","price_percent_chg_24_h":"-0.2","best_bid":"1919.4","best_ask":"1919.42","best_bid_quantity":"0.5","best_ask_quantity":"12.25"}]}]"#;
        let ev = cb_ok(&mut dec, 0, &cb_frame("ticker", 10, events));
        let eth = inst_of(&dec, Venue::Coinbase, "ETH-USD");
        let quotes: Vec<Event> = ev
            .iter()
            .filter(|e| matches!(e, Event::Quote { .. }))
            .copied()
            .collect();
        assert_eq!(
            quotes,
            vec![Event::Quote {
                inst: eth,
                update_id: 0,
                bid_px: Price(m8("1919.4")),
                bid_qty: Qty(m8("0.5")),
                ask_px: Price(m8("1919.42")),
                ask_qty: Qty(m8("12.25")),
                recv_ts_ns: 42,
            }]
        );
        assert_eq!(stats(&dec).quotes, 1);
    }

    #[test]
    fn heartbeats_subscriptions_and_candles_emit_nothing() {
        let mut dec = Decoder::default();
        assert!(cb_ok(&mut dec, 0, &cb_heartbeat(0)).is_empty());
        let subs = r#"[{"subscriptions":{"candles":["ETH-USD","BTC-USD"],"heartbeats":["heartbeats"],"level2":["BTC-USD","ETH-USD"]}}]"#;
        assert!(cb_ok(&mut dec, 0, &cb_frame("subscriptions", 1, subs)).is_empty());
        let candles = r#"[{"type":"update","candles":[{"start":"1786309500","high":"1919.6","low":"1919.27","open":"1919.58","close":"1919.41","volume":"36.36630914","product_id":"ETH-USD"}]}]"#;
        assert!(cb_ok(&mut dec, 0, &cb_frame("candles", 2, candles)).is_empty());
        assert!(cb_ok(&mut dec, 0, &cb_frame("status", 3, "[]")).is_empty());
        let st = stats(&dec);
        assert_eq!((st.heartbeats, st.ignored, st.events), (1, 3, 0));
        assert_eq!((st.gaps, st.parse_errors), (0, 0));
        assert_eq!(dec.instruments().count(), 0);
    }

    #[test]
    fn error_frame_is_a_venue_error() {
        let mut dec = Decoder::default();
        let (r, ev) = feed(
            &mut dec,
            Venue::Coinbase,
            0,
            r#"{"type":"error","message":"boom"}"#,
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::VenueError);
        assert_eq!(dec.last_venue_error(), Some("boom"));
        assert!(ev.is_empty());
        assert!(e.to_string().contains("venue"), "{e}");
        let st = stats(&dec);
        assert_eq!((st.venue_errors, st.parse_errors), (1, 1));
        // Decoding continues afterwards.
        assert!(!cb_ok(&mut dec, 0, &cb_l2(0, "snapshot", "BTC-USD", &[])).is_empty());
    }

    #[test]
    fn unusual_key_order_decodes_identically() {
        let levels = [("bid", "65062.5", "0.00583"), ("offer", "65070.01", "3")];
        let normal = [
            cb_l2(0, "snapshot", "BTC-USD", &levels[..1]),
            cb_l2(1, "update", "BTC-USD", &levels),
        ];
        // `events` before `sequence_num` and `channel`; `updates` before `product_id` and `type`.
        let odd = |seq: u64, typ: &str, lv: &[Lv<'_>]| {
            format!(
                r#"{{"timestamp":"{TS}","events":[{{"updates":{},"product_id":"BTC-USD","type":"{typ}"}}],"sequence_num":{seq},"channel":"l2_data"}}"#,
                cb_levels(lv)
            )
        };
        let reordered = [odd(0, "snapshot", &levels[..1]), odd(1, "update", &levels)];
        // `updates` between `type` and `product_id`, `events` before `channel` only.
        let mixed = |seq: u64, typ: &str, lv: &[Lv<'_>]| {
            format!(
                r#"{{"sequence_num":{seq},"events":[{{"type":"{typ}","updates":{},"product_id":"BTC-USD"}}],"channel":"l2_data"}}"#,
                cb_levels(lv)
            )
        };
        let mixed = [
            mixed(0, "snapshot", &levels[..1]),
            mixed(1, "update", &levels),
        ];
        let run = |frames: &[String]| {
            let mut dec = Decoder::default();
            let v: Vec<Vec<Event>> = frames.iter().map(|f| cb_ok(&mut dec, 0, f)).collect();
            (v, stats(&dec))
        };
        let (a, sa) = run(&normal);
        let (b, sb) = run(&reordered);
        let (c, sc) = run(&mixed);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(levels_of(&a[1]).len(), 2);
        assert_eq!((sa.levels, sa.events), (sb.levels, sb.events));
        assert_eq!((sa.levels, sa.events), (sc.levels, sc.events));
    }

    #[test]
    fn failed_l2_frame_after_accepted_sequence_marks_connection_stale() {
        let mut dec = Decoder::default();
        let (btc, eth, sol) = three_books(&mut dec);
        let bad = cb_l2(
            3,
            "update",
            "BTC-USD",
            &[("bid", "100", "1"), ("bid", "99", "2"), ("bid", "98", "x")],
        );
        let (r, ev) = feed(&mut dec, Venue::Coinbase, 0, &bad);
        let e = r.unwrap_err();
        assert!(e.to_string().contains("new_quantity"), "{e}");
        assert!(
            levels_of(&ev).is_empty() && commits_of(&ev).is_empty(),
            "{ev:?}"
        );
        let mut st = stales_of(&ev);
        st.sort();
        assert_eq!(st, vec![(btc, true), (eth, true)]);
        assert!(!st.iter().any(|(i, _)| *i == sol));
        assert_eq!(stats(&dec).parse_errors, 1);
        // The sequence number was consumed: 4 is not a gap, 3 again is a duplicate.
        cb_ok(&mut dec, 0, &cb_heartbeat(4));
        assert_eq!(stats(&dec).gaps, 0);
        assert!(cb_ok(&mut dec, 0, &cb_heartbeat(3)).is_empty());
        assert_eq!(stats(&dec).stale_frames, 1);
        // Snapshot recovers.
        let ev = cb_ok(&mut dec, 0, &cb_l2(5, "snapshot", "BTC-USD", &[]));
        assert_eq!(stales_of(&ev), vec![(btc, false)]);
        assert_eq!(stats(&dec).resyncs, 1);
    }

    #[test]
    fn failed_l2_frame_with_gap_still_reports_stale() {
        // The frame both skips a sequence number (gap) and fails to parse: the books are
        // stale afterwards, and the sink must have been told so.
        let mut dec = Decoder::default();
        let (btc, eth, _) = three_books(&mut dec);
        let bad = cb_l2(
            7,
            "update",
            "BTC-USD",
            &[("bid", "100", "1"), ("bid", "98", "1e5")],
        );
        let (r, ev) = feed(&mut dec, Venue::Coinbase, 0, &bad);
        assert!(r.is_err());
        assert!(levels_of(&ev).is_empty());
        let mut stale: Vec<InstId> = dec.stale_instruments().collect();
        stale.sort();
        assert_eq!(stale, vec![btc, eth]);
        let mut st = stales_of(&ev);
        st.sort();
        assert_eq!(
            st,
            vec![(btc, true), (eth, true)],
            "decoder stale but sink not told: {ev:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Binance
// ---------------------------------------------------------------------------------------

mod binance {
    use super::*;

    #[test]
    fn diffs_buffer_until_snapshot_then_covered_dropped_and_straddler_applied() {
        let mut dec = Decoder::default();
        let d1 = bn_depth("BTCUSDT", 1, 5, &[("100", "1")], &[]);
        let d2 = bn_depth("BTCUSDT", 6, 10, &[("101", "2")], &[("105.5", "0")]);
        let d3 = bn_depth("BTCUSDT", 11, 15, &[], &[("106", "3.25")]);
        for d in [&d1, &d2, &d3] {
            let ev = bn_ok(&mut dec, d);
            assert!(no_book_events(&ev), "buffered diff produced events: {ev:?}");
        }
        let btc = inst_of(&dec, Venue::Binance, "BTCUSDT");
        assert_eq!(stats(&dec).buffered, 3);
        assert_eq!(stats(&dec).levels, 0);
        assert_eq!(dec.unsynced(), vec![(btc, 3)]);

        let body = bn_snapshot_body(8, &[("99.5", "7")], &[("107", "1")]);
        let (r, ev) = bn_rest(&mut dec, "BTCUSDT", &body);
        r.unwrap();
        assert_eq!(ev[0], Event::Snapshot { inst: btc });
        assert_eq!(commits_of(&ev), vec![(btc, 8), (btc, 10), (btc, 15)]);
        assert_eq!(
            levels_of(&ev),
            vec![
                (btc, Side::Bid, m8("99.5"), m8("7")),
                (btc, Side::Ask, m8("107"), m8("1")),
                // d1 (u=5 ≤ 8) dropped; d2 straddles 9; d3 follows.
                (btc, Side::Bid, m8("101"), m8("2")),
                (btc, Side::Ask, m8("105.5"), 0),
                (btc, Side::Ask, m8("106"), m8("3.25")),
            ]
        );
        let st = stats(&dec);
        assert_eq!((st.dropped_covered, st.snapshots, st.gaps), (1, 1, 0));
        assert_eq!((st.resyncs, st.parse_errors), (0, 0));
        assert!(stales_of(&ev).is_empty());
        assert!(dec.unsynced().is_empty());

        // Live diffs now apply directly.
        let ev = bn_ok(&mut dec, &bn_depth("BTCUSDT", 16, 16, &[("100", "0")], &[]));
        assert_eq!(commits_of(&ev), vec![(btc, 16)]);
        assert_eq!(levels_of(&ev), vec![(btc, Side::Bid, m8("100"), 0)]);
        // Overlap (U ≤ last+1 ≤ u) is fine.
        let ev = bn_ok(&mut dec, &bn_depth("BTCUSDT", 14, 18, &[("100", "4")], &[]));
        assert_eq!(commits_of(&ev), vec![(btc, 18)]);
    }

    #[test]
    fn gap_goes_stale_buffers_and_next_snapshot_resyncs() {
        let mut dec = Decoder::default();
        let (r, _) = bn_rest(
            &mut dec,
            "ETHUSDT",
            &bn_snapshot_body(100, &[("10", "1")], &[]),
        );
        r.unwrap();
        let eth = inst_of(&dec, Venue::Binance, "ETHUSDT");
        bn_ok(
            &mut dec,
            &bn_depth("ETHUSDT", 101, 105, &[("10", "2")], &[]),
        );

        // 106 is missing.
        let ev = bn_ok(
            &mut dec,
            &bn_depth("ETHUSDT", 107, 110, &[("11", "1")], &[]),
        );
        assert_eq!(
            ev,
            vec![Event::Stale {
                inst: eth,
                stale: true
            }]
        );
        let st = stats(&dec);
        assert_eq!((st.gaps, st.buffered), (1, 1));
        assert_eq!(dec.stale_instruments().collect::<Vec<_>>(), vec![eth]);

        // Buffering again, even a diff that would have followed.
        let ev = bn_ok(
            &mut dec,
            &bn_depth("ETHUSDT", 111, 112, &[("12", "1")], &[]),
        );
        assert!(ev.is_empty(), "{ev:?}");
        assert_eq!(dec.unsynced(), vec![(eth, 2)]);

        let (r, ev) = bn_rest(
            &mut dec,
            "ETHUSDT",
            &bn_snapshot_body(110, &[("10", "5")], &[]),
        );
        r.unwrap();
        assert_eq!(stales_of(&ev), vec![(eth, false)]);
        assert_eq!(commits_of(&ev), vec![(eth, 110), (eth, 112)]);
        assert_eq!(
            levels_of(&ev),
            vec![
                (eth, Side::Bid, m8("10"), m8("5")),
                (eth, Side::Bid, m8("12"), m8("1")),
            ]
        );
        let st = stats(&dec);
        assert_eq!((st.resyncs, st.dropped_covered, st.gaps), (1, 1, 1));
        assert_eq!(dec.stale_instruments().count(), 0);
    }

    #[test]
    fn old_diffs_are_skipped() {
        let mut dec = Decoder::default();
        bn_rest(&mut dec, "BTCUSDT", &bn_snapshot_body(50, &[], &[]))
            .0
            .unwrap();
        for (first, last) in [(40, 50), (45, 49), (50, 50)] {
            let ev = bn_ok(
                &mut dec,
                &bn_depth("BTCUSDT", first, last, &[("1", "1")], &[]),
            );
            assert!(ev.is_empty(), "{first}..{last}: {ev:?}");
        }
        let st = stats(&dec);
        assert_eq!((st.stale_frames, st.gaps, st.levels), (3, 0, 0));
        // An older snapshot than the book is ignored.
        let (r, ev) = bn_rest(
            &mut dec,
            "BTCUSDT",
            &bn_snapshot_body(49, &[("1", "1")], &[]),
        );
        r.unwrap();
        assert!(ev.is_empty(), "{ev:?}");
        // The book is still at 50.
        let ev = bn_ok(&mut dec, &bn_depth("BTCUSDT", 51, 51, &[], &[]));
        assert_eq!(commits_of(&ev).len(), 1);
    }

    #[test]
    fn book_ticker_is_a_quote_with_its_update_id() {
        let mut dec = Decoder::default();
        let f = r#"{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}"#;
        let ev = bn_ok(&mut dec, f);
        let btc = inst_of(&dec, Venue::Binance, "BTCUSDT");
        assert_eq!(
            ev.last().copied(),
            Some(Event::Quote {
                inst: btc,
                update_id: 50_093_239_212,
                bid_px: Price(6_183_763_000_000),
                bid_qty: Qty(378_826_000),
                ask_px: Price(6_183_764_000_000),
                ask_qty: Qty(154_698_000),
                recv_ts_ns: 42,
            })
        );
        assert_eq!(stats(&dec).quotes, 1);
    }

    #[test]
    fn trade_and_agg_trade_with_sides() {
        let mut dec = Decoder::default();
        let t = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#;
        let a = r#"{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617566591315,"s":"BTCUSDT","a":665076760,"p":"58001.03000000","q":"0.08620500","f":745522877,"l":745522877,"T":1617566591314,"m":false,"M":true}}"#;
        let ev1 = bn_ok(&mut dec, t);
        let ev2 = bn_ok(&mut dec, a);
        let btc = inst_of(&dec, Venue::Binance, "BTCUSDT");
        assert_eq!(
            ev1.last().copied(),
            Some(Event::Trade {
                inst: btc,
                side: TradeSide::Sell,
                trade_id: 3_735_683_259,
                price: Price(6_183_763_000_000),
                qty: Qty(2_000_000),
                ts_ns: 1_723_161_255_342_000_000,
            })
        );
        assert_eq!(
            ev2,
            vec![Event::Trade {
                inst: btc,
                side: TradeSide::Buy,
                trade_id: 665_076_760,
                price: Price(5_800_103_000_000),
                qty: Qty(8_620_500),
                ts_ns: 1_617_566_591_314_000_000,
            }]
        );
        assert_eq!(stats(&dec).trades, 2);
    }

    #[test]
    fn bare_payloads_without_wrapper() {
        let mut dec = Decoder::default();
        let ev = bn_ok(
            &mut dec,
            r#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}"#,
        );
        assert!(matches!(
            ev.last(),
            Some(Event::Trade {
                trade_id: 12345,
                side: TradeSide::Sell,
                price: Price(100_000),
                ..
            })
        ));
        let ev = bn_ok(
            &mut dec,
            r#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
        );
        assert!(matches!(
            ev.last(),
            Some(Event::Quote {
                update_id: 400900217,
                ..
            })
        ));
        // Bare depth diffs go through the same sync.
        let ev = bn_ok(
            &mut dec,
            r#"{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}"#,
        );
        assert!(no_book_events(&ev));
        let bnb = inst_of(&dec, Venue::Binance, "BNBBTC");
        let (r, ev) = bn_rest(&mut dec, "BNBBTC", &bn_snapshot_body(158, &[], &[]));
        r.unwrap();
        assert_eq!(commits_of(&ev), vec![(bnb, 158), (bnb, 160)]);
        assert_eq!(
            levels_of(&ev),
            vec![
                (bnb, Side::Bid, m8("0.0024"), m8("10")),
                (bnb, Side::Ask, m8("0.0026"), m8("100")),
            ]
        );
    }

    #[test]
    fn subscribe_ack_ignored_and_error_is_venue_error() {
        let mut dec = Decoder::default();
        let ev = bn_ok(&mut dec, r#"{"result":null,"id":1}"#);
        assert!(ev.is_empty());
        assert_eq!(stats(&dec).ignored, 1);
        assert_eq!(stats(&dec).parse_errors, 0);

        let (r, ev) = feed(
            &mut dec,
            Venue::Binance,
            0,
            r#"{"code":-1121,"msg":"Invalid symbol."}"#,
        );
        assert_eq!(r.unwrap_err().kind, ErrorKind::VenueError);
        assert!(ev.is_empty());
        let msg = dec.last_venue_error().unwrap();
        assert!(
            msg.contains("Invalid symbol.") && msg.contains("-1121"),
            "{msg}"
        );
        assert_eq!(stats(&dec).venue_errors, 1);

        // A REST error body given as a snapshot is a venue error too, and no snapshot.
        let (r, ev) = bn_rest(
            &mut dec,
            "BTCUSDT",
            r#"{"code":-1121,"msg":"Invalid symbol."}"#,
        );
        assert_eq!(r.unwrap_err().kind, ErrorKind::VenueError);
        assert!(no_book_events(&ev), "{ev:?}");
    }

    #[test]
    fn diff_with_first_id_after_last_id_is_refused() {
        let mut dec = Decoder::default();
        let (r, ev) = feed(
            &mut dec,
            Venue::Binance,
            0,
            &bn_depth("BTCUSDT", 9, 5, &[], &[]),
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadValue);
        assert!(e.to_string().contains("`U`"), "{e}");
        assert!(no_book_events(&ev));
        assert_eq!(stats(&dec).buffered, 0);
    }
}

// ---------------------------------------------------------------------------------------
// Malformed input: Err naming field and offset, no events of the frame, no panic
// ---------------------------------------------------------------------------------------

mod malformed {
    use super::*;

    /// Events that a refused frame may still emit: new instrument definitions, and
    /// (Coinbase level-2 after its sequence number was consumed) stale marks.
    fn only_side_effects(ev: &[Event]) -> bool {
        ev.iter()
            .all(|e| matches!(e, Event::Define { .. } | Event::Stale { stale: true, .. }))
    }

    /// Decodes a frame that must be refused; checks the error names `field` (if any) and
    /// its byte offset, that `parse_errors` went up by one and that no event of the frame
    /// reached the sink.
    fn refuse(dec: &mut Decoder, venue: Venue, data: &[u8], field: Option<&str>) -> DecodeError {
        let before = stats(dec).parse_errors;
        let (r, ev) = feed_bytes(dec, venue, 0, data);
        let e = r.expect_err("frame must be refused");
        let text = e.to_string();
        assert!(
            text.contains(&format!("byte {}", e.offset)),
            "Display lacks the offset: {text}"
        );
        assert!(e.offset <= data.len(), "offset {} past the frame", e.offset);
        if let Some(f) = field {
            assert_eq!(e.field, f, "{text}");
            assert!(
                text.contains(&format!("`{f}`")),
                "Display lacks the field: {text}"
            );
        }
        assert_eq!(stats(dec).parse_errors, before + 1);
        assert!(only_side_effects(&ev), "events of a refused frame: {ev:?}");
        e
    }

    // ----- Coinbase -----

    /// A decoder with BTC-USD snapshotted at sequence 0 on connection 0.
    fn cb_ready() -> Decoder {
        let mut dec = Decoder::default();
        cb_ok(
            &mut dec,
            0,
            &cb_l2(0, "snapshot", "BTC-USD", &[("bid", "1", "1")]),
        );
        dec
    }

    /// After a refused frame, a good one still decodes.
    fn cb_recovers(dec: &mut Decoder, seq: u64) {
        let ev = cb_ok(
            dec,
            0,
            &cb_l2(seq, "snapshot", "BTC-USD", &[("bid", "2", "3")]),
        );
        assert_eq!(levels_of(&ev).len(), 1, "{ev:?}");
        assert_eq!(commits_of(&ev).len(), 1);
    }

    fn cb_bad_level(price: &str, qty: &str) -> String {
        cb_l2(
            1,
            "update",
            "BTC-USD",
            &[
                ("bid", "65000", "1"),
                ("offer", "65001.5", "2"),
                ("bid", price, qty),
            ],
        )
    }

    fn decimal_case(price: &str, qty: &str, field: &str, bad: &str) -> DecodeError {
        let mut dec = cb_ready();
        let f = cb_bad_level(price, qty);
        let e = refuse(&mut dec, Venue::Coinbase, f.as_bytes(), Some(field));
        assert_eq!(e.index, Some(2), "the third level is the bad one: {e}");
        assert!(
            f[e.offset..].starts_with(&format!("\"{bad}\"")),
            "offset {} does not point at {bad}: {}",
            e.offset,
            &f[e.offset..]
        );
        cb_recovers(&mut dec, 2);
        e
    }

    #[test]
    fn too_many_decimals() {
        let e = decimal_case("0.000000001", "1", "price_level", "0.000000001");
        assert!(matches!(
            e.kind,
            ErrorKind::Decimal(hermes_book::DecimalError::TooManyDecimals { max: 8 })
        ));
        decimal_case("1", "1.123456789", "new_quantity", "1.123456789");
    }

    #[test]
    fn overflow() {
        let e = decimal_case("100000000000", "1", "price_level", "100000000000");
        assert!(matches!(
            e.kind,
            ErrorKind::Decimal(hermes_book::DecimalError::Overflow { .. })
        ));
        decimal_case(
            "1",
            "99999999999999999999999",
            "new_quantity",
            "99999999999999999999999",
        );
    }

    #[test]
    fn negative_price() {
        let e = decimal_case("-65000", "1", "price_level", "-65000");
        assert_eq!(e.kind, ErrorKind::BadValue);
        decimal_case("1", "-0.5", "new_quantity", "-0.5");
    }

    #[test]
    fn exponent_notation() {
        let e = decimal_case("1e5", "1", "price_level", "1e5");
        assert!(matches!(
            e.kind,
            ErrorKind::Decimal(hermes_book::DecimalError::InvalidByte { .. })
        ));
        decimal_case("1", "2E-3", "new_quantity", "2E-3");
        decimal_case("", "1", "price_level", "");
        decimal_case("1.2.3", "1", "price_level", "1.2.3");
    }

    #[test]
    fn number_where_a_string_is_expected_is_refused() {
        let mut dec = cb_ready();
        let f = cb_bad_level("64000", "1")
            .replace(r#""price_level":"64000""#, r#""price_level":64000"#);
        // Only the third level has a bare number.
        assert_eq!(f.matches(r#""price_level":64000,"#).count(), 1);
        let e = refuse(&mut dec, Venue::Coinbase, f.as_bytes(), None);
        assert!(matches!(e.kind, ErrorKind::Json(_)), "{e:?}");
        assert_eq!(e.index, Some(2));
        cb_recovers(&mut dec, 2);
    }

    #[test]
    fn number_where_a_string_is_expected_names_the_field() {
        let mut dec = cb_ready();
        let f = cb_bad_level("64000", "1")
            .replace(r#""price_level":"64000""#, r#""price_level":64000"#);
        refuse(&mut dec, Venue::Coinbase, f.as_bytes(), Some("price_level"));
    }

    #[test]
    fn missing_fields() {
        // A level without new_quantity.
        let mut dec = cb_ready();
        let f = cb_bad_level("65002", "7").replace(r#","new_quantity":"7""#, "");
        let e = refuse(
            &mut dec,
            Venue::Coinbase,
            f.as_bytes(),
            Some("new_quantity"),
        );
        assert_eq!((e.kind, e.index), (ErrorKind::Missing, Some(2)));
        cb_recovers(&mut dec, 2);

        // A level without side / price_level.
        for key in [r#""side":"bid","#, r#""price_level":"65002","#] {
            let mut dec = cb_ready();
            let f = cb_bad_level("65002", "1");
            let i = f.rfind(key).unwrap();
            let f = format!("{}{}", &f[..i], &f[i + key.len()..]);
            let field = if key.contains("side") {
                "side"
            } else {
                "price_level"
            };
            let e = refuse(&mut dec, Venue::Coinbase, f.as_bytes(), Some(field));
            assert_eq!(e.kind, ErrorKind::Missing);
        }

        // An event without product_id; an envelope without sequence_num or channel.
        let mut dec = cb_ready();
        let f = cb_frame("l2_data", 1, r#"[{"type":"update","updates":[]}]"#);
        let e = refuse(&mut dec, Venue::Coinbase, f.as_bytes(), Some("product_id"));
        assert_eq!(e.kind, ErrorKind::Missing);
        let f = format!(r#"{{"channel":"l2_data","timestamp":"{TS}","events":[]}}"#);
        let e = refuse(
            &mut dec,
            Venue::Coinbase,
            f.as_bytes(),
            Some("sequence_num"),
        );
        assert_eq!(e.kind, ErrorKind::Missing);
        let f = r#"{"sequence_num":5,"events":[]}"#;
        let e = refuse(&mut dec, Venue::Coinbase, f.as_bytes(), Some("channel"));
        assert_eq!(e.kind, ErrorKind::Missing);
        // A trade without price.
        let f = cb_frame(
            "market_trades",
            2,
            r#"[{"type":"update","trades":[{"product_id":"BTC-USD","trade_id":"1","price":"5","size":"1","side":"BUY"},{"product_id":"BTC-USD","trade_id":"2","size":"1","side":"BUY"}]}]"#,
        );
        let e = refuse(&mut dec, Venue::Coinbase, f.as_bytes(), Some("price"));
        assert_eq!((e.kind, e.index), (ErrorKind::Missing, Some(1)));
    }

    #[test]
    fn bad_values() {
        let mut dec = cb_ready();
        let f = cb_bad_level("65002", "1");
        let i = f.rfind(r#""side":"bid""#).unwrap();
        let f = format!("{}\"side\":\"middle\"{}", &f[..i], &f[i + 12..]);
        let e = refuse(&mut dec, Venue::Coinbase, f.as_bytes(), Some("side"));
        assert_eq!((e.kind, e.index), (ErrorKind::BadValue, Some(2)));
        assert!(f[e.offset..].starts_with("\"middle\""));
        // A sequence number that is a string.
        let f = r#"{"channel":"l2_data","sequence_num":"7","events":[]}"#;
        let e = refuse(
            &mut dec,
            Venue::Coinbase,
            f.as_bytes(),
            Some("sequence_num"),
        );
        assert!(matches!(e.kind, ErrorKind::Json(_)));
        // A symbol too long.
        let long = "X".repeat(40);
        let f = cb_l2(2, "snapshot", &long, &[]);
        let e = refuse(&mut dec, Venue::Coinbase, f.as_bytes(), Some("product_id"));
        assert_eq!(e.kind, ErrorKind::BadSymbol);
    }

    #[test]
    fn trades_and_tickers_are_all_or_nothing() {
        let mut dec = Decoder::default();
        let f = cb_frame(
            "market_trades",
            0,
            r#"[{"type":"update","trades":[{"product_id":"BTC-USD","trade_id":"1","price":"5","size":"1","side":"BUY"},{"product_id":"ETH-USD","trade_id":"2","price":"6","size":"1","side":"SELL"},{"product_id":"BTC-USD","trade_id":"3","price":"7.000000001","size":"1","side":"BUY"}]}]"#,
        );
        let e = refuse(&mut dec, Venue::Coinbase, f.as_bytes(), Some("price"));
        assert_eq!(e.index, Some(2));
        assert_eq!(stats(&dec).trades, 0);
        let f = cb_frame(
            "ticker",
            1,
            r#"[{"type":"update","tickers":[{"product_id":"ETH-USD","best_bid":"1","best_bid_quantity":"1","best_ask":"2","best_ask_quantity":"1"},{"product_id":"BTC-USD","best_bid":"1","best_bid_quantity":"1","best_ask":"1e3","best_ask_quantity":"1"}]}]"#,
        );
        let e = refuse(&mut dec, Venue::Coinbase, f.as_bytes(), Some("best_ask"));
        assert_eq!(e.index, Some(1));
        assert_eq!(stats(&dec).quotes, 0);
    }

    #[test]
    fn unknown_channel() {
        let mut dec = cb_ready();
        let f = cb_frame("level3", 1, "[]");
        let e = refuse(&mut dec, Venue::Coinbase, f.as_bytes(), Some("channel"));
        assert_eq!(e.kind, ErrorKind::UnknownType);
        assert!(f[e.offset..].starts_with("\"level3\""));
        cb_recovers(&mut dec, 2);
    }

    #[test]
    fn truncated_json_at_every_length() {
        let good = cb_l2(
            1,
            "update",
            "BTC-USD",
            &[
                ("bid", "65000", "1"),
                ("offer", "65001.5", "2"),
                ("bid", "64999", "3"),
            ],
        );
        for cut in 0..good.len() - 1 {
            let mut dec = cb_ready();
            let e = refuse(&mut dec, Venue::Coinbase, &good.as_bytes()[..cut], None);
            assert!(e.offset <= cut);
            cb_recovers(&mut dec, 2);
        }
    }

    #[test]
    fn garbage_and_empty_input() {
        let inputs: [&[u8]; 8] = [
            b"",
            b"   \n",
            b"\x00\xff\xfe\x80garbage",
            b"\xef\xbb\xbf{}",
            b"null",
            b"[1,2,3]",
            b"}{",
            b"{\"channel\":\"l2_data\",\"sequence_num\":1,\"events\":[]}trailing",
        ];
        for venue in [Venue::Coinbase, Venue::Binance] {
            let mut dec = Decoder::default();
            for data in inputs {
                refuse(&mut dec, venue, data, None);
            }
            assert_eq!(stats(&dec).parse_errors, inputs.len() as u64);
        }
        let mut dec = cb_ready();
        refuse(&mut dec, Venue::Coinbase, b"\x00\x01\x02", None);
        cb_recovers(&mut dec, 1);
    }

    #[test]
    fn deeply_nested_arrays() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let frames = [
            deep.clone(),
            format!(r#"{{"channel":"l2_data","extra":{deep},"sequence_num":1,"events":[]}}"#),
            cb_frame("l2_data", 1, &deep),
            cb_frame(
                "l2_data",
                1,
                &format!(
                    r#"[{{"type":"update","product_id":"BTC-USD","junk":{deep},"updates":[]}}]"#
                ),
            ),
            format!(r#"{{"stream":"x","data":{{"e":"trade","s":"BTCUSDT","z":{deep}}}}}"#),
            // Unbalanced too.
            "[".repeat(100_000),
        ];
        for (i, f) in frames.iter().enumerate() {
            for venue in [Venue::Coinbase, Venue::Binance] {
                let mut dec = cb_ready();
                let (r, ev) = feed(&mut dec, venue, 0, f);
                assert!(r.is_err(), "frame {i} on {venue:?} accepted");
                assert!(only_side_effects(&ev), "frame {i}: {ev:?}");
                assert!(r.unwrap_err().to_string().contains("byte"));
                cb_recovers(&mut dec, 2);
            }
        }
    }

    // ----- Binance -----

    /// A decoder with BTCUSDT synced at 100.
    fn bn_ready() -> Decoder {
        let mut dec = Decoder::default();
        bn_rest(
            &mut dec,
            "BTCUSDT",
            &bn_snapshot_body(100, &[("1", "1")], &[("2", "1")]),
        )
        .0
        .unwrap();
        dec
    }

    fn bn_recovers(dec: &mut Decoder) {
        let ev = bn_ok(dec, &bn_depth("BTCUSDT", 101, 101, &[("1.5", "1")], &[]));
        assert_eq!(commits_of(&ev).len(), 1, "{ev:?}");
        assert_eq!(levels_of(&ev).len(), 1);
    }

    fn bn_case(
        bids: &[(&str, &str)],
        asks: &[(&str, &str)],
        field: &str,
        bad: &str,
    ) -> DecodeError {
        let mut dec = bn_ready();
        let f = bn_depth("BTCUSDT", 101, 101, bids, asks);
        let e = refuse(&mut dec, Venue::Binance, f.as_bytes(), Some(field));
        assert!(
            f[e.offset..].starts_with(&format!("\"{bad}\"")),
            "offset {} does not point at {bad}: {}",
            e.offset,
            &f[e.offset..]
        );
        // Nothing applied: the same ids decode afterwards.
        bn_recovers(&mut dec);
        e
    }

    const GOOD: [(&str, &str); 2] = [("61000", "1"), ("60999.5", "2")];

    #[test]
    fn binance_bad_numbers_in_levels() {
        let with = |p: &'static str, q: &'static str| {
            let mut v = GOOD.to_vec();
            v.push((p, q));
            v
        };
        let e = bn_case(&with("0.000000001", "1"), &GOOD, "b", "0.000000001");
        assert_eq!(e.index, Some(2));
        assert!(matches!(e.kind, ErrorKind::Decimal(_)));
        let e = bn_case(&GOOD, &with("1", "100000000000"), "a", "100000000000");
        assert!(matches!(e.kind, ErrorKind::Decimal(_)));
        let e = bn_case(&with("-5", "1"), &GOOD, "b", "-5");
        assert_eq!(e.kind, ErrorKind::BadValue);
        let e = bn_case(&GOOD, &with("1e5", "1"), "a", "1e5");
        assert!(matches!(e.kind, ErrorKind::Decimal(_)));
    }

    #[test]
    fn binance_malformed_frames() {
        let mut dec = bn_ready();
        // A level that is not a pair.
        let f = bn_depth("BTCUSDT", 101, 101, &GOOD, &[])
            .replace(r#"["60999.5","2"]"#, r#"["60999.5","2"],["3"]"#);
        let e = refuse(&mut dec, Venue::Binance, f.as_bytes(), Some("b"));
        assert_eq!((e.kind, e.index), (ErrorKind::Missing, Some(2)));
        let f = bn_depth("BTCUSDT", 101, 101, &GOOD, &[])
            .replace(r#"["60999.5","2"]"#, r#"["60999.5","2"],["3","1","x"]"#);
        let e = refuse(&mut dec, Venue::Binance, f.as_bytes(), Some("b"));
        assert_eq!(e.kind, ErrorKind::BadValue);
        // A number where a string is expected.
        let f = bn_depth("BTCUSDT", 101, 101, &GOOD, &[])
            .replace(r#"["60999.5","2"]"#, r#"["60999.5","2"],[3.5,"1"]"#);
        refuse(&mut dec, Venue::Binance, f.as_bytes(), None);
        // `U` as a string.
        let f = bn_depth("BTCUSDT", 101, 101, &GOOD, &[]).replace(r#""U":101"#, r#""U":"101""#);
        let e = refuse(&mut dec, Venue::Binance, f.as_bytes(), Some("U"));
        assert!(matches!(e.kind, ErrorKind::Json(_)));
        // Missing fields.
        let f = bn_depth("BTCUSDT", 101, 101, &GOOD, &[]).replace(r#""s":"BTCUSDT","#, "");
        let e = refuse(&mut dec, Venue::Binance, f.as_bytes(), Some("s"));
        assert_eq!(e.kind, ErrorKind::Missing);
        let f = bn_depth("BTCUSDT", 101, 101, &GOOD, &[]).replace(r#""u":101,"#, "");
        refuse(&mut dec, Venue::Binance, f.as_bytes(), Some("u"));
        let f = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":5,"q":"1","T":1,"m":true}}"#;
        let e = refuse(&mut dec, Venue::Binance, f.as_bytes(), Some("p"));
        assert_eq!(e.kind, ErrorKind::Missing);
        let f = r#"{"e":"aggTrade","E":1,"s":"BTCUSDT","p":"1","q":"1","T":1,"m":true}"#;
        refuse(&mut dec, Venue::Binance, f.as_bytes(), Some("a"));
        let f = r#"{"u":1,"s":"BTCUSDT","b":"1","a":"2","A":"1"}"#;
        refuse(&mut dec, Venue::Binance, f.as_bytes(), Some("B"));
        // Unknown event type.
        let f = r#"{"stream":"x","data":{"e":"outboundAccountPosition","s":"BTCUSDT"}}"#;
        let e = refuse(&mut dec, Venue::Binance, f.as_bytes(), Some("e"));
        assert_eq!(e.kind, ErrorKind::UnknownType);
        // Truncated, at every length.
        let good = bn_depth("BTCUSDT", 101, 101, &GOOD, &GOOD);
        for cut in 0..good.len() - 1 {
            refuse(&mut dec, Venue::Binance, &good.as_bytes()[..cut], None);
        }
        assert_eq!(stats(&dec).levels, 2, "only the snapshot's levels");
        bn_recovers(&mut dec);
    }

    #[test]
    fn binance_bad_snapshot_changes_nothing() {
        let mut dec = Decoder::default();
        bn_ok(&mut dec, &bn_depth("BTCUSDT", 1, 5, &[("1", "1")], &[]));
        let body = bn_snapshot_body(
            3,
            &[("1", "1"), ("2", "2")],
            &[("3", "3"), ("4", "0.000000001")],
        );
        let (r, ev) = bn_rest(&mut dec, "BTCUSDT", &body);
        let e = r.unwrap_err();
        assert_eq!((e.field, e.index), ("asks", Some(1)));
        assert!(e.to_string().contains("`asks`"), "{e}");
        assert!(body[e.offset..].starts_with("\"0.000000001\""));
        assert!(no_book_events(&ev), "{ev:?}");
        // Still waiting, with its buffered diff.
        let btc = inst_of(&dec, Venue::Binance, "BTCUSDT");
        assert_eq!(dec.unsynced(), vec![(btc, 1)]);
        // Missing lastUpdateId.
        let (r, ev) = bn_rest(&mut dec, "BTCUSDT", r#"{"bids":[["1","1"]],"asks":[]}"#);
        assert_eq!(r.unwrap_err().field, "lastUpdateId");
        assert!(no_book_events(&ev));
        let st = stats(&dec);
        assert_eq!((st.parse_errors, st.snapshots), (2, 0));
        // A good one then syncs.
        let (r, ev) = bn_rest(&mut dec, "BTCUSDT", &bn_snapshot_body(3, &[], &[]));
        r.unwrap();
        assert_eq!(commits_of(&ev), vec![(btc, 3), (btc, 5)]);
    }
}

// ---------------------------------------------------------------------------------------
// Options: scales and the instrument cap
// ---------------------------------------------------------------------------------------

mod options {
    use super::*;
    use hermes_book::Scale;
    use hermes_ingest::ScaleConfig;

    #[test]
    fn per_symbol_scale_override() {
        let mut scales = ScaleConfig::default();
        scales.overrides.insert(
            (Venue::Coinbase, "BTC-USD".to_string()),
            Scale {
                price_decimals: 2,
                size_decimals: 8,
            },
        );
        let mut dec = Decoder::new(DecoderOptions {
            scales,
            ..DecoderOptions::default()
        });
        let ev = cb_ok(
            &mut dec,
            0,
            &cb_l2(0, "snapshot", "BTC-USD", &[("bid", "65062.5", "0.00583")]),
        );
        assert!(matches!(
            ev[0],
            Event::Define {
                scale: Scale {
                    price_decimals: 2,
                    size_decimals: 8
                },
                ..
            }
        ));
        let btc = inst_of(&dec, Venue::Coinbase, "BTC-USD");
        assert_eq!(levels_of(&ev), vec![(btc, Side::Bid, 6_506_250, 583_000)]);
        let (r, _) = feed(
            &mut dec,
            Venue::Coinbase,
            0,
            &cb_l2(1, "update", "BTC-USD", &[("bid", "65062.501", "1")]),
        );
        assert!(matches!(r.unwrap_err().kind, ErrorKind::Decimal(_)));
        // Other products keep the default.
        let ev = cb_ok(
            &mut dec,
            0,
            &cb_l2(2, "snapshot", "ETH-USD", &[("bid", "1.5", "1")]),
        );
        let eth = inst_of(&dec, Venue::Coinbase, "ETH-USD");
        assert_eq!(levels_of(&ev), vec![(eth, Side::Bid, m8("1.5"), m8("1"))]);
        // "65062.5" at 8 decimals, the default.
        assert_eq!(m8("65062.5"), 6_506_250_000_000);
    }

    #[test]
    fn instrument_cap() {
        let mut dec = Decoder::new(DecoderOptions {
            max_instruments: 2,
            ..DecoderOptions::default()
        });
        cb_ok(&mut dec, 0, &cb_l2(0, "snapshot", "A-USD", &[]));
        cb_ok(&mut dec, 0, &cb_l2(1, "snapshot", "B-USD", &[]));
        let (r, ev) = feed(
            &mut dec,
            Venue::Coinbase,
            0,
            &cb_l2(2, "snapshot", "C-USD", &[("bid", "1", "1")]),
        );
        assert_eq!(r.unwrap_err().kind, ErrorKind::TooManyInstruments);
        assert!(levels_of(&ev).is_empty());
        assert_eq!(dec.instruments().count(), 2);
    }
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

mod props {
    use super::*;
    use proptest::prelude::*;

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Valid frames of both venues: (venue, is REST snapshot, text).
    fn corpus() -> Vec<(Venue, bool, String)> {
        vec![
            (
                Venue::Coinbase,
                false,
                cb_l2(0, "snapshot", "BTC-USD", &[("bid", "65083.66", "0.20371215"), ("offer", "65083.67", "1")]),
            ),
            (
                Venue::Coinbase,
                false,
                cb_l2(1, "update", "BTC-USD", &[("bid", "65062.5", "0.00583"), ("offer", "65090", "0")]),
            ),
            (
                Venue::Coinbase,
                false,
                cb_frame(
                    "market_trades",
                    2,
                    r#"[{"type":"update","trades":[{"product_id":"BTC-USD","trade_id":"1068572091","price":"65083.67","size":"0.01034361","time":"2026-08-09T21:05:48.167634Z","side":"SELL"}]}]"#,
                ),
            ),
            (
                Venue::Coinbase,
                false,
                cb_frame(
                    "ticker",
                    3,
                    r#"[{"type":"update","tickers":[{"type":"ticker","product_id":"ETH-USD","price":"1919.41","best_bid":"1919.4","best_ask":"1919.42","best_bid_quantity":"0.5","best_ask_quantity":"12.25"}]}]"#,
                ),
            ),
            (Venue::Coinbase, false, cb_heartbeat(4)),
            (Venue::Coinbase, false, r#"{"type":"error","message":"boom"}"#.to_string()),
            (
                Venue::Binance,
                false,
                bn_depth("BTCUSDT", 101, 105, &[("61737.63", "0"), ("61730.17", "1.5")], &[("61837.64", "1.54698")]),
            ),
            (Venue::Binance, true, bn_snapshot_body(103, &[("61837.63", "3.78826")], &[("61837.64", "1.54698")])),
            (
                Venue::Binance,
                false,
                r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#.to_string(),
            ),
            (
                Venue::Binance,
                false,
                r#"{"e":"aggTrade","E":1617566591315,"s":"BTCUSDT","a":665076760,"p":"58001.03","q":"0.086205","f":1,"l":2,"T":1617566591314,"m":false,"M":true}"#.to_string(),
            ),
            (
                Venue::Binance,
                false,
                r#"{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63","B":"3.78826","a":"61837.64","A":"1.54698"}}"#.to_string(),
            ),
            (Venue::Binance, false, r#"{"result":null,"id":1}"#.to_string()),
            (Venue::Binance, false, r#"{"code":-1121,"msg":"Invalid symbol."}"#.to_string()),
        ]
    }

    fn decode_any(
        dec: &mut Decoder,
        venue: Venue,
        rest: bool,
        data: &[u8],
    ) -> Result<(), DecodeError> {
        let mut out: Vec<Event> = Vec::new();
        let r = dec.decode(
            &Frame {
                venue,
                kind: if rest {
                    FrameKind::RestDepth { symbol: b"BTCUSDT" }
                } else {
                    FrameKind::Ws
                },
                conn: 0,
                recv_ts_ns: 1,
                data,
            },
            &mut out,
        );
        if let Err(e) = &r {
            // Display never panics and names an offset within the frame.
            let text = e.to_string();
            assert!(text.contains("byte"), "{text}");
            assert!(e.offset <= data.len(), "{text} (len {})", data.len());
        }
        r
    }

    /// A decoder that has seen every corpus frame once (books, syncs, instruments).
    fn primed() -> Decoder {
        let mut dec = Decoder::default();
        for (v, rest, f) in corpus() {
            let _ = decode_any(&mut dec, v, rest, f.as_bytes());
        }
        dec
    }

    #[derive(Clone, Debug)]
    enum Mutation {
        Flip(usize, u8),
        Truncate(usize),
        Insert(usize, Vec<u8>),
        Delete(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let interesting = prop::sample::select(vec![
            b'"', b'{', b'}', b'[', b']', b':', b',', b'-', b'.', b'e', b'0', b'9', b'\\', 0, 0xff,
        ]);
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
            (any::<usize>(), interesting).prop_map(|(i, b)| Mutation::Flip(i, b)),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
                .prop_map(|(i, v)| Mutation::Insert(i, v)),
            (
                any::<usize>(),
                prop::sample::select(vec![
                    b"[[[[[[[[".to_vec(),
                    b"{\"a\":".to_vec(),
                    b"\"".to_vec(),
                    b"99999999999999999999999".to_vec(),
                    b"-1".to_vec(),
                    b"null,".to_vec(),
                ])
            )
                .prop_map(|(i, v)| Mutation::Insert(i, v)),
            (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        ]
    }

    fn apply(mut data: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
        for m in muts {
            let len = data.len();
            match m {
                Mutation::Flip(i, b) if len > 0 => data[i % len] = *b,
                Mutation::Truncate(i) => data.truncate(i % (len + 1)),
                Mutation::Insert(i, v) => {
                    let at = i % (len + 1);
                    data.splice(at..at, v.iter().copied());
                }
                Mutation::Delete(i, n) if len > 0 => {
                    let at = i % len;
                    let end = (at + n).min(len);
                    data.drain(at..end);
                }
                _ => {}
            }
        }
        data
    }

    proptest! {
        #![proptest_config(config(512))]

        #[test]
        fn arbitrary_bytes_never_panic(
            data in prop::collection::vec(any::<u8>(), 0..256),
            venue_bn in any::<bool>(),
            rest in any::<bool>(),
        ) {
            let venue = if venue_bn { Venue::Binance } else { Venue::Coinbase };
            let mut dec = Decoder::default();
            let _ = decode_any(&mut dec, venue, rest && venue_bn, &data);
            let mut dec = primed();
            let _ = decode_any(&mut dec, venue, rest && venue_bn, &data);
        }

        #[test]
        fn mutated_valid_frames_never_panic(
            which in 0usize..13,
            muts in prop::collection::vec(mutation(), 1..5),
        ) {
            let corpus = corpus();
            let (venue, rest, text) = &corpus[which % corpus.len()];
            let data = apply(text.clone().into_bytes(), &muts);
            let mut dec = primed();
            let before = dec.stats();
            let r = decode_any(&mut dec, *venue, *rest, &data);
            if r.is_err() {
                prop_assert_eq!(dec.stats().parse_errors, before.parse_errors + 1);
            }
            // Same mutation on a fresh decoder, and the decoder still works afterwards.
            let mut fresh = Decoder::default();
            let _ = decode_any(&mut fresh, *venue, *rest, &data);
            let ev = cb_ok(&mut fresh, 9, &cb_l2(0, "snapshot", "ZZ-USD", &[("bid", "1", "1")]));
            prop_assert_eq!(levels_of(&ev).len(), 1);
        }
    }

    /// A random non-negative decimal that fits 8 decimals, as (wire text, canonical text).
    fn decimal_text() -> impl Strategy<Value = (String, String)> {
        (
            0u64..=92_233_720_367,
            prop::collection::vec(0u8..10, 0..=8),
            0usize..3,
            0usize..2,
            any::<bool>(),
        )
            .prop_map(|(int, frac, extra_zeros, lead_zeros, bare_int)| {
                let frac: String = frac.iter().map(|d| char::from(b'0' + d)).collect();
                let mut wire = format!("{}{int}", "0".repeat(lead_zeros));
                if !(frac.is_empty() && bare_int) {
                    wire.push('.');
                    wire.push_str(&frac);
                    wire.push_str(&"0".repeat(extra_zeros));
                }
                let trimmed = frac.trim_end_matches('0');
                let canonical = if trimmed.is_empty() {
                    int.to_string()
                } else {
                    format!("{int}.{trimmed}")
                };
                (wire, canonical)
            })
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn decimals_round_trip_through_coinbase(
            (px, px_c) in decimal_text(),
            (qty, qty_c) in decimal_text(),
        ) {
            let mut dec = Decoder::default();
            let ev = cb_ok(&mut dec, 0, &cb_l2(0, "snapshot", "BTC-USD", &[("bid", "1", "1"), ("offer", &px, &qty)]));
            let lv = levels_of(&ev);
            prop_assert_eq!(lv.len(), 2);
            let (_, side, p, q) = lv[1];
            prop_assert_eq!(side, Side::Ask);
            prop_assert_eq!(Decimal::new(p, 8).to_string(), px_c);
            prop_assert_eq!(Decimal::new(q, 8).to_string(), qty_c);
        }

        #[test]
        fn decimals_round_trip_through_binance(
            (px, px_c) in decimal_text(),
            (qty, qty_c) in decimal_text(),
        ) {
            let mut dec = Decoder::default();
            let (r, ev) = bn_rest(&mut dec, "BTCUSDT", &bn_snapshot_body(1, &[(&px, &qty)], &[]));
            prop_assert!(r.is_ok());
            let lv = levels_of(&ev);
            prop_assert_eq!(Decimal::new(lv[0].2, 8).to_string(), px_c.clone());
            prop_assert_eq!(Decimal::new(lv[0].3, 8).to_string(), qty_c.clone());
            let ev = bn_ok(&mut dec, &bn_depth("BTCUSDT", 2, 2, &[], &[(&px, &qty)]));
            let lv = levels_of(&ev);
            prop_assert_eq!(lv.len(), 1);
            prop_assert_eq!(Decimal::new(lv[0].2, 8).to_string(), px_c);
            prop_assert_eq!(Decimal::new(lv[0].3, 8).to_string(), qty_c);
            let ev = bn_ok(&mut dec, &format!(
                r#"{{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"{px}","q":"{qty}","T":1,"m":false}}"#
            ));
            let trade = ev.iter().find_map(|e| match *e {
                Event::Trade { price, qty, .. } => Some((price.0, qty.0)),
                _ => None,
            });
            let (p, q) = trade.expect("trade event");
            prop_assert_eq!(p, lv[0].2);
            prop_assert_eq!(q, lv[0].3);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Replay sources over files
// ---------------------------------------------------------------------------------------

mod sources {
    use super::*;
    use hermes_ingest::source::{Source, SourceError, SourceOptions};
    use std::io::Write;
    use std::path::{Path, PathBuf};

    /// A directory under the system temp dir, unique to this process and test, removed on
    /// drop (also when the test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!(
                "hermes-ingest-decoder-test-{}-{name}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        fn file(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// An owned copy of a frame.
    #[derive(Debug, Clone, PartialEq)]
    struct Owned {
        venue: Venue,
        rest_symbol: Option<Vec<u8>>,
        recv_ts_ns: i64,
        data: Vec<u8>,
    }

    /// Reads the whole source, decoding every frame; returns the frames, the results of
    /// reading (errors with their line numbers) and all events.
    fn replay(path: &Path) -> (Vec<Owned>, Vec<SourceError>, Vec<Event>, Decoder) {
        let mut src = Source::open(path, &SourceOptions::default()).unwrap();
        let mut dec = Decoder::default();
        let mut frames = Vec::new();
        let mut errors = Vec::new();
        let mut events = Vec::new();
        loop {
            match src.next_frame() {
                Ok(Some(f)) => {
                    frames.push(Owned {
                        venue: f.venue,
                        rest_symbol: match f.kind {
                            FrameKind::Ws => None,
                            FrameKind::RestDepth { symbol } => Some(symbol.to_vec()),
                        },
                        recv_ts_ns: f.recv_ts_ns,
                        data: f.data.to_vec(),
                    });
                    dec.decode(&f, &mut events)
                        .unwrap_or_else(|e| panic!("{}: {e}", src.position()));
                }
                Ok(None) => break,
                Err(e) => errors.push(e),
            }
            assert!(frames.len() + errors.len() < 1000, "source does not end");
        }
        (frames, errors, events, dec)
    }

    fn coinbase_lines() -> Vec<String> {
        vec![
            cb_l2(
                0,
                "snapshot",
                "BTC-USD",
                &[("bid", "65000", "1"), ("offer", "65001", "2")],
            ),
            cb_heartbeat(1),
            cb_l2(2, "update", "BTC-USD", &[("bid", "65000", "0")]),
        ]
    }

    #[test]
    fn plain_json_lines() {
        let dir = TempDir::new("plain");
        let text = format!("{}\n", coinbase_lines().join("\n"));
        let p = dir.file("coinbase.jsonl", &text);
        let (frames, errors, events, dec) = replay(&p);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(frames.len(), 3);
        for (f, line) in frames.iter().zip(coinbase_lines()) {
            assert_eq!(f.venue, Venue::Coinbase);
            assert_eq!(f.rest_symbol, None);
            assert_eq!(f.data, line.as_bytes());
        }
        let btc = inst_of(&dec, Venue::Coinbase, "BTC-USD");
        assert_eq!(commits_of(&events), vec![(btc, 0), (btc, 2)]);
        assert_eq!(levels_of(&events).len(), 3);
        assert_eq!(dec.stats().gaps, 0);
    }

    /// `<ns> <json>` lines of Binance diffs with a REST snapshot line in the middle.
    fn binance_ts_text() -> String {
        let lines = [
            format!(
                "1723161254000000001 {}",
                bn_depth("BTCUSDT", 1, 5, &[("61000", "1")], &[])
            ),
            format!(
                "1723161254000000002 {}",
                bn_depth("BTCUSDT", 6, 10, &[("61001", "2")], &[])
            ),
            format!(
                "1723161254206652067 {}",
                bn_snapshot_body(8, &[("60999", "4")], &[("61010", "1")])
            ),
            format!(
                "1723161254300000000 {}",
                bn_depth("BTCUSDT", 11, 12, &[], &[("61010", "0")])
            ),
            format!(
                "1723161255343000000 {}",
                r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#
            ),
        ];
        format!("{}\n", lines.join("\n"))
    }

    fn check_binance_ts(frames: &[Owned], events: &[Event], dec: &Decoder) {
        assert_eq!(frames.len(), 5);
        assert!(frames.iter().all(|f| f.venue == Venue::Binance));
        assert_eq!(frames[0].recv_ts_ns, 1_723_161_254_000_000_001);
        assert_eq!(frames[2].recv_ts_ns, 1_723_161_254_206_652_067);
        assert_eq!(frames[2].rest_symbol.as_deref(), Some(&b"BTCUSDT"[..]));
        assert!(frames[2].data.starts_with(b"{\"lastUpdateId\":8"));
        assert!(frames
            .iter()
            .enumerate()
            .all(|(i, f)| (i == 2) == f.rest_symbol.is_some()));
        let btc = inst_of(dec, Venue::Binance, "BTCUSDT");
        assert_eq!(commits_of(events), vec![(btc, 8), (btc, 10), (btc, 12)]);
        assert_eq!(
            levels_of(events),
            vec![
                (btc, Side::Bid, m8("60999"), m8("4")),
                (btc, Side::Ask, m8("61010"), m8("1")),
                (btc, Side::Bid, m8("61001"), m8("2")),
                (btc, Side::Ask, m8("61010"), 0),
            ]
        );
        // The replayed straddler keeps its own receive time.
        let replayed_commit = events.iter().find_map(|e| match *e {
            Event::Commit {
                update_id: 10,
                recv_ts_ns,
                ..
            } => Some(recv_ts_ns),
            _ => None,
        });
        assert_eq!(replayed_commit, Some(1_723_161_254_000_000_002));
        let st = dec.stats();
        assert_eq!((st.buffered, st.dropped_covered, st.trades), (2, 1, 1));
    }

    #[test]
    fn timestamped_lines_with_rest_snapshot() {
        let dir = TempDir::new("ts");
        let p = dir.file("btcusdt.txt", &binance_ts_text());
        let (frames, errors, events, dec) = replay(&p);
        assert!(errors.is_empty(), "{errors:?}");
        check_binance_ts(&frames, &events, &dec);
    }

    #[test]
    fn gzip_file() {
        let dir = TempDir::new("gz");
        let p = dir.0.join("btcusdt.txt.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&p).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(binance_ts_text().as_bytes()).unwrap();
        enc.finish().unwrap();
        let (frames, errors, events, dec) = replay(&p);
        assert!(errors.is_empty(), "{errors:?}");
        check_binance_ts(&frames, &events, &dec);
        // Identical to the plain file.
        let plain = dir.file("plain.txt", &binance_ts_text());
        assert_eq!(replay(&plain).0, frames);
    }

    /// Writes `bytes` into a new FIFO at `path` from another thread (the writer blocks
    /// in `open` until the reader opens it).
    fn fifo_with(path: &Path, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
        let st = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "mkfifo");
        let p = path.to_path_buf();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            // In pieces, as a producer would write.
            for chunk in bytes.chunks(777) {
                f.write_all(chunk).unwrap();
            }
        })
    }

    fn native_capture(path: &Path) -> Vec<u8> {
        use hermes_ingest::capture::{CaptureWriter, Record, RecordKind};
        let mut w = CaptureWriter::create(path).unwrap();
        for (i, line) in coinbase_lines().iter().enumerate() {
            w.append(&Record {
                recv_ts_ns: 1_700_000_000_000_000_000 + i as i64,
                venue: Venue::Coinbase,
                kind: RecordKind::Ws,
                conn: 0,
                tag: b"",
                data: line.as_bytes(),
            })
            .unwrap();
        }
        w.flush().unwrap();
        std::fs::read(path).unwrap()
    }

    /// Issue 11 item 11: a compressed native capture was read as JSON lines, and a FIFO
    /// lost its first bytes to the format check.
    #[test]
    fn a_native_capture_reads_the_same_plain_gzip_zstd_and_through_a_fifo() {
        let dir = TempDir::new("native-forms");
        let plain = dir.0.join("c.hcap");
        let bytes = native_capture(&plain);
        let (want, errors, _, _) = replay(&plain);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(want.len(), 3);
        // gzip, named without .gz: the content tells.
        let gz = dir.0.join("c-gzip.bin");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(&bytes).unwrap();
        enc.finish().unwrap();
        let zst = dir.0.join("c.hcap.zst");
        std::fs::write(
            &zst,
            ruzstd::encoding::compress_to_vec(
                &bytes[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
        )
        .unwrap();
        for p in [&gz, &zst] {
            let (got, errors, _, _) = replay(p);
            assert!(errors.is_empty(), "{}: {errors:?}", p.display());
            assert_eq!(got, want, "{}", p.display());
        }
        let fifo = dir.0.join("c.fifo");
        let w = fifo_with(&fifo, bytes);
        let (got, errors, _, _) = replay(&fifo);
        w.join().unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(got, want);
    }

    #[test]
    fn json_lines_through_a_fifo_lose_no_line() {
        let dir = TempDir::new("jsonl-fifo");
        let text = format!("{}\n", coinbase_lines().join("\n"));
        let want = replay(&dir.file("c.jsonl", &text)).0;
        let fifo = dir.0.join("c.fifo");
        let w = fifo_with(&fifo, text.into_bytes());
        let (got, errors, _, _) = replay(&fifo);
        w.join().unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(got, want);
        assert_eq!(got.len(), 3);
    }

    /// Issue 11 item 11: a 2 GB line took 3.2 GB of memory. A line over the cap is
    /// skipped (a bad line with its number) and never held whole.
    #[test]
    fn a_line_over_the_cap_is_a_bad_line_and_the_next_lines_come() {
        let dir = TempDir::new("long-line");
        let lines = coinbase_lines();
        let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(1 << 20));
        let text = format!("{}\n{long}\n{}\n{}\n", lines[0], lines[1], lines[2]);
        let p = dir.file("long.jsonl", &text);
        let mut src = Source::open(
            &p,
            &SourceOptions {
                max_line_bytes: 64 << 10,
                ..SourceOptions::default()
            },
        )
        .unwrap();
        let mut got = Vec::new();
        let mut bad = Vec::new();
        loop {
            match src.next_frame() {
                Ok(Some(f)) => got.push(f.data.to_vec()),
                Ok(None) => break,
                Err(e) => bad.push(e.to_string()),
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(
            bad[0].contains("long.jsonl:2:") && bad[0].contains("--max-line-bytes"),
            "{}",
            bad[0]
        );
    }

    #[test]
    fn bad_line_is_reported_with_its_number_and_later_lines_still_come() {
        let dir = TempDir::new("bad");
        let lines = coinbase_lines();
        let text = format!(
            "{}\n{}\nthis is not a frame\n\n{}\n",
            lines[0], lines[1], lines[2]
        );
        let p = dir.file("with-bad.jsonl", &text);
        let (frames, errors, events, dec) = replay(&p);
        assert_eq!(errors.len(), 1, "{errors:?}");
        match &errors[0] {
            SourceError::BadLine { line, path, .. } => {
                assert_eq!(*line, 3);
                assert!(path.ends_with("with-bad.jsonl"), "{path}");
            }
            e => panic!("expected BadLine, got {e:?}"),
        }
        assert!(errors[0].to_string().contains(":3:"), "{}", errors[0]);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2].data, lines[2].as_bytes());
        let btc = inst_of(&dec, Venue::Coinbase, "BTC-USD");
        assert_eq!(commits_of(&events), vec![(btc, 0), (btc, 2)]);

        // A bad timestamp prefix too.
        let text = format!("12x {}\n{}\n", lines[0], lines[1]);
        let p = dir.file("bad-ts.jsonl", &text);
        let mut src = Source::open(&p, &SourceOptions::default()).unwrap();
        assert!(matches!(
            src.next_frame(),
            Err(SourceError::BadLine { line: 1, .. })
        ));
        let f = src.next_frame().unwrap().unwrap();
        assert_eq!(f.data, lines[1].as_bytes());
        assert!(src.next_frame().unwrap().is_none());
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let dir = TempDir::new("missing");
        let r = Source::open(&dir.0.join("nope.jsonl"), &SourceOptions::default());
        assert!(matches!(r, Err(SourceError::Io { .. })));
    }
}

// ---------------------------------------------------------------------------------------
// Edge cases
// ---------------------------------------------------------------------------------------

mod edges {
    use super::*;

    #[test]
    fn trades_only_products_are_not_marked_stale_by_a_gap() {
        let mut dec = Decoder::default();
        cb_ok(&mut dec, 0, &cb_l2(0, "snapshot", "BTC-USD", &[]));
        cb_ok(
            &mut dec,
            0,
            &cb_frame(
                "market_trades",
                1,
                r#"[{"type":"update","trades":[{"product_id":"SOL-USD","trade_id":"1","price":"5","size":"1","side":"BUY"}]}]"#,
            ),
        );
        let ev = cb_ok(&mut dec, 0, &cb_heartbeat(3));
        let btc = inst_of(&dec, Venue::Coinbase, "BTC-USD");
        assert_eq!(stales_of(&ev), vec![(btc, true)]);
    }

    #[test]
    fn ticker_batch_without_best_bid_ask_yields_no_quote() {
        let mut dec = Decoder::default();
        let ev = cb_ok(
            &mut dec,
            0,
            &cb_frame(
                "ticker_batch",
                0,
                r#"[{"type":"update","tickers":[{"type":"ticker","product_id":"ETH-USD","price":"1919.41","volume_24_h":"1"}]}]"#,
            ),
        );
        assert!(no_book_events(&ev), "{ev:?}");
        assert_eq!(stats(&dec).quotes, 0);
    }

    /// Two stale Coinbase books, then a frame snapshotting both whose second event is bad.
    fn stale_pair_then_bad_snapshots() -> (Decoder, Vec<Event>) {
        let mut dec = Decoder::default();
        cb_ok(&mut dec, 0, &cb_l2(0, "snapshot", "BTC-USD", &[]));
        cb_ok(&mut dec, 0, &cb_l2(1, "snapshot", "ETH-USD", &[]));
        cb_ok(&mut dec, 0, &cb_heartbeat(5)); // gap: both stale
        assert_eq!(dec.stale_instruments().count(), 2);
        let events = format!(
            "[{},{}]",
            cb_l2_event("snapshot", "BTC-USD", &[("bid", "1", "1")]),
            cb_l2_event(
                "snapshot",
                "ETH-USD",
                &[("bid", "1", "1"), ("bid", "2", "x")]
            )
        );
        let (r, ev) = feed(
            &mut dec,
            Venue::Coinbase,
            0,
            &cb_frame("l2_data", 6, &events),
        );
        assert!(r.is_err());
        (dec, ev)
    }

    #[test]
    fn failed_multi_product_snapshot_frame_keeps_books_stale() {
        let (dec, ev) = stale_pair_then_bad_snapshots();
        assert!(levels_of(&ev).is_empty(), "{ev:?}");
        assert!(
            !stales_of(&ev).iter().any(|(_, s)| !s),
            "no Stale{{false}} of a refused frame: {ev:?}"
        );
        // Neither book was rebuilt.
        assert_eq!(dec.stale_instruments().count(), 2);
        assert_eq!(stats(&dec).snapshots, 2);
    }

    #[test]
    fn failed_snapshot_frame_does_not_count_a_resync() {
        let (dec, _) = stale_pair_then_bad_snapshots();
        assert_eq!(stats(&dec).resyncs, 0, "resync counted for a refused frame");
    }

    #[test]
    fn binance_unusual_key_order() {
        let normal = [
            bn_depth("BTCUSDT", 1, 3, &[("10", "1")], &[("11", "2")]),
            bn_depth("BTCUSDT", 4, 6, &[("10", "0")], &[("12", "5")]),
        ];
        let odd = |first: u64, last: u64, b: &str, a: &str| {
            format!(
                r#"{{"data":{{"b":{b},"a":{a},"u":{last},"s":"BTCUSDT","U":{first},"E":1723161255208,"e":"depthUpdate"}},"stream":"btcusdt@depth@100ms"}}"#
            )
        };
        let reordered = [
            odd(1, 3, r#"[["10","1"]]"#, r#"[["11","2"]]"#),
            odd(4, 6, r#"[["10","0"]]"#, r#"[["12","5"]]"#),
        ];
        let run = |frames: &[String]| {
            let mut dec = Decoder::default();
            bn_rest(&mut dec, "BTCUSDT", &bn_snapshot_body(2, &[], &[]))
                .0
                .unwrap();
            let v: Vec<Vec<Event>> = frames.iter().map(|f| bn_ok(&mut dec, f)).collect();
            v
        };
        let a = run(&normal);
        let b = run(&reordered);
        assert_eq!(a, b);
        assert_eq!(levels_of(&a[0]).len(), 2);
        assert_eq!(levels_of(&a[1]).len(), 2);
        // Buffered, reordered diffs are judged by their `u` too.
        let mut dec = Decoder::default();
        for f in &reordered {
            assert!(no_book_events(&bn_ok(&mut dec, f)));
        }
        let (r, ev) = bn_rest(&mut dec, "BTCUSDT", &bn_snapshot_body(3, &[], &[]));
        r.unwrap();
        let btc = inst_of(&dec, Venue::Binance, "BTCUSDT");
        assert_eq!(commits_of(&ev), vec![(btc, 3), (btc, 6)]);
        assert_eq!(stats(&dec).dropped_covered, 1);
    }

    #[test]
    fn binance_old_trade_with_order_ids() {
        let mut dec = Decoder::default();
        let ev = bn_ok(
            &mut dec,
            r#"{"e":"trade","E":123456789,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","b":88,"a":50,"T":123456785,"m":true,"M":true}"#,
        );
        assert!(
            matches!(
                ev.last(),
                Some(Event::Trade {
                    trade_id: 12345,
                    ..
                })
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn binance_buffer_overflow_is_counted() {
        let mut dec = Decoder::new(DecoderOptions {
            max_buffer_bytes: 400,
            ..DecoderOptions::default()
        });
        let frames: Vec<String> = (0..6)
            .map(|i| bn_depth("BTCUSDT", 10 * i + 1, 10 * i + 10, &[("1", "1")], &[]))
            .collect();
        for f in &frames {
            bn_ok(&mut dec, f);
        }
        let st = stats(&dec);
        assert_eq!(st.buffered, 6);
        assert!(st.buffer_overflows >= 1, "{st:?}");
        let btc = inst_of(&dec, Venue::Binance, "BTCUSDT");
        let kept = dec.unsynced()[0].1;
        assert!(kept < 6 && kept * frames[0].len() <= 400, "kept {kept}");
        // The oldest diffs are lost: a snapshot from before them cannot bridge to the
        // remaining ones, so the book goes stale instead of silently skipping updates.
        let (r, ev) = bn_rest(&mut dec, "BTCUSDT", &bn_snapshot_body(5, &[], &[]));
        r.unwrap();
        assert_eq!(commits_of(&ev), vec![(btc, 5)]);
        assert_eq!(stales_of(&ev), vec![(btc, true)]);
        assert_eq!(stats(&dec).gaps, 1);
        // A fresh snapshot that covers them recovers.
        let (r, ev) = bn_rest(&mut dec, "BTCUSDT", &bn_snapshot_body(60, &[], &[]));
        r.unwrap();
        assert_eq!(stales_of(&ev), vec![(btc, false)]);
    }

    #[test]
    fn malformed_diff_is_refused_even_while_buffering() {
        let mut dec = Decoder::default();
        let bad = bn_depth("BTCUSDT", 6, 10, &[("1", "1"), ("2", "1e5")], &[]);
        let (r, ev) = feed(&mut dec, Venue::Binance, 0, &bad);
        assert!(no_book_events(&ev));
        let e = r.expect_err("malformed diff accepted into the buffer");
        assert_eq!(e.field, "b");
        assert_eq!(stats(&dec).parse_errors, 1);
        assert_eq!(stats(&dec).buffered, 0);
    }

    #[test]
    fn malformed_buffered_diff_never_lets_the_book_skip_it() {
        let mut dec = Decoder::default();
        bn_ok(&mut dec, &bn_depth("BTCUSDT", 1, 5, &[("1", "1")], &[]));
        // A bad level in a diff that is only buffered now.
        let bad = bn_depth("BTCUSDT", 6, 10, &[("1", "1"), ("2", "1e5")], &[]);
        let (r, ev) = feed(&mut dec, Venue::Binance, 0, &bad);
        assert!(no_book_events(&ev));
        let refused_on_arrival = r.is_err();
        bn_ok(&mut dec, &bn_depth("BTCUSDT", 11, 12, &[("3", "1")], &[]));
        let before = stats(&dec).parse_errors;
        let (r, ev) = bn_rest(&mut dec, "BTCUSDT", &bn_snapshot_body(7, &[], &[]));
        r.unwrap();
        let btc = inst_of(&dec, Venue::Binance, "BTCUSDT");
        // The bad diff's changes are not applied, and 11..12 must not be applied on top of
        // a book that misses 8..10: stale.
        assert_eq!(commits_of(&ev), vec![(btc, 7)]);
        assert!(levels_of(&ev).is_empty(), "{ev:?}");
        assert_eq!(stales_of(&ev), vec![(btc, true)]);
        if !refused_on_arrival {
            assert_eq!(
                stats(&dec).parse_errors,
                before + 1,
                "error surfaced at replay"
            );
        }
    }
}
