//! The `sealant-controller` binary: parse flags, start logging, run.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let flags = sealant_controller::flags::Flags::parse();
    if let Err(e) = sealant_controller::telemetry::init(&flags) {
        eprintln!("error: cannot start logging: {e}");
        return std::process::ExitCode::from(2);
    }
    match sealant_controller::run(flags) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "controller stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
