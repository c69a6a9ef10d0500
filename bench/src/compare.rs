//! `bench compare NEW.json [BASELINE.json]`: each metric's change against an accepted
//! run, and whether it regressed beyond the tolerance.
//!
//! Absolute times on a shared 2-core machine move with the load, so metrics that have a
//! same-run baseline are compared by their ratio to it (Hermes vs serde_json, vs a
//! `BTreeMap` book, …): both sides of a ratio saw the same machine at the same moment.
//! Only metrics without a same-run baseline fall back to their absolute figure.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::report::{num, Better, Report};

/// Tolerances.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Largest accepted fall of a ratio, as a fraction (0.3 = a ratio may drop by 30%).
    pub ratio: f64,
    /// The same for the cross-thread and multi-process, scheduler-bound figures (ring,
    /// shm visibility, e2e, ws, nats, persist, memory) and for absolute figures.
    pub noisy: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            ratio: 0.30,
            noisy: 0.60,
        }
    }
}

/// The accepted baseline for this machine class: `perf-baselines/<class>.json`.
pub fn default_baseline(dir: &Path, cpu_model: &str, cores: usize) -> PathBuf {
    dir.join(format!("{}.json", machine_class(cpu_model, cores)))
}

/// The baseline to compare a run on `cpu_model` × `cores` with: the accepted one of its
/// machine class when `dir` has it (`exact` true), else the nearest one (same core count
/// first, then most words of the CPU model in common), or `None` when `dir` has none.
pub fn nearest_baseline(dir: &Path, cpu_model: &str, cores: usize) -> Option<(PathBuf, bool)> {
    let exact = default_baseline(dir, cpu_model, cores);
    if exact.is_file() {
        return Some((exact, true));
    }
    let class = machine_class(cpu_model, cores);
    let words = |c: &str| -> Vec<String> { c.split('-').map(str::to_string).collect() };
    let want = words(&class);
    let core_tag = format!("{cores}core");
    // Same core count, then CPU words in common, then the first name in order.
    type Score = (bool, usize, std::cmp::Reverse<String>);
    let mut best: Option<(Score, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let have = words(name);
        let same_cores = have.last() == Some(&core_tag);
        let common = have.iter().filter(|w| want.contains(w)).count();
        let score = (same_cores, common, std::cmp::Reverse(name.to_string()));
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, path));
        }
    }
    best.map(|(_, p)| (p, false))
}

/// `amd-epyc-2core`: the CPU model in lowercase words and the core count.
pub fn machine_class(cpu_model: &str, cores: usize) -> String {
    let words: Vec<String> = cpu_model
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .filter(|w| {
            !matches!(
                w.to_ascii_lowercase().as_str(),
                "processor" | "cpu" | "r" | "tm"
            )
        })
        .take(4)
        .map(|w| w.to_ascii_lowercase())
        .collect();
    format!("{}-{cores}core", words.join("-"))
}

/// Reads a report.
pub fn load(path: &Path) -> Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a bench report", path.display()))
}

fn noisy(id: &str) -> bool {
    [
        "e2e.",
        "ws.",
        "nats.",
        "persist.",
        "memory.",
        "ring.",
        "shm.visibility",
    ]
    .iter()
    .any(|p| id.starts_with(p))
}

