//! Issue 11 item 15, chaos in one test: during one live run (`hermes sim` → `hermes run`
//! → persister → PostgreSQL) PostgreSQL is killed with SIGKILL and restarted, the feed
//! disconnects and gaps, the whole engine is frozen with SIGSTOP while the feed goes on,
//! and the journal's disk fills and frees. Afterwards:
//!
//! * the books in shm are exact (equal to a replay of the served capture);
//! * every frame received is a row or counted as not kept, and the count the run
//!   reports is exact;
//! * the tables equal those of an undisturbed replay of the frames the run kept (count
//!   and md5 of every table's content, `common::table_digests`), so nothing was lost or
//!   doubled by the chaos.
//!
//! Every wait is on a condition (a metric, a row count, a file), except the SIGSTOP,
//! which lasts two seconds by design.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hermes_persist::local_pg::{self, OwnedCluster};
use postgres::{Client, NoTls};

use crate::common::{self, run_ok, Sim, TempDir, Tmpfs};

fn hermes() -> Command {
    let mut c = common::hermes();
    c.env("RUST_LOG", "warn");
    c
}

fn content(url: &str) -> Vec<(String, i64, String)> {
    common::table_digests(url, false)
}

fn metric(base: &str, name: &str) -> f64 {
    let body = ureq::get(&format!("{base}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    common::wait_for(what, Duration::from_secs(60), cond)
}

/// Lines of a child's pipe, collected by a thread.
/// Reads `pipe` line by line on a thread, into the shared vector. Join the handle once the
/// child has exited: until then the last lines may still be in the pipe (a wait that
/// returns does not mean the reader has read them; on a loaded machine it often has not).
fn collect(
    pipe: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(pipe).lines() {
            let Ok(l) = l else { break };
            out.lock().unwrap().push(l);
        }
    });
    (lines, reader)
}

fn books(lines: &[String]) -> Vec<String> {
    // The book fields only (engine counters differ between a live run and a replay).
    let mut out: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{} {} {} {}", v["symbol"], v["bids"], v["asks"], v["stale"])
        })
        .collect();
    out.sort();
    out
}

/// Fills the disk under `dir` (one file, written until the disk refuses).
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    p
}

