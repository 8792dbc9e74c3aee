//! `sealant sops`: SOPS files encrypted to age keys, read and written as the real `sops` does.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use sealant_core::error::quoted;
use sealant_sops::config::{self, Rule, split_keys};
use sealant_sops::stores::Store as CoreStore;
use sealant_sops::tree::{self, Step, set_path, step_into, unset_path};
use sealant_sops::{
    EncryptOptions, Node, Opened, Selection, SopsError, decrypt_documents, encrypt_documents, reencrypt_documents,
    take_metadata,
};
use serde_json::Value;

use crate::error::{CliError, CliResult, Hint};
use crate::io::{self, Privacy};
use crate::signals;

mod decrypt;
mod edit;
mod encrypt;
mod filestatus;
mod identities;
mod rotate;
mod set;
mod unset;
mod updatekeys;

pub use decrypt::{DecryptCommand, decrypt};
pub use edit::{EditCommand, edit};
pub use encrypt::{EncryptCommand, encrypt};
pub use filestatus::filestatus;
use identities::gather_identities;
pub use rotate::{RotateCommand, rotate};
pub use set::{SetCommand, set};
pub use unset::{UnsetCommand, unset};
pub use updatekeys::{UpdatekeysCommand, updatekeys};

#[derive(Debug, clap::Subcommand)]
pub enum SopsCommand {
    /// Decrypt a SOPS file (YAML, JSON, dotenv, INI or binary) with age identities.
    Decrypt(DecryptCommand),
    /// Encrypt a file to age recipients, readable by the real sops.
    Encrypt(EncryptCommand),
    /// Open the decrypted file in $EDITOR and encrypt the result; unchanged values keep their ciphertext.
    Edit(EditCommand),
    /// Set one value, given as JSON, without showing any other (the file is changed in place).
    Set(SetCommand),
    /// Remove one value (the file is changed in place).
    Unset(UnsetCommand),
    /// Wrap the data key for the recipients of the matching .sops.yaml rule; values stay as they are.
    Updatekeys(UpdatekeysCommand),
    /// Encrypt every value again under a new data key (same recipients and rules).
    Rotate(RotateCommand),
    /// Print whether the file is encrypted: {"encrypted":true|false}.
    Filestatus(FileCommand),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    Yaml,
    Json,
    Dotenv,
    Ini,
    Binary,
}

impl From<Store> for CoreStore {
    fn from(store: Store) -> CoreStore {
        match store {
            Store::Yaml => CoreStore::Yaml,
            Store::Json => CoreStore::Json,
            Store::Dotenv => CoreStore::Dotenv,
            Store::Ini => CoreStore::Ini,
            Store::Binary => CoreStore::Binary,
        }
    }
}

/// The store of a file: the flag, else by its extension.
fn store_for(flag: Option<Store>, path: &Path) -> CoreStore {
    flag.map_or_else(|| CoreStore::from_path(path), CoreStore::from)
}

/// `what` failed because of `e`: sops' exit code for it, and its hint.
fn failed(what: String, e: SopsError) -> CliError {
    let (code, hint) = (e.exit_code(), e.hint());
    let error = CliError::new(what).exit(code).source(e);
    match hint {
        Some(hint) => error.hint(hint),
        None => error,
    }
}

/// An error about the file at `origin` from the core, with the hint that helps.
fn sops_error(origin: &str, tried: &[String], e: SopsError) -> CliError {
    let code = e.exit_code();
    match e {
        SopsError::NoIdentity { recipients, .. } => CliError::new(format!(
            "no age identity could decrypt {origin}: it is encrypted to {recipients}; tried {}",
            if tried.is_empty() { "none".to_owned() } else { tried.join(", ") }
        ))
        .exit(code)
        .hint("set SOPS_AGE_KEY_FILE (or SOPS_AGE_KEY, SOPS_AGE_KEY_CMD, SOPS_AGE_SSH_PRIVATE_KEY_FILE) to a matching key"),
        SopsError::MacMismatch => CliError::new(format!("cannot decrypt {origin}"))
            .exit(code)
            .source(e)
            .hint("restore the file from version control; --ignore-mac decrypts it anyway"),
        // Reading a file to decrypt, sops reports a parse error as a generic one (1); encrypting a
        // plain file, as unreadable input (2, the core's code, used by `encrypt`).
        SopsError::Parse(_) => CliError::new(format!("cannot read {origin}"))
            .exit(1)
            .source(e)
            .hint("check the file, or set --input-type"),
        e => failed(format!("cannot decrypt {origin}"), e),
    }
}

