//! The live configuration in two stages: raw values from the TOML file
//! (`FileConfig`, unknown keys are errors naming the key) and the environment, then
//! the validated [`LiveConfig`] with its [`ConnPolicy`].

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hermes_ingest::venue::{protocol, VenueProtocol, LIVE_VENUES};
use hermes_ingest::Venue;

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

/// One venue's feed.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// The venue.
    pub venue: Venue,
    /// WebSocket URL (Binance: the base, `/stream?streams=…` is appended).
    pub ws_url: String,
    /// REST base URL of the depth snapshots (Binance venues; empty for the others).
    pub rest_url: String,
    /// Instruments (Coinbase products, Binance symbols); empty disables the venue.
    pub symbols: Vec<String>,
    /// Channels (Coinbase) or streams per symbol (Binance).
    pub channels: Vec<String>,
    /// Levels requested in a REST depth snapshot.
    pub depth_limit: u32,
}

impl FeedConfig {
    /// The venue's defaults: production endpoints, no instruments.
    pub fn defaults(venue: Venue) -> FeedConfig {
        let p = protocol(venue).expect("a live venue");
        FeedConfig {
            venue,
            ws_url: p.default_ws_url().to_string(),
            rest_url: p.default_rest_url().unwrap_or("").to_string(),
            symbols: Vec::new(),
            channels: p.default_channels().iter().map(|c| c.to_string()).collect(),
            depth_limit: 1000,
        }
    }

    /// The venue's protocol.
    pub fn protocol(&self) -> &'static dyn VenueProtocol {
        protocol(self.venue).expect("a live venue")
    }

    /// `true` when instruments are configured.
    pub fn enabled(&self) -> bool {
        !self.symbols.is_empty()
    }
}

/// Feeds to connect to.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// One feed per venue of [`LIVE_VENUES`], in that order.
    pub feeds: Vec<FeedConfig>,
    /// Connection behaviour.
    pub policy: ConnPolicy,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            feeds: LIVE_VENUES
                .iter()
                .map(|v| FeedConfig::defaults(*v))
                .collect(),
            policy: ConnPolicy::default(),
        }
    }
}

/// A Coinbase-style section (`[coinbase]`, `[coinbase_exchange]`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CoinbaseFile {
    ws_url: Option<String>,
    products: Option<Vec<String>>,
    channels: Option<Vec<String>>,
}

/// A Binance-style section (`[binance]`, `[binance_usdm]`, `[binance_coinm]`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BinanceFile {
    ws_url: Option<String>,
    rest_url: Option<String>,
    symbols: Option<Vec<String>>,
    streams: Option<Vec<String>>,
    depth_limit: Option<u32>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    coinbase: Option<CoinbaseFile>,
    coinbase_exchange: Option<CoinbaseFile>,
    binance: Option<BinanceFile>,
    binance_usdm: Option<BinanceFile>,
    binance_coinm: Option<BinanceFile>,
    connection: Option<ConnFile>,
}

impl FileConfig {
    /// Applies the section of `feed`'s venue, if the file has one.
    fn apply(&self, feed: &mut FeedConfig) {
        let cb = |f: &Option<CoinbaseFile>, feed: &mut FeedConfig| {
            if let Some(c) = f {
                feed.ws_url = c.ws_url.clone().unwrap_or(feed.ws_url.clone());
                feed.symbols = c.products.clone().unwrap_or_default();
                feed.channels = c.channels.clone().unwrap_or(feed.channels.clone());
            }
        };
        let bn = |f: &Option<BinanceFile>, feed: &mut FeedConfig| {
            if let Some(b) = f {
                feed.ws_url = b.ws_url.clone().unwrap_or(feed.ws_url.clone());
                feed.rest_url = b.rest_url.clone().unwrap_or(feed.rest_url.clone());
                feed.symbols = b.symbols.clone().unwrap_or_default();
                feed.channels = b.streams.clone().unwrap_or(feed.channels.clone());
                feed.depth_limit = b.depth_limit.unwrap_or(feed.depth_limit);
            }
        };
        match feed.venue {
            Venue::Coinbase => cb(&self.coinbase, feed),
            Venue::CoinbaseExchange => cb(&self.coinbase_exchange, feed),
            Venue::Binance => bn(&self.binance, feed),
            Venue::BinanceUsdm => bn(&self.binance_usdm, feed),
            Venue::BinanceCoinm => bn(&self.binance_coinm, feed),
            Venue::Webhook => {}
        }
    }
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
        if n.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
        {
            bail!(
                "{what}: {n:?} is not an instrument name (no spaces, quotes or control characters)"
            );
        }
        if names[..k].contains(n) {
            bail!("{what} lists {n:?} twice");
        }
    }
    Ok(())
}

