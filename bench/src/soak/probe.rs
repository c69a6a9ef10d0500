//! What a soak measures: `/metrics`, `/proc`, the journal directory and the database.

#[allow(unused_imports)]
use super::*;

// ---- HTTP and metrics -----------------------------------------------------------------

/// `GET path` on 127.0.0.1:`port`: status and body (any status is an answer).
pub(super) fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut r = agent
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .call()?;
    let status = r.status().as_u16();
    Ok((status, r.body_mut().read_to_string()?))
}

/// Prometheus text samples: (name, labels, value).
#[derive(Debug, Default)]
pub struct Metrics(Vec<(String, String, f64)>);

impl Metrics {
    /// Parses the text format (comments skipped, no timestamps expected).
    pub fn parse(text: &str) -> Metrics {
        let mut v = Vec::new();
        for l in text.lines() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let Some((series, value)) = l.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            v.push((name.to_string(), labels.to_string(), value));
        }
        Metrics(v)
    }

    /// The sum of every series of `name` whose labels contain `label` ("" for all);
    /// `None` when there is none.
    pub fn sum(&self, name: &str, label: &str) -> Option<f64> {
        let mut hit = None;
        for (n, l, v) in &self.0 {
            if n == name && l.contains(label) {
                *hit.get_or_insert(0.0) += v;
            }
        }
        hit
    }

    /// [`Metrics::sum`] as a whole number (NaN and negatives as `None`).
    pub fn count(&self, name: &str, label: &str) -> Option<u64> {
        self.sum(name, label)
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v.round() as u64)
    }
}

pub(super) fn fetch_metrics(port: u16) -> Option<Metrics> {
    match http_get(port, "/metrics") {
        Ok((200, body)) => Some(Metrics::parse(&body)),
        _ => None,
    }
}

// ---- /proc, files, database ------------------------------------------------------------

/// (VmRSS bytes, threads) from /proc/PID/status.
pub(super) fn proc_status(pid: u32) -> (Option<u64>, Option<u64>) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    (field("VmRSS:").map(|kib| kib * 1024), field("Threads:"))
}

pub(super) fn fd_count(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// Sum of file sizes under `dir` (recursively).
pub(super) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub(super) fn connect(url: &str) -> Result<postgres::Client> {
    let mut cfg: postgres::Config = url.parse().context("the cluster's connection string")?;
    cfg.connect_timeout(Duration::from_secs(5));
    Ok(cfg.connect(postgres::NoTls)?)
}

pub(super) fn raw_events_rows(url: &str) -> Option<u64> {
    let mut c = connect(url).ok()?;
    let n: i64 = c
        .query_one("SELECT count(*) FROM raw_events", &[])
        .ok()?
        .get(0);
    u64::try_from(n).ok()
}

/// The engine's own count of received frames from its exit line (`run: N frames, …`).
pub(super) fn run_frames_from_log(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("run: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The simulator's stop line (`sim: stopping; W frames walked, S sent, C connections,
/// F faults, …`).
pub(super) fn sim_report_from_log(log: &str) -> Option<SimReport> {
    let l = log
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("sim: stopping;"))?;
    let n: Vec<u64> = l
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .filter_map(|t| t.parse().ok())
        .collect();
    (n.len() >= 4).then(|| SimReport {
        walked: n[0],
        sent: n[1],
        connections: n[2],
        faults: n[3],
    })
}
