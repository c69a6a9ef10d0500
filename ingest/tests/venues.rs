//! The Binance futures (USD-M, COIN-M) and Coinbase Exchange decoders through the public
//! API: each venue's documented sequencing rules, the derivatives events, and malformed
//! frames refused with the field named.

use hermes_ingest::{
    DecodeError, Decoder, ErrorKind, Event, Frame, FrameKind, InstId, TradeSide, Venue,
};

fn feed(dec: &mut Decoder, venue: Venue, data: &str) -> (Result<(), DecodeError>, Vec<Event>) {
    let mut out = Vec::new();
    let r = dec.decode(
        &Frame {
            venue,
            kind: FrameKind::Ws,
            conn: 1,
            recv_ts_ns: 7,
            data: data.as_bytes(),
        },
        &mut out,
    );
    (r, out)
}

fn ok(dec: &mut Decoder, venue: Venue, data: &str) -> Vec<Event> {
    let (r, ev) = feed(dec, venue, data);
    r.unwrap_or_else(|e| panic!("frame refused: {e}\n{data}"));
    ev
}

fn refused(dec: &mut Decoder, venue: Venue, data: &str) -> DecodeError {
    let (r, ev) = feed(dec, venue, data);
    assert!(
        ev.iter()
            .all(|e| matches!(e, Event::Define { .. } | Event::Stale { .. })),
        "a refused frame handed over book events: {ev:?}"
    );
    r.expect_err(data)
}

fn rest(dec: &mut Decoder, venue: Venue, symbol: &str, body: &str) -> Vec<Event> {
    let mut out = Vec::new();
    dec.decode(
        &Frame {
            venue,
            kind: FrameKind::RestDepth {
                symbol: symbol.as_bytes(),
            },
            conn: 1,
            recv_ts_ns: 7,
            data: body.as_bytes(),
        },
        &mut out,
    )
    .unwrap_or_else(|e| panic!("snapshot refused: {e}"));
    out
}

fn commits(ev: &[Event]) -> Vec<u64> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Commit { update_id, .. } => Some(*update_id),
            _ => None,
        })
        .collect()
}

fn stale(ev: &[Event]) -> Vec<bool> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Stale { stale, .. } => Some(*stale),
            _ => None,
        })
        .collect()
}

fn levels(ev: &[Event]) -> usize {
    ev.iter()
        .filter(|e| matches!(e, Event::Level { .. }))
        .count()
}

mod futures {
    use super::*;

