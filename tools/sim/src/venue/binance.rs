//! Binance spot: combined streams (`/stream?streams=a/b/c`, a client sends nothing),
//! the REST depth snapshot `/api/v3/depth` made by the market, and what the futures
//! venues share with it (streams in the URL, routing by stream name, the opening).

use std::net::SocketAddr;

use hermes_book::market::Instrument;

use super::{ChannelList, DepthQuery, Exposure, Opening, Outgoing, RestRoute, SimVenue};
use crate::feed::Owned;
use crate::synth::fixed;

/// The Binance spot protocol.
pub(crate) struct BinanceSpot;

impl SimVenue for BinanceSpot {
    fn is_setup(&self, f: &Owned, opening: &Opening<'_>) -> bool {
        is_setup(f, opening)
    }

    fn route(&self, v: &serde_json::Value, text: &str) -> Option<Outgoing> {
        route(v, text)
    }

    fn url_subscriptions(&self, path: &str) -> Result<ChannelList, String> {
        url_subscriptions(path)
    }

    fn rest(&self) -> Option<RestRoute> {
        Some(RestRoute {
            path: "/api/v3/depth",
            max_limit: 5000,
            next_diff: false,
        })
    }

    /// The book's best `limit` levels per side, `lastUpdateId` its last diff's `u`: the
    /// next diff starts at `u + 1`.
    fn depth(&self, q: &DepthQuery<'_>) -> String {
        let i = q.book;
        let (pd, sd) = (i.scale.price_decimals, i.scale.size_decimals);
        format!(
            r#"{{"lastUpdateId":{},"bids":[{}],"asks":[{}]}}"#,
            i.top.update_id,
            levels(i, true, q.limit, |p| fixed(p, pd), |s| fixed(s, sd)),
            levels(i, false, q.limit, |p| fixed(p, pd), |s| fixed(s, sd)),
        )
    }

    fn endpoints(&self, addr: SocketAddr) -> String {
        format!(" (streams: ws://{addr}/stream?streams=…, REST: http://{addr}/api/v3/depth)")
    }
}

/// Frames until a first REST snapshot, REST snapshots, and diffs of symbols not yet
/// synced.
pub(super) fn is_setup(f: &Owned, opening: &Opening<'_>) -> bool {
    if !opening.saw_rest {
        return true;
    }
    if !f.data.contains("depthUpdate") {
        return false;
    }
    let sym = f
        .data
        .split("\"s\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("");
    opening.unsynced(sym)
}

/// A combined-stream frame goes to the clients of its stream; a `gap` may drop a depth
/// diff (the next one's ids tell).
pub(super) fn route(v: &serde_json::Value, text: &str) -> Option<Outgoing> {
    let stream = v.get("stream")?.as_str()?;
    let diff = v
        .get("data")
        .and_then(|d| d.get("e"))
        .and_then(|e| e.as_str())
        == Some("depthUpdate");
    let mut out = Outgoing::stream(text, stream, None);
    out.exposure = Exposure {
        gap: diff,
        unsequenced: false,
    };
    Some(out)
}

/// The streams of a `/stream?streams=a/b/c` request path, each a channel.
pub(super) fn url_subscriptions(path: &str) -> Result<ChannelList, String> {
    let streams = streams_of(path);
    if streams.is_empty() {
        return Err(format!("Binance connection without ?streams=: {path}"));
    }
    Ok(streams.into_iter().map(|s| (s, Vec::new())).collect())
}

/// The streams of a `/stream?streams=a/b/c` request path; empty if none.
fn streams_of(path: &str) -> Vec<String> {
    path.split_once("streams=")
        .map(|(_, s)| {
            s.split('&')
                .next()
                .unwrap_or("")
                .split('/')
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The best `limit` levels of one side as `["price","size"]` pairs.
pub(super) fn levels(
    i: &Instrument,
    bids: bool,
    limit: usize,
    price: impl Fn(i64) -> String,
    size: impl Fn(i64) -> String,
) -> String {
    let side: Vec<hermes_book::Level> = if bids {
        i.book.bids().take(limit).collect()
    } else {
        i.book.asks().take(limit).collect()
    };
    side.iter()
        .map(|l| format!(r#"["{}","{}"]"#, price(l.price.0), size(l.qty.0)))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_numbers_have_fixed_decimals() {
        assert_eq!(fixed(6_183_763_000_000, 8), "61837.63000000");
        assert_eq!(fixed(5, 2), "0.05");
        assert_eq!(fixed(-5, 2), "-0.05");
        assert_eq!(fixed(42, 0), "42");
    }

    #[test]
    fn streams_come_from_the_path() {
        assert_eq!(
            streams_of("/stream?streams=btcusdt@trade/ethusdt@depth@100ms&x=1"),
            ["btcusdt@trade", "ethusdt@depth@100ms"]
        );
        assert!(streams_of("/ws").is_empty());
        assert!(url_subscriptions("/ws").unwrap_err().contains("?streams="));
    }
}
