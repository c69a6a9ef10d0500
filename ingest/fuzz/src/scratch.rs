//! Scratch files for the parsers that read a path (capture files, the TOML config, the
//! shm region): the fuzz input is written to a file of this process, in a directory of
//! its own under the temp dir (`scripts/fuzz.sh` points `TMPDIR` into `target/fuzz` and
//! removes it afterwards; libFuzzer ends a process with `exit`, so nothing here can).

use std::path::PathBuf;
use std::sync::OnceLock;

/// The path of scratch file `name`, in `$TMPDIR/hermes-fuzz-<pid>/` (created on first use).
pub fn path(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("hermes-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d)
            .unwrap_or_else(|e| panic!("creating the scratch dir {}: {e}", d.display()));
        d
    });
    dir.join(name)
}

/// Writes `bytes` to scratch file `name` and returns its path.
pub fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let p = path(name);
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    p
}
