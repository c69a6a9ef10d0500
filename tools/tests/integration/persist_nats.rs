//! `hermes persist --nats`: the persister as a JetStream consumer of RAW, against a real
//! `nats-server` cluster and the test process's private PostgreSQL. A capture published by
//! `replay --nats` and persisted through kill -9 of the persister (three times) and of the
//! RAW stream's leader node ends with exactly the rows of a local `replay --database-url`
//! of the same capture; a frame larger than the server's `max_payload` (published in
//! parts) is one `raw_events` row with its exact bytes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hermes_ingest::capture::{CaptureReader, CaptureWriter, Record, RecordKind};
use hermes_nats::testing::{available_or_required, NatsCluster, Probe};
use hermes_persist::local_pg;
use postgres::{Client, NoTls};

use crate::common::{
    self, fresh_db, generate, http_get, parse_metrics, run_ok, table_digests, wait_for, TempDir,
};

fn hermes() -> Command {
    let mut c = common::hermes();
    c.env("RUST_LOG", "info,tokio_postgres=warn,postgres=warn");
    c
}

fn count(url: &str, sql: &str) -> i64 {
    let mut c = Client::connect(url, NoTls).unwrap();
    c.query_one(sql, &[]).unwrap().get(0)
}

fn records(cap: &Path) -> i64 {
    let mut r = CaptureReader::open(cap).unwrap();
    let mut n = 0;
    while r.next_record().unwrap().is_some() {
        n += 1;
    }
    n
}

