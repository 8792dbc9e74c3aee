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

mod edit;
mod identities;

pub use edit::edit;
use identities::gather_identities;

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

#[derive(Debug, clap::Args)]
pub struct EncryptCommand {
    /// The plaintext file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// age recipients, comma-separated (`age1...` or `ssh-ed25519 ...`); else from .sops.yaml.
    #[arg(long, env = "SOPS_AGE_RECIPIENTS", value_name = "RECIPIENTS")]
    pub age: Option<String>,
    /// Encrypt only values under keys matching this regex (Kubernetes Secrets: `^(data|stringData)$`).
    #[arg(long, group = "selection")]
    pub encrypted_regex: Option<String>,
    /// Leave values under keys matching this regex in clear text.
    #[arg(long, group = "selection")]
    pub unencrypted_regex: Option<String>,
    /// Encrypt only values under keys ending with this suffix.
    #[arg(long, group = "selection")]
    pub encrypted_suffix: Option<String>,
    /// Leave values under keys ending with this suffix in clear text (default `_unencrypted`).
    #[arg(long, group = "selection")]
    pub unencrypted_suffix: Option<String>,
    /// Encrypt only values after a comment matching this regex (the comment stays readable).
    #[arg(long, group = "selection")]
    pub encrypted_comment_regex: Option<String>,
    /// Leave values after a comment matching this regex in clear text.
    #[arg(long, group = "selection")]
    pub unencrypted_comment_regex: Option<String>,
    /// Let the MAC cover only the encrypted values.
    #[arg(long)]
    pub mac_only_encrypted: bool,
    /// The file's format (default: from its extension; anything else is binary).
    #[arg(long, value_enum)]
    pub input_type: Option<Store>,
    /// The output format (default: the input's).
    #[arg(long, value_enum)]
    pub output_type: Option<Store>,
    /// Match creation rules and pick the format by this path instead of FILE's (as sops does).
    #[arg(long, value_name = "PATH")]
    pub filename_override: Option<PathBuf>,
    /// Write the encrypted file over the plaintext instead of printing it.
    #[arg(short = 'i', long)]
    pub in_place: bool,
    /// The sops configuration to use instead of the `.sops.yaml` found from the working directory up.
    #[arg(long, env = "SOPS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
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

#[derive(Debug, clap::Args)]
pub struct DecryptCommand {
    /// The encrypted file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The file's format (default: from its extension; anything else is binary).
    #[arg(long, value_enum)]
    pub input_type: Option<Store>,
    /// The output format (default: the input's).
    #[arg(long, value_enum)]
    pub output_type: Option<Store>,
    /// Pick the format by this path instead of FILE's (as sops does).
    #[arg(long, value_name = "PATH")]
    pub filename_override: Option<PathBuf>,
    /// Decrypt even if the MAC does not match (the file may have been tampered with).
    #[arg(long)]
    pub ignore_mac: bool,
    /// Print only this part, e.g. '["data"]["password"]'.
    #[arg(long, value_name = "PATH")]
    pub extract: Option<String>,
    /// Write the plaintext over the file instead of printing it.
    #[arg(short = 'i', long)]
    pub in_place: bool,
}

#[derive(Debug, clap::Args)]
pub struct EditCommand {
    /// The encrypted file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The file's format (default: from its extension; anything else is binary).
    #[arg(long, value_enum)]
    pub input_type: Option<Store>,
    /// Open the file even if the MAC does not match.
    #[arg(long)]
    pub ignore_mac: bool,
}

#[derive(Debug, clap::Args)]
pub struct SetCommand {
    /// The encrypted file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where, e.g. '["data"]["password"]'; missing maps are created.
    #[arg(value_name = "PATH")]
    pub path: String,
    /// The value as JSON, e.g. '"s3cret"' or '{"a": 1}'; omit it with --value-stdin.
    #[arg(value_name = "VALUE", required_unless_present = "value_stdin")]
    pub value: Option<String>,
    /// Read the JSON value from standard input (keeps it out of shell history and `ps`).
    #[arg(long, conflicts_with = "value")]
    pub value_stdin: bool,
    /// The file's format (default: from its extension; anything else is binary).
    #[arg(long, value_enum)]
    pub input_type: Option<Store>,
    /// The format to write the file in (default: its own, as sops does).
    #[arg(long, value_enum)]
    pub output_type: Option<Store>,
}

#[derive(Debug, clap::Args)]
pub struct UnsetCommand {
    /// The encrypted file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// What to remove, e.g. '["data"]["password"]'.
    #[arg(value_name = "PATH")]
    pub path: String,
    /// The file's format (default: from its extension; anything else is binary).
    #[arg(long, value_enum)]
    pub input_type: Option<Store>,
}

#[derive(Debug, clap::Args)]
pub struct UpdatekeysCommand {
    /// The encrypted file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Apply the change without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// The sops configuration to use instead of the `.sops.yaml` found from the working directory up.
    #[arg(long, env = "SOPS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The file's format (default: from its extension; anything else is binary).
    #[arg(long, value_enum)]
    pub input_type: Option<Store>,
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
        SopsError::Parse(_) => CliError::new(format!("cannot read {origin}"))
            .exit(code)
            .source(e)
            .hint("check the file, or set --input-type"),
        e => failed(format!("cannot decrypt {origin}"), e),
    }
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

pub fn encrypt(command: &EncryptCommand) -> CliResult {
    let origin = command.file.display().to_string();
    let input = io::read_bytes(&command.file)?;
    let named = command.filename_override.as_deref().unwrap_or(&command.file);
    let store = store_for(command.input_type, named);
    let mut docs = store.read_plain(&input).map_err(|e| {
        CliError::new(format!("cannot read {origin} as {store}")).exit(2).source(e).hint("set --input-type")
    })?;
    if docs.is_empty() {
        return Err(CliError::new(format!("{origin} is empty: there is nothing to encrypt")));
    }
    let rule = creation_rule(named, command.config.as_deref())?.unwrap_or_default();
    let key_groups = match &command.age {
        Some(list) => vec![split_keys(Some(&Value::String(list.clone())))],
        None => rule.key_groups.clone(),
    };
    if key_groups.iter().all(Vec::is_empty) {
        return Err(CliError::usage("no age recipients")
            .hint("pass --age age1... (or SOPS_AGE_RECIPIENTS), or add a creation rule to .sops.yaml"));
    }
    let flag_selection = Selection::from_fields(|k| match k {
        "encrypted_regex" => command.encrypted_regex.clone(),
        "unencrypted_regex" => command.unencrypted_regex.clone(),
        "encrypted_suffix" => command.encrypted_suffix.clone(),
        "unencrypted_suffix" => command.unencrypted_suffix.clone(),
        "encrypted_comment_regex" => command.encrypted_comment_regex.clone(),
        "unencrypted_comment_regex" => command.unencrypted_comment_regex.clone(),
        _ => None,
    });
    // A Kubernetes Secret with no rule saying otherwise: encrypt only its data.
    let is_secret = docs.iter().any(|d| d.get("kind").and_then(Node::as_str) == Some("Secret"));
    let selection = flag_selection.or(rule.selection).unwrap_or(if is_secret && store != CoreStore::Binary {
        Selection::EncryptedRegex("^(data|stringData)$".into())
    } else {
        Selection::Default
    });
    let options = EncryptOptions {
        key_groups,
        shamir_threshold: rule.shamir_threshold,
        selection,
        mac_only_encrypted: command.mac_only_encrypted || rule.mac_only_encrypted,
    };
    let meta = encrypt_documents(&mut rand::rng(), &mut docs, &options, time::OffsetDateTime::now_utc())
        .map_err(|e| failed(format!("cannot encrypt {origin}"), e))?;
    let output = command.output_type.map_or(store, CoreStore::from);
    let text = output.write_encrypted(&docs, &meta).map_err(|e| sops_error(&origin, &[], e))?;
    if command.in_place {
        return io::write_atomic(&command.file, &text, Privacy::Public);
    }
    io::print_bytes(&text)
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

#[derive(Debug, clap::Args)]
pub struct RotateCommand {
    #[command(flatten)]
    pub file: FileCommand,
    /// The format to write the file in (default: its own).
    #[arg(long, value_enum)]
    pub output_type: Option<Store>,
}

/// `{"encrypted":true}` when the file has sops metadata, as `sops filestatus` prints.
pub fn filestatus(command: &FileCommand) -> CliResult {
    let input = io::read_bytes(&command.file)?;
    let store = store_for(command.input_type, &command.file);
    // A file that does not parse (an alias bomb, say) is an error, as in sops; one that parses
    // without metadata is plaintext.
    let mut docs = store.read_encrypted(&input).map_err(|e| sops_error(&command.file.display().to_string(), &[], e))?;
    let encrypted = take_metadata(&mut docs).is_ok();
    io::print(&format!("{{\"encrypted\":{encrypted}}}\n"))
}

/// A new data key: every value is encrypted again, to the same recipients and with the same rules.
pub fn rotate(RotateCommand { file: command, output_type }: &RotateCommand) -> CliResult {
    let OpenFile { origin, store, mut docs, meta, .. } =
        open(&command.file, store_for(command.input_type, &command.file), false)?;
    let options = sealant_sops::options_from_metadata(&meta)
        .map_err(|e| failed(format!("cannot rotate the data key of {origin}"), e))?;
    let new_meta = encrypt_documents(&mut rand::rng(), &mut docs, &options, time::OffsetDateTime::now_utc())
        .map_err(|e| failed(format!("cannot encrypt {origin} again"), e))?;
    let output = output_type.map_or(store, CoreStore::from);
    let text = output.write_encrypted(&docs, &new_meta).map_err(|e| sops_error(&origin, &[], e))?;
    if command.in_place {
        return io::write_atomic(&command.file, &text, Privacy::Public);
    }
    io::print_bytes(&text)
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

pub fn set(command: &SetCommand) -> CliResult {
    let steps = parse_path(&command.path, 7)?;
    check_binary_path(store_for(command.input_type, &command.file), &steps, false)?;
    let raw = match &command.value {
        Some(v) => zeroize::Zeroizing::new(v.clone()),
        None => zeroize::Zeroizing::new(io::read_input(None, "the value")?),
    };
    let json: Value = serde_json::from_str(raw.trim_end_matches('\n'))
        .map_err(|_| CliError::usage("the value is not JSON").hint(r#"quote a string as JSON: '"s3cret"'"#))?;
    let value = Node::from_json(&json);
    let mut file = open(&command.file, store_for(command.input_type, &command.file), false)?;
    let doc = file.docs.first_mut().ok_or_else(|| CliError::new(format!("{} has no document", file.origin)))?;
    set_path(doc, &steps, value)
        .map_err(|e| CliError::new(format!("cannot set {} in {}: {e}", command.path, file.origin)))?;
    if let Some(output) = command.output_type {
        file.store = output.into();
    }
    file.save(&command.file)
}

pub fn unset(command: &UnsetCommand) -> CliResult {
    let steps = parse_path(&command.path, 7)?;
    check_binary_path(store_for(command.input_type, &command.file), &steps, true)?;
    let mut file = open(&command.file, store_for(command.input_type, &command.file), false)?;
    let found = file.docs.first_mut().is_some_and(|doc| unset_path(doc, &steps));
    if !found {
        return Err(CliError::new(format!("{} is not in {}", command.path, file.origin))
            .hint("see what is there with `sealant sops decrypt --extract` on the parent path"));
    }
    file.save(&command.file)
}

pub fn updatekeys(command: &UpdatekeysCommand) -> CliResult {
    let origin = command.file.display().to_string();
    let store = store_for(command.input_type, &command.file);
    let (docs, meta) = read_encrypted(&command.file, store)?;
    let rule = creation_rule(&command.file, command.config.as_deref())?
        .filter(|r| r.key_groups.iter().any(|g| !g.is_empty()))
        .ok_or_else(|| CliError::new(format!("no .sops.yaml creation rule with age keys matches {origin}")))
        .hint("add one, or run from the directory that holds .sops.yaml")?;
    let old = sealant_sops::recipients(&meta);
    let wanted: Vec<Vec<String>> = rule.key_groups.iter().filter(|g| !g.is_empty()).cloned().collect();
    if old == wanted
        && rule.shamir_threshold.is_none_or(|t| meta.get("shamir_threshold").and_then(Value::as_u64) == Some(t as u64))
    {
        eprintln!("{origin} is already up to date");
        return Ok(());
    }
    let flat = |groups: &[Vec<String>]| groups.iter().flatten().cloned().collect::<Vec<_>>();
    let (old_flat, new_flat) = (flat(&old), flat(&wanted));
    let mut summary = format!("the following changes will be made to {origin}:\n");
    for r in new_flat.iter().filter(|r| !old_flat.contains(r)) {
        summary.push_str(&format!("+++ {r}\n"));
    }
    for r in old_flat.iter().filter(|r| !new_flat.contains(r)) {
        summary.push_str(&format!("--- {r}\n"));
    }
    eprint!("{summary}");
    if !command.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage("not confirmed").hint("pass --yes to apply the change without asking"));
        }
        eprint!("Is this okay? (y/n): ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).map_err(|e| CliError::new("cannot read the answer").source(e))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("{origin} is unchanged");
            return Ok(());
        }
    }
    let (identities, tried) = gather_identities(&sealant_sops::recipients(&meta).concat())?;
    let new_meta = sealant_sops::update_keys(&mut rand::rng(), &meta, &identities, &wanted, rule.shamir_threshold)
        .map_err(|e| sops_error(&origin, &tried, e))?;
    let text = store.write_encrypted(&docs, &new_meta).map_err(|e| sops_error(&origin, &[], e))?;
    io::write_atomic(&command.file, &text, Privacy::Public)?;
    eprintln!("{origin} updated");
    Ok(())
}

/// What `--extract` points at.
fn extract<'a>(doc: &'a mut Node, path: &str) -> CliResult<&'a Node> {
    let mut node = doc;
    for step in parse_path(path, 91)? {
        node = step_into(node, &step).ok_or_else(|| CliError::new(format!("{path} is not in the file")))?;
    }
    Ok(node)
}

