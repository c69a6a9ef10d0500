//! `bench soak` end to end: the real `bench` binary runs the real `hermes run` against
//! `hermes sim` (gaps and disconnects on) for 25 s at 2,000 frames/s with PostgreSQL
//! restarted every 10 s, and every frame the engine received must be in `raw_events`
//! exactly once.
//!
//! Binaries: `bench` is this package's own (`CARGO_BIN_EXE_bench`). `hermes` belongs to
//! another package, so Cargo gives this test no path to it; the test runs `cargo build -p
//! hermes` with the profile and target directory of the `bench` binary under test (a
//! no-op when it is up to date), which puts `hermes` beside `bench`, where the soak looks
//! for it. `HERMES_BIN` overrides that.
//!
//! PostgreSQL: skipped with a note when its binaries are missing, a failure under
//! `HERMES_REQUIRE_ALL=1` (`local_pg::available_or_required`, as every test that needs
//! it). Nothing here depends on timing beyond "the soak finished".

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every field of a sample line.
const SAMPLE_FIELDS: [&str; 16] = [
    "type",
    "elapsed_s",
    "rss_bytes",
    "fds",
    "threads",
    "journal_bytes",
    "persist_lag_bytes",
    "persist_lag_ms",
    "persist_connected",
    "persist_retries",
    "frames_received",
    "raw_events_rows",
    "pg_restarts",
    "gaps",
    "resyncs",
    "reconnects",
];

/// Fields every sample must have a value for (read from /proc, the journal directory,
/// the database and `/metrics` of a process that is up).
const ALWAYS_SET: [&str; 9] = [
    "elapsed_s",
    "rss_bytes",
    "fds",
    "threads",
    "journal_bytes",
    "frames_received",
    "raw_events_rows",
    "pg_restarts",
    "persist_lag_bytes",
];

/// The `hermes` binary beside this test's `bench` binary, built if needed.
fn hermes_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HERMES_BIN") {
        return PathBuf::from(p);
    }
    let bench = Path::new(env!("CARGO_BIN_EXE_bench"));
    let profile_dir = bench.parent().expect("the bench binary's directory");
    let target_dir = profile_dir.parent().expect("the target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(p) => p,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut build = Command::new(&cargo);
    // Without the variables Cargo sets for running this test: `ring`'s build script
    // tracks CARGO_MANIFEST_DIR, so with them the build would differ from a shell's
    // `cargo build -p hermes`, and each would rebuild ring..hermes after the other.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&k.as_ref())
        {
            build.env_remove(k.as_ref());
        }
    }
    let st = build
        .args(["build", "-p", "hermes", "--profile", profile])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .expect("running cargo build -p hermes");
    assert!(st.success(), "cargo build -p hermes failed: {st}");
    let p = profile_dir.join("hermes");
    assert!(
        p.is_file(),
        "cargo build -p hermes did not put hermes at {} (a --target build? set HERMES_BIN)",
        p.display()
    );
    p
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn short_soak_keeps_every_frame_once() {
    if !hermes_persist::local_pg::available_or_required() {
        return;
    }
    let hermes = hermes_binary();
    let dir =
        TempDir(std::env::temp_dir().join(format!("hermes-soak-test-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let out_path = dir.0.join("soak.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "soak",
            "--duration",
            "25s",
            "--rate",
            "2000",
            "--pg-restart-every",
            "10s",
            "--sample-every",
            "5s",
            "--out",
        ])
        .arg(&out_path)
        .arg("--hermes")
        .arg(&hermes)
        .output()
        .expect("running bench soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench soak failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let file = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(
        file.lines().collect::<Vec<_>>(),
        stdout.lines().collect::<Vec<_>>(),
        "stdout and --out differ"
    );
    let lines: Vec<serde_json::Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (summary, samples) = lines.split_last().expect("no lines");
    assert!(samples.len() >= 2, "{} samples:\n{file}", samples.len());
    for s in samples {
        assert_eq!(s["type"], "sample", "{s}");
        let obj = s.as_object().unwrap();
        for f in SAMPLE_FIELDS {
            assert!(obj.contains_key(f), "sample without {f}: {s}");
        }
        for f in ALWAYS_SET {
            assert!(obj[f].is_number(), "sample without a value for {f}: {s}");
        }
    }
    // Frames arrived and were persisted while the soak ran.
    let last = samples.last().unwrap();
    assert!(last["frames_received"].as_u64().unwrap() > 0, "{last}");
    assert!(last["raw_events_rows"].as_u64().unwrap() > 0, "{last}");

    assert_eq!(summary["type"], "summary", "{summary}");
    let frames = summary["frames_received"].as_u64().expect("frames");
    let rows = summary["raw_events_rows"].as_u64().expect("rows");
    let distinct = summary["raw_events_distinct"].as_u64().expect("distinct");
    assert!(frames > 0, "{summary}");
    assert_eq!(rows, frames, "raw_events rows vs frames: {summary}");
    assert_eq!(distinct, rows, "(stream, frame_no) not unique: {summary}");
    assert_eq!(summary["verdict"]["rows_equal_frames"], true, "{summary}");
    assert_eq!(summary["verdict"]["run_ok"], true, "{summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    assert!(
        summary["pg_restarts"].as_u64().unwrap() >= 1,
        "PostgreSQL was never restarted: {summary}"
    );
    for k in ["rss", "fds", "threads", "journal_bytes"] {
        for f in ["first", "last", "max", "after_warmup", "growth"] {
            assert!(summary[k][f].is_number(), "summary {k}.{f}: {summary}");
        }
    }
    for k in ["rss_flat", "fds_flat"] {
        assert!(summary["verdict"][k].is_boolean(), "{summary}");
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let bench = env!("CARGO_BIN_EXE_bench");
    let out = Command::new(bench)
        .args(["soak", "--duration", "10", "--rate", "2000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bad duration \"10\""), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = Command::new(bench)
        .args(["soak", "--duration", "1m", "--rate", "fast"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bad rate"), "{err}");

    let dir =
        TempDir(std::env::temp_dir().join(format!("hermes-soak-args-{}", std::process::id())));
    let out = Command::new(bench)
        .args(["soak", "--duration", "1m", "--rate", "10", "--hermes"])
        .arg(dir.0.join("no-such-hermes"))
        .arg("--out")
        .arg(dir.0.join("x.jsonl"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no such file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
