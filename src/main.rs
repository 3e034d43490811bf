//! The `cramp-cds` command: `serve`, `evaluate` and `check`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cramp_cds::cli::Cli::parse();
    match cramp_cds::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cramp-cds: {message}");
            ExitCode::FAILURE
        }
    }
}
