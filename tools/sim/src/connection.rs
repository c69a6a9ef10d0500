//! One client's WebSocket, the same for every venue: its subscriptions (from its URL or
//! its messages, as the venue reads them) go to the market, the market's answers and
//! frames come back and go out stamped for this connection (Coinbase Advanced Trade's
//! `sequence_num`), the frames with faults injected.
//!
//! An answer goes out right after the frames the market routed to the client before it
//! made the answer, never before them: a snapshot is followed only by newer frames.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::faults::Faults;
use crate::market::{Answered, ClientTx, Control};
use crate::venue::{ChannelList, Outgoing, Request};
use crate::{Shared, Ws};

/// A connection's sending side: the frames the market routes to it, how many were
/// taken, and the per-connection state of stamping and faults.
struct Out {
    rx: mpsc::Receiver<Arc<Outgoing>>,
    taken: u64,
    seq: u64,
    faults: Faults,
}

impl Out {
    /// Sends one routed frame with faults; `Ok(false)`: the connection is to close.
    async fn forward(&mut self, ws: &mut Ws, out: &Outgoing, shared: &Shared) -> Result<bool> {
        self.taken += 1;
        let text = shared.sim.stamp(&out.text, &mut self.seq);
        self.faults
            .send(ws, text, out.exposure, &shared.opts, &shared.stats)
            .await
    }

    /// Sends the frames routed before `answer`, then the answer, stamped, without
    /// faults; `Ok(false)`: the connection is to close.
    async fn answer(&mut self, ws: &mut Ws, answer: Answered, shared: &Shared) -> Result<bool> {
        while self.taken < answer.after {
            let Some(out) = self.rx.recv().await else {
                return Ok(false);
            };
            if !self.forward(ws, &out, shared).await? {
                return Ok(false);
            }
        }
        if answer.frames.is_empty() {
            return Ok(true);
        }
        for f in answer.frames {
            ws.feed(Message::text(shared.sim.stamp(&f, &mut self.seq)))
                .await?;
            // Relaxed: a counter for reports.
            shared.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        ws.flush().await?;
        Ok(true)
    }
}

/// Serves client `id` until it or the market goes: `url_subs` are the subscriptions its
/// request path carried.
pub(crate) async fn serve(
    mut ws: Ws,
    id: u64,
    url_subs: ChannelList,
    tx: ClientTx,
    rx: mpsc::Receiver<Arc<Outgoing>>,
    shared: Arc<Shared>,
) -> Result<()> {
    let sim = shared.sim;
    let mut out = Out {
        rx,
        taken: 0,
        seq: 0,
        faults: Faults::new(sim, &shared.opts, id),
    };
    if !url_subs.is_empty() {
        let answer = subscribe(&shared, id, url_subs, &tx).await?;
        if !out.answer(&mut ws, answer, &shared).await? {
            return Ok(());
        }
    }
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(msg) = msg else { return Ok(()) };
                let text = match msg? {
                    Message::Text(t) => t.as_str().to_string(),
                    Message::Close(_) => return Ok(()),
                    _ => continue,
                };
                let answer = match sim.request(&text) {
                    Request::Subscribe(channels) => subscribe(&shared, id, channels, &tx).await?,
                    Request::Unsubscribe(channels) => {
                        let (reply, answer) = oneshot::channel();
                        shared.ctrl.send(Control::Unsubscribe { client: id, channels, reply }).await?;
                        answer.await?
                    }
                    Request::Refuse(err) => {
                        ws.send(Message::text(err)).await?;
                        continue;
                    }
                    Request::Ignore => continue,
                };
                if !out.answer(&mut ws, answer, &shared).await? {
                    return Ok(());
                }
            }
            routed = out.rx.recv() => {
                let Some(routed) = routed else { return Ok(()) };
                if !out.forward(&mut ws, &routed, &shared).await? {
                    return Ok(());
                }
            }
        }
    }
}

/// Asks the market to subscribe the client.
async fn subscribe(
    shared: &Shared,
    client: u64,
    channels: ChannelList,
    tx: &ClientTx,
) -> Result<Answered> {
    let (reply, answer) = oneshot::channel();
    shared
        .ctrl
        .send(Control::Subscribe {
            client,
            channels,
            tx: tx.clone(),
            reply,
        })
        .await?;
    Ok(answer.await?)
}