#[test]
fn chaos_loses_and_doubles_nothing_but_what_it_reports() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("chaos");
    let Some(fs) = Tmpfs::mount(dir.path("disk"), 64 << 10) else {
        return;
    };
    let mut cluster = OwnedCluster::start("chaos").unwrap();
    let url = cluster.pg.create_database("chaos").unwrap();
    let ref_url = cluster.pg.create_database("chaos_ref").unwrap();
    let cap = dir.path("cb.hcap");
    run_ok(
        hermes()
            .args([
                "generate", "--venues", "coinbase", "--frames", "45000", "--out",
            ])
            .arg(&cap),
    );
    let sim = Sim::start(&[
        "--venue",
        "coinbase",
        "--capture",
        cap.to_str().unwrap(),
        "--rate",
        "3000",
        "--fault",
        "gap=every:2500",
        "--fault",
        // Per connection: the first two connections are dropped, the third ends.
        "disconnect=at:20000",
    ]);
    let journal = fs.0.join("journal");
    let mut child = hermes()
        .arg("run")
        .arg("--shm")
        .arg(dir.path("run.shm"))
        .args(["--print-final", "--until-idle", "6", "--duration", "120"])
        .args(["--reconnect-min-ms", "50", "--reconnect-max-ms", "200"])
        .args(["--http", "127.0.0.1:0", "--database-url", &url, "--no-pin"])
        .args(["--batch-age-ms", "20", "--journal"])
        .arg(&journal)
        .env("COINBASE_WS_URL", &sim.url)
        .env("COINBASE_PRODUCTS", "SYN0-USD,SYN1-USD,SYN2-USD")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stdout_reader) = collect(child.stdout.take().unwrap());
    let (stderr, stderr_reader) = collect(child.stderr.take().unwrap());
    let log = || stderr.lock().unwrap().join("\n");
    let mut base = String::new();
    wait_for("the HTTP address", || {
        let l = log();
        if let Some(i) = l.find("HTTP on http://") {
            base = l[i + 8..].split_whitespace().next().unwrap().to_string();
            true
        } else {
            false
        }
    });
    let mut c = Client::connect(&url, NoTls).unwrap();
    let rows = |c: &mut Client| -> i64 {
        c.query_one("SELECT count(*) FROM raw_events", &[])
            .map(|r| r.get(0))
            .unwrap_or(-1)
    };
    wait_for("the first rows", || rows(&mut c) > 0);

    // 1. PostgreSQL killed with SIGKILL mid-run, and started again once the persister
    //    has noticed.
    let retries = metric(&base, "hermes_persist_retries_total");
    // SAFETY: signalling the server process this test started.
    unsafe { libc::kill(cluster.pg.pid(), libc::SIGKILL) };
    cluster.pg.stop().unwrap(); // reaps it
    wait_for("the persister to see the outage", || {
        metric(&base, "hermes_persist_retries_total") > retries
    });
    // The killed server's backends exit when they notice it is gone; until then a new
    // one refuses to start (its shared memory is still attached): try until it starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = cluster.pg.restart() {
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not start again: {e}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for("the persister to reconnect", || {
        metric(&base, "hermes_persist_connected") == 1.0
    });

    // 2. The journal's disk fills: readiness says why, then the disk is freed.
    let filler = fill(&fs.0);
    wait_for("journal writes to fail", || {
        metric(&base, "hermes_journal_failing") == 1.0
    });
    let ready = ureq::get(&format!("{base}/health/readiness"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(ready.contains("journal writes failing"), "{ready}");
    wait_for("frames counted as not kept", || {
        metric(&base, "hermes_journal_frames_not_kept_total") > 0.0
    });
    std::fs::remove_file(&filler).unwrap();
    wait_for("journaling to resume", || {
        metric(&base, "hermes_journal_failing") == 0.0
    });

    // 3. The whole engine frozen (SIGSTOP) while the feed goes on, then thawed.
    let frames = metric(&base, "hermes_frames_received_total");
    let pid = child.id() as i32;
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // Frozen for two seconds of wall time (the one wait here that is a duration, since
    // starving the threads for a while is the fault itself): the simulator keeps
    // sending into the socket meanwhile, and the engine must catch up after.
    let stopped = Instant::now();
    wait_for("the feed to go on while stopped", || {
        stopped.elapsed() >= Duration::from_secs(2)
    });
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    wait_for("frames after the thaw", || {
        metric(&base, "hermes_frames_received_total") > frames
    });

    let status = child.wait().unwrap();
    // Every line the run wrote, read to the end of both pipes.
    stdout_reader.join().unwrap();
    stderr_reader.join().unwrap();
    drop(sim);
    let err = log();
    let out = stdout.lock().unwrap().clone();

    // The books in shm are exact, whatever happened to the persister.
    let want = run_ok(
        hermes()
            .arg("replay")
            .arg(&cap)
            .arg("--shm")
            .arg(dir.path("r.shm"))
            .arg("--print-final"),
    );
    let want: Vec<String> = String::from_utf8_lossy(&want.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(books(&out), books(&want), "{err}");
    assert!(err.contains("gap: resubscribing"), "no gap: {err}");

    // The run says how many frames it could not keep, and fails for it.
    assert_eq!(status.code(), Some(1), "{err}");
    let needle = " frames were NOT kept: the journal ";
    let at = err.find(needle).unwrap_or_else(|| panic!("{err}"));
    let not_kept: i64 = err[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(not_kept > 0);

    // Every frame received is a row or counted; the journal holds exactly the rows.
    let received: i64 = err
        .lines()
        .rev()
        .find(|l| l.starts_with("run: "))
        .and_then(|l| {
            let i = l.find(" frames")?;
            l[..i].rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no frame count in the summary: {err}"));
    let got = content(&url);
    assert_eq!(got[0].1 + not_kept, received, "{err}");

    // The reference: an undisturbed replay of exactly the frames the run kept (its
    // journal, joined into one capture) into a fresh database.
    let kept = dir.path("kept.hcap");
    let mut w = hermes_ingest::capture::CaptureWriter::create(&kept).unwrap();
    let mut segs: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hcap"))
        .collect();
    segs.sort();
    for s in &segs {
        let mut r = hermes_ingest::capture::CaptureReader::open(s).unwrap();
        while let Some(rec) = r.next_record().unwrap() {
            w.append(&rec).unwrap();
        }
        assert!(r.damage().is_empty() && r.torn().is_none());
    }
    w.flush().unwrap();
    drop(w);
    run_ok(
        hermes()
            .arg("replay")
            .arg(&kept)
            .args(["--database-url", &ref_url, "--no-pin", "--journal"])
            .arg(dir.path("ref-journal"))
            .arg("--shm")
            .arg(dir.path("ref.shm")),
    );
    assert_eq!(got, content(&ref_url), "{err}");
    // Every table is compared; a Coinbase feed has no mark prices or liquidations (the
    // Binance futures tables), every other table has rows.
    for (t, n, _) in &got {
        match t.as_str() {
            "funding" | "liquidations" => assert_eq!(*n, 0, "{got:?}"),
            _ => assert!(*n > 0, "{got:?}"),
        }
    }
}
