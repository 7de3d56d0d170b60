use clap::Parser;
use servicehub_operator::cli::Cli;
use std::process::ExitCode;

// mimalloc (v2, without transparent huge pages) instead of glibc's malloc, for C code too
// (`override`: SQLite's allocations go through it). A profile of the no-change re-apply of
// 10,000 Memberships had a quarter of its time in glibc's malloc and free (every row read is
// copied into owned strings and records, then dropped, often on another thread than the one
// that allocated it): mimalloc for Rust's allocations took that re-apply from 0.91 s to
// 0.67 s, and for SQLite's too (rows are copied on sqlx's worker thread and freed on tokio's)
// from 0.55 s to 0.47 s. Huge pages cost RSS (each arena's first touch is 2 MiB) for no
// measured speed. SQLite's own memory statistics are off: see .cargo/config.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // One process-wide rustls provider (ring, as kube uses), before any TLS client exists.
    servicehub_operator::notify::transport::install_crypto();
    servicehub_operator::telemetry::init(
        cli.log_filter(),
        cli.log_format.is_json(),
        servicehub_operator::cli::LogFormat::colour(),
    );
    match cli.run().await {
        Ok(code) => code,
        // `servicehub get audit | head` closed the pipe: the reader has what it wanted.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<servicehub_operator::cli::Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
