//! Samples, the series they make, the verdict and the summary of a soak.

#[allow(unused_imports)]
use super::*;

/// One sample of the `hermes run` process and the database; `null` where the value could
/// not be read at that moment (say `/metrics` while the process was busy).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Always `"sample"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Seconds since the engine was ready.
    pub elapsed_s: f64,
    /// VmRSS of `hermes run`, bytes.
    pub rss_bytes: Option<u64>,
    /// Open descriptors of `hermes run` (entries of /proc/PID/fd).
    pub fds: Option<u64>,
    /// Threads of `hermes run`.
    pub threads: Option<u64>,
    /// Sum of the sizes of the files in the journal directory, bytes.
    pub journal_bytes: u64,
    /// Journal bytes not yet in PostgreSQL (`hermes_persist_lag_bytes`).
    pub persist_lag_bytes: Option<u64>,
    /// Time since PostgreSQL last held everything journaled, ms (`hermes_persist_lag_seconds`).
    pub persist_lag_ms: Option<u64>,
    /// The persister is connected (`hermes_persist_connected`).
    pub persist_connected: Option<bool>,
    /// Failed PostgreSQL attempts the persister retried (`hermes_persist_retries_total`).
    pub persist_retries: Option<u64>,
    /// Frames the engine received (`hermes_frames_received_total`).
    pub frames_received: Option<u64>,
    /// `SELECT count(*) FROM raw_events`.
    pub raw_events_rows: Option<u64>,
    /// PostgreSQL restarts so far.
    pub pg_restarts: u32,
    /// Sequence gaps the engine detected (`hermes_sequence_gaps_total`).
    pub gaps: Option<u64>,
    /// Books rebuilt after a gap (`hermes_resyncs_total`).
    pub resyncs: Option<u64>,
    /// Reconnections after lost connections (`hermes_reconnects_total`, all venues).
    pub reconnects: Option<u64>,
}

/// First, last, largest value of a sampled figure, and its growth after the warm-up.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Series {
    /// First sample.
    pub first: Option<u64>,
    /// Last sample.
    pub last: Option<u64>,
    /// Largest sample.
    pub max: Option<u64>,
    /// First sample at or after the warm-up.
    pub after_warmup: Option<u64>,
    /// `last - after_warmup` (negative when it shrank).
    pub growth: Option<i64>,
}

impl Series {
    /// The series of `f` over `samples` (samples where it is `None` are left out).
    pub fn of(samples: &[Sample], warmup_s: f64, f: impl Fn(&Sample) -> Option<u64>) -> Series {
        let vals: Vec<(f64, u64)> = samples
            .iter()
            .filter_map(|s| f(s).map(|v| (s.elapsed_s, v)))
            .collect();
        let after_warmup = vals
            .iter()
            .find(|(t, _)| *t >= warmup_s)
            .or(vals.last())
            .map(|p| p.1);
        let last = vals.last().map(|p| p.1);
        Series {
            first: vals.first().map(|p| p.1),
            last,
            max: vals.iter().map(|p| p.1).max(),
            after_warmup,
            growth: match (last, after_warmup) {
                (Some(l), Some(b)) => Some(l as i64 - b as i64),
                _ => None,
            },
        }
    }
}

/// The verdicts and the thresholds behind them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Verdict {
    /// `raw_events` rows = frames the engine received, and every row a distinct
    /// `(stream, frame_no)`.
    pub rows_equal_frames: bool,
    /// Descriptors at the end ≤ after the warm-up + `fds_slack`.
    pub fds_flat: bool,
    /// RSS growth after the warm-up ≤ `rss_slack_bytes`.
    pub rss_flat: bool,
    /// `hermes run` lived until told to stop, and exited 0.
    pub run_ok: bool,
    /// The RSS growth allowed, bytes.
    pub rss_slack_bytes: u64,
    /// The descriptor growth allowed.
    pub fds_slack: u64,
    /// Why the thresholds are what they are.
    pub thresholds: String,
}

/// What the simulator said when it stopped.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SimReport {
    /// Frames its market walked.
    pub walked: u64,
    /// Frames it sent (over all connections).
    pub sent: u64,
    /// Connections it accepted.
    pub connections: u64,
    /// Faults it injected.
    pub faults: u64,
}

