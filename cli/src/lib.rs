//! The `sealant` command line: argument parsing and dispatch. Commands live in `commands`.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub mod cluster;
pub mod commands;
pub mod config;
pub mod error;
pub mod io;
pub mod kubeseal;
pub mod render;
pub mod signals;
pub mod walk;

use cluster::ClusterArgs;
use commands::cert::CertCommand;
use commands::keys::KeysCommand;
use commands::seal::SealCommand;
use commands::unseal::UnsealCommand;
use commands::validate::ValidateCommand;
use error::{CliError, CliResult};

/// The version, with the crypto provider and whether its FIPS module is in use.
pub(crate) static VERSION: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| sealant_core::provider::version_line(env!("CARGO_PKG_VERSION")));

/// Keep Kubernetes secrets in Git: seal them for the cluster's controller, inspect and recover them.
#[derive(Debug, Parser)]
#[command(name = "sealant", version = VERSION.as_str(), propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Encrypt Secret(s) into SealedSecret(s) that are safe to commit.
    Seal(SealCommand),
    /// Decrypt SealedSecret(s) offline with the controller's private keys.
    Unseal(UnsealCommand),
    /// Print the controller's certificate (or --info about it).
    Cert(CertCommand),
    /// Check SealedSecret files offline (or, with --online, with the controller).
    Validate(ValidateCommand),
    /// Re-seal files to the controller's newest key, in place (through the controller).
    Reencrypt(commands::reencrypt::ReencryptCommand),
    /// Find plaintext Secrets and unencrypted SOPS files (for pre-commit and CI).
    Lint(commands::lint::LintCommand),
    /// SOPS files encrypted to age keys: encrypt, decrypt, edit, set, rotate, updatekeys.
    #[command(subcommand)]
    Sops(commands::sops::SopsCommand),
    /// Manage sealing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Is sealing healthy in this cluster? The controller, its keys and backup, failing
    /// SealedSecrets; exit 1 with the reasons when not.
    Status(commands::status::StatusCommand),
    /// .sealant.yaml: which rule, cluster, certificate and output each file gets; check the file.
    #[command(subcommand)]
    Config(commands::envs::ConfigCommand),
    /// The clusters' committed certificates: fetch them, check them (for CI).
    #[command(subcommand)]
    Certs(commands::envs::CertsCommand),
}

/// Whether the binary was started under the name `kubeseal`.
fn invoked_as_kubeseal(argv0: Option<&OsString>) -> bool {
    invoked_as(argv0, "kubeseal")
}

/// Whether the binary was started under `name` (its file stem: `kubeseal.exe` is `kubeseal`).
fn invoked_as(argv0: Option<&OsString>, name: &str) -> bool {
    argv0.and_then(|a| Path::new(a).file_stem().map(|s| s.to_string_lossy().into_owned())).is_some_and(|n| n == name)
}

async fn dispatch(cli: Cli) -> CliResult {
    match cli.command {
        Command::Seal(c) => commands::seal::run((&c).into(), &cli.cluster).await,
        Command::Unseal(c) => commands::unseal::run(c.file.as_deref(), &c.private_keys, c.format, None),
        Command::Cert(c) => commands::cert::run(&c, &cli.cluster).await,
        Command::Validate(c) => commands::validate::run(&c, &cli.cluster).await,
        Command::Lint(c) => commands::lint::run(&c),
        Command::Sops(commands::sops::SopsCommand::Decrypt(c)) => commands::sops::decrypt(&c),
        Command::Sops(commands::sops::SopsCommand::Encrypt(c)) => commands::sops::encrypt(&c),
        Command::Sops(commands::sops::SopsCommand::Edit(c)) => commands::sops::edit(&c),
        Command::Sops(commands::sops::SopsCommand::Set(c)) => commands::sops::set(&c),
        Command::Sops(commands::sops::SopsCommand::Unset(c)) => commands::sops::unset(&c),
        Command::Sops(commands::sops::SopsCommand::Updatekeys(c)) => commands::sops::updatekeys(&c),
        Command::Sops(commands::sops::SopsCommand::Rotate(c)) => commands::sops::rotate(&c),
        Command::Sops(commands::sops::SopsCommand::Filestatus(c)) => commands::sops::filestatus(&c),
        Command::Reencrypt(c) => commands::reencrypt::run(&c, &cli.cluster).await,
        Command::Keys(KeysCommand::Generate(c)) => commands::keys::generate(&c),
        Command::Keys(KeysCommand::List) => commands::keys::list(&cli.cluster).await,
        Command::Keys(KeysCommand::Rotate(c)) => commands::keys::rotate(&c, &cli.cluster).await,
        Command::Keys(KeysCommand::Backup(c)) => commands::keys::backup(&c, &cli.cluster).await,
        Command::Keys(KeysCommand::Restore(c)) => commands::keys::restore(&c, &cli.cluster).await,
        Command::Keys(KeysCommand::Usage(c)) => commands::keys::usage(&c, &cli.cluster).await,
        Command::Keys(KeysCommand::Retire(c)) => commands::keys::retire(&c, &cli.cluster).await,
        Command::Status(c) => commands::status::run(&c, &cli.cluster).await,
        Command::Config(c) => commands::envs::config(&c).await,
        Command::Certs(c) => commands::envs::certs(&c, &cli.cluster).await,
    }
}

fn parse<T: CommandFactory + FromArgMatches>(args: Vec<OsString>) -> Result<T, clap::Error> {
    let mut command = T::command();
    // Installed as a kubectl plugin (`kubectl-sealant` on the PATH), usage reads `kubectl sealant`.
    if invoked_as(args.first(), "kubectl-sealant") {
        command = command.bin_name("kubectl sealant");
    }
    command.try_get_matches_from(args).and_then(|m| T::from_arg_matches(&m))
}

/// Run the command line `args` (including the program name) and return the exit status.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let kubeseal = invoked_as_kubeseal(args.first());
    // Scripts read upstream's `kubeseal version: X`.
    if kubeseal && args.iter().skip(1).any(|a| a == "--version") {
        return match io::print(&format!("kubeseal version: {}\n", env!("CARGO_PKG_VERSION"))) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(e),
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return report(CliError::new("cannot start the async runtime").source(e)),
    };
    if kubeseal {
        return match parse::<kubeseal::KubesealArgs>(args) {
            Ok(parsed) => match runtime.block_on(kubeseal::run(parsed)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(e.kubeseal_exit_code())
                }
            },
            Err(e) => kubeseal::clap_exit(e),
        };
    }
    let outcome = {
        match parse::<Cli>(args) {
            Ok(parsed) => runtime.block_on(dispatch(parsed)),
            Err(e) => return clap_exit(e),
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

pub(crate) fn clap_exit(e: clap::Error) -> ExitCode {
    // --help and --version go to stdout and succeed; usage errors exit 2.
    let _ = e.print();
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(error::EXIT_USAGE))
}

fn report(e: CliError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(e.exit_code())
}
