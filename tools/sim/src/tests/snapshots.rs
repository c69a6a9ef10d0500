//! A client that takes its snapshot in the middle of the stream (a REST request, a
//! subscription) ends with exactly the generator's books, with no gap: each snapshot is
//! consistent with the stream that follows it.

use hermes_ingest::Venue;

use super::{Client, ClientBooks, Sim};

/// Frames a client reads before it asks for its snapshot.
const BEFORE_SNAPSHOT: usize = 150;

/// A Binance client (spot or futures) of every stream, fetching each symbol's REST
/// snapshot from `rest_path` after [`BEFORE_SNAPSHOT`] frames.
async fn binance_client_ends_with_the_market(venue: Venue, rest_path: &str) {
    let sim = Sim::start(venue, 2, 3_000, &[]).await;
    let last = sim.last_streamed();
    let mut client = sim.connect_streams().await;
    let mut books = ClientBooks::new(venue);
    for _ in 0..BEFORE_SNAPSHOT {
        books.ws(&client.next().await.unwrap());
    }
    for s in sim.symbols() {
        let (status, body) = sim.get(&format!("{rest_path}?symbol={s}&limit=1000")).await;
        assert_eq!(status, 200, "{body}");
        if venue.is_binance_futures() {
            assert!(body.contains("\"E\":") && body.contains("\"T\":"), "{body}");
        }
        if venue == Venue::BinanceCoinm {
            let pair = s.trim_end_matches("_PERP");
            assert!(
                body.contains(&format!("\"symbol\":\"{s}\",\"pair\":\"{pair}\"")),
                "{body}"
            );
        }
        books.rest(&s, &body);
    }
    let rest = client.until(&last).await;
    assert!(!rest.closed);
    for f in &rest.frames {
        books.ws(f);
    }
    let st = books.stats();
    assert_eq!((st.gaps, st.parse_errors), (0, 0), "{st:?}");
    assert_eq!(st.snapshots, 2, "{st:?}");
    // The buffered diffs the snapshot covers were dropped, the rest applied.
    assert!(st.dropped_covered > 0, "{st:?}");
    books.assert_equal(&sim.synth().0);
    if venue.is_binance_futures() {
        assert!(st.derivs > 0 && st.trades > 0 && st.quotes > 0, "{st:?}");
    }
    // An unknown symbol, another venue's path.
    let (status, body) = sim.get(&format!("{rest_path}?symbol=NOPE&limit=5")).await;
    assert_eq!((status, body.contains("-1121")), (400, true), "{body}");
    let other = if rest_path == "/api/v3/depth" {
        "/fapi/v1/depth"
    } else {
        "/api/v3/depth"
    };
    assert_eq!(sim.get(&format!("{other}?symbol=X")).await.0, 404);
}

#[tokio::test]
async fn binance_usdm_rest_snapshot_is_consistent_with_the_stream() {
    binance_client_ends_with_the_market(Venue::BinanceUsdm, "/fapi/v1/depth").await;
}

#[tokio::test]
async fn binance_coinm_rest_snapshot_is_consistent_with_the_stream() {
    binance_client_ends_with_the_market(Venue::BinanceCoinm, "/dapi/v1/depth").await;
}

#[tokio::test]
async fn binance_spot_rest_snapshot_is_consistent_with_the_stream() {
    binance_client_ends_with_the_market(Venue::Binance, "/api/v3/depth").await;
}

#[tokio::test]
async fn futures_streams_carry_every_event_kind() {
    let sim = Sim::start(Venue::BinanceUsdm, 1, 8_000, &[]).await;
    let last = sim.last_streamed();
    let got = sim.connect_streams().await.until(&last).await;
    for kind in [
        "depthUpdate",
        "bookTicker",
        "trade",
        "aggTrade",
        "markPriceUpdate",
        "forceOrder",
    ] {
        let needle = format!("\"e\":\"{kind}\"");
        assert!(got.frames.iter().any(|f| f.contains(&needle)), "no {kind}");
    }
    // Only the streams asked for: a client of one stream gets only that one.
    let sim = Sim::start(Venue::BinanceUsdm, 1, 2_000, &[]).await;
    let s = sim.symbols()[0].to_lowercase();
    let mut client = sim
        .connect(&format!("/stream?streams={s}@markPrice@1s"))
        .await;
    let f = client.next().await.unwrap();
    assert!(
        f.starts_with(&format!("{{\"stream\":\"{s}@markPrice@1s\"")),
        "{f}"
    );
}

/// Frames of the Coinbase Exchange client until `last`, decoded.
async fn exchange_read_until(client: &mut Client, books: &mut ClientBooks, last: &str) -> usize {
    let got = client.until(last).await;
    assert!(!got.closed);
    let snapshots = got
        .frames
        .iter()
        .filter(|f| f.contains("\"type\":\"snapshot\""))
        .count();
    for f in &got.frames {
        books.ws(f);
    }
    snapshots
}

