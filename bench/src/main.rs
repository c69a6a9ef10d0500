//! `bench`: the Hermes benchmark harness. `bench [--quick] [--out FILE]` runs every stage
//! and writes one JSON report plus a Markdown table; `bench compare NEW [BASELINE]`
//! checks a report against the accepted one in `perf-baselines/`; `bench soak --duration D
//! --rate R` runs the real `hermes run` against the simulator for a long time (README).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hermes_bench::compare::{self, Tolerance};
use hermes_bench::machine::{self, Machine};
use hermes_bench::report::{self, Report, Stage};
use hermes_bench::stages::{self, shm::Field, Config};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Hermes latency and throughput benchmarks, each figure beside a same-run baseline"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Smoke-test sizes: every stage, about two minutes, no network needed.
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON report (a `.md` table is written beside it).
    #[arg(long, default_value = "target/bench/last.json")]
    out: PathBuf,
    /// Stages to run, comma-separated (parse, decimal, book, ring, shm, e2e, ws, nats,
    /// persist, export, memory).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    stages: Vec<String>,
    /// Also parse and export this capture file (native or JSON lines, optionally
    /// .gz/.zst); the export stage otherwise takes the BTCUSDT capture in
    /// ../shared/captures when it is there.
    #[arg(long)]
    capture: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compares a report with an accepted baseline (default:
    /// `perf-baselines/<machine class>.json`); exits 1 on a regression beyond the
    /// tolerance unless --no-fail.
    Compare {
        /// The new report.
        new: PathBuf,
        /// The accepted report.
        baseline: Option<PathBuf>,
        /// Largest accepted fall of a same-run ratio (0.3 = 30%).
        #[arg(long, default_value_t = 0.30)]
        tolerance: f64,
        /// Tolerance for the scheduler-bound ratios (ring, shm visibility, e2e, ws, nats,
        /// persist, memory) and for absolute figures.
        #[arg(long, default_value_t = 0.60)]
        noisy_tolerance: f64,
        /// Print the comparison but always exit 0 (CI smoke runs on noisy machines).
        #[arg(long)]
        no_fail: bool,
    },
    /// Runs `hermes run` against `hermes sim` (faults on) with a private PostgreSQL
    /// restarted on a schedule; samples RSS, descriptors, threads, journal size, lag and
    /// rows as JSON lines, and at the end checks raw_events rows against frames received.
    /// Exits 1 when they differ or the run process died.
    Soak(hermes_bench::soak::SoakArgs),
    /// Child process: spins on a shm region's slots and reports visibility latency.
    #[command(name = "__reader", hide = true)]
    Reader {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, default_value_t = 1)]
        instruments: usize,
        #[arg(long, default_value = "publish")]
        field: String,
        #[arg(long)]
        pin: Option<usize>,
        #[arg(long, default_value_t = u32::MAX)]
        yield_after: u32,
    },
    /// Child process: replays synthetic frames through the engine and reports RSS.
    #[command(name = "__memory", hide = true)]
    Memory {
        #[arg(long)]
        frames: u64,
        #[arg(long)]
        warm: u64,
        #[arg(long)]
        shm: PathBuf,
    },
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("bench: {e:#}");
        std::process::exit(2);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Reader {
            path,
            instruments,
            field,
            pin,
            yield_after,
        }) => stages::shm::reader_main(&stages::shm::ReaderArgs {
            path,
            instruments,
            field: if field == "recv" {
                Field::Recv
            } else {
                Field::Publish
            },
            pin,
            yield_after,
        }),
        Some(Cmd::Memory { frames, warm, shm }) => stages::memory::child_main(frames, warm, &shm),
        Some(Cmd::Soak(a)) => {
            let s = hermes_bench::soak::run(&a)?;
            eprintln!("{}", hermes_bench::soak::describe(&s));
            if !s.ok {
                for p in &s.problems {
                    eprintln!("bench soak: FAILED: {p}");
                }
                std::process::exit(1);
            }
            Ok(())
        }
        Some(Cmd::Compare {
            new,
            baseline,
            tolerance,
            noisy_tolerance,
            no_fail,
        }) => {
            let new_r = compare::load(&new)?;
            let base_path = match baseline {
                Some(b) => b,
                None => {
                    let dir = workspace_dir().join("perf-baselines");
                    let (cpu, cores) = (&new_r.machine.cpu_model, new_r.machine.cores);
                    match compare::nearest_baseline(&dir, cpu, cores) {
                        Some((p, true)) => p,
                        Some((p, false)) => {
                            eprintln!(
                                "warning: no accepted baseline for this machine class ({}) in {}; comparing with the nearest, {} (another CPU: same-run ratios carry over, absolute figures less so)",
                                compare::machine_class(cpu, cores),
                                dir.display(),
                                p.display()
                            );
                            p
                        }
                        None => {
                            println!(
                                "no accepted baseline in {}; nothing to compare (accept a run by copying its JSON there)",
                                dir.display()
                            );
                            return Ok(());
                        }
                    }
                }
            };
            if !base_path.exists() && no_fail {
                println!("no baseline at {}; nothing to compare", base_path.display());
                return Ok(());
            }
            let base = compare::load(&base_path)?;
            let (text, bad) = compare::compare(
                &new_r,
                &base,
                Tolerance {
                    ratio: tolerance,
                    noisy: noisy_tolerance,
                },
            );
            println!("baseline file: {}\n{text}", base_path.display());
            if !bad.is_empty() && !no_fail {
                std::process::exit(1);
            }
            Ok(())
        }
        None => run(cli),
    }
}

