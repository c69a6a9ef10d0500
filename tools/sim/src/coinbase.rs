//! The Coinbase Advanced Trade side: which channel and products a source frame is for,
//! book snapshots and subscription confirmations made by the market, and the
//! connection task that answers `subscribe`/`unsubscribe` and numbers every frame it
//! sends with the connection's own `sequence_num`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use hermes_book::clock::{rfc3339, unix_ns};
use hermes_book::market::Instrument;
use hermes_book::Decimal;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::faults::Faults;
use crate::market::{ClientTx, Control, Outgoing};
use crate::options::SimOptions;
use crate::{SimStats, Ws};

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// How to route a source frame (`v` is `text` parsed): its subscription channel and
/// products; `None` for channels clients do not subscribe to.
pub(crate) fn outgoing(v: &serde_json::Value, text: &str) -> Option<Outgoing> {
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
        products,
        diff: false,
        snapshot,
    })
}

/// A `level2` snapshot event of `product`'s book.
pub(crate) fn snapshot(product: &str, i: &Instrument) -> String {
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
pub(crate) fn confirmation(subs: &HashMap<String, HashSet<String>>) -> String {
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

fn envelope(channel: &str, seq: u64, events: &str) -> String {
    format!(
        r#"{{"channel":"{channel}","client_id":"","timestamp":"{}","sequence_num":{seq},"events":[{events}]}}"#,
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

/// One client connection: its requests go to the market, the market's frames come
/// back through `rx` and go out numbered, with faults.
pub(crate) async fn connection(
    mut ws: Ws,
    id: u64,
    ctrl: mpsc::Sender<Control>,
    tx: ClientTx,
    mut rx: mpsc::Receiver<Arc<Outgoing>>,
    opts: Arc<SimOptions>,
    stats: Arc<SimStats>,
) -> Result<()> {
    let mut seq = 0u64;
    let mut faults = Faults::new(&opts, id);
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(msg) = msg else { return Ok(()) };
                let text = match msg? {
                    Message::Text(t) => t.as_str().to_string(),
                    Message::Close(_) => return Ok(()),
                    _ => continue,
                };
                let client = Client { id, ctrl: &ctrl, tx: &tx, stats: &stats };
                client.request(&mut ws, &text, &mut seq).await?;
            }
            out = rx.recv() => {
                let Some(out) = out else { return Ok(()) };
                let text = renumber(&out.text, seq);
                seq += 1;
                if !faults.send(&mut ws, text, true, &opts, &stats).await? {
                    return Ok(());
                }
            }
        }
    }
}

/// Who a connection is, to the market.
struct Client<'a> {
    id: u64,
    ctrl: &'a mpsc::Sender<Control>,
    tx: &'a ClientTx,
    stats: &'a SimStats,
}

impl Client<'_> {
    /// A client's request: subscribe (answered with the confirmation and snapshots,
    /// numbered from `seq`) or unsubscribe; anything else is answered with an error.
    async fn request(&self, ws: &mut Ws, text: &str, seq: &mut u64) -> Result<()> {
        let Ok(sub) = serde_json::from_str::<SubscribeMsg>(text) else {
            let err = format!(
                r#"{{"type":"error","message":"failure to parse: {}"}}"#,
                text.len()
            );
            ws.send(Message::text(err)).await?;
            return Ok(());
        };
        let Some(channel) = sub.channel else {
            ws.send(Message::text(
                r#"{"type":"error","message":"channel is required"}"#,
            ))
            .await?;
            return Ok(());
        };
        match sub.kind.as_str() {
            "subscribe" => {
                let (reply, answer) = oneshot::channel();
                self.ctrl
                    .send(Control::Subscribe {
                        client: self.id,
                        channel,
                        products: sub.product_ids,
                        tx: self.tx.clone(),
                        reply,
                    })
                    .await?;
                for f in answer.await? {
                    let (ch, events) = f.split_once('\u{0}').unwrap_or(("subscriptions", &f));
                    ws.feed(Message::text(envelope(ch, *seq, events))).await?;
                    *seq += 1;
                    // Relaxed: a counter for reports.
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                }
                ws.flush().await?;
            }
            "unsubscribe" => {
                self.ctrl
                    .send(Control::Unsubscribe {
                        client: self.id,
                        channel,
                        products: sub.product_ids,
                    })
                    .await?;
            }
            other => {
                ws.send(Message::text(format!(
                    r#"{{"type":"error","message":"unknown type {other}"}}"#
                )))
                .await?;
            }
        }
        Ok(())
    }
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
}
