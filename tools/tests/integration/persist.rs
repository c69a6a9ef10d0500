//! `hermes` with PostgreSQL: `replay --database-url` killed with SIGKILL mid-run and run
//! again gives exactly the rows of an uninterrupted run; `db migrate`; `demo` with its
//! private cluster, twice. The database is a cluster this test process starts and
//! removes (`hermes_persist::local_pg`, the harness every crate's tests share); each test
//! first asks `local_pg::available_or_required`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hermes_persist::local_pg;
use postgres::{Client, NoTls};

use crate::common::{self, run_ok, TempDir};

fn hermes() -> Command {
    let mut c = common::hermes();
    c.env("RUST_LOG", "warn");
    c
}

/// A fresh database in the test process's cluster (the caller has checked
/// `local_pg::available_or_required`).
fn db(prefix: &str) -> String {
    local_pg::shared()
        .expect("the test cluster")
        .fresh_database(prefix)
        .unwrap()
}

fn fingerprint(url: &str) -> Vec<(String, i64, String)> {
    common::table_digests(url, true)
}

fn replay_cmd(cap: &Path, url: &str, dir: &TempDir, journal: &str) -> Command {
    let mut c = hermes();
    c.arg("replay")
        .arg(cap)
        .args(["--database-url", url, "--no-pin", "--journal"])
        .arg(dir.path(journal))
        .arg("--shm")
        .arg(dir.path(&format!("{journal}.shm")));
    c
}

