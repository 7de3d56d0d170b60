use clap::Parser;
use servicehub_operator::cli::{Cli, LogFormat};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    servicehub_operator::telemetry::init(&cli.log, cli.log_format == LogFormat::Json);
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
