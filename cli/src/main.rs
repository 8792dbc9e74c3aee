//! The `sealant` binary; under the name `kubeseal` it speaks kubeseal's command line.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    sealant::run(std::env::args_os().collect())
}
