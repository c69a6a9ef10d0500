//! `bench soak`: the real `hermes run` against `hermes sim` (synthetic market at a fixed
//! rate, gaps and disconnects injected) for a long time, persisting into a private
//! PostgreSQL that is restarted on a schedule, sampled every `--sample-every` for leaks
//! (RSS, descriptors, threads, journal size) and checked at the end for lost or doubled
//! rows (`raw_events` rows against the frames the engine received).
//!
//! Everything runs as child processes of this one: the `hermes` binary beside this
//! executable (`--hermes` overrides), a cluster from [`hermes_persist::local_pg`] in a
//! temporary directory, the journal and logs beside it and the shm file under
//! `/dev/shm`. One guard (`Rig`) owns them all; dropping it stops them (run, simulator,
//! PostgreSQL, in that order) and removes the directories, on success, error and Ctrl-C
//! (SIGINT/SIGTERM set a flag the loops check) alike; the children also get SIGTERM from
//! the kernel should this process die without unwinding.
//!
//! Output: one JSON object per line ([`Sample`], then one [`Summary`]) on stdout and in
//! `--out`.

mod probe;
mod procs;
mod report;
mod run;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hermes_persist::local_pg::{self, LocalPg, StartOptions};
use serde::{Deserialize, Serialize};

use probe::*;
use procs::*;
pub use report::*;
pub use run::run;

/// Instruments of the synthetic market.
pub(super) const INSTRUMENTS: usize = 3;
/// RSS growth (after the warm-up) that still counts as flat: the larger of this...
pub(super) const RSS_SLACK_BYTES: u64 = 16 << 20;
/// ...and this fraction of the RSS at the end of the warm-up.
pub(super) const RSS_SLACK_FRACTION: f64 = 0.10;
/// Descriptors more at the end than after the warm-up that still count as flat.
pub(super) const FDS_SLACK: u64 = 4;
/// How long PostgreSQL stays down at each restart.
pub(super) const PG_DOWNTIME: Duration = Duration::from_secs(2);
/// The longest wait for the persister to catch up at the end.
pub(super) const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// The venue the simulator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SoakVenue {
    /// Coinbase Advanced Trade (`level2`, one sequence per connection).
    Coinbase,
    /// Binance combined streams plus the REST depth snapshot.
    Binance,
}

impl SoakVenue {
    pub(super) fn name(self) -> &'static str {
        match self {
            SoakVenue::Coinbase => "coinbase",
            SoakVenue::Binance => "binance",
        }
    }
}

/// A period that may be turned off (`off`, `never` or `0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period(pub Option<Duration>);

/// `bench soak` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// How long to feed the engine (e.g. 90s, 10m, 1h, 1h30m).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Duration,
    /// Frames per second the simulator sends.
    #[arg(long, value_parser = parse_rate)]
    pub rate: f64,
    /// Where to write the JSON lines (samples, then the summary).
    #[arg(long, default_value = "target/bench/soak.jsonl")]
    pub out: PathBuf,
    /// Restart PostgreSQL this often (alternately fast and immediate shutdown); `off`
    /// never restarts it.
    #[arg(long, default_value = "5m", value_parser = parse_period)]
    pub pg_restart_every: Period,
    /// Write a sample this often.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub sample_every: Duration,
    /// Venue protocol of the simulator.
    #[arg(long, value_enum, default_value_t = SoakVenue::Coinbase)]
    pub venue: SoakVenue,
    /// Inject a sequence gap about this often (every rate × period frames of a
    /// connection); `off` for none.
    #[arg(long, default_value = "5s", value_parser = parse_period)]
    pub gap_every: Period,
    /// Drop the WebSocket connection about this often (every rate × period + 1 frames of
    /// a connection); `off` for none.
    #[arg(long, default_value = "20s", value_parser = parse_period)]
    pub disconnect_every: Period,
    /// The `hermes` binary [default: `hermes` beside this executable].
    #[arg(long)]
    pub hermes: Option<PathBuf>,
    /// `hermes run --journal-retention`: committed journal segments are deleted this
    /// long after their last write, so the journal's size levels off (segments rotate
    /// every 256 MiB or 10 minutes).
    #[arg(long, default_value = "10m")]
    pub journal_retention: String,
}

/// Parses a duration: one or more `NUMBER UNIT` parts, units `ms`, `s`, `m`, `h`
/// (`90s`, `10m`, `1.5h`, `1h30m`). Never panics; zero or nonsense is an error that says
/// what is expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "bad duration {s:?}: expected a number and a unit (ms, s, m, h), e.g. 90s, 10m, 1h or 1h30m"
        )
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut ms = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let unit_ms = match unit.trim() {
            "ms" => 1.0,
            "s" => 1e3,
            "m" | "min" => 60e3,
            "h" => 3600e3,
            _ => return Err(bad()),
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        ms += n * unit_ms;
        rest = next.trim_start();
    }
    if !ms.is_finite() || ms < 1.0 {
        return Err(format!("duration {s:?} is too short: at least 1ms"));
    }
    if ms > 366.0 * 86_400e3 {
        return Err(format!("duration {s:?} is too long: at most a year"));
    }
    Ok(Duration::from_millis(ms.round() as u64))
}

