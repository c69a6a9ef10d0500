//! The result document: one [`Report`] per run, serialised as JSON (schema in
//! `bench/README.md`), and its human-readable table.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// Schema identifier written into every report.
pub const SCHEMA: &str = "hermes-bench/1";

/// A measured quantity: a distribution (percentiles) or a single value.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Figure {
    /// A single value (throughputs, rows/s, RSS): set instead of percentiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    /// 90th percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    /// 99th percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    /// 99.9th percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p999: Option<f64>,
    /// Largest sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Mean (for reference; percentiles are the figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Figure {
    /// A single value.
    pub fn scalar(v: f64) -> Figure {
        Figure {
            value: Some(v),
            ..Figure::default()
        }
    }

    /// The headline number: the value, else the median.
    pub fn headline(&self) -> Option<f64> {
        self.value.or(self.p50)
    }
}

/// Which direction is better for a metric.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Times, bytes, CPU.
    Lower,
    /// Rates.
    Higher,
}

/// A throughput beside a distribution.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Throughput {
    /// The value.
    pub value: f64,
    /// Its unit (`MB/s`, `msg/s`, `rows/s`).
    pub unit: String,
}

/// A baseline measured in the same run on the same input.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    /// What it is (`serde_json borrowed typed structs`, `BTreeMap book`, …).
    pub name: String,
    /// Its figure, in the metric's unit.
    pub figure: Figure,
    /// Its throughput, in the metric's throughput unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
    /// How much better Hermes is: baseline / ours for lower-is-better metrics, ours /
    /// baseline for higher-is-better ones, on the headline figures (p50 or value). Above
    /// 1 Hermes wins.
    pub ratio: Option<f64>,
}

/// One measured figure with its baselines.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    /// Stable key, compared across runs (`parse.binance.depth20`).
    pub id: String,
    /// Human description.
    pub what: String,
    /// Unit of the figure (`ns/frame`, `rows/s`).
    pub unit: String,
    /// Direction.
    pub better: Better,
    /// Hermes' figure.
    pub ours: Figure,
    /// Hermes' throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<Throughput>,
    /// Same-run baselines.
    pub baselines: Vec<Baseline>,
    /// The target for this figure, if any, and whether it was met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Remarks (what was measured exactly, samples lost, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A target from the benchmark issue.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Target {
    /// The target as text (`≥3× serde_json`, `p50 < 50 ns`).
    pub text: String,
    /// Met in this run.
    pub met: bool,
}

impl Metric {
    /// A lower-is-better metric.
    pub fn lower(id: &str, what: &str, unit: &str, ours: Figure) -> Metric {
        Metric {
            id: id.into(),
            what: what.into(),
            unit: unit.into(),
            better: Better::Lower,
            ours,
            throughput: None,
            baselines: Vec::new(),
            target: None,
            notes: Vec::new(),
        }
    }

    /// A higher-is-better metric.
    pub fn higher(id: &str, what: &str, unit: &str, ours: Figure) -> Metric {
        Metric {
            better: Better::Higher,
            ..Metric::lower(id, what, unit, ours)
        }
    }

    /// Adds a throughput.
    pub fn with_throughput(mut self, value: f64, unit: &str) -> Metric {
        self.throughput = Some(Throughput {
            value,
            unit: unit.into(),
        });
        self
    }

    /// Adds a baseline, computing its ratio.
    pub fn vs(mut self, name: &str, figure: Figure, throughput: Option<f64>) -> Metric {
        let ratio = match (self.ours.headline(), figure.headline()) {
            (Some(o), Some(b)) if o > 0.0 && b > 0.0 => Some(match self.better {
                Better::Lower => b / o,
                Better::Higher => o / b,
            }),
            _ => None,
        };
        let unit = self.throughput.as_ref().map(|t| t.unit.clone());
        self.baselines.push(Baseline {
            name: name.into(),
            figure,
            throughput: throughput
                .zip(unit)
                .map(|(value, unit)| Throughput { value, unit }),
            ratio,
        });
        self
    }

    /// Adds a note.
    pub fn note(mut self, n: impl Into<String>) -> Metric {
        self.notes.push(n.into());
        self
    }

    /// Sets the target and whether it is met.
    pub fn target(mut self, text: &str, met: bool) -> Metric {
        self.target = Some(Target {
            text: text.into(),
            met,
        });
        self
    }

    /// The first baseline's ratio.
    pub fn ratio(&self) -> Option<f64> {
        self.baselines.first().and_then(|b| b.ratio)
    }
}

