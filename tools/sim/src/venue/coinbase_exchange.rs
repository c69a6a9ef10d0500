//! The Coinbase Exchange feed (the legacy `ws-feed`): a client sends
//! `{"type":"subscribe","product_ids":[…],"channels":[…]}` (a channel is a name or
//! `{"name":…,"product_ids":[…]}`; `unsubscribe` likewise) and the server answers with
//! `{"type":"subscriptions","channels":[{"name","product_ids"}…]}`, then per product a
//! `snapshot` for `level2`/`level2_batch` and the latest trade as a `last_match` for
//! `matches`. Bad requests get an `error` frame.
//!
//! Level-2 frames carry no sequence number, so nothing would tell a client one was lost,
//! torn or moved: a `gap` drops a `match` instead (its `trade_id` jumps by 2), and
//! `malformed` and `reorder` leave level-2 frames alone.

use std::net::SocketAddr;

use hermes_book::market::Instrument;

use super::binance::levels;
use super::{
    json_str, Answer, ChannelList, Delivery, Exposure, Opening, Outgoing, Request, SimVenue, Subs,
    View,
};
use crate::feed::Owned;
use crate::synth::fixed_at_least;

/// The Coinbase Exchange protocol.
pub(crate) struct CoinbaseExchange;

/// The channels the simulator serves; the `_batch` ones are their plain channel's frames.
const CHANNELS: [&str; 6] = [
    "level2",
    "level2_batch",
    "matches",
    "ticker",
    "ticker_batch",
    "heartbeat",
];

impl SimVenue for CoinbaseExchange {
    /// Everything up to the first `l2update`: confirmations, snapshots, `last_match`es.
    fn is_setup(&self, f: &Owned, _: &Opening<'_>) -> bool {
        !f.data.contains("\"type\":\"l2update\"")
    }

    fn route(&self, v: &serde_json::Value, text: &str) -> Option<Outgoing> {
        let kind = v.get("type")?.as_str()?;
        let product = v.get("product_id")?.as_str()?.to_string();
        let (route, delivery) = match kind {
            "snapshot" => ("level2", Delivery::FirstSnapshot),
            "l2update" => ("level2", Delivery::Stream),
            "match" => ("matches", Delivery::Stream),
            // Sent on subscribe only, made from the latest match.
            "last_match" => ("matches", Delivery::Keep),
            "ticker" => ("ticker", Delivery::Stream),
            "heartbeat" => ("heartbeat", Delivery::Stream),
            _ => return None,
        };
        Some(Outgoing {
            text: text.to_string(),
            route: route.into(),
            products: Some(vec![product]),
            delivery,
            keep: route == "matches",
            exposure: Exposure {
                gap: kind == "match",
                unsequenced: route == "level2",
            },
        })
    }

    fn request(&self, text: &str) -> Request {
        match parse_request(text) {
            Ok(r) => r,
            Err(reason) => Request::Refuse(format!(
                r#"{{"type":"error","message":"Failed to subscribe","reason":{}}}"#,
                json_str(&reason)
            )),
        }
    }

