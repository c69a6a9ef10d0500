//! The soak itself: start everything, sample, restart PostgreSQL, drain, compare.

#[allow(unused_imports)]
use super::*;

/// Runs the soak; the summary (its `ok` says whether rows matched frames and the run
/// lived). Errors are for what kept the soak from running or from finishing.
pub fn run(args: &SoakArgs) -> Result<Summary> {
    anyhow::ensure!(
        args.sample_every <= args.duration,
        "--sample-every ({:?}) is longer than --duration ({:?})",
        args.sample_every,
        args.duration
    );
    let bin = hermes_binary(args)?;
    local_pg::find_binaries().context("the soak needs PostgreSQL's server binaries")?;
    let stop = hermes_engine::shutdown_flag();
    if let Some(d) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut out = Emitter(
        File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?,
    );
    let (dir, shm_dir) = scratch_dirs()?;
    let base = dir.0.clone();
    let journal = base.join("journal");
    let shm = shm_dir.0.join("hermes.shm");
    let mut rig = Rig {
        run: None,
        sim: None,
        pg: None,
        _shm_dir: shm_dir,
        _dir: dir,
    };

    eprintln!(
        "soak: starting a private PostgreSQL in {}",
        base.join("pg").display()
    );
    let pg = LocalPg::start_with(
        &base.join("pg"),
        StartOptions {
            fast: false,
            die_with_parent: true,
        },
    )
    .context("starting a private PostgreSQL")?;
    let url = pg.create_database("hermes_soak")?;
    let pg = rig.pg.insert(pg);
    let (sim, ws_url) = start_sim(&bin, args, &base.join("sim.log"))?;
    rig.sim = Some(sim);
    let port = free_port()?;
    let setup = RunSetup {
        ws_url: &ws_url,
        database_url: &url,
        journal: &journal,
        shm: &shm,
        port,
    };
    let run = rig
        .run
        .insert(start_run(&bin, args, &setup, &base.join("run.log"))?);
    wait_ready(run, port, &stop)?;
    let pid = run.pid();
    eprintln!(
        "soak: hermes run (pid {pid}) ready on http://127.0.0.1:{port}; feeding {} frames/s for {:.0} s",
        args.rate,
        args.duration.as_secs_f64()
    );

    // The soak: samples at 0, every --sample-every and at the end; restarts between.
    let t0 = Instant::now();
    let end = t0 + args.duration;
    let probe = Probe {
        t0,
        pid,
        port,
        journal: &journal,
        database_url: &url,
    };
    let mut samples: Vec<Sample> = Vec::new();
    let mut restarts = 0u32;
    let mut next_sample = t0;
    let mut next_restart = args.pg_restart_every.0.map(|d| t0 + d);
    let mut alive = true;
    while alive {
        let now = Instant::now();
        if now >= next_sample {
            let s = probe.sample(restarts);
            out.emit(&s)?;
            samples.push(s);
            next_sample += args.sample_every;
            if next_sample > end && now < end {
                next_sample = end;
            }
        }
        if now >= end {
            break;
        }
        if let Some(at) = next_restart.filter(|at| now >= *at) {
            restarts += 1;
            eprintln!(
                "soak: {:.0} s: PostgreSQL restart {restarts} ({} shutdown, down {} s)",
                t0.elapsed().as_secs_f64(),
                if restarts % 2 == 0 {
                    "immediate"
                } else {
                    "fast"
                },
                PG_DOWNTIME.as_secs_f64()
            );
            alive = restart_pg(pg, restarts, run, &stop)?;
            next_restart = args.pg_restart_every.0.map(|d| at + d);
            continue;
        }
        let next = [Some(next_sample), next_restart, Some(end)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end);
        alive = wait_until(next, &stop, run)?;
    }
    let fed_s = t0.elapsed().as_secs_f64();
    let mut problems = Vec::new();

    // Stop the feed, let the persister drain, stop the engine.
    let sim_report = {
        let mut sim = rig.sim.take().context("the simulator")?;
        sim.stop(Duration::from_secs(10));
        sim_report_from_log(&std::fs::read_to_string(&sim.log).unwrap_or_default())
    };
    let (mut last_metrics, mut drain_s) = (None, None);
    if alive {
        eprintln!("soak: feed stopped; waiting for the persister to catch up");
        match drain(run, port, &stop)? {
            Some((m, secs)) => {
                last_metrics = m;
                drain_s = secs;
                if secs.is_none() {
                    problems.push(format!(
                        "the persister's lag did not reach 0 within {} s of stopping the feed",
                        DRAIN_LIMIT.as_secs()
                    ));
                }
            }
            None => alive = false,
        }
    }
    let mut run = rig.run.take().context("the run process")?;
    let status = if alive {
        eprintln!("soak: stopping hermes run (SIGTERM)");
        run.stop(Duration::from_secs(120))
    } else {
        run.exited()
    };
    let status_text = status.map_or_else(|| "unknown status".to_string(), |s| s.to_string());
    let run_ok = alive && status.is_some_and(|s| s.success());
    let run_exit = match (alive, run_ok) {
        (false, _) => {
            problems.push(format!(
                "hermes run died during the soak ({status_text}); its log:\n{}",
                run.log_tail(30)
            ));
            format!("died after {fed_s:.0} s: {status_text}")
        }
        (true, true) => "exited 0 after SIGTERM".to_string(),
        (true, false) => {
            problems.push(format!(
                "hermes run ended with {status_text} after SIGTERM; its log:\n{}",
                run.log_tail(30)
            ));
            format!("{status_text} after SIGTERM")
        }
    };
    let run_log = std::fs::read_to_string(&run.log).unwrap_or_default();
    drop(run);

    // Count.
    let frames_metrics = last_metrics
        .as_ref()
        .and_then(|m| m.count("hermes_frames_received_total", ""));
    let frames_final = run_frames_from_log(&run_log);
    if let (Some(a), Some(b)) = (frames_final, frames_metrics) {
        if a != b {
            problems.push(format!(
                "hermes run's exit line says {a} frames, its last /metrics {b}"
            ));
        }
    }
    let frames = frames_final
        .or(frames_metrics)
        .or_else(|| samples.iter().rev().find_map(|s| s.frames_received));
    let (rows, distinct) = match final_counts(&url) {
        Ok((r, d)) => (Some(r), Some(d)),
        Err(e) => {
            problems.push(format!("counting raw_events: {e:#}"));
            (None, None)
        }
    };
    let warm = warmup(args);
    let series = |f: &dyn Fn(&Sample) -> Option<u64>| Series::of(&samples, warm.as_secs_f64(), f);
    let (rss, fds) = (series(&|s| s.rss_bytes), series(&|s| s.fds));
    let v = verdict(&rss, &fds, rows, distinct, frames, run_ok);
    if !v.rows_equal_frames {
        problems.push(format!(
            "raw_events has {} rows ({} distinct (stream, frame_no)) but the engine received {} frames",
            opt(rows),
            opt(distinct),
            opt(frames)
        ));
    }
    let last_sample = samples.last();
    let g = |name: &str, f: fn(&Sample) -> Option<u64>| {
        last_metrics
            .as_ref()
            .and_then(|m| m.count(name, ""))
            .or(last_sample.and_then(f))
    };
    let summary = Summary {
        kind: "summary".into(),
        venue: Some(args.venue),
        rate: args.rate,
        duration_s: args.duration.as_secs_f64(),
        fed_s: (fed_s * 1000.0).round() / 1000.0,
        samples: samples.len(),
        warmup_s: warm.as_secs_f64(),
        threads: series(&|s| s.threads),
        journal_bytes: series(&|s| Some(s.journal_bytes)),
        rss,
        fds,
        frames_received: frames,
        raw_events_rows: rows,
        raw_events_distinct: distinct,
        pg_restarts: restarts,
        gaps: g("hermes_sequence_gaps_total", |s| s.gaps),
        resyncs: g("hermes_resyncs_total", |s| s.resyncs),
        reconnects: g("hermes_reconnects_total", |s| s.reconnects),
        persist_retries: g("hermes_persist_retries_total", |s| s.persist_retries),
        drain_s,
        sim: sim_report,
        run_exit,
        ok: v.rows_equal_frames && v.run_ok,
        verdict: v,
        problems,
    };
    out.emit(&summary)?;
    eprintln!("soak: wrote {}", args.out.display());
    // PostgreSQL stopped, directories removed.
    drop(rig);
    Ok(summary)
}