/// The workspace root (two levels above this crate's manifest at build time, or the
/// current directory when that is gone).
fn workspace_dir() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match p.parent() {
        Some(w) if w.join("perf-baselines").is_dir() => w.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn run(cli: Cli) -> Result<()> {
    let started = Instant::now();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut m = Machine::probe();
    eprintln!(
        "bench: {} ({} cores, clock {} {:.0} ns), load {:.2}, {} run",
        m.cpu_model,
        m.cores,
        m.clocksource,
        m.timer_ns,
        m.load_start,
        if cli.quick { "quick" } else { "full" }
    );
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let tmp = base.join(format!("hermes-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let cfg = Config {
        quick: cli.quick,
        capture: cli.capture.clone(),
        exe: std::env::current_exe().context("locating this executable")?,
        tmp: tmp.clone(),
    };
    let wanted: Vec<&str> = if cli.stages.iter().any(|s| s == "all") {
        stages::ALL.to_vec()
    } else {
        stages::ALL
            .iter()
            .copied()
            .filter(|s| cli.stages.iter().any(|w| w == s))
            .collect()
    };
    for w in &cli.stages {
        anyhow::ensure!(
            w == "all" || stages::ALL.contains(&w.as_str()),
            "unknown stage {w:?}; stages: {}",
            stages::ALL.join(", ")
        );
    }
    let mut out: Vec<Stage> = Vec::new();
    for name in wanted {
        let t = Instant::now();
        eprintln!("bench: {name} …");
        let r = match name {
            "parse" => stages::parse::run(&cfg, m.timer_ns),
            "decimal" => stages::decimal::run(&cfg),
            "book" => stages::book::run(&cfg, m.timer_ns),
            "ring" => stages::ring::run(&cfg),
            "shm" => stages::shm::run(&cfg),
            "e2e" => stages::e2e::run(&cfg),
            "ws" => stages::ws::run(&cfg),
            "nats" => stages::nats::run(&cfg),
            "persist" => stages::persist::run(&cfg),
            "export" => stages::export::run(&cfg),
            "memory" => stages::memory::run(&cfg),
            _ => unreachable!("filtered above"),
        };
        let st = match r {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bench: {name} failed: {e:#}");
                Stage {
                    name: name.into(),
                    seconds: t.elapsed().as_secs_f64(),
                    metrics: vec![],
                    notes: vec![format!("failed: {e:#}")],
                    skipped: true,
                    pinned: false,
                }
            }
        };
        eprintln!("bench: {name} done in {:.1} s", t.elapsed().as_secs_f64());
        out.push(st);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    m.load_end = machine::load_avg();
    let report = Report {
        schema: report::SCHEMA.into(),
        mode: if cli.quick { "quick" } else { "full" }.into(),
        command,
        git: machine::git_describe(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_sub(started.elapsed().as_secs()),
        seconds: started.elapsed().as_secs_f64(),
        machine: m,
        stages: out,
    };
    if let Some(dir) = cli.out.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    std::fs::write(&cli.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", cli.out.display()))?;
    let table = report::table(&report);
    std::fs::write(cli.out.with_extension("md"), &table)?;
    println!("{table}");
    for st in &report.stages {
        for n in &st.notes {
            println!("- {}: {}", st.name, n);
        }
    }
    eprintln!(
        "bench: wrote {} (and .md) in {:.0} s",
        cli.out.display(),
        report.seconds
    );
    Ok(())
}
