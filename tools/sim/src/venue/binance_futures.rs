//! Binance futures, USD-M (`fstream`, REST `/fapi/v1/depth`) and COIN-M (`dstream`,
//! REST `/dapi/v1/depth`): the combined streams of spot, with depth diffs chained by `pu`
//! and a REST snapshot that carries the engine's time (`E`, `T`; COIN-M adds `symbol`
//! and `pair`).
//!
//! A futures diff's `U` is not the previous `u + 1`: ids between two diffs belong to
//! events no diff carries. A client syncs on the first diff with `U ≤ lastUpdateId ≤ u`,
//! so the snapshot's `lastUpdateId` is the `U` of the next diff the market will send (it
//! looks ahead in the source for it): the book as it is now, plus that whole diff, is the
//! book after it, whichever diffs the client already has.

use std::net::SocketAddr;

use hermes_ingest::Venue;

use super::binance::{is_setup, levels, route, url_subscriptions};
use super::{json_str, ChannelList, DepthQuery, Opening, Outgoing, RestRoute, SimVenue};
use crate::feed::Owned;
use crate::synth::fixed_at_least;

/// A Binance futures protocol: USD-M or COIN-M.
pub(crate) struct BinanceFutures {
    venue: Venue,
    rest_path: &'static str,
    /// Prefix of the live client's environment variables (`BINANCE_USDM`).
    env: &'static str,
    /// Fewest decimals shown for prices and sizes (`61800.20`, `0.014`; COIN-M sizes are
    /// whole contracts).
    min_decimals: (u8, u8),
}

/// Binance USD-M futures.
pub(crate) const USDM: BinanceFutures = BinanceFutures {
    venue: Venue::BinanceUsdm,
    rest_path: "/fapi/v1/depth",
    env: "BINANCE_USDM",
    min_decimals: (2, 3),
};

/// Binance COIN-M futures.
pub(crate) const COINM: BinanceFutures = BinanceFutures {
    venue: Venue::BinanceCoinm,
    rest_path: "/dapi/v1/depth",
    env: "BINANCE_COINM",
    min_decimals: (1, 0),
};

impl SimVenue for BinanceFutures {
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
            path: self.rest_path,
            max_limit: 1000,
            next_diff: true,
        })
    }

    /// `{"lastUpdateId","E","T",["symbol","pair",]"bids","asks"}`; `lastUpdateId` is
    /// the next diff's `U` (or the last diff's `u` when none follows).
    fn depth(&self, q: &DepthQuery<'_>) -> String {
        let i = q.book;
        let last = i.top.update_id;
        let id = q.next_first_id.map_or(last, |u| u.max(last));
        let (pd, sd) = (i.scale.price_decimals, i.scale.size_decimals);
        let (mp, ms) = self.min_decimals;
        let price = |p| fixed_at_least(p, pd, mp);
        let size = |s| fixed_at_least(s, sd, ms);
        let names = if self.venue == Venue::BinanceCoinm {
            let pair = q.symbol.split('_').next().unwrap_or(q.symbol);
            format!(
                r#""symbol":{},"pair":{},"#,
                json_str(q.symbol),
                json_str(pair)
            )
        } else {
            String::new()
        };
        format!(
            r#"{{"lastUpdateId":{id},"E":{},"T":{},{names}"bids":[{}],"asks":[{}]}}"#,
            q.now_ms,
            q.now_ms,
            levels(i, true, q.limit, price, size),
            levels(i, false, q.limit, price, size),
        )
    }

    fn diff_first_id(&self, f: &Owned, symbol: &str) -> Option<u64> {
        if f.venue != self.venue
            || f.rest_symbol.is_some()
            || !f.data.contains("\"depthUpdate\"")
            || !f.data.contains(&format!("\"s\":{}", json_str(symbol)))
        {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&f.data).ok()?;
        let d = v.get("data").unwrap_or(&v);
        (d.get("s")?.as_str()? == symbol)
            .then(|| d.get("U")?.as_u64())
            .flatten()
    }

    fn endpoints(&self, addr: SocketAddr) -> String {
        format!(
            " (streams: ws://{addr}/stream?streams=…, REST: http://{addr}{}; {}_WS_URL=ws://{addr} {}_REST_URL=http://{addr})",
            self.rest_path, self.env, self.env
        )
    }
}
