//! The live configuration in two stages: raw values from the TOML file
//! (`FileConfig`, unknown keys are errors naming the key) and the environment, then
//! the validated [`LiveConfig`] with its [`ConnPolicy`].

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Connection behaviour.
#[derive(Clone, Debug)]
pub struct ConnPolicy {
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before a probe.
    pub breaker_cooldown: Duration,
    /// A connection up this long counts as healthy (resets the failure count).
    pub healthy_after: Duration,
    /// Ping interval.
    pub ping_interval: Duration,
    /// No message for this long: the connection is dead.
    pub idle_timeout: Duration,
    /// Largest accepted message.
    pub max_frame_bytes: usize,
    /// Least time between two Coinbase resubscriptions on one connection.
    pub resubscribe_interval: Duration,
    /// Binance REST request weight allowed per minute.
    pub rest_weight_per_minute: u32,
}

impl Default for ConnPolicy {
    fn default() -> Self {
        ConnPolicy {
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            healthy_after: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            max_frame_bytes: 64 << 20,
            resubscribe_interval: Duration::from_secs(1),
            rest_weight_per_minute: 3000,
        }
    }
}

/// Feeds to connect to.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Coinbase Advanced Trade WebSocket URL.
    pub coinbase_ws_url: String,
    /// Coinbase products; empty disables the venue.
    pub coinbase_products: Vec<String>,
    /// Coinbase channels to subscribe.
    pub coinbase_channels: Vec<String>,
    /// Binance WebSocket base URL (`/stream?streams=…` is appended).
    pub binance_ws_url: String,
    /// Binance REST base URL.
    pub binance_rest_url: String,
    /// Binance symbols; empty disables the venue.
    pub binance_symbols: Vec<String>,
    /// Binance streams per symbol.
    pub binance_streams: Vec<String>,
    /// Levels requested in the REST depth snapshot.
    pub binance_depth_limit: u32,
    /// Connection behaviour.
    pub policy: ConnPolicy,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            coinbase_ws_url: "wss://advanced-trade-ws.coinbase.com".into(),
            coinbase_products: Vec::new(),
            coinbase_channels: vec!["level2".into(), "market_trades".into(), "heartbeats".into()],
            binance_ws_url: "wss://stream.binance.com:9443".into(),
            binance_rest_url: "https://api.binance.com".into(),
            binance_symbols: Vec::new(),
            binance_streams: vec!["depth@100ms".into(), "trade".into(), "bookTicker".into()],
            binance_depth_limit: 1000,
            policy: ConnPolicy::default(),
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    coinbase: Option<CoinbaseFile>,
    binance: Option<BinanceFile>,
    connection: Option<ConnFile>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CoinbaseFile {
    ws_url: Option<String>,
    products: Option<Vec<String>>,
    channels: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BinanceFile {
    ws_url: Option<String>,
    rest_url: Option<String>,
    symbols: Option<Vec<String>>,
    streams: Option<Vec<String>>,
    depth_limit: Option<u32>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnFile {
    reconnect_min_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
    breaker_failures: Option<u32>,
    breaker_cooldown_ms: Option<u64>,
    healthy_after_ms: Option<u64>,
    ping_interval_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_frame_bytes: Option<usize>,
    resubscribe_interval_ms: Option<u64>,
    rest_weight_per_minute: Option<u32>,
}

/// A comma-separated list; empty entries are kept for [`LiveConfig::validate`] to refuse.
fn list(s: &str) -> Vec<String> {
    if s.trim().is_empty() {
        return Vec::new();
    }
    s.split(',').map(|e| e.trim().to_string()).collect()
}

/// Refuses an empty or repeated instrument name: each would be a silent no-op or a
/// second subscription to the same book.
fn check_names(what: &str, names: &[String]) -> Result<()> {
    for (k, n) in names.iter().enumerate() {
        if n.is_empty() {
            bail!(
                "{what} has an empty entry (at position {}; two commas, or a trailing one?)",
                k + 1
            );
        }
        if n.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("{what}: {n:?} is not an instrument name (no spaces or control characters)");
        }
        if names[..k].contains(n) {
            bail!("{what} lists {n:?} twice");
        }
    }
    Ok(())
}

impl LiveConfig {
    /// The defaults, then the TOML file (unknown keys are errors naming the key), then
    /// the environment (`COINBASE_WS_URL`, `COINBASE_PRODUCTS`, `BINANCE_WS_URL`,
    /// `BINANCE_REST_URL`, `BINANCE_SYMBOLS`), then validation.
    pub fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<LiveConfig> {
        let mut c = LiveConfig::default();
        if let Some(p) = path {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            let f: FileConfig =
                toml::from_str(&text).with_context(|| format!("config {}", p.display()))?;
            if let Some(cb) = f.coinbase {
                c.coinbase_ws_url = cb.ws_url.unwrap_or(c.coinbase_ws_url);
                c.coinbase_products = cb.products.unwrap_or_default();
                c.coinbase_channels = cb.channels.unwrap_or(c.coinbase_channels);
            }
            if let Some(b) = f.binance {
                c.binance_ws_url = b.ws_url.unwrap_or(c.binance_ws_url);
                c.binance_rest_url = b.rest_url.unwrap_or(c.binance_rest_url);
                c.binance_symbols = b.symbols.unwrap_or_default();
                c.binance_streams = b.streams.unwrap_or(c.binance_streams);
                c.binance_depth_limit = b.depth_limit.unwrap_or(c.binance_depth_limit);
            }
            if let Some(k) = f.connection {
                let p = &mut c.policy;
                let ms = Duration::from_millis;
                p.reconnect_min = k.reconnect_min_ms.map_or(p.reconnect_min, ms);
                p.reconnect_max = k.reconnect_max_ms.map_or(p.reconnect_max, ms);
                p.breaker_failures = k.breaker_failures.unwrap_or(p.breaker_failures);
                p.breaker_cooldown = k.breaker_cooldown_ms.map_or(p.breaker_cooldown, ms);
                p.healthy_after = k.healthy_after_ms.map_or(p.healthy_after, ms);
                p.ping_interval = k.ping_interval_ms.map_or(p.ping_interval, ms);
                p.idle_timeout = k.idle_timeout_ms.map_or(p.idle_timeout, ms);
                p.max_frame_bytes = k.max_frame_bytes.unwrap_or(p.max_frame_bytes);
                p.resubscribe_interval =
                    k.resubscribe_interval_ms.map_or(p.resubscribe_interval, ms);
                p.rest_weight_per_minute =
                    k.rest_weight_per_minute.unwrap_or(p.rest_weight_per_minute);
            }
        }
        if let Some(v) = env("COINBASE_WS_URL") {
            c.coinbase_ws_url = v;
        }
        if let Some(v) = env("COINBASE_PRODUCTS") {
            c.coinbase_products = list(&v);
        }
        if let Some(v) = env("BINANCE_WS_URL") {
            c.binance_ws_url = v;
        }
        if let Some(v) = env("BINANCE_REST_URL") {
            c.binance_rest_url = v;
        }
        if let Some(v) = env("BINANCE_SYMBOLS") {
            c.binance_symbols = list(&v);
        }
        c.binance_symbols = c
            .binance_symbols
            .iter()
            .map(|s| s.to_ascii_uppercase())
            .collect();
        c.validate()?;
        Ok(c)
    }

    /// Checks that something will be ingested: a venue, or webhook ticks.
    pub fn require_feed(&self, webhook: bool) -> Result<()> {
        if self.coinbase_products.is_empty() && self.binance_symbols.is_empty() && !webhook {
            bail!("no feed configured: set COINBASE_PRODUCTS (e.g. BTC-USD,ETH-USD) and/or BINANCE_SYMBOLS (e.g. BTCUSDT), or [coinbase] products / [binance] symbols in the config file (or enable webhook ticks with --http and INGEST_USERNAME/INGEST_PASSWORD)");
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        check_names(
            "coinbase products (COINBASE_PRODUCTS)",
            &self.coinbase_products,
        )?;
        check_names("binance symbols (BINANCE_SYMBOLS)", &self.binance_symbols)?;
        for (name, url) in [
            ("coinbase ws_url (COINBASE_WS_URL)", &self.coinbase_ws_url),
            ("binance ws_url (BINANCE_WS_URL)", &self.binance_ws_url),
        ] {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                bail!("{name} must start with ws:// or wss://, got {url:?}");
            }
        }
        if !(self.binance_rest_url.starts_with("http://")
            || self.binance_rest_url.starts_with("https://"))
        {
            bail!(
                "binance rest_url (BINANCE_REST_URL) must start with http:// or https://, got {:?}",
                self.binance_rest_url
            );
        }
        if !matches!(self.binance_depth_limit, 1..=5000) {
            bail!(
                "binance depth_limit must be 1..=5000, got {}",
                self.binance_depth_limit
            );
        }
        let p = &self.policy;
        if p.reconnect_min.is_zero() || p.reconnect_max < p.reconnect_min {
            bail!("connection reconnect_min_ms must be > 0 and <= reconnect_max_ms");
        }
        if p.breaker_failures == 0 {
            bail!("connection breaker_failures must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_layers_and_errors() {
        let dir = std::env::temp_dir().join(format!("hermes-live-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "[coinbase]\nproducts = [\"BTC-USD\"]\n[connection]\nreconnect_min_ms = 50\n",
        )
        .unwrap();
        let env = |k: &str| (k == "BINANCE_SYMBOLS").then(|| "btcusdt, ethusdt".to_string());
        let c = LiveConfig::load(Some(&f), &env).unwrap();
        assert_eq!(c.coinbase_products, ["BTC-USD"]);
        assert_eq!(c.binance_symbols, ["BTCUSDT", "ETHUSDT"]);
        assert_eq!(c.policy.reconnect_min, Duration::from_millis(50));
        std::fs::write(&f, "[coinbase]\nproduct = [\"BTC-USD\"]\n").unwrap();
        let e = format!("{:#}", LiveConfig::load(Some(&f), &|_| None).unwrap_err());
        assert!(e.contains("unknown field `product`"), "{e}");
        let e = format!(
            "{:#}",
            LiveConfig::load(None, &|_| None)
                .unwrap()
                .require_feed(false)
                .unwrap_err()
        );
        assert!(e.contains("no feed configured"), "{e}");
        LiveConfig::load(None, &|_| None)
            .unwrap()
            .require_feed(true)
            .unwrap();
        let env = |k: &str| match k {
            "COINBASE_PRODUCTS" => Some("BTC-USD".to_string()),
            "COINBASE_WS_URL" => Some("http://x".to_string()),
            _ => None,
        };
        assert!(format!("{:#}", LiveConfig::load(None, &env).unwrap_err()).contains("ws://"));
        for (list, want) in [
            ("BTC-USD,,ETH-USD", "empty entry (at position 2"),
            ("BTC-USD,", "empty entry"),
            ("BTC-USD, BTC-USD", "twice"),
        ] {
            let env = |k: &str| (k == "COINBASE_PRODUCTS").then(|| list.to_string());
            let e = format!("{:#}", LiveConfig::load(None, &env).unwrap_err());
            assert!(e.contains(want), "{list}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
