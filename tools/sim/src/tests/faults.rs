//! Every fault kind on every new venue, seen by a client: what it receives with the fault
//! is compared with what it receives from the same market without it. Virtual time is
//! paused, so a `stall` is an hour that passes at once.

use hermes_ingest::Venue;

use super::{Received, Sim, OVERSIZE, STALL};

const FRAMES: u64 = 1_500;
/// The forwarded frame a single fault hits.
const AT: usize = 40;

/// What a client of every channel of `venue` receives, with `faults`.
async fn receive(venue: Venue, faults: &[&str]) -> Received {
    let sim = Sim::start(venue, 2, FRAMES, faults).await;
    let last = sim.last_streamed();
    let mut client = if venue == Venue::CoinbaseExchange {
        let mut c = sim.connect("/").await;
        let ids = serde_json::to_string(&sim.symbols()).unwrap();
        c.send(&format!(
            r#"{{"type":"subscribe","product_ids":{ids},"channels":["level2_batch","matches","ticker","heartbeat"]}}"#
        ))
        .await;
        c
    } else {
        sim.connect_streams().await
    };
    let got = client.until(&last).await;
    assert!(sim.stats.frames.load(std::sync::atomic::Ordering::Relaxed) > 0);
    got
}

/// Frames the subscription answer holds before the forwarded ones (the confirmation,
/// snapshots and `last_match`es of the Exchange).
fn answered(venue: Venue) -> usize {
    if venue == Venue::CoinbaseExchange {
        1 + 2 + 2
    } else {
        0
    }
}

/// Whether a `gap` may drop this frame: the client can tell it is missing.
fn droppable(venue: Venue, f: &str) -> bool {
    match venue {
        Venue::CoinbaseExchange => f.starts_with(r#"{"type":"match""#),
        _ => f.contains("\"e\":\"depthUpdate\""),
    }
}

fn num(f: &str, key: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(f).unwrap();
    let d = v.get("data").unwrap_or(&v);
    d[key].as_u64().unwrap()
}

fn text(f: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(f).unwrap();
    let d = v.get("data").unwrap_or(&v);
    d[key].as_str().unwrap().to_string()
}

/// The client sees the gap: a futures diff whose `pu` is not the previous diff's `u`, a
/// Coinbase Exchange `match` whose `trade_id` jumps by 2.
fn assert_gap_seen(venue: Venue, got: &[String]) {
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    let mut seen = 0;
    for f in got.iter().filter(|f| droppable(venue, f)) {
        let (key, prev, this) = match venue {
            Venue::CoinbaseExchange => {
                let id = num(f, "trade_id");
                (text(f, "product_id"), id - 1, id)
            }
            _ => (text(f, "s"), num(f, "pu"), num(f, "u")),
        };
        if let Some(l) = last.insert(key, this) {
            if l != prev {
                seen += 1;
                if venue == Venue::CoinbaseExchange {
                    assert_eq!(this, l + 2, "one match dropped: {f}");
                }
                assert!(this > l, "{f}");
            }
        }
    }
    assert!(seen > 0, "no gap seen");
}

/// `got` is `clean` with some frames left out; those left out.
fn left_out(clean: &[String], got: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut g = got.iter().peekable();
    for c in clean {
        if g.peek() == Some(&c) {
            g.next();
        } else {
            out.push(c.clone());
        }
    }
    assert!(g.next().is_none(), "frames not in the clean stream");
    out
}

/// Whether a `malformed` or `reorder` may hit this frame (not a level-2 frame of the
/// Exchange, which nothing would tell was torn or moved).
fn sequenced(venue: Venue, f: &str) -> bool {
    venue != Venue::CoinbaseExchange || !(f.contains("l2update") || f.contains("snapshot"))
}

async fn faults_are_observable(venue: Venue) {
    let clean = receive(venue, &[]).await;
    assert!(!clean.closed);
    let clean = clean.frames;
    let first = answered(venue);
    // The index in `clean` of forwarded frame `n`, and back.
    let index = |n: usize| first + n - 1;
    let nth = |k: usize| k + 1 - first;
    let at = index(AT);
    let eligible = |from: usize, ok: &dyn Fn(&str) -> bool| -> usize {
        (from..clean.len())
            .find(|&k| ok(&clean[k]))
            .expect("a frame to hit")
    };

    // disconnect: the stream stops before the frame, and the connection closes.
    let got = receive(venue, &[&format!("disconnect=at:{AT}")]).await;
    assert!(got.closed);
    assert_eq!(got.frames[..], clean[..at]);

    // duplicate: the frame twice.
    let got = receive(venue, &[&format!("duplicate=at:{AT}")])
        .await
        .frames;
    let mut want = clean.clone();
    want.insert(at, clean[at].clone());
    assert_eq!(got, want);

    // reorder: the frame comes after the next one; never a frame nothing would tell was
    // moved.
    let k = eligible(at, &|f| sequenced(venue, f));
    let got = receive(venue, &[&format!("reorder=at:{}", nth(k))])
        .await
        .frames;
    let mut want = clean.clone();
    want.swap(k, k + 1);
    assert_eq!(got, want);
    if k > at {
        let got = receive(venue, &[&format!("reorder=at:{AT}")]).await.frames;
        assert_eq!(got, clean, "a level-2 frame moved");
    }

    // malformed: the frame torn, so it is not JSON.
    let k = eligible(at, &|f| sequenced(venue, f));
    let got = receive(venue, &[&format!("malformed=at:{}", nth(k))])
        .await
        .frames;
    assert_eq!(got.len(), clean.len());
    let torn: Vec<usize> = (0..clean.len()).filter(|&j| got[j] != clean[j]).collect();
    assert_eq!(torn, [k]);
    assert!(clean[k].starts_with(&got[k]));
    assert!(serde_json::from_str::<serde_json::Value>(&got[k]).is_err());

    // oversize: a frame larger than a client's limit comes first.
    let got = receive(venue, &[&format!("oversize=at:{AT}")]).await.frames;
    assert!(got[at].len() > OVERSIZE);
    let mut without = got.clone();
    without.remove(at);
    assert_eq!(without, clean);

    // stall: the same frames, an hour apart at the fault.
    let got = receive(venue, &[&format!("stall=at:{AT}")]).await;
    assert_eq!(got.frames, clean);
    let pause = got.at[at] - got.at[at - 1];
    assert!(pause >= STALL, "{pause:?}");

    // gap: a frame whose loss the client can tell is dropped, and the client sees it
    // (`pu` does not chain, a `trade_id` jumps by 2); on any other frame, nothing.
    let k = eligible(at, &|f| droppable(venue, f));
    let got = receive(venue, &[&format!("gap=at:{}", nth(k))])
        .await
        .frames;
    assert_eq!(left_out(&clean, &got), [clean[k].clone()]);
    assert_gap_seen(venue, &got);
    let k = eligible(at, &|f| !droppable(venue, f));
    let got = receive(venue, &[&format!("gap=at:{}", nth(k))])
        .await
        .frames;
    assert_eq!(got, clean, "a gap dropped {}", clean[k]);
}

#[tokio::test(start_paused = true)]
async fn binance_usdm_faults_are_observable() {
    faults_are_observable(Venue::BinanceUsdm).await;
}

#[tokio::test(start_paused = true)]
async fn binance_coinm_faults_are_observable() {
    faults_are_observable(Venue::BinanceCoinm).await;
}

#[tokio::test(start_paused = true)]
async fn coinbase_exchange_faults_are_observable() {
    faults_are_observable(Venue::CoinbaseExchange).await;
}