#[test]
fn kill_9_mid_replay_then_rerun_loses_and_duplicates_nothing() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("kill");
    let cap = dir.path("big.hcap");
    run_ok(
        hermes()
            .args(["generate", "--frames", "60000", "--out"])
            .arg(&cap),
    );
    // The reference: one uninterrupted run.
    let reference_url = db("kill_ref");
    let out = run_ok(&mut replay_cmd(&cap, &reference_url, &dir, "jref"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("persisted ("), "{stderr}");
    assert!(stderr.contains("lag 0 bytes"), "{stderr}");
    let want = fingerprint(&reference_url);
    assert_eq!(want[0].1, 60_000, "one raw_events row per frame");
    assert!(want.iter().all(|(_, n, _)| *n > 0), "{want:?}");

    // Killed with SIGKILL once the database shows rows, then run again.
    let url = db("kill");
    let mut child = replay_cmd(&cap, &url, &dir, "j")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut c = Client::connect(&url, NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = c
            .query_opt("SELECT count(*) FROM raw_events", &[])
            .ok()
            .flatten()
            .map_or(0, |r| r.get(0));
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no rows appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the replay finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "finished too early");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = fingerprint(&url);
    assert!(
        partial[0].1 < want[0].1,
        "the kill came after everything was written: {partial:?}"
    );
    let out = run_ok(&mut replay_cmd(&cap, &url, &dir, "j"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already present"), "{stderr}");
    assert_eq!(fingerprint(&url), want);
}

#[test]
fn sigint_flushes_everything_journaled() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("sigint");
    let cap = dir.path("paced.hcap");
    // 1 ms apart: a minute of frames at recorded speed; SIGINT comes long before that.
    run_ok(
        hermes()
            .args(["generate", "--frames", "60000", "--out"])
            .arg(&cap),
    );
    let url = db("sigint");
    let child = replay_cmd(&cap, &url, &dir, "j")
        .args(["--speed", "realtime"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut c = Client::connect(&url, NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c
        .query_opt("SELECT count(*) FROM raw_events", &[])
        .ok()
        .flatten()
        .map_or(0, |r| r.get::<_, i64>(0))
        == 0
    {
        assert!(Instant::now() < deadline, "no rows appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // An interrupted replay says so and fails, after flushing what it replayed.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by a signal after"), "{stderr}");
    assert!(stderr.contains("lag 0 bytes"), "{stderr}");
    // Every journaled frame is in the database, once.
    let mut journaled = 0i64;
    for e in std::fs::read_dir(dir.path("j")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "hcap") {
            let mut r = hermes_ingest::capture::CaptureReader::open(&p).unwrap();
            while r.next_record().unwrap().is_some() {
                journaled += 1;
            }
        }
    }
    let n: i64 = c
        .query_one("SELECT count(*) FROM raw_events", &[])
        .unwrap()
        .get(0);
    assert!(journaled > 0 && journaled < 60_000, "{journaled}");
    assert_eq!(n, journaled);
}

#[test]
fn db_migrate_is_idempotent() {
    if !local_pg::available_or_required() {
        return;
    }
    let url = db("cli_migrate");
    let out = run_ok(hermes().args(["db", "migrate", "--database-url", &url]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "applied migrations [1, 2, 3]"
    );
    let out = run_ok(hermes().args(["db", "migrate"]).env("DATABASE_URL", &url));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "schema up to date"
    );
    let out = hermes()
        .args([
            "db",
            "migrate",
            "--database-url",
            "host=/nonexistent port=1 dbname=x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("migrating the schema"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops the demo's cluster (left running for `psql` by design) when the test ends.
struct DemoCluster(PathBuf);

impl Drop for DemoCluster {
    fn drop(&mut self) {
        let pidfile = self.0.join("data/postmaster.pid");
        let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        else {
            return;
        };
        // SAFETY: signalling the demo's postmaster, whose pid its data directory names.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn demo_starts_its_own_postgres_and_running_it_twice_adds_no_rows() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("persist-demo");
    let _cluster = DemoCluster(dir.path("pg"));
    let demo = || {
        run_ok(
            hermes()
                .args(["demo", "--frames", "20000", "--no-pin", "--dir"])
                .arg(&dir.0)
                .arg("--shm")
                .arg(dir.path("demo-shm")),
        )
    };
    let first = String::from_utf8_lossy(&demo().stdout).into_owned();
    assert!(first.contains("Demo done: 20000 frames"), "{first}");
    assert!(first.contains("SYN2USDT"), "{first}");
    assert!(first.contains("raw_events           20000"), "{first}");
    assert!(first.contains("psql \"host="), "{first}");
    assert!(first.contains("shm dump"), "{first}");
    let rows = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| {
                ["raw_events", "trades", "book_snapshots", "top_of_book"]
                    .iter()
                    .any(|t| l.trim_start().starts_with(t))
            })
            .map(str::to_string)
            .collect()
    };
    let second = String::from_utf8_lossy(&demo().stdout).into_owned();
    assert_eq!(rows(&first).len(), 4, "{first}");
    assert_eq!(rows(&first), rows(&second), "{second}");
}

/// Issue 11 item 1 from the CLI: a replay whose journal disk fills ends non-zero naming
/// the directory and how many frames were not kept; every other frame is a row.
#[test]
fn a_full_journal_disk_ends_the_replay_non_zero_with_the_count() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("diskfull-cli");
    let Some(fs) = common::Tmpfs::mount(dir.path("small"), 768) else {
        return;
    };
    let cap = dir.path("s.hcap");
    run_ok(
        hermes()
            .args(["generate", "--frames", "20000", "--out"])
            .arg(&cap),
    );
    let url = db("diskfull_cli");
    let journal = fs.0.join("journal");
    let out = hermes()
        .arg("replay")
        .arg(&cap)
        .args(["--database-url", &url, "--no-pin", "--journal"])
        .arg(&journal)
        .arg("--shm")
        .arg(dir.path("shm"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let needle = "frames were NOT kept: the journal ";
    let at = stderr.find(needle).unwrap_or_else(|| panic!("{stderr}"));
    let n: i64 = stderr[..at]
        .rsplit(' ')
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        stderr[at..].contains(&journal.display().to_string()),
        "{stderr}"
    );
    assert!(n > 0 && n < 20_000, "{n}");
    // The replay still published every frame to shm.
    assert!(stderr.contains(": 20000 frames,"), "{stderr}");
    let mut c = Client::connect(&url, NoTls).unwrap();
    let rows: i64 = c
        .query_one("SELECT count(*) FROM raw_events", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows + n, 20_000, "{stderr}");
}

/// Issue 11 item 11: a database that does not exist was retried forever, as if the
/// server were down. It is refused at once, before anything is replayed.
#[test]
fn a_missing_database_is_refused_at_once() {
    if !local_pg::available_or_required() {
        return;
    }
    let dir = TempDir::new("nodb");
    let cap = dir.path("s.hcap");
    run_ok(
        hermes()
            .args(["generate", "--frames", "100", "--out"])
            .arg(&cap),
    );
    let url = db("nodb_exists");
    let missing: Vec<&str> = url
        .split(' ')
        .map(|kv| {
            if kv.starts_with("dbname=") {
                "dbname=no_such_database"
            } else {
                kv
            }
        })
        .collect();
    let missing = missing.join(" ");
    assert_ne!(missing, url, "the test URL form changed: {url}");
    let out = replay_cmd(&cap, &missing, &dir, "j").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("can never be reached"), "{stderr}");
    assert!(stderr.contains("no_such_database"), "{stderr}");
    assert!(
        !stderr.contains("replayed "),
        "refused before replaying: {stderr}"
    );
}