/// Compares `new` with `base`; returns the printed comparison and the regressions.
pub fn compare(new: &Report, base: &Report, tol: Tolerance) -> (String, Vec<String>) {
    let mut s = String::new();
    let mut bad = Vec::new();
    let _ = writeln!(
        s,
        "new: {} run, git {}, {} ({} cores), load {:.2}\nbaseline: {} run, git {}, {} ({} cores), load {:.2}",
        new.mode,
        new.git,
        new.machine.cpu_model,
        new.machine.cores,
        new.machine.load_start,
        base.mode,
        base.git,
        base.machine.cpu_model,
        base.machine.cores,
        base.machine.load_start
    );
    if new.mode != base.mode {
        let _ = writeln!(
            s,
            "note: comparing a {} run with a {} baseline (different sample sizes)",
            new.mode, base.mode
        );
    }
    let _ = writeln!(
        s,
        "tolerance: ratios may fall by {:.0}% ({:.0}% for ring, shm visibility, e2e, ws, nats, persist, memory and for absolute figures)\n",
        tol.ratio * 100.0,
        tol.noisy * 100.0
    );
    let _ = writeln!(
        s,
        "| metric | compared | baseline run | new run | change | verdict |"
    );
    let _ = writeln!(s, "|---|---|--:|--:|--:|---|");
    for bm in base.metrics() {
        let Some(nm) = new.metrics().find(|m| m.id == bm.id) else {
            let skipped = new
                .stages
                .iter()
                .any(|st| st.skipped && bm.id.starts_with(&format!("{}.", st.name)));
            let _ = writeln!(
                s,
                "| `{}` | - | - | - | - | {} |",
                bm.id,
                if skipped { "stage skipped" } else { "missing" }
            );
            continue;
        };
        let t = if noisy(&bm.id) { tol.noisy } else { tol.ratio };
        let mut compared = false;
        for bb in &bm.baselines {
            let (Some(old), Some(nb)) = (bb.ratio, nm.baselines.iter().find(|b| b.name == bb.name))
            else {
                continue;
            };
            let Some(newr) = nb.ratio else { continue };
            compared = true;
            let change = newr / old - 1.0;
            let regressed = newr < old * (1.0 - t);
            if regressed {
                bad.push(format!(
                    "{} vs {}: ratio {:.2}× → {:.2}×",
                    bm.id, bb.name, old, newr
                ));
            }
            let _ = writeln!(
                s,
                "| `{}` | × vs {} | {:.2}× | {:.2}× | {:+.0}% | {} |",
                bm.id,
                bb.name,
                old,
                newr,
                change * 100.0,
                if regressed { "REGRESSION" } else { "ok" }
            );
        }
        if let (Some(o), Some(n)) = (bm.ours.headline(), nm.ours.headline()) {
            let change = n / o - 1.0;
            let worse = match bm.better {
                Better::Lower => n > o * (1.0 + tol.noisy),
                Better::Higher => n < o * (1.0 - tol.noisy),
            };
            let regressed = !compared && worse;
            if regressed {
                bad.push(format!("{}: {} → {} {}", bm.id, num(o), num(n), bm.unit));
            }
            let _ = writeln!(
                s,
                "| `{}` | {} ({}) | {} | {} | {:+.0}% | {} |",
                bm.id,
                bm.unit,
                if compared {
                    "absolute, informational"
                } else {
                    "absolute"
                },
                num(o),
                num(n),
                change * 100.0,
                if regressed {
                    "REGRESSION"
                } else if compared {
                    "-"
                } else {
                    "ok"
                }
            );
        }
    }
    for nm in new.metrics() {
        if !base.metrics().any(|m| m.id == nm.id) {
            let _ = writeln!(s, "| `{}` | - | - | - | - | new metric |", nm.id);
        }
    }
    if bad.is_empty() {
        let _ = writeln!(s, "\nno regression beyond the tolerance");
    } else {
        let _ = writeln!(s, "\n{} regression(s):", bad.len());
        for b in &bad {
            let _ = writeln!(s, "  {b}");
        }
    }
    (s, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_baseline_prefers_the_core_count_then_the_cpu() {
        let dir = std::env::temp_dir().join(format!("hermes-bench-near-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "amd-epyc-2core",
            "intel-xeon-gold-6148-2core",
            "amd-epyc-8core",
        ] {
            std::fs::write(dir.join(format!("{f}.json")), "{}").unwrap();
        }
        let name = |cpu: &str, cores| {
            let (p, exact) = nearest_baseline(&dir, cpu, cores).unwrap();
            let n = p.file_name().unwrap().to_str().unwrap().to_string();
            (n, exact)
        };
        assert_eq!(
            name("AMD EPYC 7B13", 2),
            ("amd-epyc-2core.json".into(), false)
        );
        assert_eq!(
            name("Intel(R) Xeon(R) Gold 6148 CPU", 2),
            ("intel-xeon-gold-6148-2core.json".into(), true)
        );
        assert_eq!(
            name("AMD EPYC 9654", 8),
            ("amd-epyc-8core.json".into(), false)
        );
        assert!(!name("Apple M3", 4).1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
