//! Argument groups shared by several subcommands, and their second stage: each maps
//! its raw clap values onto the typed options of a library (ripgrep's lowargs → hiargs),
//! refusing bad combinations with a message that names the flag.

mod engine;
mod http;
mod kernels;
mod nats;
mod parquet;
mod persist;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::ValueEnum;
use hermes_book::Venue;

pub use engine::{EngineArgs, ScaleArgs};
pub use http::{api_key, HttpArgs, RoleHttpArgs};
pub use kernels::KernelArgs;
pub use nats::NatsArgs;
pub use parquet::{
    finish_parquet, start_persistence, ParquetArgs, TableArgs, EXPORT_MAX_INSTRUMENTS,
};
pub use persist::{
    check_database_url, finish_persister, report_persist, start_persister, PersistArgs,
    PersistOutcome, RowArgs,
};

/// A venue the CLI accepts.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum VenueArg {
    /// Coinbase Advanced Trade.
    Coinbase,
    /// The Coinbase Exchange feed.
    CoinbaseExchange,
    /// Binance spot.
    Binance,
    /// Binance USD-M futures.
    BinanceUsdm,
    /// Binance COIN-M futures.
    BinanceCoinm,
}

impl From<VenueArg> for Venue {
    fn from(v: VenueArg) -> Venue {
        match v {
            VenueArg::Coinbase => Venue::Coinbase,
            VenueArg::Binance => Venue::Binance,
            VenueArg::CoinbaseExchange => Venue::CoinbaseExchange,
            VenueArg::BinanceUsdm => Venue::BinanceUsdm,
            VenueArg::BinanceCoinm => Venue::BinanceCoinm,
        }
    }
}

/// A capture format the CLI accepts.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    Auto,
    Native,
    Jsonl,
}

impl From<FormatArg> for hermes_ingest::source::Format {
    fn from(f: FormatArg) -> Self {
        use hermes_ingest::source::Format;
        match f {
            FormatArg::Auto => Format::Auto,
            FormatArg::Native => Format::Native,
            FormatArg::Jsonl => Format::Jsonl,
        }
    }
}

/// `--NAME SECONDS` as a duration: a non-negative finite number.
pub fn secs(v: Option<f64>, name: &str) -> Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => bail!("--{name} must be a non-negative number of seconds, got {s}"),
    }
}

/// Where Hermes keeps its files: `$XDG_DATA_HOME/hermes`, `~/.local/share/hermes`,
/// else the temp dir.
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("hermes");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".local/share/hermes");
    }
    std::env::temp_dir().join("hermes")
}