/// One stage's results.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stage {
    /// Stage name (`parse`, `e2e`, …).
    pub name: String,
    /// Wall time the stage took, seconds.
    pub seconds: f64,
    /// Its metrics.
    pub metrics: Vec<Metric>,
    /// Stage-level remarks (skipped parts, configuration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Whether the stage was skipped (with the reason in `notes`).
    #[serde(default)]
    pub skipped: bool,
    /// Whether its measuring threads were pinned to cores (the engine's threads, the ring's
    /// producer and consumer, the shm writer and reader); single-threaded stages are not.
    #[serde(default)]
    pub pinned: bool,
}

/// One run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// `quick` or `full`.
    pub mode: String,
    /// The command line.
    pub command: String,
    /// Git commit of the tree measured (with `-dirty` when it had changes).
    pub git: String,
    /// Start, Unix seconds.
    pub started_unix: u64,
    /// Whole run, seconds.
    pub seconds: f64,
    /// The machine.
    pub machine: Machine,
    /// The stages.
    pub stages: Vec<Stage>,
}

impl Report {
    /// Every metric with its stage.
    pub fn metrics(&self) -> impl Iterator<Item = &Metric> {
        self.stages.iter().flat_map(|s| s.metrics.iter())
    }
}

/// Formats a number with 3 significant digits and thousands separators for large ones.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 10_000.0 {
        let s = format!("{:.0}", v);
        let (neg, digits) = s.strip_prefix('-').map_or((false, &s[..]), |d| (true, d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if neg {
            format!("-{out}")
        } else {
            out
        }
    } else if a >= 100.0 {
        format!("{:.0}", v)
    } else if a >= 10.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_else(|| "-".into())
}

fn is_latency(unit: &str) -> bool {
    let base = unit.split('/').next().unwrap_or("");
    matches!(base, "ns" | "µs" | "ms")
}

/// The Markdown table of a report: one row per metric and baseline.
pub fn table(r: &Report) -> String {
    let m = &r.machine;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Hermes bench ({} run), {} ({} cores, threads {}), load {:.2} → {:.2}, git {}\n",
        r.mode,
        m.cpu_model,
        m.cores,
        if m.pinned { "pinned" } else { "not pinned" },
        m.load_start,
        m.load_end,
        r.git
    );
    let _ = writeln!(
        s,
        "| metric | unit | p50 | p90 | p99 | p99.9 | max | throughput | baseline (same run) | baseline p50 | × vs baseline | target |"
    );
    let _ = writeln!(s, "|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|---|");
    for st in &r.stages {
        if st.skipped {
            let _ = writeln!(
                s,
                "| **{}** skipped: {} | | | | | | | | | | | |",
                st.name,
                st.notes.join("; ")
            );
            continue;
        }
        let _ = writeln!(
            s,
            "| **{}**: {} cores, threads {}, {:.1} s | | | | | | | | | | | |",
            st.name,
            m.cores,
            if st.pinned {
                "pinned"
            } else {
                "not pinned (one thread)"
            },
            st.seconds
        );
        for mt in &st.metrics {
            let f = &mt.ours;
            let unit = if is_latency(&mt.unit) {
                format!("{} (2 cores)", mt.unit)
            } else {
                mt.unit.clone()
            };
            let (p50, rest) = match f.value {
                Some(v) => (
                    num(v),
                    ["-".to_string(), "-".into(), "-".into(), "-".into()],
                ),
                None => (
                    opt(f.p50),
                    [opt(f.p90), opt(f.p99), opt(f.p999), opt(f.max)],
                ),
            };
            let tp = mt
                .throughput
                .as_ref()
                .map(|t| format!("{} {}", num(t.value), t.unit))
                .unwrap_or_else(|| "-".into());
            let target = mt
                .target
                .as_ref()
                .map(|t| format!("{} {}", t.text, if t.met { "✔" } else { "✘" }))
                .unwrap_or_default();
            let first = mt.baselines.first();
            let bl = |b: Option<&Baseline>| match b {
                Some(b) => (
                    b.name.clone(),
                    opt(b.figure.headline()),
                    b.ratio.map(|r| format!("{r:.2}×")).unwrap_or("-".into()),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let (bn, bv, br) = bl(first);
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                mt.id, unit, p50, rest[0], rest[1], rest[2], rest[3], tp, bn, bv, br, target
            );
            for b in mt.baselines.iter().skip(1) {
                let (bn, bv, br) = bl(Some(b));
                let _ = writeln!(
                    s,
                    "| ↳ `{}` | | | | | | | | {} | {} | {} | |",
                    mt.id, bn, bv, br
                );
            }
        }
    }
    s.push_str("\n× vs baseline: how many times better Hermes is than the baseline on the headline figure (p50, or the value); above 1 Hermes wins.\n");
    s
}
