//! The `cramp-cds` command: `serve`, `evaluate` and `check`.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: reading a request allocates many small,
/// short-lived values (every string of every resource), and glibc's malloc and free were
/// a tenth of the service's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