/// [`parse_duration`], or `off` / `never` / `0` for none.
pub fn parse_period(s: &str) -> Result<Period, String> {
    match s.trim() {
        "off" | "never" | "none" | "0" => Ok(Period(None)),
        _ => parse_duration(s).map(|d| Period(Some(d))),
    }
}

/// A positive, finite number of frames per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 10_000_000.0 => Ok(r),
        _ => Err(format!(
            "bad rate {s:?}: expected frames per second, a number above 0 (e.g. 2000)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in [
            "", "90", "s", "10x", "1..5s", "-5s", "5 s s", "h1", "1e3s", "0s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_duration("90").unwrap_err().contains("e.g. 90s"));
        assert_eq!(parse_period("off"), Ok(Period(None)));
        assert_eq!(
            parse_period("5m"),
            Ok(Period(Some(Duration::from_secs(300))))
        );
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("nan").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_rate("2000"), Ok(2000.0));
    }

    #[test]
    fn metrics_text() {
        let m = Metrics::parse(
            "# HELP x y\n# TYPE x counter\nhermes_frames_received_total 12345\n\
             hermes_reconnects_total{venue=\"coinbase\"} 2\nhermes_reconnects_total{venue=\"binance\"} 1\n\
             hermes_persist_rows_written_total{table=\"raw_events\"} 7\n\
             hermes_persist_rows_written_total{table=\"trades\"} 3\nhermes_persist_lag_seconds 0.25\n",
        );
        assert_eq!(m.count("hermes_frames_received_total", ""), Some(12345));
        assert_eq!(m.count("hermes_reconnects_total", ""), Some(3));
        assert_eq!(
            m.count("hermes_persist_rows_written_total", "table=\"raw_events\""),
            Some(7)
        );
        assert_eq!(m.sum("hermes_persist_lag_seconds", ""), Some(0.25));
        assert_eq!(m.count("absent", ""), None);
    }

    #[test]
    fn logs() {
        assert_eq!(
            run_frames_from_log("x\nrun: 50123 frames, 9 events (…)\npersisted …"),
            Some(50123)
        );
        assert_eq!(
            sim_report_from_log("sim: serving\nsim: stopping; 100 frames walked, 98 sent, 2 connections, 5 faults, 0 REST snapshots (0 throttled)"),
            Some(SimReport { walked: 100, sent: 98, connections: 2, faults: 5 })
        );
    }

    #[test]
    fn series_and_verdict() {
        let s = |t: f64, rss: u64, fds: u64| Sample {
            elapsed_s: t,
            rss_bytes: Some(rss),
            fds: Some(fds),
            ..Sample::default()
        };
        let samples = [
            s(0.0, 10 << 20, 20),
            s(60.0, 40 << 20, 24),
            s(120.0, 41 << 20, 25),
        ];
        let rss = Series::of(&samples, 60.0, |s| s.rss_bytes);
        assert_eq!(rss.first, Some(10 << 20));
        assert_eq!(rss.after_warmup, Some(40 << 20));
        assert_eq!(rss.growth, Some(1 << 20));
        assert_eq!(rss.max, Some(41 << 20));
        let fds = Series::of(&samples, 60.0, |s| s.fds);
        let v = verdict(&rss, &fds, Some(5), Some(5), Some(5), true);
        assert!(v.rows_equal_frames && v.rss_flat && v.fds_flat && v.run_ok);
        let v = verdict(&rss, &fds, Some(5), Some(4), Some(5), true);
        assert!(!v.rows_equal_frames);
        let v = verdict(&rss, &fds, Some(5), Some(5), Some(6), true);
        assert!(!v.rows_equal_frames);
        let grown = [
            s(0.0, 10 << 20, 20),
            s(60.0, 40 << 20, 20),
            s(120.0, 80 << 20, 30),
        ];
        let v = verdict(
            &Series::of(&grown, 60.0, |s| s.rss_bytes),
            &Series::of(&grown, 60.0, |s| s.fds),
            None,
            None,
            None,
            true,
        );
        assert!(!v.rss_flat && !v.fds_flat && !v.rows_equal_frames);
        let args = |d: u64, sample: u64, restart: Option<u64>| SoakArgs {
            duration: Duration::from_secs(d),
            rate: 5000.0,
            out: PathBuf::new(),
            pg_restart_every: Period(restart.map(Duration::from_secs)),
            sample_every: Duration::from_secs(sample),
            venue: SoakVenue::Coinbase,
            gap_every: Period(Some(Duration::from_secs(5))),
            disconnect_every: Period(Some(Duration::from_secs(20))),
            hermes: None,
            journal_retention: "10m".into(),
        };
        // An hour, restarts every 5 min: two and a half restart periods.
        assert_eq!(warmup(&args(3600, 60, Some(300))), Duration::from_secs(750));
        // Without restarts: a tenth of the run (at least 1.5 disconnect periods).
        assert_eq!(warmup(&args(3600, 60, None)), Duration::from_secs(360));
        assert_eq!(warmup(&args(100, 5, None)), Duration::from_secs(30));
        // Never more than half the run.
        assert_eq!(
            warmup(&args(25, 5, Some(10))),
            Duration::from_millis(12_500)
        );
    }
}
