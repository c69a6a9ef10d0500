//! One definition of every derived value: the same synthetic frames go through the book
//! thread's [`Publisher`] (the shm slot images) and through the persister into a real
//! PostgreSQL (a private cluster this test starts). Every `top_of_book` row must hold the
//! slot's best bid/ask, spread, mid, microprice, imbalance and flags at the frame the row
//! was sampled from.

use std::collections::HashMap;
use std::time::Duration;

use hermes_book::kernels::KernelConfig;
use hermes_book::{Decimal, Event};
use hermes_engine::Publisher;
use hermes_ingest::{Decoder, Frame, FrameKind, FrameTap};
use hermes_persist::{local_pg, PersistOptions};
use hermes_shm::{TopOfBook, FLAG_BBO_FROM_TICKER, FLAG_CROSSED, FLAG_HAS_ASK, FLAG_HAS_BID};
use hermes_sim::synth::{Synth, SynthOptions};
use postgres::{Client, NoTls};

/// (venue, symbol, receive time in µs): the key of a sampled row.
type Key = (String, String, i64);

/// The slot image after the first commit or quote of each (instrument, µs).
fn slot_images(frames: &[(Frame<'_>, String)], kernels: KernelConfig) -> HashMap<Key, TopOfBook> {
    let mut dec = Decoder::default();
    let mut publisher = Publisher::new(None, kernels);
    let mut events: Vec<Event> = Vec::new();
    let mut images = HashMap::new();
    for (f, _) in frames {
        events.clear();
        let _ = dec.decode(f, &mut events);
        for ev in &events {
            publisher.apply(ev);
            if let Event::Commit {
                inst, recv_ts_ns, ..
            }
            | Event::Quote {
                inst, recv_ts_ns, ..
            } = *ev
            {
                let i = &publisher.market().instruments()[inst.0 as usize];
                let key = (
                    i.venue.name().to_string(),
                    i.symbol.clone(),
                    recv_ts_ns.div_euclid(1000),
                );
                images.entry(key).or_insert(*publisher.last(inst));
            }
        }
    }
    images
}

#[test]
fn top_of_book_rows_equal_the_shm_slot() {
    let pg = local_pg::shared().expect("a local PostgreSQL cluster (apt-get install postgresql)");
    let url = pg.fresh_database("slot_tables").unwrap();
    let dir = std::env::temp_dir().join(format!("hermes-engine-tables-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Kernel settings other than the defaults: they must reach both sides.
    let kernels = KernelConfig {
        levels: 3,
        ..KernelConfig::default()
    };
    let mut synth = Synth::new(SynthOptions::default());
    let mut texts: Vec<_> = (0..6_000).map(|_| synth.next_frame()).collect();
    // The synthetic tickers share the depth stream's ids, so the book wins; these newer
    // ones (each in its own millisecond) make the venue quote the shown best bid/ask.
    let last = texts.last().map_or(0, |f| f.recv_ts_ns);
    for k in 1..=20i64 {
        let mut f = texts[0].clone();
        f.venue = hermes_book::Venue::Binance;
        f.rest_symbol = None;
        f.recv_ts_ns = last + k * 2_000_000;
        f.data = format!(
            r#"{{"stream":"syn0usdt@bookTicker","data":{{"u":{},"s":"SYN0USDT","b":"100.{k}","B":"1.5","a":"100.9","A":"0.{k}"}}}}"#,
            1_000_000_000 + k
        );
        texts.push(f);
    }
    let frames: Vec<(Frame<'_>, String)> = texts
        .iter()
        .map(|f| {
            let kind = match &f.rest_symbol {
                Some(s) => FrameKind::RestDepth {
                    symbol: s.as_bytes(),
                },
                None => FrameKind::Ws,
            };
            let frame = Frame {
                venue: f.venue,
                kind,
                conn: 0,
                recv_ts_ns: f.recv_ts_ns,
                data: f.data.as_bytes(),
            };
            (frame, f.data.clone())
        })
        .collect();
    let images = slot_images(&frames, kernels);

    let mut o = PersistOptions::new(url.clone(), dir.join("journal"));
    o.stream = Some("slot-tables".into());
    o.batch_age = Duration::from_millis(20);
    o.projection.kernels = kernels;
    // Many samples: one per instrument and millisecond of receive time.
    o.projection.tob_interval_ns = 1_000_000;
    let (mut tap, persister) = hermes_persist::start(o).unwrap();
    for (f, _) in &frames {
        tap.frame(f);
    }
    drop(tap);
    persister.finish().unwrap();

    let mut c = Client::connect(&url, NoTls).unwrap();
    let rows = c
        .query(
            "SELECT venue, symbol, (extract(epoch FROM ts) * 1000000)::bigint,
                    bid_px::text, ask_px::text, spread::text, mid::text,
                    microprice::text, imbalance::text, stale, crossed, from_ticker
               FROM top_of_book ORDER BY ts",
            &[],
        )
        .unwrap();
    assert!(rows.len() > 500, "{} top_of_book rows", rows.len());
    let mut from_ticker = 0;
    for r in &rows {
        let key: Key = (r.get(0), r.get(1), r.get(2));
        let t = images
            .get(&key)
            .unwrap_or_else(|| panic!("no slot image for row {key:?}"));
        let (pd, kp) = (8, t.kernels.price_decimals);
        let dec = |v: Option<i64>, d: u8| v.map(|m| Decimal::new(m, d).to_string());
        let want = (
            dec((t.flags & FLAG_HAS_BID != 0).then_some(t.bid_px), pd),
            dec((t.flags & FLAG_HAS_ASK != 0).then_some(t.ask_px), pd),
            dec(t.kernels.spread_ticks, pd),
            dec(t.kernels.mid_px, kp),
            dec(t.kernels.microprice_px, kp),
            dec(t.kernels.imbalance_ppm, 6),
            t.is_stale(),
            t.flags & FLAG_CROSSED != 0,
            t.flags & FLAG_BBO_FROM_TICKER != 0,
        );
        let got = (
            r.get::<_, Option<String>>(3),
            r.get::<_, Option<String>>(4),
            r.get::<_, Option<String>>(5),
            r.get::<_, Option<String>>(6),
            r.get::<_, Option<String>>(7),
            r.get::<_, Option<String>>(8),
            r.get::<_, bool>(9),
            r.get::<_, bool>(10),
            r.get::<_, bool>(11),
        );
        assert_eq!(got, want, "row {key:?}");
        from_ticker += usize::from(got.8);
        assert_eq!(
            t.kernels.levels, 3,
            "the kernel settings reached the book thread"
        );
    }
    // Both sources of best bid/ask were compared: the book and the venue quote.
    assert!(
        from_ticker > 0 && from_ticker < rows.len(),
        "{from_ticker} rows from a ticker"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