pub fn decrypt(command: &DecryptCommand) -> CliResult {
    let store = store_for(command.input_type, command.filename_override.as_deref().unwrap_or(&command.file));
    let mut file = open(&command.file, store, command.ignore_mac)?;
    let output = command.output_type.map_or(store, CoreStore::from);
    let origin = file.origin.as_str();
    let plain = zeroize::Zeroizing::new(match &command.extract {
        Some(path) => {
            let first = file.docs.first_mut().ok_or_else(|| CliError::new(format!("{origin} has no document")))?;
            match extract(first, path)? {
                Node::Str(s) => s.as_bytes().to_vec(),
                Node::Bytes(b) => b.to_vec(),
                node @ (Node::Map(_) | Node::List(_)) => {
                    let out = if output == CoreStore::Binary { CoreStore::Json } else { output };
                    out.write_plain(std::slice::from_ref(node)).map_err(|e| sops_error(origin, &[], e))?
                }
                other => match other.to_json() {
                    Value::String(s) => s.into_bytes(),
                    v => v.to_string().into_bytes(),
                },
            }
        }
        None => output.write_plain(&file.docs).map_err(|e| sops_error(origin, &[], e))?,
    });
    file.docs.clear();
    if command.in_place {
        return io::write_atomic(&command.file, &plain, Privacy::Private);
    }
    io::print_bytes(&plain)
}
