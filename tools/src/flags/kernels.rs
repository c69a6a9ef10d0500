//! `KernelArgs`: the analytics kernels' settings on the command line (flattened into
//! every engine subcommand), mapped onto the [`KernelConfig`] handed to the book thread
//! through `EngineOptions::kernels`.
//!
//! The kernels themselves (definitions, units, tests) live in `hermes_book::kernels`.

use hermes_book::fixed::MAX_DECIMALS;
use hermes_book::kernels::{KernelConfig, MAX_LEVELS, WINDOW_BUCKETS};
use hermes_book::{parse_decimal, Decimal};

/// Kernel settings of the engine subcommands (`replay`, `demo`, `run`, ...).
#[derive(clap::Args, Debug, Clone)]
pub struct KernelArgs {
    /// Levels per side summed by the depth and imbalance kernels (N).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=MAX_LEVELS as i64))]
    pub kernel_levels: u16,
    /// Size (in base units, e.g. 0.5 for half a BTC) the VWAP kernels fill on each side.
    #[arg(long, default_value = "1", value_parser = parse_size)]
    pub vwap_size: Decimal,
    /// Half-life of the EWMA mid-price volatility (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration_ns)]
    pub vol_half_life: i64,
    /// Window of the trade-flow imbalance and the windowed OFI.
    #[arg(long, default_value = "5s", value_parser = parse_duration_ns)]
    pub trade_window: i64,
    /// Window of the update rate (updates/s).
    #[arg(long, default_value = "1s", value_parser = parse_duration_ns)]
    pub rate_window: i64,
}

impl KernelArgs {
    /// The validated configuration (every value was checked when parsed).
    pub fn config(&self) -> KernelConfig {
        KernelConfig {
            levels: self.kernel_levels as usize,
            vwap_size: self.vwap_size,
            vol_half_life_ns: self.vol_half_life,
            trade_window_ns: self.trade_window,
            rate_window_ns: self.rate_window,
        }
    }
}

/// Parses a positive decimal size such as `1`, `0.5` or `250`.
pub fn parse_size(s: &str) -> Result<Decimal, String> {
    let frac = s.split_once('.').map_or(0, |(_, f)| f.len());
    let bad = || {
        format!("expected a positive number such as 1, 0.5 or 250 (at most {MAX_DECIMALS} decimals), got {s:?}")
    };
    if frac > MAX_DECIMALS as usize {
        return Err(bad());
    }
    let m = parse_decimal(s.as_bytes(), frac as u8).map_err(|e| format!("{}: {e}", bad()))?;
    if m <= 0 {
        return Err(bad());
    }
    Ok(Decimal::new(m, frac as u8))
}

/// `NUMBER UNIT` in nanoseconds, the number exact to 9 decimals, the unit one of
/// `units` (name, nanoseconds). `Err(None)`: not of that form; `Err(Some(e))`: the number
/// is not a decimal this can hold exactly.
pub(super) fn duration_ns(
    s: &str,
    units: &[(&str, i128)],
) -> Result<i128, Option<hermes_book::DecimalError>> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or(None)?;
    let (num, unit) = s.split_at(split);
    let &(_, unit_ns) = units.iter().find(|(u, _)| *u == unit).ok_or(None)?;
    // The number at 9 decimals, so `1.5` and `0.000000001` are exact.
    let m = parse_decimal(num.as_bytes(), 9).map_err(Some)?;
    Ok(m as i128 * unit_ns / 1_000_000_000)
}

/// Parses a duration such as `500ms`, `5s`, `1.5s`, `2m` or `250us` into nanoseconds; at
/// least [`WINDOW_BUCKETS`] ns.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "expected a duration such as 500ms, 5s, 1.5s or 2m (units ns, us, ms, s, m), got {s:?}"
        )
    };
    const UNITS: [(&str, i128); 6] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
    ];
    let ns = duration_ns(s, &UNITS).map_err(|e| match e {
        None => bad(),
        Some(e) => format!("{}: {e}", bad()),
    })?;
    if ns < WINDOW_BUCKETS as i128 {
        return Err(format!(
            "{s:?} is too short: durations must be at least {WINDOW_BUCKETS} ns"
        ));
    }
    i64::try_from(ns).map_err(|_| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("5s"), Ok(5_000_000_000));
        assert_eq!(parse_duration_ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration_ns("250ms"), Ok(250_000_000));
        assert_eq!(parse_duration_ns("2m"), Ok(120_000_000_000));
        assert_eq!(parse_duration_ns("10ns"), Ok(10));
        assert!(parse_duration_ns("5")
            .unwrap_err()
            .contains("expected a duration"));
        assert!(parse_duration_ns("5h")
            .unwrap_err()
            .contains("expected a duration"));
        assert!(parse_duration_ns("1ns")
            .unwrap_err()
            .contains("at least 10 ns"));
        assert!(parse_duration_ns("-1s").is_err());
        assert!(parse_duration_ns("999999999m")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1"), Ok(Decimal::new(1, 0)));
        assert_eq!(parse_size("0.25"), Ok(Decimal::new(25, 2)));
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("abc").unwrap_err().contains("positive number"));
    }

    #[test]
    fn defaults_match_the_book_crate() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            k: KernelArgs,
        }
        let cli = Cli::parse_from(["x"]);
        assert_eq!(cli.k.config(), KernelConfig::default());
        let cli = Cli::try_parse_from(["x", "--kernel-levels", "0"]);
        assert!(cli.is_err());
    }
}
