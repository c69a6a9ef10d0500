//! decimal: wire decimal text → exact fixed point (`hermes_book::parse_decimal`) against
//! `str::parse::<f64>` and `rust_decimal::Decimal::from_str`, on the price and size
//! strings of the generated frames.

use std::hint::black_box;
use std::str::FromStr;
use std::time::Instant;

use anyhow::Result;
use hermes_book::parse_decimal;

use super::Config;
use crate::frames;
use crate::report::{Metric, Stage};
use crate::util::{figure, hist, mono_ns, rec};

/// The quoted decimal strings of `data` (`"61837.63000000"`, `"0.00583"`).
pub fn decimals_in(data: &[u8], out: &mut Vec<String>) {
    let mut i = 0;
    while let Some(q) = memchr_quote(&data[i..]) {
        let start = i + q + 1;
        let Some(len) = memchr_quote(&data[start..]) else {
            break;
        };
        let s = &data[start..start + len];
        if s.contains(&b'.') && s.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
            out.push(String::from_utf8_lossy(s).into_owned());
        }
        i = start + len + 1;
    }
}

fn memchr_quote(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'"')
}

const BATCH: usize = 256;

fn time_batches(
    values: &[String],
    passes: usize,
    f: impl Fn(&str) -> bool,
) -> (hdrhistogram::Histogram<u64>, f64) {
    // One contiguous arena, as the strings sit in a frame (separate heap strings would
    // measure pointer chasing instead of parsing).
    let arena: String = values.concat();
    let mut slices: Vec<&str> = Vec::with_capacity(values.len());
    let mut at = 0;
    for v in values {
        slices.push(&arena[at..at + v.len()]);
        at += v.len();
    }
    let mut h = hist(100_000_000_000);
    let mut total_ns = 0i64;
    let mut n = 0usize;
    for pass in 0..passes {
        for chunk in slices.chunks(BATCH) {
            let t0 = mono_ns();
            for v in chunk {
                black_box(f(black_box(v)));
            }
            let dt = mono_ns() - t0;
            if pass > 0 {
                // Per-value picoseconds, the batch's mean.
                rec(&mut h, dt * 1000 / chunk.len() as i64);
                total_ns += dt;
                n += chunk.len();
            }
        }
    }
    (h, n as f64 / (total_ns as f64 / 1e9))
}

/// Runs the stage.
pub fn run(cfg: &Config) -> Result<Stage> {
    let t = Instant::now();
    let passes = cfg.size(40, 10);
    let mut sets: Vec<(&str, &str, Vec<String>)> = Vec::new();
    let mut bn = Vec::new();
    for f in frames::binance_depth20(300, 1000, 5).iter().skip(1) {
        decimals_in(&f.data, &mut bn);
    }
    sets.push(("binance8", "Binance 8-decimal strings (61837.63000000)", bn));
    let mut cb = Vec::new();
    for f in frames::synthetic(6_000)
        .iter()
        .filter(|f| f.class == "coinbase.l2_update" || f.class == "coinbase.market_trades")
    {
        decimals_in(&f.data, &mut cb);
    }
    sets.push((
        "coinbase",
        "Coinbase canonical strings (650.83, 0.00583)",
        cb,
    ));
    let mut out = Vec::new();
    // The decoder's hot path: the quoted string parsed in the scanning pass.
    {
        let (_, _, values) = &sets[0];
        let quoted: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
        let (ours, ours_rate) = time_batches(&quoted, passes, |s| {
            hermes_ingest::json::Scanner::new(s.as_bytes())
                .fixed_string(8)
                .is_some()
        });
        let (f64s, f64_rate) = time_batches(values, passes, |s| s.parse::<f64>().is_ok());
        let (rd, rd_rate) = time_batches(values, passes, |s| {
            rust_decimal::Decimal::from_str(s).is_ok()
        });
        out.push(
            Metric::lower(
                "decimal.binance8.scanner",
                &format!(
                    "Binance 8-decimal strings through Scanner::fixed_string (the decoder's path for levels: quotes found and digits converted in one pass) ({} values)",
                    values.len()
                ),
                "ns/value",
                figure(&ours, 1000.0),
            )
            .with_throughput(ours_rate / 1e6, "M values/s")
            .vs("str::parse::<f64>", figure(&f64s, 1000.0), Some(f64_rate / 1e6))
            .vs(
                "rust_decimal::Decimal::from_str",
                figure(&rd, 1000.0),
                Some(rd_rate / 1e6),
            )
            .note(format!("percentiles over batch means of {BATCH} values; the baselines get the bare text, ours the quoted string")),
        );
    }
    for (key, what, values) in &sets {
        let (ours, ours_rate) =
            time_batches(values, passes, |s| parse_decimal(s.as_bytes(), 8).is_ok());
        let (f64s, f64_rate) = time_batches(values, passes, |s| s.parse::<f64>().is_ok());
        let (rd, rd_rate) = time_batches(values, passes, |s| {
            rust_decimal::Decimal::from_str(s).is_ok()
        });
        out.push(
            Metric::lower(
                &format!("decimal.{key}"),
                &format!(
                    "{what} → i64 mantissa at 8 decimals, exact ({} values)",
                    values.len()
                ),
                "ns/value",
                figure(&ours, 1000.0),
            )
            .with_throughput(ours_rate / 1e6, "M values/s")
            .vs(
                "str::parse::<f64>",
                figure(&f64s, 1000.0),
                Some(f64_rate / 1e6),
            )
            .vs(
                "rust_decimal::Decimal::from_str",
                figure(&rd, 1000.0),
                Some(rd_rate / 1e6),
            )
            .note(format!("percentiles over batch means of {BATCH} values")),
        );
    }
    Ok(Stage {
        name: "decimal".into(),
        seconds: t.elapsed().as_secs_f64(),
        metrics: out,
        notes: vec![],
        skipped: false,
        pinned: false,
    })
}
