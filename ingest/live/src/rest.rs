//! Binance REST depth snapshots: the blocking fetch (run on tokio's blocking pool), the
//! request-weight budget of the last minute with any `Retry-After` pause, and the
//! per-connection queue of symbols waiting for a snapshot.

use std::collections::VecDeque;

use hermes_ingest::venue::VenueProtocol;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// One REST depth fetch's outcome.
pub(crate) enum Rest {
    /// The snapshot.
    Body(String),
    /// 429 or 418: wait this long before the next request.
    RetryAfter(Duration, u16),
    /// Anything else.
    Failed(String),
}

fn fetch_depth(url: String) -> Rest {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    match agent.get(&url).call() {
        Err(e) => Rest::Failed(format!("{url}: {e}")),
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            if status == 429 || status == 418 {
                let secs = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1);
                return Rest::RetryAfter(Duration::from_secs(secs.max(1)), status);
            }
            let body = resp
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string();
            match (status, body) {
                (200, Ok(b)) => Rest::Body(b),
                (s, Ok(b)) => Rest::Failed(format!(
                    "{url}: HTTP {s}: {}",
                    b.chars().take(200).collect::<String>()
                )),
                (_, Err(e)) => Rest::Failed(format!("{url}: {e}")),
            }
        }
    }
}

/// The request weight spent in the last minute and any `Retry-After` pause; both
/// outlive a connection.
pub(crate) struct WeightBudget {
    spent: VecDeque<(Instant, u32)>,
    paused_until: Instant,
}

impl WeightBudget {
    pub(crate) fn new() -> WeightBudget {
        WeightBudget {
            spent: VecDeque::new(),
            paused_until: Instant::now(),
        }
    }

    /// Whether a request of `weight` may start at `now` within `per_minute` (a request
    /// heavier than the whole budget still goes alone).
    fn allows(&mut self, now: Instant, weight: u32, per_minute: u32) -> bool {
        while self
            .spent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.spent.pop_front();
        }
        let used: u32 = self.spent.iter().map(|(_, w)| w).sum();
        now >= self.paused_until && used + weight <= per_minute.max(weight)
    }
}

/// The symbols one connection still needs a depth snapshot of, and the one being
/// fetched (one at a time).
pub(crate) struct SnapshotQueue<'b> {
    queue: VecDeque<String>,
    in_flight: Option<(String, JoinHandle<Rest>)>,
    budget: &'b mut WeightBudget,
}

impl<'b> SnapshotQueue<'b> {
    /// A new connection needs every symbol's snapshot.
    pub(crate) fn new(symbols: &[String], budget: &'b mut WeightBudget) -> SnapshotQueue<'b> {
        SnapshotQueue {
            queue: symbols.iter().cloned().collect(),
            in_flight: None,
            budget,
        }
    }

    /// Whether a fetch is under way.
    pub(crate) fn fetching(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The fetch under way, once it ends; call only while [`Self::fetching`]. Dropping
    /// the future leaves the fetch in flight.
    pub(crate) async fn fetched(&mut self) -> (String, Rest) {
        let (_, handle) = self.in_flight.as_mut().expect("guarded by fetching()");
        let rest = handle.await.unwrap_or_else(|e| Rest::Failed(e.to_string()));
        let (symbol, _) = self.in_flight.take().expect("guarded by fetching()");
        (symbol, rest)
    }

    /// A gap: queues `symbol` unless it is already queued or being fetched; `true` if
    /// queued.
    pub(crate) fn request(&mut self, symbol: &str) -> bool {
        let fresh = !self.queue.iter().any(|q| q == symbol)
            && self.in_flight.as_ref().is_none_or(|(f, _)| f != symbol);
        if fresh {
            self.queue.push_back(symbol.to_string());
        }
        fresh
    }

    /// The venue said 429/418: no request for `retry_after`, then `symbol` first.
    pub(crate) fn throttled(&mut self, symbol: String, retry_after: Duration) {
        self.budget.paused_until = Instant::now() + retry_after;
        self.queue.push_front(symbol);
    }

    /// The fetch failed: no request for `pause`, then `symbol` after the others.
    pub(crate) fn failed(&mut self, symbol: String, pause: Duration) {
        self.budget.paused_until = Instant::now() + pause;
        self.queue.push_back(symbol);
    }

    /// Starts the next fetch if none is under way and the budget allows it.
    pub(crate) fn start_next(
        &mut self,
        proto: &dyn VenueProtocol,
        rest_url: &str,
        limit: u32,
        per_minute: u32,
    ) {
        let weight = proto.snapshot_weight(limit);
        let now = Instant::now();
        if self.in_flight.is_some() || !self.budget.allows(now, weight, per_minute) {
            return;
        }
        if let Some(symbol) = self.queue.pop_front() {
            self.budget.spent.push_back((now, weight));
            let Some(url) = proto.snapshot_url(rest_url, &symbol, limit) else {
                return;
            };
            self.in_flight = Some((
                symbol,
                tokio::task::spawn_blocking(move || fetch_depth(url)),
            ));
        }
    }

    /// The run is over: the fetch under way is abandoned.
    pub(crate) fn abort(&mut self) {
        if let Some((_, h)) = self.in_flight.take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_weights_follow_binance() {
        use hermes_ingest::venue::protocol;
        use hermes_ingest::Venue;
        let w = |v, limit| protocol(v).unwrap().snapshot_weight(limit);
        assert_eq!(w(Venue::Binance, 1000), 50);
        assert_eq!(w(Venue::Binance, 5000), 250);
        // `/fapi/v1/depth` and `/dapi/v1/depth`.
        for v in [Venue::BinanceUsdm, Venue::BinanceCoinm] {
            assert_eq!(w(v, 50), 2);
            assert_eq!(w(v, 100), 5);
            assert_eq!(w(v, 500), 10);
            assert_eq!(w(v, 1000), 20);
        }
    }

    #[test]
    fn the_budget_spends_a_minute_and_honours_a_pause() {
        let mut b = WeightBudget::new();
        let now = Instant::now();
        assert!(b.allows(now, 50, 100));
        b.spent.push_back((now, 50));
        assert!(b.allows(now, 50, 100));
        b.spent.push_back((now, 50));
        assert!(!b.allows(now, 50, 100));
        // A request heavier than the budget goes alone.
        assert!(!b.allows(now, 250, 100));
        assert!(b.allows(now + Duration::from_secs(60), 250, 100));
        b.paused_until = now + Duration::from_secs(61);
        assert!(!b.allows(now + Duration::from_secs(60), 5, 100));
    }
}