    fn route_of<'a>(&self, channel: &'a str) -> &'a str {
        channel.strip_suffix("_batch").unwrap_or(channel)
    }

    /// The confirmation with every channel the client now has, then, for what it just
    /// subscribed to, a snapshot of each `level2` product whose book exists (the others
    /// get the source's first snapshot when it comes) and the latest `matches` trade as a
    /// `last_match`.
    fn answer(&self, subs: &Subs, asked: &ChannelList, subscribe: bool, view: &View<'_>) -> Answer {
        let mut answer = Answer {
            frames: vec![confirmation(subs)],
            awaiting: Vec::new(),
        };
        if !subscribe {
            return answer;
        }
        for (channel, products) in asked {
            for p in products {
                match self.route_of(channel) {
                    "level2" => match view.book(p) {
                        Some(i) => answer.frames.push(snapshot(p, i)),
                        None => answer.awaiting.push(p.clone()),
                    },
                    "matches" => {
                        if let Some(m) = view.latest("matches", p) {
                            answer.frames.push(m.replacen(
                                "\"type\":\"match\"",
                                "\"type\":\"last_match\"",
                                1,
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        answer
    }

    /// Nothing the feed says is JSON with a `channel`: a `status` frame.
    fn oversize(&self, pad: &str) -> String {
        format!(r#"{{"type":"status","pad":"{pad}"}}"#)
    }

    fn endpoints(&self, addr: SocketAddr) -> String {
        format!(" (COINBASE_EXCHANGE_WS_URL=ws://{addr})")
    }
}

/// A `subscribe` or `unsubscribe`, or why it is refused.
fn parse_request(text: &str) -> Result<Request, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let products = |v: &serde_json::Value| -> Result<Vec<String>, String> {
        match v.get("product_ids") {
            None => Ok(Vec::new()),
            Some(list) => list
                .as_array()
                .ok_or("product_ids must be an array")?
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "a product id must be a string".to_string())
                })
                .collect(),
        }
    };
    let subscribe = match v.get("type").and_then(|t| t.as_str()) {
        Some("subscribe") => true,
        Some("unsubscribe") => false,
        _ => return Err("type has to be either subscribe or unsubscribe".into()),
    };
    let everywhere = products(&v)?;
    let channels = v
        .get("channels")
        .and_then(|c| c.as_array())
        .filter(|c| !c.is_empty())
        .ok_or("channels must be a non-empty array")?;
    let mut list: Vec<(String, Vec<String>)> = Vec::new();
    for c in channels {
        let (name, own) = match c {
            serde_json::Value::String(name) => (name.clone(), Vec::new()),
            serde_json::Value::Object(_) => (
                c.get("name")
                    .and_then(|n| n.as_str())
                    .ok_or("a channel object needs a name")?
                    .to_string(),
                products(c)?,
            ),
            _ => return Err("a channel must be a name or an object".into()),
        };
        if !CHANNELS.contains(&name.as_str()) {
            return Err(format!("{name} is not a valid channel"));
        }
        let mut ps = everywhere.clone();
        ps.extend(own);
        let mut seen = std::collections::HashSet::new();
        ps.retain(|p| seen.insert(p.clone()));
        list.push((name, ps));
    }
    if subscribe {
        if let Some((name, _)) = list.iter().find(|(_, ps)| ps.is_empty()) {
            return Err(format!("no product ids for channel {name}"));
        }
        Ok(Request::Subscribe(list))
    } else {
        // A channel named without products leaves it entirely.
        Ok(Request::Unsubscribe(
            list.into_iter()
                .map(|(name, ps)| (name, (!ps.is_empty()).then_some(ps)))
                .collect(),
        ))
    }
}

/// `{"type":"subscriptions","channels":[…]}`: the channels with products, sorted.
fn confirmation(subs: &Subs) -> String {
    let mut list: Vec<(&String, Vec<&String>)> = subs
        .iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(ch, ps)| {
            let mut ps: Vec<&String> = ps.iter().collect();
            ps.sort();
            (ch, ps)
        })
        .collect();
    list.sort();
    let channels: Vec<String> = list
        .iter()
        .map(|(ch, ps)| {
            let ps: Vec<String> = ps.iter().map(|p| json_str(p)).collect();
            format!(
                r#"{{"name":{},"product_ids":[{}]}}"#,
                json_str(ch),
                ps.join(",")
            )
        })
        .collect();
    format!(
        r#"{{"type":"subscriptions","channels":[{}]}}"#,
        channels.join(",")
    )
}

/// A `snapshot` of `product`'s book: `asks` and `bids` as `[price, size]`, best first.
fn snapshot(product: &str, i: &Instrument) -> String {
    let (pd, sd) = (i.scale.price_decimals, i.scale.size_decimals);
    let price = |p| fixed_at_least(p, pd, 2);
    let size = |s| fixed_at_least(s, sd, 8);
    format!(
        r#"{{"type":"snapshot","product_id":{},"asks":[{}],"bids":[{}]}}"#,
        json_str(product),
        levels(i, false, usize::MAX, price, size),
        levels(i, true, usize::MAX, price, size),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_names_or_objects() {
        let r = CoinbaseExchange.request(
            r#"{"type":"subscribe","product_ids":["A-USD"],"channels":["level2_batch",{"name":"ticker","product_ids":["B-USD"]}]}"#,
        );
        assert_eq!(
            r,
            Request::Subscribe(vec![
                ("level2_batch".into(), vec!["A-USD".into()]),
                ("ticker".into(), vec!["A-USD".into(), "B-USD".into()]),
            ])
        );
        assert_eq!(
            CoinbaseExchange.request(r#"{"type":"unsubscribe","channels":["heartbeat"]}"#),
            Request::Unsubscribe(vec![("heartbeat".into(), None)])
        );
        for (bad, why) in [
            (
                r#"{"type":"subscribe","product_ids":["A-USD"],"channels":["full"]}"#,
                "full is not a valid channel",
            ),
            (
                r#"{"type":"subscribe","channels":["matches"]}"#,
                "no product ids",
            ),
            (r#"{"type":"hello"}"#, "either subscribe or unsubscribe"),
            ("{", "malformed JSON"),
        ] {
            match CoinbaseExchange.request(bad) {
                Request::Refuse(e) => {
                    assert!(
                        e.starts_with(r#"{"type":"error""#) && e.contains(why),
                        "{e}"
                    )
                }
                r => panic!("{bad}: {r:?}"),
            }
        }
    }
}
