//! memory: resident set size of the engine (a child process of its own, so nothing else
//! the benchmark holds is counted) at steady state and after a long replay of the
//! synthetic market through the full engine with shm. No growth is the target.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use hermes_engine::{self, EngineOptions};
use hermes_ingest::{Decoder, Frame, FrameKind};
use hermes_sim::synth::{Synth, SynthOptions};
use serde::{Deserialize, Serialize};

use super::Config;
use crate::report::{Figure, Metric, Stage};
use crate::util::rss_kib;

/// What the child reports.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MemOut {
    /// Frames replayed.
    pub frames: u64,
    /// RSS after the warm-up, KiB.
    pub steady_kib: u64,
    /// RSS at the end, KiB.
    pub final_kib: u64,
    /// Largest RSS seen, KiB.
    pub max_kib: u64,
    /// (frames, RSS KiB) samples.
    pub samples: Vec<(u64, u64)>,
}

/// The child's main: replays `frames` synthetic frames (the first `warm` as warm-up)
/// through the engine and prints a [`MemOut`] as JSON.
pub fn child_main(frames: u64, warm: u64, shm: &std::path::Path) -> Result<()> {
    let opts = EngineOptions {
        shm_path: Some(shm.to_path_buf()),
        ..EngineOptions::default()
    };
    let res = hermes_engine::run(&opts, move |sink| {
        let mut synth = Synth::new(SynthOptions::default());
        let mut dec = Decoder::default();
        let mut out = MemOut {
            frames,
            ..MemOut::default()
        };
        let every = (frames / 50).max(1000);
        for i in 0..frames {
            let f = synth.next_frame();
            let frame = Frame {
                venue: f.venue,
                kind: match &f.rest_symbol {
                    Some(s) => FrameKind::RestDepth {
                        symbol: s.as_bytes(),
                    },
                    None => FrameKind::Ws,
                },
                conn: 0,
                recv_ts_ns: f.recv_ts_ns,
                data: f.data.as_bytes(),
            };
            let _ = dec.decode(&frame, sink);
            if i + 1 == warm {
                out.steady_kib = rss_kib();
            }
            if (i + 1) % every == 0 {
                let r = rss_kib();
                out.samples.push((i + 1, r));
                out.max_kib = out.max_kib.max(r);
            }
        }
        out
    })?;
    let mut out = res.ingest;
    out.final_kib = rss_kib();
    out.max_kib = out.max_kib.max(out.final_kib);
    println!("{}", serde_json::to_string(&out)?);
    let _ = std::fs::remove_file(shm);
    Ok(())
}

/// Runs the stage.
pub fn run(cfg: &Config) -> Result<Stage> {
    let t = Instant::now();
    let frames: u64 = cfg.size(4_000_000, 400_000);
    let warm: u64 = cfg.size(400_000, 100_000);
    let out = Command::new(&cfg.exe)
        .arg("__memory")
        .arg("--frames")
        .arg(frames.to_string())
        .arg("--warm")
        .arg(warm.to_string())
        .arg("--shm")
        .arg(cfg.tmp.join("memory.shm"))
        .output()
        .context("running the memory child")?;
    anyhow::ensure!(
        out.status.success(),
        "memory child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: MemOut = serde_json::from_slice(&out.stdout).context("memory child output")?;
    let mib = |k: u64| k as f64 / 1024.0;
    let grew = m.final_kib as f64 - m.steady_kib as f64;
    let met = grew <= (m.steady_kib as f64 * 0.02).max(1024.0);
    let metric = Metric::lower(
        "memory.rss_after_replay",
        &format!(
            "RSS of the engine process after replaying {} synthetic frames through decoder, ring, books and shm",
            m.frames
        ),
        "MiB",
        Figure::scalar(mib(m.final_kib)),
    )
    .vs(
        &format!("RSS at steady state (after {warm} frames), same process"),
        Figure::scalar(mib(m.steady_kib)),
        None,
    )
    .target("no growth (≤ 2% or 1 MiB over steady state)", met)
    .note(format!(
        "max {:.1} MiB; growth {:+.2} MiB; samples (frames→MiB): {}",
        mib(m.max_kib),
        grew / 1024.0,
        m.samples
            .iter()
            .step_by(10)
            .map(|(f, k)| format!("{f}→{:.1}", mib(*k)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(Stage {
        name: "memory".into(),
        seconds: t.elapsed().as_secs_f64(),
        metrics: vec![metric],
        notes: vec![],
        skipped: false,
        pinned: crate::util::core_ids().len() >= 2,
    })
}
