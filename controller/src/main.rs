//! The `sealant-controller` binary: parse flags, start logging, run.
#![forbid(unsafe_code)]

use clap::Parser;
use sealant_controller::flags::{Flags, go_style_args};

fn main() -> std::process::ExitCode {
    let args = go_style_args(std::env::args_os());
    // Under upstream's name (its Helm chart runs `controller`), `--version` answers as upstream
    // does, for the scripts that read it.
    let upstream_name =
        args.first().and_then(|a| std::path::Path::new(a).file_name()).is_some_and(|n| n == "controller");
    if upstream_name && args.iter().skip(1).any(|a| a == "--version") {
        println!("controller version: {}", env!("CARGO_PKG_VERSION"));
        return std::process::ExitCode::SUCCESS;
    }
    let flags = Flags::parse_from(args);
    if let Err(e) = sealant_controller::telemetry::init(&flags) {
        eprintln!("error: cannot start logging: {e}");
        return std::process::ExitCode::from(2);
    }
    match sealant_controller::run(flags) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e.one_line(), "controller stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
