//! `EngineArgs`: the shm file, threads, ring, decimals and kernels of every command
//! that runs the engine, mapped onto [`EngineOptions`] and [`DecoderOptions`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use hermes_book::Venue;
use hermes_engine::{EngineOptions, IdleStrategy, RingFullPolicy};
use hermes_ingest::DecoderOptions;

use super::KernelArgs;

/// The engine settings of `replay`, `run`, `record` and `demo`.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// The shm file to publish into.
    #[arg(long, env = "HERMES_SHM_PATH", default_value = "/dev/shm/hermes")]
    pub shm: PathBuf,
    /// Slots (instruments) in the shm file.
    #[arg(long, default_value_t = 256)]
    pub shm_slots: u32,
    /// Make the shm file readable by its group (mode 0640 instead of 0600).
    #[arg(long)]
    pub shm_group: bool,
    /// How idle threads wait. spin-yield, the default, measured in the demo's live stage
    /// (2 cores): p50 receive → visible in shm 1.7 µs vs 82-158 µs for backoff and 540 µs for
    /// spin (which starves the other threads), at similar CPU for a busy feed; backoff uses
    /// almost no CPU while the feed is quiet.
    #[arg(long, value_enum, default_value_t = IdleArg::SpinYield)]
    pub idle: IdleArg,
    /// What the ingest thread does when the ring to the book thread is full.
    #[arg(long, value_enum, default_value_t = RingFullArg::Block)]
    pub ring_full: RingFullArg,
    /// Ring capacity in events.
    #[arg(long, default_value_t = 65536)]
    pub ring_capacity: usize,
    /// Do not pin the ingest and book threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    #[command(flatten)]
    pub scale: ScaleArgs,
    #[command(flatten)]
    pub kernels: KernelArgs,
}

/// Decimals per instrument: part of [`EngineArgs`], and of `hermes export` (whose rows
/// must carry the engine's mantissas).
#[derive(Args, Debug, Clone)]
pub struct ScaleArgs {
    /// Decimals of prices and sizes for every instrument (8 covers both venues).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(0..=18))]
    pub decimals: u8,
    /// Decimals of one instrument, `VENUE:SYMBOL=PRICE_DECIMALS,SIZE_DECIMALS` (e.g.
    /// `coinbase:BTC-USD=2,8`), overriding --decimals; repeatable.
    #[arg(long = "scale", value_parser = parse_scale)]
    pub scales: Vec<(Venue, String, hermes_book::Scale)>,
}

impl ScaleArgs {
    /// The decoder options for at most `max_instruments` instruments.
    pub fn decoder(&self, max_instruments: usize) -> DecoderOptions {
        let mut d = DecoderOptions {
            max_instruments,
            ..DecoderOptions::default()
        };
        d.scales.default = hermes_book::Scale {
            price_decimals: self.decimals,
            size_decimals: self.decimals,
        };
        for (v, sym, sc) in &self.scales {
            d.scales.overrides.insert((*v, sym.clone()), *sc);
        }
        d
    }
}

impl EngineArgs {
    /// The engine options these arguments describe.
    pub fn engine(&self) -> EngineOptions {
        EngineOptions {
            shm_path: Some(self.shm.clone()),
            shm_slots: self.shm_slots,
            shm_group_readable: self.shm_group,
            ring_capacity: self.ring_capacity.max(2),
            idle: self.idle.into(),
            ring_full: self.ring_full.into(),
            pin: !self.no_pin,
            kernels: self.kernels.config(),
            ..EngineOptions::default()
        }
    }

    /// The decoder options (decimals per instrument).
    pub fn decoder(&self) -> DecoderOptions {
        self.scale.decoder(self.shm_slots as usize)
    }
}

/// `--idle`: how idle engine threads wait (see [`IdleStrategy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IdleArg {
    /// Spin on the CPU: lowest latency, burns a whole core even when idle.
    Spin,
    /// Spin briefly, then yield the core to other runnable threads.
    SpinYield,
    /// Spin, yield for 2 ms, then sleep with back-off: near-zero CPU on a quiet feed.
    Backoff,
}

impl From<IdleArg> for IdleStrategy {
    fn from(a: IdleArg) -> Self {
        match a {
            IdleArg::Spin => IdleStrategy::Spin,
            IdleArg::SpinYield => IdleStrategy::SpinYield,
            IdleArg::Backoff => IdleStrategy::Backoff,
        }
    }
}

/// `--ring-full`: what the ingest thread does when the ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RingFullArg {
    /// Wait for room (counted): nothing is lost.
    Block,
    /// Drop the newest event (counted): books then miss updates.
    DropNewest,
}

impl From<RingFullArg> for RingFullPolicy {
    fn from(a: RingFullArg) -> Self {
        match a {
            RingFullArg::Block => RingFullPolicy::Block,
            RingFullArg::DropNewest => RingFullPolicy::DropNewest,
        }
    }
}

/// Parses `VENUE:SYMBOL=PRICE_DECIMALS,SIZE_DECIMALS`.
pub fn parse_scale(s: &str) -> std::result::Result<(Venue, String, hermes_book::Scale), String> {
    let bad = || {
        format!("bad --scale {s:?}: use VENUE:SYMBOL=PRICE_DECIMALS,SIZE_DECIMALS, e.g. coinbase:BTC-USD=2,8")
    };
    let (inst, dec) = s.split_once('=').ok_or_else(bad)?;
    let (venue, symbol) = inst.split_once(':').ok_or_else(bad)?;
    let venue = Venue::from_name(venue).ok_or_else(|| {
        let names: Vec<_> = Venue::ALL.iter().map(|v| v.name()).collect();
        format!(
            "bad --scale {s:?}: venue must be one of {}",
            names.join(", ")
        )
    })?;
    let (p, q) = dec.split_once(',').ok_or_else(bad)?;
    let d = |t: &str| {
        t.trim()
            .parse::<u8>()
            .ok()
            .filter(|d| *d <= 18)
            .ok_or_else(|| format!("bad --scale {s:?}: decimals must be 0..=18"))
    };
    if symbol.is_empty() {
        return Err(bad());
    }
    Ok((
        venue,
        symbol.to_string(),
        hermes_book::Scale {
            price_decimals: d(p)?,
            size_decimals: d(q)?,
        },
    ))
}
