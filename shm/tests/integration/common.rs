//! What the test modules share: temporary directories, paths in the crate, and
//! [`require`], the one place a test asks for a system tool.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The environment switch that turns a missing tool from a skipped test into a failed one
/// (`.ci/run` sets it to `1`).
const REQUIRE_ALL: &str = "HERMES_REQUIRE_ALL";

/// Whether `tool` runs here, for a test (or part of one) that needs it.
///
/// When it does not: with `HERMES_REQUIRE_ALL=1` (CI) the test fails, naming the tool and
/// what installs it, so no test passes by skipping; otherwise (a developer's machine) this
/// prints a note and returns `false`, and the caller skips that part. `why` says what the
/// tool is needed for.
pub fn require(tool: &str, why: &str) -> bool {
    let runs = Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return true;
    }
    let package = match tool {
        "cc" => "gcc",
        "c++" => "g++",
        t => t,
    };
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let install = format!("scripts/ci-deps.sh installs it (apt-get install {package})");
    if std::env::var(REQUIRE_ALL).is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("{REQUIRE_ALL}=1: `{tool}` is missing, and {test} needs it for {why}; {install}");
    }
    eprintln!(
        "note: `{tool}` is missing, so {test} skips {why}; {install}, \
         and {REQUIRE_ALL}=1 makes its absence a failure"
    );
    false
}

/// `rel` inside the crate (`include/`, `python/`, `examples/`).
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A directory under the system temp dir, unique to this process and test, removed on
/// drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory for the test `name`.
    pub fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("hermes-shm-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
