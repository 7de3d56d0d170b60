//! Logging setup: readable text at a terminal, JSON lines in a cluster. Logs go to stderr so
//! that command output on stdout stays machine-readable.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. Safe to call once per process.
pub fn init(filter: &str, json: bool, colour: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    // A second init (tests) is not an error worth failing for.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