/// sops refuses a file that is not there before anything else, with a code of its own per
/// command: 100 (NoFileSpecified) for `encrypt` and `decrypt`, 2 (CouldNotReadInputFile) for
/// `set`, `unset` and `rotate`, 1 for the others. Standard input (`-`) is always there.
fn must_exist(file: &Path, code: u8) -> CliResult {
    if file.as_os_str() == "-" || file.exists() {
        return Ok(());
    }
    Err(CliError::new(format!("cannot operate on {}: there is no such file", file.display()))
        .exit(code)
        .hint("check the path"))
}

/// An encrypted file, read and decrypted.
struct OpenFile {
    origin: String,
    store: CoreStore,
    docs: Vec<Node>,
    meta: Value,
    opened: Opened,
}

/// An encrypted file's documents (still encrypted) and its metadata.
fn read_encrypted(file: &Path, store: CoreStore) -> CliResult<(Vec<Node>, Value)> {
    let origin = file.display().to_string();
    let input = io::read_bytes(file)?;
    let mut docs = store.read_encrypted(&input).map_err(|e| sops_error(&origin, &[], e))?;
    let meta = take_metadata(&mut docs)
        .map_err(|e| CliError::new(format!("{origin} is not a SOPS file")).source(e))
        .hint("encrypt it with `sealant sops encrypt` first, or check --input-type")?;
    Ok((docs, meta))
}

fn open(file: &Path, store: CoreStore, ignore_mac: bool) -> CliResult<OpenFile> {
    let origin = file.display().to_string();
    let (mut docs, meta) = read_encrypted(file, store)?;
    let (identities, tried) = gather_identities(&sealant_sops::recipients(&meta).concat())?;
    let opened =
        decrypt_documents(&mut docs, &meta, &identities, ignore_mac).map_err(|e| sops_error(&origin, &tried, e))?;
    Ok(OpenFile { origin, store, docs, meta, opened })
}

impl OpenFile {
    /// Encrypt the (changed) documents again with the same data key and write the file.
    fn save(mut self, file: &Path) -> CliResult {
        let meta = reencrypt_documents(
            &mut rand::rng(),
            &mut self.docs,
            &self.meta,
            &self.opened,
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|e| failed(format!("cannot encrypt {} again", self.origin), e))?;
        let text = self.store.write_encrypted(&self.docs, &meta).map_err(|e| sops_error(&self.origin, &[], e))?;
        io::write_atomic(file, &text, Privacy::Public)
    }
}

/// The first `.sops.yaml` creation rule whose `path_regex` matches `file`: from `config`, else
/// from the `.sops.yaml` found from the working directory upwards, as sops does.
fn creation_rule(file: &Path, config: Option<&Path>) -> CliResult<Option<Rule>> {
    let config = match config {
        Some(path) => path.to_path_buf(),
        None => {
            let Ok(mut dir) = std::env::current_dir() else { return Ok(None) };
            loop {
                let candidate = dir.join(".sops.yaml");
                if candidate.is_file() {
                    break candidate;
                }
                if !dir.pop() {
                    return Ok(None);
                }
            }
        }
    };
    let text = io::read_file(&config)?;
    let base = config.parent().map(Path::to_path_buf).unwrap_or_default();
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let relative = absolute.strip_prefix(&base).unwrap_or(&absolute).to_string_lossy().into_owned();
    // sops' ErrorReadingConfig
    config::creation_rule(&text, &relative)
        .map_err(|e| CliError::new(format!("cannot use {}", config.display())).exit(5).source(e))
}

#[derive(Debug, clap::Args)]
pub struct FileCommand {
    /// The SOPS file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The file's format (default: from its extension; anything else is binary).
    #[arg(long, value_enum)]
    pub input_type: Option<Store>,
    /// Write the result over the file instead of printing it (rotate).
    #[arg(short = 'i', long)]
    pub in_place: bool,
}

/// Parse a `["key"][0]` path; `exit` is sops' code for a bad one where it is used: 7
/// (ErrorInvalidSetFormat) for `set` and `unset`, 91 (InvalidTreePathFormat) for `--extract`.
fn parse_path(path: &str, exit: u8) -> CliResult<Vec<Step>> {
    tree::parse_path(path).ok_or_else(|| {
        CliError::usage(format!("invalid path {}", quoted(path)))
            .exit(exit)
            .hint(r#"use the form '["key"]["inner"][0]'"#)
    })
}

/// A binary file holds one value, `data`: nothing else can be set or removed there.
fn check_binary_path(store: CoreStore, steps: &[Step], unset: bool) -> CliResult {
    if store == CoreStore::Binary && (unset || steps != [Step::Key("data".to_owned())]) {
        return Err(CliError::usage("a binary file holds only [\"data\"], which can be set but not removed")
            .hint("set --input-type if the file is YAML, JSON, dotenv or INI"));
    }
    Ok(())
}
