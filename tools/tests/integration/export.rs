//! `hermes export` and `--parquet`: the export of a recording read back with pyarrow and
//! DuckDB (installed from PyPI into `target/pyenv` by [`python_env`]) and checked against
//! the capture's text, `replay --print-final`, the shm slot and a Python reference of the
//! labels (`tools/tests/parquet/check_export.py`); the backtest example run on it; and a
//! `replay --parquet` killed with SIGKILL, then restarted, against an export of the same
//! journal segment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{generate, hermes, require, run_ok, shared_captures, workspace, TempDir};

/// The project venv with pyarrow, duckdb and scikit-learn (`scripts/ci-deps.sh` makes the
/// same one); `None` (after a note) where python3 or PyPI is unavailable and
/// `HERMES_REQUIRE_ALL` is not set.
fn python_env() -> Option<PathBuf> {
    if !require(
        "python3",
        "reading the Parquet export with pyarrow and DuckDB",
    ) {
        return None;
    }
    let venv = workspace().join("target/pyenv");
    let py = venv.join("bin/python3");
    let ready = |py: &Path| {
        Command::new(py)
            .args(["-c", "import pyarrow, duckdb, sklearn, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready(&py) {
        let ok = (py.exists()
            || Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success()))
            && Command::new(&py)
                .args(["-m", "pip", "install", "-q", "-r"])
                .arg(workspace().join("examples/python/requirements.txt"))
                .status()
                .is_ok_and(|s| s.success());
        if !ok || !ready(&py) {
            let msg = "pip could not install examples/python/requirements.txt into target/pyenv (scripts/ci-deps.sh does it)";
            if std::env::var("HERMES_REQUIRE_ALL").is_ok_and(|v| !v.is_empty() && v != "0") {
                panic!("HERMES_REQUIRE_ALL=1: {msg}");
            }
            eprintln!("note: {msg}; the Parquet read-back is skipped");
            return None;
        }
    }
    Some(py)
}

fn python(py: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let mut c = Command::new(py);
    for a in args {
        c.arg(a);
    }
    c.current_dir(workspace());
    String::from_utf8_lossy(&run_ok(&mut c).stdout).into_owned()
}

#[test]
fn export_reads_back_exactly_in_pyarrow_and_duckdb() {
    let Some(py) = python_env() else { return };
    let dir = TempDir::new("export");
    // The real BTCUSDT recording when present, else a synthetic Binance market in the
    // same `<ns> <json>` format.
    let capture = match shared_captures() {
        Some(d) => d.join("binance-spot-btcusdt-20240808.txt"),
        None => generate(
            &dir,
            "synth.txt",
            &[
                "--venues",
                "binance",
                "--instruments",
                "1",
                "--jsonl",
                "--frames",
                "30000",
            ],
        ),
    };
    let out = dir.path("dataset");
    run_ok(hermes().arg("export").arg(&capture).arg("--out").arg(&out));
    let shm = dir.path("shm");
    let fin = run_ok(
        hermes()
            .arg("replay")
            .arg(&capture)
            .arg("--shm")
            .arg(&shm)
            .arg("--print-final"),
    );
    let final_path = dir.path("final.jsonl");
    std::fs::write(&final_path, &fin.stdout).unwrap();
    let check = workspace().join("tools/tests/parquet/check_export.py");
    let shm_py = workspace().join("shm/python");
    let said = python(
        &py,
        &[
            &check,
            &out,
            &capture,
            &final_path,
            &shm,
            &"500000000",
            &shm_py,
        ],
    );
    assert!(said.starts_with("ok:"), "{said}");
    // The backtest example runs on it and reports both accuracies.
    let preds = dir.path("predictions.parquet");
    let said = python(
        &py,
        &[
            &workspace().join("examples/python/backtest.py"),
            &out,
            &"--out",
            &preds,
        ],
    );
    assert!(
        said.contains("accuracy") && said.contains("baseline"),
        "{said}"
    );
    assert!(preds.exists());
    // A second export of the same file replaces its files rather than adding to them.
    let again = run_ok(hermes().arg("export").arg(&capture).arg("--out").arg(&out));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("8 replaced")
            || String::from_utf8_lossy(&again.stderr).contains("4 replaced"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let said = python(
        &py,
        &[
            &check,
            &out,
            &capture,
            &final_path,
            &shm,
            &"500000000",
            &shm_py,
        ],
    );
    assert!(said.starts_with("ok:"), "{said}");
}

/// Rows of every table of `source` in a dataset, as comparable text (Python).
const DUMP: &str = r#"
import sys, pyarrow.dataset as ds
root, source = sys.argv[1], sys.argv[2]
for t in ("trades", "book", "features", "labels"):
    d = ds.dataset(f"{root}/{t}", format="parquet", partitioning="hive")
    rows = [r for r in d.to_table(filter=ds.field("source") == source).to_pylist()]
    rows.sort(key=lambda r: r["row"])
    print(t, len(rows))
    for r in rows:
        print(sorted((k, str(v)) for k, v in r.items()))
"#;

#[test]
fn parquet_sink_after_kill_9_adds_exactly_the_missing_rows() {
    let Some(py) = python_env() else { return };
    let dir = TempDir::new("parquet-kill");
    let capture = generate(&dir, "synth.hcap", &["--frames", "150000"]);
    let (journal, pq) = (dir.path("journal"), dir.path("parquet"));
    // 1 ms between synthetic frames, replayed 10x: a cycle (1 s of data) every 0.1 s.
    let mut child = hermes()
        .arg("replay")
        .arg(&capture)
        .args(["--speed", "10x", "--parquet-rotate-secs", "1"])
        .arg("--shm")
        .arg(dir.path("shm"))
        .arg("--journal")
        .arg(&journal)
        .arg("--parquet")
        .arg(&pq)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let committed = |pq: &Path| {
        std::fs::read_to_string(pq.join("_hermes/checkpoint.json"))
            .map(|t| t.matches("\"cycles\"").count() > 0 && !t.contains("\"cycles\": 0"))
            .unwrap_or(false)
    };
    while !committed(&pq) {
        assert!(Instant::now() < deadline, "no cycle committed");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the replay ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(250));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Every visible file is whole: pyarrow opens each one.
    let opened = python(
        &py,
        &[
            &"-c",
            &"import sys, glob, pyarrow.parquet as pq\nfs = glob.glob(sys.argv[1] + '/*/*/*/part-*.parquet')\n[pq.read_metadata(f) for f in fs]\nprint(len(fs))",
            &pq,
        ],
    );
    let visible: usize = opened.trim().parse().unwrap();
    assert!(visible > 0, "no complete file before the kill");
    // Restart with another (short) input: the sink first completes the killed segment.
    let small = generate(&dir, "small.hcap", &["--frames", "100"]);
    run_ok(
        hermes()
            .arg("replay")
            .arg(&small)
            .arg("--shm")
            .arg(dir.path("shm2"))
            .arg("--journal")
            .arg(&journal)
            .arg("--parquet")
            .arg(&pq)
            .args(["--parquet-rotate-secs", "1"]),
    );
    let segment = std::fs::read_dir(&journal)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("/00000001."))
        .expect("the first journal segment");
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    // The reference: the killed run's journal segment exported in one go.
    let reference = dir.path("reference");
    run_ok(
        hermes()
            .arg("export")
            .arg(&segment)
            .arg("--out")
            .arg(&reference),
    );
    let got = python(&py, &[&"-c", &DUMP, &pq, &name]);
    let want = python(&py, &[&"-c", &DUMP, &reference, &name]);
    assert!(want.lines().count() > 1000, "{}", want.lines().count());
    assert!(
        got == want,
        "the sink's rows differ from the export of the same segment:\n{}\nvs\n{}",
        got.lines()
            .filter(|l| !l.starts_with('['))
            .collect::<Vec<_>>()
            .join(" "),
        want.lines()
            .filter(|l| !l.starts_with('['))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Nothing temporary is left.
    let leftovers = python(
        &py,
        &[
            &"-c",
            &"import sys, glob; print(len(glob.glob(sys.argv[1] + '/*/*/*/.*.tmp')))",
            &pq,
        ],
    );
    assert_eq!(leftovers.trim(), "0");
}
