//! Coinbase Advanced Trade: which channel and products a source frame is for, book
//! snapshots and subscription confirmations made by the market, `subscribe` and
//! `unsubscribe` (one `channel` per message), and every frame numbered with the
//! connection's own `sequence_num`.

use hermes_book::clock::{rfc3339, unix_ns};
use hermes_book::market::Instrument;
use hermes_book::Decimal;

use super::{
    json_str, Answer, ChannelList, Delivery, Exposure, Opening, Outgoing, Request, SimVenue, Subs,
    View,
};
use crate::feed::Owned;

/// The Coinbase Advanced Trade protocol.
pub(crate) struct CoinbaseAdvanced;

impl SimVenue for CoinbaseAdvanced {
    /// Subscription confirmations and snapshots up to the first level-2 update.
    fn is_setup(&self, f: &Owned, _: &Opening<'_>) -> bool {
        !f.data.contains("\"type\":\"update\"") || !f.data.contains("\"channel\":\"l2_data\"")
    }

    /// Its subscription channel and products; `None` for channels clients do not
    /// subscribe to. Every frame carries a `sequence_num`, so a `gap` may drop any.
    fn route(&self, v: &serde_json::Value, text: &str) -> Option<Outgoing> {
        let channel = v.get("channel")?.as_str()?;
        let route = match channel {
            "l2_data" => "level2",
            "market_trades" | "ticker" | "heartbeats" | "candles" | "ticker_batch" => channel,
            _ => return None,
        };
        let mut products = Vec::new();
        let mut snapshot = false;
        for ev in v.get("events")?.as_array()? {
            snapshot |= ev.get("type").and_then(|t| t.as_str()) == Some("snapshot");
            if let Some(p) = ev.get("product_id").and_then(|p| p.as_str()) {
                products.push(p.to_string());
            }
            for list in ["trades", "tickers", "candles"] {
                for t in ev
                    .get(list)
                    .and_then(|t| t.as_array())
                    .into_iter()
                    .flatten()
                {
                    if let Some(p) = t.get("product_id").and_then(|p| p.as_str()) {
                        products.push(p.to_string());
                    }
                }
            }
        }
        products.sort();
        products.dedup();
        // Book snapshots are made per subscription; a source snapshot only goes to clients
        // that subscribed before the simulator had that book.
        let snapshot = route == "level2" && snapshot;
        Some(Outgoing {
            text: text.to_string(),
            route: route.into(),
            // Heartbeats name no product: every subscriber gets them.
            products: (route != "heartbeats").then_some(products),
            delivery: if snapshot {
                Delivery::FirstSnapshot
            } else {
                Delivery::Stream
            },
            keep: false,
            exposure: Exposure {
                gap: true,
                unsequenced: false,
            },
        })
    }

