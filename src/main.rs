use clap::Parser;
use servicehub_operator::cli::Cli;
use std::process::ExitCode;

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