/// The environment variables of a venue: `PREFIX_WS_URL`, `PREFIX_REST_URL`,
/// `PREFIX_PRODUCTS` or `PREFIX_SYMBOLS`.
pub fn env_names(venue: Venue) -> Vec<String> {
    let Some(p) = protocol(venue) else {
        return Vec::new();
    };
    let prefix = p.config_key().to_ascii_uppercase();
    let mut v = vec![
        format!("{prefix}_{}", p.instruments_key().to_ascii_uppercase()),
        format!("{prefix}_WS_URL"),
    ];
    if p.default_rest_url().is_some() {
        v.push(format!("{prefix}_REST_URL"));
    }
    v
}

impl LiveConfig {
    /// The defaults, then the TOML file (unknown keys are errors naming the key), then
    /// the environment (per venue: `COINBASE_WS_URL`, `COINBASE_PRODUCTS`,
    /// `COINBASE_EXCHANGE_WS_URL`, `COINBASE_EXCHANGE_PRODUCTS`, `BINANCE_WS_URL`,
    /// `BINANCE_REST_URL`, `BINANCE_SYMBOLS`, and the same three for `BINANCE_USDM_` and
    /// `BINANCE_COINM_`), then validation.
    pub fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<LiveConfig> {
        let mut c = LiveConfig::default();
        if let Some(p) = path {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            let f: FileConfig =
                toml::from_str(&text).with_context(|| format!("config {}", p.display()))?;
            for feed in &mut c.feeds {
                f.apply(feed);
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
        for feed in &mut c.feeds {
            let p = feed.protocol();
            let prefix = p.config_key().to_ascii_uppercase();
            if let Some(v) = env(&format!("{prefix}_WS_URL")) {
                feed.ws_url = v;
            }
            if p.default_rest_url().is_some() {
                if let Some(v) = env(&format!("{prefix}_REST_URL")) {
                    feed.rest_url = v;
                }
            }
            let key = p.instruments_key().to_ascii_uppercase();
            if let Some(v) = env(&format!("{prefix}_{key}")) {
                feed.symbols = list(&v);
            }
            feed.symbols = feed.symbols.iter().map(|s| p.normalize(s)).collect();
        }
        c.validate()?;
        Ok(c)
    }

    /// The feed of `venue`.
    ///
    /// # Panics
    /// For the webhook, which has no feed.
    pub fn feed(&self, venue: Venue) -> &FeedConfig {
        self.feeds
            .iter()
            .find(|f| f.venue == venue)
            .expect("every live venue has a feed")
    }

    /// The feed of `venue`, to change.
    ///
    /// # Panics
    /// For the webhook, which has no feed.
    pub fn feed_mut(&mut self, venue: Venue) -> &mut FeedConfig {
        self.feeds
            .iter_mut()
            .find(|f| f.venue == venue)
            .expect("every live venue has a feed")
    }

    /// The feeds with instruments configured.
    pub fn enabled(&self) -> impl Iterator<Item = &FeedConfig> {
        self.feeds.iter().filter(|f| f.enabled())
    }

    /// Checks that something will be ingested: a venue, or webhook ticks.
    pub fn require_feed(&self, webhook: bool) -> Result<()> {
        if self.enabled().next().is_none() && !webhook {
            bail!("no feed configured: set COINBASE_PRODUCTS (e.g. BTC-USD,ETH-USD), COINBASE_EXCHANGE_PRODUCTS, BINANCE_SYMBOLS (e.g. BTCUSDT), BINANCE_USDM_SYMBOLS (e.g. BTCUSDT) and/or BINANCE_COINM_SYMBOLS (e.g. BTCUSD_PERP), or the products/symbols of [coinbase], [coinbase_exchange], [binance], [binance_usdm] or [binance_coinm] in the config file (or enable webhook ticks with --http and INGEST_USERNAME/INGEST_PASSWORD)");
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        for feed in &self.feeds {
            let p = feed.protocol();
            let key = p.config_key();
            let prefix = key.to_ascii_uppercase();
            let what = p.instruments_key();
            check_names(
                &format!(
                    "{} {what} ({prefix}_{})",
                    feed.venue.name(),
                    what.to_ascii_uppercase()
                ),
                &feed.symbols,
            )?;
            let url = &feed.ws_url;
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                bail!(
                    "{key} ws_url ({prefix}_WS_URL) must start with ws:// or wss://, got {url:?}"
                );
            }
            if p.default_rest_url().is_some() {
                let rest = &feed.rest_url;
                if !(rest.starts_with("http://") || rest.starts_with("https://")) {
                    bail!(
                        "{key} rest_url ({prefix}_REST_URL) must start with http:// or https://, got {rest:?}"
                    );
                }
                if !p.valid_depth_limit(feed.depth_limit) {
                    bail!(
                        "{key} depth_limit {} is not one the venue accepts ({})",
                        feed.depth_limit,
                        if feed.venue.is_binance_futures() {
                            "5, 10, 20, 50, 100, 500 or 1000"
                        } else {
                            "1..=5000"
                        }
                    );
                }
            }
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

    /// The new venues' sections and variables follow the same rules as the old ones.
    #[test]
    fn futures_and_exchange_feeds_from_file_and_environment() {
        let dir = std::env::temp_dir().join(format!("hermes-live-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "[binance_coinm]\nsymbols = [\"btcusd_perp\"]\ndepth_limit = 500\n[coinbase_exchange]\nproducts = [\"BTC-USD\"]\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "BINANCE_USDM_SYMBOLS" => Some("btcusdt".to_string()),
            "BINANCE_USDM_REST_URL" => Some("http://127.0.0.1:9".to_string()),
            "COINBASE_EXCHANGE_WS_URL" => Some("ws://127.0.0.1:8".to_string()),
            _ => None,
        };
        let c = LiveConfig::load(Some(&f), &env).unwrap();
        let usdm = c.feed(Venue::BinanceUsdm);
        assert_eq!(usdm.symbols, ["BTCUSDT"]);
        assert_eq!(usdm.rest_url, "http://127.0.0.1:9");
        assert_eq!(usdm.ws_url, "wss://fstream.binance.com");
        let coinm = c.feed(Venue::BinanceCoinm);
        assert_eq!(
            (coinm.symbols.clone(), coinm.depth_limit),
            (vec!["BTCUSD_PERP".to_string()], 500)
        );
        assert_eq!(coinm.rest_url, "https://dapi.binance.com");
        let ex = c.feed(Venue::CoinbaseExchange);
        assert_eq!(ex.symbols, ["BTC-USD"]);
        assert_eq!(ex.ws_url, "ws://127.0.0.1:8");
        let enabled: Vec<Venue> = c.enabled().map(|f| f.venue).collect();
        assert_eq!(
            enabled,
            [
                Venue::BinanceUsdm,
                Venue::BinanceCoinm,
                Venue::CoinbaseExchange
            ]
        );
        // A depth the futures endpoints refuse, and a key of the other venue family.
        std::fs::write(
            &f,
            "[binance_usdm]\nsymbols = [\"BTCUSDT\"]\ndepth_limit = 300\n",
        )
        .unwrap();
        let e = format!("{:#}", LiveConfig::load(Some(&f), &|_| None).unwrap_err());
        assert!(
            e.contains("binance_usdm depth_limit 300") && e.contains("500 or 1000"),
            "{e}"
        );
        std::fs::write(&f, "[coinbase_exchange]\nsymbols = [\"BTC-USD\"]\n").unwrap();
        let e = format!("{:#}", LiveConfig::load(Some(&f), &|_| None).unwrap_err());
        assert!(e.contains("unknown field `symbols`"), "{e}");
        let env = |k: &str| (k == "BINANCE_COINM_WS_URL").then(|| "http://x".to_string());
        let e = format!("{:#}", LiveConfig::load(None, &env).unwrap_err());
        assert!(e.contains("BINANCE_COINM_WS_URL"), "{e}");
        assert_eq!(
            env_names(Venue::BinanceUsdm),
            [
                "BINANCE_USDM_SYMBOLS",
                "BINANCE_USDM_WS_URL",
                "BINANCE_USDM_REST_URL"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
        assert_eq!(c.feed(Venue::Coinbase).symbols, ["BTC-USD"]);
        assert_eq!(c.feed(Venue::Binance).symbols, ["BTCUSDT", "ETHUSDT"]);
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
