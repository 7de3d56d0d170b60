//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Output;

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path under the repository root.
pub fn repo(path: &str) -> PathBuf {
    root().join(path)
}

/// Run the real `servicehub` binary with `args`, from the repository root.
pub fn servicehub(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(args)
        .current_dir(root())
        .env_remove("SERVICEHUB_STORE")
        .output()
        .expect("run servicehub")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