/// The final line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Always `"summary"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Venue.
    pub venue: Option<SoakVenue>,
    /// Frames per second asked of the simulator.
    pub rate: f64,
    /// Seconds of feed asked for.
    pub duration_s: f64,
    /// Seconds the feed actually ran.
    pub fed_s: f64,
    /// Samples written.
    pub samples: usize,
    /// Samples before this many seconds are the warm-up.
    pub warmup_s: f64,
    /// RSS of `hermes run`, bytes.
    pub rss: Series,
    /// Its descriptors.
    pub fds: Series,
    /// Its threads.
    pub threads: Series,
    /// Journal directory size, bytes.
    pub journal_bytes: Series,
    /// Frames the engine received: its own final count (`run: N frames` at exit), else the
    /// last `/metrics` figure.
    pub frames_received: Option<u64>,
    /// `count(*)` of `raw_events` after the run.
    pub raw_events_rows: Option<u64>,
    /// `count(distinct (stream, frame_no))` of `raw_events`.
    pub raw_events_distinct: Option<u64>,
    /// PostgreSQL restarts.
    pub pg_restarts: u32,
    /// Gaps, resyncs and reconnections the engine counted (last `/metrics`).
    pub gaps: Option<u64>,
    /// Books rebuilt after gaps.
    pub resyncs: Option<u64>,
    /// Reconnections.
    pub reconnects: Option<u64>,
    /// Retries of the persister.
    pub persist_retries: Option<u64>,
    /// Seconds from stopping the feed to the persister's lag reaching 0.
    pub drain_s: Option<f64>,
    /// The simulator's own counters.
    pub sim: Option<SimReport>,
    /// How `hermes run` ended.
    pub run_exit: String,
    /// The verdicts.
    pub verdict: Verdict,
    /// `rows_equal_frames` and `run_ok` (the exit status follows this).
    pub ok: bool,
    /// What went wrong, for the exit message.
    pub problems: Vec<String>,
}

/// The warm-up, after which RSS and descriptors must stay flat: long enough for two
/// PostgreSQL restarts (one fast, one immediate) and a reconnect, whose catch-up batches
/// and buffers set the high-water marks (2.5 restart periods, 1.5 disconnect periods), at
/// least a tenth of the run and one sample interval, at most half the run.
pub fn warmup(args: &SoakArgs) -> Duration {
    let mut w = (args.duration / 10).max(args.sample_every);
    if let Some(p) = args.pg_restart_every.0 {
        w = w.max(p * 5 / 2);
    }
    if let Some(p) = args.disconnect_every.0 {
        w = w.max(p * 3 / 2);
    }
    w.min(args.duration / 2)
}

/// Why the flatness thresholds are what they are (in every summary).
pub(super) const THRESHOLDS: &str = "rss_flat: growth after the warm-up <= max(16 MiB, 10% of the RSS after the warm-up). \
The warm-up spans two PostgreSQL restarts and a reconnect, whose catch-up batches and buffers set the \
allocator's high-water mark (5 min at 2,000 frames/s: 45 MiB at the start, 113 MiB by 75 s, after the \
first restart, then within 3 MiB); 1 byte leaked per frame is 18 MiB an hour at 5,000 frames/s, so read \
the growth too. fds_flat: at most 4 more descriptors at the end than after the warm-up: a WebSocket \
reconnecting, the persister's connection re-opening and the sampler's own HTTP request can each hold \
one at the sampling instant; one leaked per reconnect or restart exceeds it within minutes.";

/// The verdicts from the samples and the final counts.
pub fn verdict(
    rss: &Series,
    fds: &Series,
    rows: Option<u64>,
    distinct: Option<u64>,
    frames: Option<u64>,
    run_ok: bool,
) -> Verdict {
    let base = rss.after_warmup.unwrap_or(0);
    let slack = RSS_SLACK_BYTES.max((base as f64 * RSS_SLACK_FRACTION) as u64);
    let rows_equal_frames = match (rows, distinct, frames) {
        (Some(r), Some(d), Some(f)) => r == f && d == r,
        _ => false,
    };
    Verdict {
        rows_equal_frames,
        fds_flat: fds.growth.is_some_and(|g| g <= FDS_SLACK as i64),
        rss_flat: rss.growth.is_some_and(|g| g <= slack as i64),
        run_ok,
        rss_slack_bytes: slack,
        fds_slack: FDS_SLACK,
        thresholds: THRESHOLDS.into(),
    }
}

pub(super) fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

/// A one-paragraph reading of the summary for stderr.
pub fn describe(s: &Summary) -> String {
    let mib =
        |v: Option<u64>| v.map_or_else(|| "?".into(), |b| format!("{:.1}", b as f64 / 1048576.0));
    format!(
        "soak: {:.0} s at {} frames/s ({}), {} PostgreSQL restarts, {} gaps, {} resyncs, {} reconnects; \
         frames {} vs raw_events {} ({} distinct): {}; RSS MiB first {} after warm-up {} last {} max {} (growth {:+.1} MiB, {}); \
         fds first {} last {} max {} ({}); journal {} → {} bytes; hermes run {}",
        s.fed_s,
        s.rate,
        s.venue.map(|v| v.name()).unwrap_or("?"),
        s.pg_restarts,
        opt(s.gaps),
        opt(s.resyncs),
        opt(s.reconnects),
        opt(s.frames_received),
        opt(s.raw_events_rows),
        opt(s.raw_events_distinct),
        if s.verdict.rows_equal_frames { "equal" } else { "NOT EQUAL" },
        mib(s.rss.first),
        mib(s.rss.after_warmup),
        mib(s.rss.last),
        mib(s.rss.max),
        s.rss.growth.unwrap_or(0) as f64 / 1048576.0,
        if s.verdict.rss_flat { "flat" } else { "GROWING" },
        opt(s.fds.first),
        opt(s.fds.last),
        opt(s.fds.max),
        if s.verdict.fds_flat { "flat" } else { "GROWING" },
        opt(s.journal_bytes.first),
        opt(s.journal_bytes.last),
        s.run_exit
    )
}