#[tokio::test]
async fn coinbase_exchange_subscriptions_are_consistent_with_the_stream() {
    let sim = Sim::start(Venue::CoinbaseExchange, 3, 3_000, &[]).await;
    let products = sim.symbols();
    let ids = serde_json::to_string(&products).unwrap();
    let last = sim.last_streamed();
    let mut client = sim.connect("/").await;
    let mut books = ClientBooks::new(Venue::CoinbaseExchange);
    // Trades first: a confirmation, then the latest trade of each product.
    client
        .send(&format!(
            r#"{{"type":"subscribe","product_ids":{ids},"channels":["matches","ticker",{{"name":"heartbeat","product_ids":{ids}}}]}}"#
        ))
        .await;
    let confirm = client.next().await.unwrap();
    assert!(
        confirm.starts_with(r#"{"type":"subscriptions","channels":[{"name":"heartbeat","#),
        "{confirm}"
    );
    books.ws(&confirm);
    for p in &products {
        let m = client.next().await.unwrap();
        assert!(
            m.starts_with(r#"{"type":"last_match""#) && m.contains(p.as_str()),
            "{m}"
        );
        books.ws(&m);
    }
    for _ in 0..BEFORE_SNAPSHOT {
        let f = client.next().await.unwrap();
        assert!(!f.contains("l2update"), "not subscribed: {f}");
        books.ws(&f);
    }
    // Then the book: a snapshot of each product, made between two frames.
    client
        .send(&format!(
            r#"{{"type":"subscribe","product_ids":{ids},"channels":["level2_batch"]}}"#
        ))
        .await;
    // Frames already on their way come first; once the snapshots came, every
    // `l2update` is newer than them.
    let mut snapshots = 0;
    while snapshots < products.len() {
        let f = client.next().await.unwrap();
        assert!(snapshots > 0 || !f.contains("l2update"), "{f}");
        snapshots += usize::from(f.contains("\"type\":\"snapshot\""));
        books.ws(&f);
    }
    assert_eq!(snapshots, products.len());
    // A resubscription (what a client does after a gap) brings a fresh snapshot.
    let p0 = serde_json::to_string(&products[..1]).unwrap();
    for kind in ["unsubscribe", "subscribe"] {
        client
            .send(&format!(
                r#"{{"type":"{kind}","product_ids":{p0},"channels":["level2_batch"]}}"#
            ))
            .await;
    }
    assert_eq!(exchange_read_until(&mut client, &mut books, &last).await, 1);
    let st = books.stats();
    assert_eq!(
        (st.gaps, st.parse_errors, st.snapshots),
        (0, 0, products.len() as u64 + 1),
        "{st:?}"
    );
    assert!(
        st.trades > 0 && st.quotes > 0 && st.heartbeats > 0,
        "{st:?}"
    );
    books.assert_equal(&sim.synth().0);
}

#[tokio::test]
async fn coinbase_exchange_refuses_bad_requests_and_unsubscribes() {
    let sim = Sim::start(Venue::CoinbaseExchange, 2, 3_000, &[]).await;
    let products = sim.symbols();
    let mut client = sim.connect("/").await;
    client
        .send(r#"{"type":"subscribe","product_ids":["SYN0-USD"],"channels":["full"]}"#)
        .await;
    let err = client.next().await.unwrap();
    assert!(
        err.starts_with(r#"{"type":"error","message":"Failed to subscribe""#)
            && err.contains("full is not a valid channel"),
        "{err}"
    );
    let ids = serde_json::to_string(&products).unwrap();
    client
        .send(&format!(
            r#"{{"type":"subscribe","product_ids":{ids},"channels":["level2"]}}"#
        ))
        .await;
    assert!(client.next().await.unwrap().contains("\"name\":\"level2\""));
    client
        .send(&format!(
            r#"{{"type":"unsubscribe","product_ids":["{}"],"channels":["level2"]}}"#,
            products[0]
        ))
        .await;
    // Frames already on their way still come; after the confirmation, none of the
    // product left.
    loop {
        let f = client.next().await.unwrap();
        if f.starts_with(r#"{"type":"subscriptions""#) {
            assert!(!f.contains(&products[0]), "{f}");
            break;
        }
    }
    for _ in 0..300 {
        let f = client.next().await.unwrap();
        assert!(!f.contains(&products[0]), "{f}");
        assert!(f.contains(&products[1]), "{f}");
    }
}

#[tokio::test]
async fn coinbase_advanced_subscription_is_consistent_with_the_stream() {
    let sim = Sim::start(Venue::Coinbase, 3, 3_000, &[]).await;
    let ids = serde_json::to_string(&sim.symbols()).unwrap();
    let last = sim.last_streamed();
    let mut client = sim.connect("/").await;
    let mut books = ClientBooks::new(Venue::Coinbase);
    for ch in ["market_trades", "heartbeats"] {
        client
            .send(&format!(
                r#"{{"type":"subscribe","product_ids":{ids},"channel":"{ch}"}}"#
            ))
            .await;
    }
    for _ in 0..BEFORE_SNAPSHOT {
        books.ws(&client.next().await.unwrap());
    }
    client
        .send(&format!(
            r#"{{"type":"subscribe","product_ids":{ids},"channel":"level2"}}"#
        ))
        .await;
    let got = client.until(&last).await;
    assert!(!got.closed);
    for f in &got.frames {
        books.ws(f);
    }
    let st = books.stats();
    assert_eq!(
        (st.gaps, st.parse_errors, st.snapshots),
        (0, 0, 3),
        "{st:?}"
    );
    books.assert_equal(&sim.synth().0);
}