    /// A USD-M diff in the real stream's shape (`pu` before the levels).
    fn diff(first: u64, last: u64, prev: u64) -> String {
        format!(
            r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1723161256299,"T":1723161256298,"s":"BTCUSDT","U":{first},"u":{last},"pu":{prev},"b":[["61800.20","1.5"]],"a":[["61800.30","0.2"]]}}}}"#
        )
    }

    fn snapshot(last: u64) -> String {
        format!(
            r#"{{"lastUpdateId":{last},"E":1723161256501,"T":1723161256493,"bids":[["61800.10","2.909"]],"asks":[["61800.40","1"]]}}"#
        )
    }

    /// The documented procedure: diffs buffer; at the snapshot `L` those with `u < L`
    /// are dropped, the first applied one has `U <= L <= u` (here `u == L`, which spot
    /// would drop), then each `pu` is the previous `u` (while `U` skips ids); a `pu`
    /// that does not match is a gap, and the next snapshot resyncs.
    #[test]
    fn pu_chaining_with_the_straddling_first_diff() {
        let mut dec = Decoder::default();
        let v = Venue::BinanceUsdm;
        assert_eq!(levels(&ok(&mut dec, v, &diff(90, 95, 80))), 0, "buffered");
        assert_eq!(levels(&ok(&mut dec, v, &diff(96, 100, 95))), 0, "buffered");
        let ev = rest(&mut dec, v, "BTCUSDT", &snapshot(100));
        // The snapshot, then the straddling diff replayed; 90..=95 was dropped.
        assert_eq!(commits(&ev), [100, 100]);
        assert_eq!(dec.stats().dropped_covered, 1);
        // U jumps past u + 1: fine on futures, pu chains.
        assert_eq!(commits(&ok(&mut dec, v, &diff(104, 110, 100))), [110]);
        // A duplicate is skipped.
        assert!(commits(&ok(&mut dec, v, &diff(104, 110, 100))).is_empty());
        assert_eq!(dec.stats().stale_frames, 1);
        // pu 111 != 110: a gap; the book goes stale and buffers.
        let ev = ok(&mut dec, v, &diff(115, 120, 111));
        assert_eq!((commits(&ev).len(), stale(&ev)), (0, vec![true]));
        assert_eq!(dec.stats().gaps, 1);
        let mut resync = Vec::new();
        dec.take_resyncs(&mut resync);
        assert_eq!(resync, [InstId(0)]);
        // A snapshot inside the buffered diff: it is applied (U <= 118 <= u).
        let ev = rest(&mut dec, v, "BTCUSDT", &snapshot(118));
        assert_eq!(commits(&ev), [118, 120]);
        assert_eq!(stale(&ev), [false]);
        assert_eq!(commits(&ok(&mut dec, v, &diff(121, 125, 120))), [125]);
        assert_eq!(dec.stats().gaps, 1);
    }

    /// After a snapshot the first diff must reach back to it: one starting past `L` means
    /// ids were missed.
    #[test]
    fn a_first_diff_past_the_snapshot_is_a_gap() {
        let mut dec = Decoder::default();
        let v = Venue::BinanceUsdm;
        rest(&mut dec, v, "BTCUSDT", &snapshot(100));
        let ev = ok(&mut dec, v, &diff(105, 110, 103));
        assert_eq!(stale(&ev), [true]);
        assert_eq!(dec.stats().gaps, 1);
    }

    /// Without `pu` a futures diff cannot be chained: refused, and it moves nothing.
    #[test]
    fn a_diff_without_pu_is_refused() {
        let mut dec = Decoder::default();
        let v = Venue::BinanceUsdm;
        rest(&mut dec, v, "BTCUSDT", &snapshot(100));
        let no_pu = diff(96, 104, 100).replace(r#""pu":100,"#, "");
        let e = refused(&mut dec, v, &no_pu);
        assert_eq!((e.kind, e.field), (ErrorKind::Missing, "pu"));
        assert_eq!(commits(&ok(&mut dec, v, &diff(96, 104, 100))), [104]);
    }

    #[test]
    fn book_ticker_mark_price_and_liquidations() {
        let mut dec = Decoder::default();
        let v = Venue::BinanceUsdm;
        let ev = ok(
            &mut dec,
            v,
            r#"{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":400900217,"s":"BTCUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000","T":1568014460891,"E":1568014460893}}"#,
        );
        assert!(
            matches!(ev[1], Event::Quote { update_id: 400900217, bid_px, ask_qty, .. }
                if bid_px.0 == 2_535_190_000 && ask_qty.0 == 4_066_000_000),
            "{ev:?}"
        );
        let ev = ok(
            &mut dec,
            v,
            r#"{"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"-0.00038167","T":1562306400000}}"#,
        );
        assert_eq!(
            ev,
            [Event::Derivs {
                inst: InstId(0),
                mark_px: 1_179_415_000_000,
                index_px: 1_178_462_659_091,
                funding_rate: -38_167,
                next_funding_ns: 1_562_306_400_000_000_000,
                ts_ns: 1_562_305_380_000_000_000,
            }]
        );
        // A delivery contract: no funding.
        let ev = ok(
            &mut dec,
            v,
            r#"{"e":"markPriceUpdate","E":1596095725000,"s":"BTCUSDT","p":"10934.62615417","P":"10962.17178236","i":"10933.62615417","r":"","T":0}"#,
        );
        assert!(
            matches!(
                ev[0],
                Event::Derivs {
                    funding_rate: 0,
                    next_funding_ns: 0,
                    ..
                }
            ),
            "{ev:?}"
        );
        let ev = ok(
            &mut dec,
            v,
            r#"{"stream":"btcusdt@forceOrder","data":{"e":"forceOrder","E":1568014460893,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC","q":"0.014","p":"9910","ap":"9910.5","X":"FILLED","l":"0.014","z":"0.014","T":1568014460893}}}"#,
        );
        assert_eq!(
            ev,
            [Event::Liquidation {
                inst: InstId(0),
                side: TradeSide::Sell,
                price: hermes_book::Price(991_050_000_000),
                qty: hermes_book::Qty(1_400_000),
                ts_ns: 1_568_014_460_893_000_000,
            }]
        );
        let s = dec.stats();
        assert_eq!((s.quotes, s.derivs, s.liquidations), (1, 2, 1));
    }

    /// COIN-M: the contract symbol, `ps`, and the snapshot's `symbol`/`pair`; a symbol
    /// on two venues is two instruments.
    #[test]
    fn coinm_is_its_own_venue() {
        let mut dec = Decoder::default();
        let v = Venue::BinanceCoinm;
        let d = r#"{"stream":"btcusd_perp@depth@100ms","data":{"e":"depthUpdate","E":1723161257440,"T":1723161257432,"s":"BTCUSD_PERP","ps":"BTCUSD","U":10,"u":20,"pu":5,"b":[["61773.6","1001"]],"a":[]}}"#;
        ok(&mut dec, v, d);
        let ev = rest(
            &mut dec,
            v,
            "BTCUSD_PERP",
            r#"{"lastUpdateId":15,"E":1723161257835,"T":1723161257823,"symbol":"BTCUSD_PERP","pair":"BTCUSD","bids":[["61804.7","35"]],"asks":[["61804.8","1645"]]}"#,
        );
        assert_eq!(commits(&ev), [15, 20]);
        let spot = dec.find(Venue::BinanceCoinm, "BTCUSD_PERP").unwrap();
        ok(&mut dec, Venue::BinanceUsdm, &diff(1, 2, 0));
        let usdm = dec.find(Venue::BinanceUsdm, "BTCUSDT").unwrap();
        assert_ne!(spot, usdm);
        assert_eq!(Venue::BinanceCoinm.size_unit(), "contracts");
    }

    #[test]
    fn malformed_futures_frames_name_their_field() {
        let mut dec = Decoder::default();
        let v = Venue::BinanceUsdm;
        for (frame, kind, field) in [
            (
                r#"{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"1.2.3","i":"1","r":"0","T":0}"#,
                "decimal",
                "p",
            ),
            (
                r#"{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"1.000000001","r":"0","T":0}"#,
                "decimal",
                "p",
            ),
            (
                r#"{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","i":"1","r":"0","T":0}"#,
                "missing",
                "p",
            ),
            (
                r#"{"e":"forceOrder","E":1,"o":{"s":"BTCUSDT","S":"LONG","p":"1","ap":"1","z":"1","T":1}}"#,
                "bad",
                "o.S",
            ),
            (
                r#"{"e":"forceOrder","E":1,"o":{"s":"BTCUSDT","S":"BUY","p":"1","ap":"1","T":1}}"#,
                "missing",
                "o.z",
            ),
            (r#"{"e":"forceOrder","E":1}"#, "missing", "o"),
            (
                r#"{"e":"bookTicker","u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2","T":1,"E":1}"#,
                "missing",
                "A",
            ),
        ] {
            let e = refused(&mut dec, v, frame);
            let got = match e.kind {
                ErrorKind::Decimal(_) => "decimal",
                ErrorKind::Missing => "missing",
                ErrorKind::BadValue => "bad",
                _ => "other",
            };
            assert_eq!((got, e.field), (kind, field), "{frame}: {e}");
        }
        // Found by reading the decoders for the fuzz targets: a repeated `e` or `u`
        // made the frame one thing while its levels were applied as another.
        rest(&mut dec, v, "BTCUSDT", &snapshot(100));
        for (frame, field) in [
            (
                r#"{"e":"depthUpdate","s":"BTCUSDT","U":96,"u":102,"pu":100,"b":[["1","1"]],"a":[],"e":"kline"}"#,
                "e",
            ),
            (
                r#"{"e":"depthUpdate","s":"BTCUSDT","U":96,"u":102,"pu":100,"b":[["1","1"]],"a":[],"u":5000}"#,
                "u",
            ),
        ] {
            let e = refused(&mut dec, v, frame);
            assert_eq!((e.kind, e.field), (ErrorKind::BadValue, field), "{frame}");
        }
        assert_eq!(commits(&ok(&mut dec, v, &diff(96, 102, 100))), [102]);
        // Futures-only events on spot are unknown there.
        let e = refused(
            &mut dec,
            Venue::Binance,
            r#"{"e":"forceOrder","E":1,"o":{"s":"BTCUSDT","S":"BUY","p":"1","ap":"1","z":"1","T":1}}"#,
        );
        assert_eq!((e.kind, e.field), (ErrorKind::UnknownType, "e"));
        assert_eq!(dec.stats().parse_errors, 10);
    }
}

mod exchange {
    use super::*;

    const V: Venue = Venue::CoinbaseExchange;

    fn snapshot(product: &str) -> String {
        format!(
            r#"{{"type":"snapshot","product_id":"{product}","asks":[["14.8024","12.77"],["14.8069","12.49"]],"bids":[["14.7693","27.51"]]}}"#
        )
    }

    fn l2update(product: &str, changes: &str) -> String {
        format!(
            r#"{{"type":"l2update","product_id":"{product}","changes":{changes},"time":"2021-04-17T16:43:37.075687Z"}}"#
        )
    }

    fn matched(kind: &str, id: u64, side: &str) -> String {
        format!(
            r#"{{"type":"{kind}","trade_id":{id},"maker_order_id":"a","taker_order_id":"b","side":"{side}","size":"0.04","price":"14.7775","product_id":"BAND-GBP","sequence":{},"time":"2021-04-17T16:43:30.244075Z"}}"#,
            333_938_000 + id
        )
    }

    #[test]
    fn level2_snapshot_then_updates() {
        let mut dec = Decoder::default();
        // Before the product's snapshot an update has nowhere to go.
        let ev = ok(
            &mut dec,
            V,
            &l2update("BAND-GBP", r#"[["buy","14.7","1"]]"#),
        );
        assert_eq!(levels(&ev), 0);
        let ev = ok(&mut dec, V, &snapshot("BAND-GBP"));
        assert!(matches!(ev[0], Event::Snapshot { .. }), "{ev:?}");
        assert_eq!((levels(&ev), commits(&ev)), (3, vec![0]));
        let ev = ok(
            &mut dec,
            V,
            &l2update(
                "BAND-GBP",
                r#"[["sell","14.8024","0"],["buy","14.7700","3.5"]]"#,
            ),
        );
        assert!(
            matches!(ev[0], Event::Level { side: hermes_book::Side::Ask, qty, .. } if qty.0 == 0)
        );
        assert!(
            matches!(ev[1], Event::Level { side: hermes_book::Side::Bid, price, .. } if price.0 == 1_477_000_000)
        );
        assert!(matches!(ev[2], Event::Commit { exch_ts_ns, .. } if exch_ts_ns > 0));
        // The feed was lost: updates wait for the next snapshot again.
        let inst = dec.find(V, "BAND-GBP").unwrap();
        let mut out = Vec::new();
        dec.mark_stale(inst, &mut out);
        assert_eq!(stale(&out), [true]);
        let ev = ok(
            &mut dec,
            V,
            &l2update("BAND-GBP", r#"[["buy","14.7","1"]]"#),
        );
        assert_eq!(levels(&ev), 0);
        assert_eq!(stale(&ok(&mut dec, V, &snapshot("BAND-GBP"))), [false]);
    }

    /// Trades: the maker's side is the aggressor's opposite; `trade_id` is contiguous per
    /// product, so a jump is a gap (the book goes stale for a resubscription) and an
    /// older id a duplicate; a heartbeat naming a later trade is a gap too.
    #[test]
    fn matches_number_the_product_and_gaps_go_stale() {
        let mut dec = Decoder::default();
        ok(&mut dec, V, &snapshot("BAND-GBP"));
        let ev = ok(&mut dec, V, &matched("last_match", 100, "sell"));
        assert!(
            matches!(
                ev[0],
                Event::Trade {
                    trade_id: 100,
                    side: TradeSide::Buy,
                    ..
                }
            ),
            "{ev:?}"
        );
        let ev = ok(&mut dec, V, &matched("match", 101, "buy"));
        assert!(matches!(
            ev[0],
            Event::Trade {
                side: TradeSide::Sell,
                ..
            }
        ));
        // The resubscription's last_match again: a duplicate.
        assert!(ok(&mut dec, V, &matched("last_match", 101, "buy")).is_empty());
        assert_eq!(dec.stats().stale_frames, 1);
        // 103 after 101: trade 102 was missed.
        let ev = ok(&mut dec, V, &matched("match", 103, "buy"));
        assert_eq!(stale(&ev), [true]);
        assert!(matches!(ev[1], Event::Trade { trade_id: 103, .. }));
        let mut resync = Vec::new();
        dec.take_resyncs(&mut resync);
        assert_eq!(resync.len(), 1);
        assert_eq!(stale(&ok(&mut dec, V, &snapshot("BAND-GBP"))), [false]);
        let hb = r#"{"type":"heartbeat","sequence":90,"last_trade_id":105,"product_id":"BAND-GBP","time":"2014-11-07T08:19:28.464459Z"}"#;
        assert_eq!(stale(&ok(&mut dec, V, hb)), [true]);
        let s = dec.stats();
        assert_eq!((s.gaps, s.heartbeats, s.trades), (2, 1, 3));
    }

    #[test]
    fn ticker_quotes_skip_older_sequences() {
        let mut dec = Decoder::default();
        let t = |seq: u64, bid: &str| {
            format!(
                r#"{{"type":"ticker","sequence":{seq},"product_id":"BTC-USD","price":"100.5","best_bid":"{bid}","best_bid_size":"2","best_ask":"101","best_ask_size":"0.5","side":"buy","time":"2021-04-17T16:43:30.244075Z","trade_id":1,"last_size":"0.04"}}"#
            )
        };
        let ev = ok(&mut dec, V, &t(10, "100"));
        assert!(
            matches!(ev[1], Event::Quote { update_id: 0, bid_px, bid_qty, .. } if bid_px.0 == 10_000_000_000 && bid_qty.0 == 200_000_000),
            "{ev:?}"
        );
        assert!(ok(&mut dec, V, &t(9, "99")).is_empty());
        // The 2021 feed had no sizes.
        let old = r#"{"type":"ticker","sequence":333938798,"product_id":"BAND-GBP","price":"14.7775","open_24h":"14.6647","volume_24h":"94381.28000000","low_24h":"14.3691","high_24h":"16.55","volume_30d":"2295579.57000000","best_bid":"14.7550","best_ask":"14.8060","side":"buy","time":"2021-04-17T16:43:30.244075Z","trade_id":881613,"last_size":"0.04"}"#;
        assert!(matches!(ok(&mut dec, V, old)[1], Event::Quote { bid_qty, .. } if bid_qty.0 == 0));
    }

    #[test]
    fn control_frames_and_errors() {
        let mut dec = Decoder::default();
        for f in [
            r#"{"type":"subscriptions","channels":[{"name":"level2","product_ids":["BTC-USD"]}]}"#,
            r#"{"type":"status","products":[]}"#,
            r#"{"type":"received","product_id":"BTC-USD","sequence":5}"#,
        ] {
            assert!(ok(&mut dec, V, f).is_empty(), "{f}");
        }
        assert_eq!(dec.stats().ignored, 3);
        let e = refused(
            &mut dec,
            V,
            r#"{"type":"error","message":"Failed to subscribe","reason":"level2 requires authentication"}"#,
        );
        assert_eq!(e.kind, ErrorKind::VenueError);
        assert_eq!(
            dec.last_venue_error(),
            Some("Failed to subscribe: level2 requires authentication")
        );
    }

    #[test]
    fn malformed_exchange_frames_name_their_field() {
        let mut dec = Decoder::default();
        ok(&mut dec, V, &snapshot("BTC-USD"));
        for (frame, field) in [
            (l2update("BTC-USD", r#"[["bid","1","1"]]"#), "changes"),
            (l2update("BTC-USD", r#"[["buy","1"]]"#), "changes"),
            (l2update("BTC-USD", r#"[["buy","1","1","x"]]"#), "changes"),
            (l2update("BTC-USD", r#"[["buy","-1","1"]]"#), "changes"),
            (
                r#"{"type":"l2update","changes":[]}"#.to_string(),
                "product_id",
            ),
            (
                r#"{"type":"l2update","product_id":"BTC-USD","time":"2021-04-17T16:43:37Z"}"#
                    .to_string(),
                "changes",
            ),
            (r#"{"product_id":"BTC-USD"}"#.to_string(), "type"),
            (
                r#"{"type":"snapshot","product_id":"BTC-USD","bids":[]}"#.to_string(),
                "asks",
            ),
            (matched("match", 1, "up"), "side"),
            (
                r#"{"type":"snapshot","product_id":"BTC-USD","bids":[["1","1"]],"type":"status"}"#
                    .to_string(),
                "type",
            ),
            (
                r#"{"type":"match","trade_id":1,"side":"buy","size":"1","product_id":"BTC-USD"}"#
                    .to_string(),
                "price",
            ),
            (
                r#"{"type":"ticker","sequence":1,"product_id":"BTC-USD","best_ask":"1"}"#
                    .to_string(),
                "best_bid",
            ),
        ] {
            let e = refused(&mut dec, V, &frame);
            assert_eq!(e.field, field, "{frame}: {e}");
            // Every message says what was wrong and where.
            assert!(e.to_string().contains(" at byte ") || matches!(e.kind, ErrorKind::Json(_)));
        }
        // The book is untouched by all of them.
        let ev = ok(
            &mut dec,
            V,
            &l2update("BTC-USD", r#"[["buy","14.7693","1"]]"#),
        );
        assert_eq!(levels(&ev), 1);
    }
}
