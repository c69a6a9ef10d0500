//! The Binance side: which combined stream a source frame belongs to, the REST depth
//! snapshot made by the market, the streams a client asks for in its URL, and the
//! connection task that forwards the market's frames (a client sends nothing).

use std::sync::Arc;

use anyhow::Result;
use futures_util::StreamExt;
use hermes_book::market::Instrument;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::faults::Faults;
use crate::market::Outgoing;
use crate::options::SimOptions;
use crate::synth::fixed;
use crate::{SimStats, Ws};

/// How to route a source frame (`v` is `text` parsed): its stream name, and whether it
/// is a depth diff.
pub(crate) fn outgoing(v: &serde_json::Value, text: &str) -> Option<Outgoing> {
    let stream = v.get("stream")?.as_str()?.to_string();
    let diff = v
        .get("data")
        .and_then(|d| d.get("e"))
        .and_then(|e| e.as_str())
        == Some("depthUpdate");
    Some(Outgoing {
        text: text.to_string(),
        route: stream,
        products: Vec::new(),
        diff,
        snapshot: false,
    })
}

/// The `/api/v3/depth` answer for a book: its best `limit` levels per side.
pub(crate) fn depth(i: &Instrument, limit: usize) -> String {
    let (pd, sd) = (i.scale.price_decimals, i.scale.size_decimals);
    let side = |levels: Vec<hermes_book::Level>| {
        levels
            .iter()
            .take(limit)
            .map(|l| format!(r#"["{}","{}"]"#, fixed(l.price.0, pd), fixed(l.qty.0, sd)))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        r#"{{"lastUpdateId":{},"bids":[{}],"asks":[{}]}}"#,
        i.top.update_id,
        side(i.book.bids().collect()),
        side(i.book.asks().collect())
    )
}

/// The streams of a `/stream?streams=a/b/c` request path; empty if none.
pub(crate) fn streams_of(path: &str) -> Vec<String> {
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

/// One client connection: the market's frames come through `rx` and go out with
/// faults.
pub(crate) async fn connection(
    mut ws: Ws,
    id: u64,
    mut rx: mpsc::Receiver<Arc<Outgoing>>,
    opts: Arc<SimOptions>,
    stats: Arc<SimStats>,
) -> Result<()> {
    let mut faults = Faults::new(&opts, id);
    loop {
        tokio::select! {
            msg = ws.next() => {
                match msg {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(_)) => {}
                }
            }
            out = rx.recv() => {
                let Some(out) = out else { return Ok(()) };
                if !faults.send(&mut ws, out.text.clone(), out.diff, &opts, &stats).await? {
                    return Ok(());
                }
            }
        }
    }
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
    }
}
