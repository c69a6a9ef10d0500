//! The machine a run was measured on.

use serde::{Deserialize, Serialize};

/// What every result carries about its machine.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Cores this process may use.
    pub cores: usize,
    /// Whether the measuring threads were pinned to cores.
    pub pinned: bool,
    /// Kernel release.
    pub kernel: String,
    /// Clock source (`tsc`, `kvm-clock`, …): what `clock_gettime` costs depends on it.
    pub clocksource: String,
    /// Cost of one `clock_gettime(CLOCK_MONOTONIC)`, ns.
    pub timer_ns: f64,
    /// 1-minute load average when the run started.
    pub load_start: f64,
    /// 1-minute load average when it ended.
    pub load_end: f64,
    /// `rustc --version` of the toolchain on `PATH`.
    pub rustc: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The 1-minute load average.
pub fn load_avg() -> f64 {
    read("/proc/loadavg")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

impl Machine {
    /// Probes the machine (before any thread is pinned).
    pub fn probe() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cores = crate::util::core_ids().len().max(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(crate::util::core_ids().len().max(1)),
        );
        let rustc = std::process::Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Machine {
            cpu_model,
            cores,
            pinned: cores >= 2,
            kernel: read("/proc/sys/kernel/osrelease"),
            clocksource: read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
            timer_ns: crate::util::timer_overhead_ns(),
            load_start: load_avg(),
            load_end: 0.0,
            rustc,
        }
    }
}

/// The git commit of the working tree, `-dirty` when it has uncommitted changes.
pub fn git_describe() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .map(|s| !s.is_empty())
                .unwrap_or(false);
            if dirty {
                format!("{c}-dirty")
            } else {
                c
            }
        }
        None => "unknown".into(),
    }
}
