//! The `weir` binary: logging set-up and exit codes around [`weir_runtime::cli`].

use std::process::ExitCode;

use clap::Parser;
use weir_runtime::cli;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "warn,weir::guest=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = cli::run(cli::Cli::parse(), &mut out);
    let flushed = std::io::Write::flush(&mut out);
    match (result, flushed) {
        (Ok(true), Ok(())) => ExitCode::SUCCESS,
        (Ok(false), _) => ExitCode::FAILURE,
        (Ok(true), Err(e)) => {
            eprintln!("weir: error: cannot write the output: {e}");
            ExitCode::FAILURE
        }
        (Err(e), _) => {
            eprintln!("weir: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