    /// `subscribe` or `unsubscribe` of one `channel`; anything else is answered with an
    /// error.
    fn request(&self, text: &str) -> Request {
        let Ok(sub) = serde_json::from_str::<SubscribeMsg>(text) else {
            return Request::Refuse(format!(
                r#"{{"type":"error","message":"failure to parse: {}"}}"#,
                text.len()
            ));
        };
        let Some(channel) = sub.channel else {
            return Request::Refuse(r#"{"type":"error","message":"channel is required"}"#.into());
        };
        match sub.kind.as_str() {
            "subscribe" => Request::Subscribe(vec![(channel, sub.product_ids)]),
            "unsubscribe" => Request::Unsubscribe(vec![(channel, Some(sub.product_ids))]),
            other => Request::Refuse(format!(
                r#"{{"type":"error","message":"unknown type {other}"}}"#
            )),
        }
    }

    /// A subscription is answered with the confirmation, then a `level2` snapshot of
    /// each product whose book exists (the others get the source's first snapshot when
    /// it comes); an unsubscription with nothing.
    fn answer(&self, subs: &Subs, asked: &ChannelList, subscribe: bool, view: &View<'_>) -> Answer {
        let mut answer = Answer::default();
        if !subscribe {
            return answer;
        }
        let mut snapshots = Vec::new();
        for (channel, products) in asked {
            if channel != "level2" {
                continue;
            }
            for p in products {
                match view.book(p) {
                    Some(i) => snapshots.push(envelope("l2_data", &snapshot(p, i))),
                    None => answer.awaiting.push(p.clone()),
                }
            }
        }
        answer
            .frames
            .push(envelope("subscriptions", &confirmation(subs)));
        answer.frames.extend(snapshots);
        answer
    }

    /// `text` numbered with the connection's next `sequence_num`.
    fn stamp(&self, text: &str, seq: &mut u64) -> String {
        let t = renumber(text, *seq);
        *seq += 1;
        t
    }
}

/// A `level2` snapshot event of `product`'s book.
fn snapshot(product: &str, i: &Instrument) -> String {
    let (pd, sd) = (i.scale.price_decimals, i.scale.size_decimals);
    let time = rfc3339(unix_ns());
    let mut ups = Vec::new();
    for (side, levels) in [
        ("bid", i.book.bids().collect::<Vec<_>>()),
        ("offer", i.book.asks().collect()),
    ] {
        for l in levels {
            ups.push(format!(
                r#"{{"side":"{side}","event_time":"{time}","price_level":"{}","new_quantity":"{}"}}"#,
                Decimal::new(l.price.0, pd),
                Decimal::new(l.qty.0, sd)
            ));
        }
    }
    format!(
        r#"{{"type":"snapshot","product_id":{},"updates":[{}]}}"#,
        json_str(product),
        ups.join(",")
    )
}

/// The `subscriptions` event listing a client's channels and products, sorted.
fn confirmation(subs: &Subs) -> String {
    let mut list = Vec::new();
    for (ch, ps) in subs {
        let mut ps: Vec<&String> = ps.iter().collect();
        ps.sort();
        let products: Vec<String> = ps.iter().map(|p| json_str(p)).collect();
        list.push(format!("{}:[{}]", json_str(ch), products.join(",")));
    }
    list.sort();
    format!(r#"{{"subscriptions":{{{}}}}}"#, list.join(","))
}

/// `text` with its `sequence_num` replaced by `seq`.
fn renumber(text: &str, seq: u64) -> String {
    const KEY: &str = "\"sequence_num\":";
    match text.find(KEY) {
        Some(i) => {
            let start = i + KEY.len();
            let end = text[start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(text.len(), |e| start + e);
            format!("{}{}{}", &text[..start], seq, &text[end..])
        }
        None => text.to_string(),
    }
}

/// One event in a `channel` envelope; its `sequence_num` is set when it is sent.
fn envelope(channel: &str, events: &str) -> String {
    format!(
        r#"{{"channel":"{channel}","client_id":"","timestamp":"{}","sequence_num":0,"events":[{events}]}}"#,
        rfc3339(unix_ns())
    )
}

#[derive(serde::Deserialize)]
struct SubscribeMsg {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    product_ids: Vec<String>,
    #[serde(default)]
    channel: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbers_sequence() {
        assert_eq!(
            renumber(r#"{"a":1,"sequence_num":1234,"b":2}"#, 7),
            r#"{"a":1,"sequence_num":7,"b":2}"#
        );
    }

    #[test]
    fn requests_name_one_channel() {
        let v = CoinbaseAdvanced;
        assert_eq!(
            v.request(r#"{"type":"subscribe","product_ids":["A-USD"],"channel":"level2"}"#),
            Request::Subscribe(vec![("level2".into(), vec!["A-USD".into()])])
        );
        assert!(matches!(
            v.request(r#"{"type":"subscribe","product_ids":["A-USD"]}"#),
            Request::Refuse(e) if e.contains("channel is required")
        ));
        assert!(matches!(v.request("{"), Request::Refuse(e) if e.contains("failure to parse")));
    }
}