/// `replay CAP --nats URLS` as host `a`: RAW only, from a journal in `dir`.
fn publish(dir: &TempDir, cap: &Path, urls: &str) -> String {
    let out = run_ok(
        hermes()
            .arg("replay")
            .arg(cap)
            .args([
                "--no-pin",
                "--nats",
                urls,
                "--nats-host",
                "a",
                "--nats-no-md",
                "--journal",
            ])
            .arg(dir.path("journal-a"))
            .arg("--shm")
            .arg(dir.path("a.shm")),
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The reference: the same capture through the local persister (`replay --database-url`).
fn reference(dir: &TempDir, cap: &Path, name: &str) -> String {
    let url = fresh_db(name);
    run_ok(
        hermes()
            .arg("replay")
            .arg(cap)
            .args(["--no-pin", "--database-url", &url, "--journal"])
            .arg(dir.path(&format!("journal-{name}")))
            .arg("--shm")
            .arg(dir.path(&format!("{name}.shm"))),
    );
    url
}

/// A background `hermes persist --nats`, its stderr in a file.
struct Persister {
    child: Child,
    log: PathBuf,
}

impl Persister {
    fn start(dir: &TempDir, n: usize, urls: &str, url: &str, extra: &[&str]) -> Persister {
        let log = dir.path(&format!("persist-{n}.log"));
        let child = hermes()
            .args(["persist", "--nats", urls, "--database-url", url])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Persister { child, log }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://ADDR/` of a persister started with `--http`, once it says it.
    fn http(&self) -> String {
        crate::common::address_in_log(&self.log, "persist: HTTP on ")
    }

    /// Fails the test, with its output, if it has ended.
    fn alive(&mut self) -> bool {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!("the persister ended early ({st}):\n{}", self.stderr());
        }
        true
    }

    /// Polls `raw_events` until it holds more than `n` rows.
    fn wait_rows(&mut self, url: &str, n: i64, limit: Duration) {
        wait_for(&format!("more than {n} raw_events rows"), limit, || {
            self.alive() && count(url, "SELECT count(*) FROM raw_events") > n
        });
    }

    fn kill9(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.stderr()
    }

    /// Waits for it to end by itself (`--until-idle`); its stderr.
    fn finish(self, limit: Duration) -> String {
        let (ok, err) = self.end(limit);
        assert!(ok, "persist failed:\n{err}");
        err
    }

    /// Waits for it to end by itself in error; its stderr.
    fn finish_failed(self, limit: Duration) -> String {
        let (ok, err) = self.end(limit);
        assert!(!ok, "persist succeeded:\n{err}");
        err
    }

    /// Waits for it to end by itself: (success, stderr).
    fn end(mut self, limit: Duration) -> (bool, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.success(), self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "persist did not end within {limit:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// SIGINT.
fn interrupt(p: &Persister) {
    // SAFETY: signalling a child this test started and has not reaped.
    let r = unsafe { libc::kill(p.child.id() as i32, libc::SIGINT) };
    assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
}

/// The persister's final line.
fn summary(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("persist: "))
        .unwrap_or_else(|| panic!("no summary line:\n{stderr}"))
}

#[test]
fn kill_9_of_the_persister_and_of_a_nats_node_loses_and_duplicates_nothing() {
    if !available_or_required() || !local_pg::available_or_required() {
        return;
    }
    let t0 = Instant::now();
    let dir = TempDir::new("persist-nats");
    let mut cluster = NatsCluster::start(&dir.path("nats"), 3).unwrap();
    let urls = cluster.urls();
    let cap = generate(
        &dir,
        "g.hcap",
        &[
            "--venues",
            "coinbase,binance,binance-usdm",
            "--frames",
            "24000",
        ],
    );
    let frames = records(&cap);
    let err = publish(&dir, &cap, &urls);
    let probe = Probe::connect(&urls).unwrap();
    let (stored, _) = probe.stream("HERMES_RAW").unwrap();
    assert_eq!(stored as i64, frames, "{err}");
    let want = reference(&dir, &cap, "pn_ref");

    let url = fresh_db("pn_kill");
    // The tables exist before the first poll (the persister would make them too).
    hermes_persist::migrate(&url).unwrap();
    let raw = |u: &str| count(u, "SELECT count(*) FROM raw_events");
    let args = ["--until-idle", "3", "--batch-rows", "500"];
    // kill -9 once rows are in, past a third, and (after the stream leader's kill -9)
    // past two thirds.
    let mut p = Persister::start(&dir, 1, &urls, &url, &args);
    p.wait_rows(&url, 0, Duration::from_secs(30));
    let e1 = p.kill9();
    let mut p = Persister::start(&dir, 2, &urls, &url, &args);
    p.wait_rows(&url, frames / 3, Duration::from_secs(30));
    let e2 = p.kill9();
    let mut p = Persister::start(&dir, 3, &urls, &url, &args);
    p.wait_rows(&url, frames / 2, Duration::from_secs(30));
    let (_, leader) = probe.stream("HERMES_RAW").unwrap();
    let k = cluster
        .index_of(&leader)
        .unwrap_or_else(|| panic!("no node named {leader:?}"));
    cluster.kill(k);
    let at_kill = raw(&url);
    // It goes on under the new leader...
    p.wait_rows(&url, (2 * frames / 3).max(at_kill), Duration::from_secs(60));
    let e3 = p.kill9();
    cluster.restart(k).unwrap();
    let after3 = raw(&url);
    assert!(after3 < frames, "the third run was to be killed mid-way");
    // ...and the last run finishes.
    let e4 = Persister::start(&dir, 4, &urls, &url, &args).finish(Duration::from_secs(90));
    let logs = format!("run 1:\n{e1}\nrun 2:\n{e2}\nrun 3:\n{e3}\nrun 4:\n{e4}");
    let last = summary(&e4);
    assert!(last.contains(" 0 lost"), "{logs}");
    assert!(last.contains(" 0 incomplete"), "{last}");
    // The last run rebuilt the segment's books from the stream before writing.
    assert!(!last.contains(" 0 re-read"), "{last}");

    assert_eq!(raw(&url), frames, "{logs}");
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM (SELECT DISTINCT stream, frame_no FROM raw_events) d"
        ),
        frames
    );
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM raw_events WHERE journal NOT LIKE 'a/00000001.%'"
        ),
        0
    );
    // Every table as the local persister wrote it (journal positions included).
    assert_eq!(
        table_digests(&url, true),
        table_digests(&want, true),
        "{logs}"
    );
    assert_eq!(
        count(
            &url,
            "SELECT seq FROM nats_offsets WHERE stream = 'HERMES_RAW'"
        ),
        frames
    );
    assert_eq!(
        count(&url, "SELECT frames FROM nats_segments"),
        frames,
        "one segment, every frame committed"
    );
    if std::env::var_os("HERMES_TEST_LOGS").is_some() {
        eprintln!("{logs}");
    }
    eprintln!(
        "kill_9_…: {frames} frames, rows after the 3rd kill {after3}, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// `{"side": …, "event_time": …, "price_level": …, "new_quantity": …}` as PostgreSQL's
/// `jsonb` prints it (keys by length then bytes, `": "` and `", "`), so the frame's text
/// read back from `raw_events.frame` must equal it byte for byte.
fn level(side: &str, px: &str, qty: &str) -> String {
    format!(
        r#"{{"side": "{side}", "event_time": "2026-08-09T21:05:48.210883Z", "price_level": "{px}", "new_quantity": "{qty}"}}"#
    )
}

fn l2_frame(kind: &str, seq: u64, levels: &[String]) -> String {
    format!(
        r#"{{"events": [{{"type": "{kind}", "updates": [{}], "product_id": "BTC-USD"}}], "channel": "l2_data", "client_id": "", "timestamp": "2026-08-09T21:05:48.505350477Z", "sequence_num": {seq}}}"#,
        levels.join(", ")
    )
}

#[test]
fn a_frame_larger_than_max_payload_is_one_row_with_its_exact_bytes() {
    if !available_or_required() || !local_pg::available_or_required() {
        return;
    }
    let t0 = Instant::now();
    let dir = TempDir::new("persist-nats-big");
    let cluster = NatsCluster::start(&dir.path("nats"), 1).unwrap();
    let urls = cluster.urls();
    // A Coinbase BTC-USD snapshot of 2.5 MB (the server's max_payload is 1 MiB), then
    // updates.
    let mut levels = Vec::new();
    let mut k = 0u64;
    let mut snapshot = String::new();
    while snapshot.len() < 2_500_000 {
        for side in ["bid", "offer"] {
            let px = if side == "bid" {
                6_000_000 - k
            } else {
                6_000_100 + k
            };
            levels.push(level(
                side,
                &format!("{}.{:02}", px / 100, px % 100),
                &format!("0.{:08}", 1 + k % 99_999_999),
            ));
        }
        k += 1;
        if k % 1000 == 0 {
            snapshot = l2_frame("snapshot", 0, &levels);
        }
    }
    let mut frames = vec![snapshot.clone()];
    for s in 1..=5u64 {
        let px = 6_000_000 - s;
        frames.push(l2_frame(
            "update",
            s,
            &[level(
                "bid",
                &format!("{}.{:02}", px / 100, px % 100),
                &format!("{s}.5"),
            )],
        ));
    }
    let cap = dir.path("big.hcap");
    let mut w = CaptureWriter::create(&cap).unwrap();
    for (k, f) in frames.iter().enumerate() {
        w.append(&Record {
            recv_ts_ns: 1_786_000_000_000_000_000 + k as i64 * 1_500_000_000,
            venue: hermes_ingest::Venue::Coinbase,
            kind: RecordKind::Ws,
            conn: 0,
            tag: b"",
            data: f.as_bytes(),
        })
        .unwrap();
    }
    w.sync().unwrap();
    drop(w);

    let err = publish(&dir, &cap, &urls);
    let probe = Probe::connect(&urls).unwrap();
    let msgs = probe.messages("HERMES_RAW", "hermes.raw.>").unwrap();
    let parts: Vec<String> = msgs
        .iter()
        .filter_map(|(_, _, hd, _)| {
            hd.iter()
                .find(|(k, _)| k == "Hermes-Part")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(parts, ["1/3", "2/3", "3/3"], "{err}");
    assert_eq!(msgs.len(), 3 + 5);

    let url = fresh_db("pn_big");
    hermes_persist::migrate(&url).unwrap();
    // No --until-idle: SIGINT stops it, cleanly, once everything is committed.
    let mut p = Persister::start(&dir, 1, &urls, &url, &[]);
    wait_for("every message committed", Duration::from_secs(60), || {
        p.alive()
            && count(
                &url,
                "SELECT coalesce(max(seq), 0) FROM nats_offsets WHERE stream = 'HERMES_RAW'",
            ) == 8
    });
    // A second persister of the same stream and database is refused (it waits for the
    // first one's lock, and says whose it is when interrupted).
    let mut second = Persister::start(&dir, 2, &urls, &url, &[]);
    wait_for(
        "the second persister to start",
        Duration::from_secs(30),
        || second.alive() && second.stderr().contains("into PostgreSQL"),
    );
    interrupt(&second);
    let st = second.child.wait().unwrap();
    let e2 = second.stderr();
    assert!(!st.success(), "{e2}");
    assert!(
        e2.contains("another `hermes persist --nats` is writing NATS stream HERMES_RAW")
            && e2.contains("pg_terminate_backend("),
        "{e2}"
    );
    interrupt(&p);
    let e = p.finish(Duration::from_secs(30));
    assert!(summary(&e).contains("6 frames (8 messages"), "{e}");
    assert!(
        summary(&e).contains("committed through #8, lag 0 messages"),
        "{e}"
    );
    let mut c = Client::connect(&url, NoTls).unwrap();
    let rows = c
        .query(
            "SELECT frame_no, frame::text, octet_length(frame::text), journal, journal_offset FROM raw_events ORDER BY frame_no",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 6);
    let text: String = rows[0].get(1);
    assert_eq!(rows[0].get::<_, i64>(0), 0);
    assert_eq!(rows[0].get::<_, i32>(2) as usize, snapshot.len());
    assert!(text == snapshot, "the snapshot's bytes differ");
    let journal: String = rows[0].get(3);
    assert!(
        journal.starts_with("a/00000001.file-") && journal.ends_with(".hcap"),
        "{journal}"
    );
    for (r, f) in rows.iter().zip(&frames) {
        assert_eq!(&r.get::<_, String>(1), f);
    }
    // The book it built: the same rows as the local persister's.
    let want = reference(&dir, &cap, "pn_big_ref");
    let got = table_digests(&url, true);
    assert_eq!(got, table_digests(&want, true));
    assert!(got[2].1 > 0, "book_snapshots rows: {got:?}");
    eprintln!("a_frame_larger…: {:.1} s", t0.elapsed().as_secs_f64());
}

/// PostgreSQL stopped mid-run: nothing is committed meanwhile, the persister retries, and
/// once the server is back every row goes in, once. A database that can never work (it
/// does not exist) stops the persister at once, saying so.
#[test]
fn a_postgres_outage_delays_rows_and_a_missing_database_fails_at_once() {
    if !available_or_required() || !local_pg::available_or_required() {
        return;
    }
    let t0 = Instant::now();
    let dir = TempDir::new("persist-nats-pg");
    let cluster = NatsCluster::start(&dir.path("nats"), 1).unwrap();
    let urls = cluster.urls();

    let missing = local_pg::shared()
        .expect("the test cluster")
        .conninfo("hermes_no_such_database");
    let started = Instant::now();
    let out = hermes()
        .args(["persist", "--nats", &urls, "--database-url", &missing])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "{err}");
    assert!(
        err.contains("refuses this persister for good")
            && err.contains("hermes_no_such_database")
            && err.contains("does not exist"),
        "{err}"
    );

    let cap = generate(
        &dir,
        "g.hcap",
        &["--venues", "binance,coinbase", "--frames", "6000"],
    );
    let frames = records(&cap);
    publish(&dir, &cap, &urls);
    let want = reference(&dir, &cap, "pn_outage_ref");
    let mut pg = local_pg::OwnedCluster::start("pn-outage").unwrap();
    let url = pg.pg.create_database("hermes").unwrap();
    hermes_persist::migrate(&url).unwrap();
    let mut p = Persister::start(
        &dir,
        1,
        &urls,
        &url,
        &[
            "--until-idle",
            "3",
            "--batch-rows",
            "200",
            "--stats-every",
            "0.3",
            "--http",
            "127.0.0.1:0",
        ],
    );
    p.wait_rows(&url, 0, Duration::from_secs(30));
    // Its HTTP face: ready while both servers answer.
    let base = p.http();
    wait_for("readiness", Duration::from_secs(30), || {
        p.alive() && http_get(&format!("{base}health/readiness"), &[]).is_ok_and(|(s, _)| s == 200)
    });
    pg.pg.stop().unwrap();
    // A batch failed, then a connection attempt while the server was down.
    wait_for("failed attempts", Duration::from_secs(30), || {
        p.alive() && p.stderr().contains("connecting to PostgreSQL")
    });
    // The periodic line shows what is waiting: messages and their age.
    wait_for("the lag in a stats: line", Duration::from_secs(30), || {
        let err = p.stderr();
        let after = &err[err.find("connecting to PostgreSQL").unwrap_or(0)..];
        p.alive()
            && after
                .lines()
                .filter(|l| l.starts_with("stats: "))
                .any(|l| !l.contains("lag 0 messages") && !l.contains(" messages, 0.0 s"))
    });
    // Not ready meanwhile, saying why; the stream side of /metrics shows the backlog.
    let (status, body) = http_get(&format!("{base}health/readiness"), &[]).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not connected to PostgreSQL"), "{body}");
    let (_, text) = http_get(&format!("{base}metrics"), &[]).unwrap();
    let m = parse_metrics(&text);
    assert_eq!(m["hermes_nats_persist_connected"], 1.0, "{text}");
    assert!(m["hermes_nats_persist_lag_messages"] > 0.0, "{text}");
    assert!(m["hermes_nats_persist_messages_total"] > 0.0, "{text}");
    assert!(m["hermes_persist_batches_total"] > 0.0, "{text}");
    let (status, _) = http_get(&format!("{base}symbols"), &[]).unwrap();
    assert_eq!(status, 404, "no shm file, no REST");
    pg.pg.restart().unwrap();
    let e = p.finish(Duration::from_secs(60));
    assert!(summary(&e).contains(" 0 lost"), "{e}");
    assert!(!summary(&e).contains(" 0 retries"), "{e}");
    assert_eq!(
        count(&url, "SELECT count(*) FROM raw_events"),
        frames,
        "{e}"
    );
    assert_eq!(table_digests(&url, true), table_digests(&want, true), "{e}");
    if std::env::var_os("HERMES_TEST_LOGS").is_some() {
        eprintln!("refused:\n{err}\noutage:\n{e}");
    }
    eprintln!("a_postgres_outage…: {:.1} s", t0.elapsed().as_secs_f64());
}

/// Messages deleted from the stream before the persister read them are a gap in the
/// stream sequence: logged as an error naming the range, counted as lost, never passed
/// over silently; everything else goes in.
#[test]
fn messages_gone_from_the_stream_are_named_and_counted_lost() {
    if !available_or_required() || !local_pg::available_or_required() {
        return;
    }
    let t0 = Instant::now();
    let dir = TempDir::new("persist-nats-lost");
    let cluster = NatsCluster::start(&dir.path("nats"), 1).unwrap();
    let urls = cluster.urls();
    let cap = generate(&dir, "g.hcap", &["--venues", "binance", "--frames", "3000"]);
    let frames = records(&cap);
    publish(&dir, &cap, &urls);
    let probe = Probe::connect(&urls).unwrap();
    // Stream sequence k holds frame k - 1. The last message too: the persister must
    // still see it is idle, and say the tail is gone.
    for seq in [1000, 1001, 2500, 3000] {
        probe.delete("HERMES_RAW", seq).unwrap();
    }
    let url = fresh_db("pn_lost");
    let p = Persister::start(&dir, 1, &urls, &url, &["--until-idle", "2"]);
    // It ends by itself, in error: rows are missing.
    let e = p.finish_failed(Duration::from_secs(60));
    assert!(
        e.contains("3 RAW message(s) were gone from the stream before this persister read them"),
        "{e}"
    );
    let last = summary(&e);
    assert!(last.contains("3 MESSAGES LOST"), "{e}");
    assert!(
        e.contains("messages #1000..=#1001 of HERMES_RAW (2) are gone"),
        "{e}"
    );
    assert!(
        e.contains("messages #2500..=#2500 of HERMES_RAW (1) are gone"),
        "{e}"
    );
    assert!(
        e.contains("messages #3000..=#3000 are gone (deleted)"),
        "{e}"
    );
    assert_eq!(count(&url, "SELECT count(*) FROM raw_events"), frames - 4);
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM raw_events WHERE frame_no IN (999, 1000, 2499, 2999)"
        ),
        0
    );
    assert_eq!(
        count(
            &url,
            "SELECT seq FROM nats_offsets WHERE stream = 'HERMES_RAW'"
        ),
        frames - 1
    );
    eprintln!("messages_gone…: {:.1} s", t0.elapsed().as_secs_f64());
}
