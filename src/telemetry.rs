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

/// This machine's name (the pod name in a cluster), for the audit log's subject of the
/// operator's and the CLI's writes: `HOSTNAME`, else `/etc/hostname`, else `unknown`.
/// Read once per process (every audit entry of an expiry sweep names it).
pub fn host() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".into())
    })
    .clone()
}

/// The operating-system user running this process: `USER`, else `LOGNAME`, else `unknown`.
pub fn os_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into())
}
