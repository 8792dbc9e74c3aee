//! `sealant sops`: read SOPS files encrypted to age keys, as the real `sops` writes them.

use std::path::{Path, PathBuf};

use sealant_core::age_ssh::SshEd25519Identity;
use sealant_core::sops::{
    EncryptOptions, Selection, SopsError, decrypt_documents, encrypt_documents, take_metadata, unflatten,
};
use sealant_core::yaml;
use serde_json::Value;

use crate::error::{CliError, CliResult, Hint};
use crate::io::{self, Privacy};

#[derive(Debug, clap::Subcommand)]
pub enum SopsCommand {
    /// Decrypt a SOPS file (YAML, JSON, dotenv or binary) with age identities.
    Decrypt(DecryptCommand),
    /// Encrypt a file to age recipients, readable by the real sops.
    Encrypt(EncryptCommand),
    /// Encrypt every value again under a new data key (same recipients and rules).
    Rotate(FileCommand),
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
    /// Let the MAC cover only the encrypted values.
    #[arg(long)]
    pub mac_only_encrypted: bool,
    /// The file's format (default: from its extension; anything else is binary).
    #[arg(long, value_enum)]
    pub input_type: Option<Store>,
    /// The output format (default: the input's).
    #[arg(long, value_enum)]
    pub output_type: Option<Store>,
    /// Write the encrypted file over the plaintext instead of printing it.
    #[arg(short = 'i', long)]
    pub in_place: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    Yaml,
    Json,
    Dotenv,
    Binary,
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

fn store_of(path: &Path) -> Store {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("yaml" | "yml") => Store::Yaml,
        Some("json") => Store::Json,
        Some("env") => Store::Dotenv,
        _ => Store::Binary,
    }
}

type Identities = Vec<Box<dyn age::Identity + Send + Sync>>;

/// Identities gathered as sops does, all sources combined; with a description of each (its
/// public key) for error messages, never the private key.
fn gather_identities() -> CliResult<(Identities, Vec<String>)> {
    let mut identities: Identities = Vec::new();
    let mut tried = Vec::new();
    let add_keys_text = |text: &str, origin: &str, identities: &mut Identities, tried: &mut Vec<String>| -> CliResult {
        for token in text.lines().filter(|l| !l.starts_with('#')).flat_map(str::split_whitespace) {
            if let Ok(identity) = token.parse::<age::x25519::Identity>() {
                tried.push(identity.to_public().to_string());
                identities.push(Box::new(identity));
            } else if token.starts_with("AGE-") {
                return Err(CliError::new(format!("{origin} holds an identity that is not an X25519 age key"))
                    .hint("plugin and post-quantum identities are not supported yet"));
            }
        }
        Ok(())
    };
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut ssh_files: Vec<PathBuf> =
        std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE").map(PathBuf::from).into_iter().collect();
    if let Some(home) = &home {
        ssh_files.push(home.join(".ssh/id_ed25519"));
    }
    for (i, path) in ssh_files.iter().enumerate() {
        let Ok(text) = std::fs::read_to_string(path) else {
            if i == 0 && std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE").is_some() {
                return Err(CliError::new(format!("cannot read SOPS_AGE_SSH_PRIVATE_KEY_FILE {}", path.display())));
            }
            continue;
        };
        match SshEd25519Identity::from_openssh(&text) {
            Ok(identity) => {
                tried.push(format!("ssh key {}", path.display()));
                identities.push(Box::new(identity));
            }
            Err(e) if i == 0 && std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE").is_some() => {
                return Err(CliError::new(format!("cannot use {}", path.display())).source(e));
            }
            Err(_) => {}
        }
    }
    if let Ok(inline) = std::env::var("SOPS_AGE_KEY") {
        add_keys_text(&inline, "SOPS_AGE_KEY", &mut identities, &mut tried)?;
    }
    if let Some(path) = std::env::var_os("SOPS_AGE_KEY_FILE") {
        let text = zeroize::Zeroizing::new(io::read_file(Path::new(&path))?);
        add_keys_text(&text, "SOPS_AGE_KEY_FILE", &mut identities, &mut tried)?;
    }
    if let Ok(command) = std::env::var("SOPS_AGE_KEY_CMD") {
        let mut words = command.split_whitespace();
        let program = words.next().unwrap_or_default();
        let out = std::process::Command::new(program)
            .args(words)
            .output()
            .map_err(|e| CliError::new(format!("cannot run SOPS_AGE_KEY_CMD {program:?}")).source(e))?;
        if !out.status.success() {
            return Err(CliError::new(format!("SOPS_AGE_KEY_CMD {program:?} failed ({})", out.status)));
        }
        let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
        add_keys_text(&text, "SOPS_AGE_KEY_CMD", &mut identities, &mut tried)?;
    }
    let config = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| home.map(|h| h.join(".config")));
    if let Some(default) = config.map(|c| c.join("sops/age/keys.txt"))
        && let Ok(text) = std::fs::read_to_string(&default)
    {
        let text = zeroize::Zeroizing::new(text);
        add_keys_text(&text, &default.display().to_string(), &mut identities, &mut tried)?;
    }
    Ok((identities, tried))
}

/// The documents of a file, each a tree; dotenv and binary become one map.
fn read_documents(text: &[u8], store: Store, origin: &str) -> CliResult<Vec<Value>> {
    let bad = |e: String| CliError::new(format!("cannot parse {origin} as {store:?}: {e}")).hint("set --input-type");
    match store {
        Store::Yaml | Store::Json | Store::Binary => {
            let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8".into()))?;
            yaml::parse_documents(text).map_err(|e| bad(e.to_string()))
        }
        Store::Dotenv => {
            let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8".into()))?;
            let mut data = serde_json::Map::new();
            let mut meta = Vec::new();
            for line in text.split('\n').filter(|l| !l.is_empty() && !l.starts_with('#')) {
                let (key, value) = line.split_once('=').ok_or_else(|| {
                    bad(format!(
                        "a line without '=': {key:?}",
                        key = line.split('=').next().unwrap_or_default().chars().take(20).collect::<String>()
                    ))
                })?;
                let value = value.replace("\\n", "\n");
                match key.strip_prefix("sops_") {
                    Some(meta_key) => meta.push((meta_key.to_owned(), value)),
                    None => {
                        data.insert(key.to_owned(), Value::String(value));
                    }
                }
            }
            if !meta.is_empty() {
                data.insert("sops".to_owned(), unflatten(&meta));
            }
            Ok(vec![Value::Object(data)])
        }
    }
}

fn write_documents(docs: &[Value], store: Store) -> CliResult<Vec<u8>> {
    match store {
        Store::Yaml => {
            let mut out = String::new();
            for (i, doc) in docs.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&yaml::to_yaml_in_order(doc).map_err(|e| CliError::new("cannot write YAML").source(e))?);
            }
            Ok(out.into_bytes())
        }
        Store::Json => {
            let mut out = Vec::new();
            for doc in docs {
                let mut ser = serde_json::Serializer::with_formatter(
                    &mut out,
                    serde_json::ser::PrettyFormatter::with_indent(b"\t"),
                );
                serde::Serialize::serialize(doc, &mut ser).map_err(|e| CliError::new("cannot write JSON").source(e))?;
                out.push(b'\n');
            }
            Ok(out)
        }
        Store::Dotenv => {
            let mut out = String::new();
            for doc in docs {
                for (k, v) in doc.as_object().into_iter().flatten() {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Object(_) | Value::Array(_) => {
                            return Err(CliError::new(format!("{k} is nested: dotenv holds only flat values"))
                                .hint("choose --output-type yaml or json"));
                        }
                        other => other.to_string(),
                    };
                    out.push_str(&format!("{k}={}\n", text.replace('\n', "\\n")));
                }
            }
            Ok(out.into_bytes())
        }
        Store::Binary => match docs.first().and_then(|d| d.get("data")) {
            Some(Value::String(s)) => Ok(s.clone().into_bytes()),
            _ => Err(CliError::new("the file has no binary `data`").hint("set --input-type to the file's format")),
        },
    }
}

/// Whether a YAML or dotenv text has comment lines (which the tree does not keep yet).
fn has_comments(input: &[u8]) -> bool {
    String::from_utf8_lossy(input).lines().any(|l| l.trim_start().starts_with('#'))
}

/// A `.sops.yaml` creation rule's settings for one file.
#[derive(Debug, Default)]
struct Rule {
    key_groups: Vec<Vec<String>>,
    shamir_threshold: Option<usize>,
    selection: Option<Selection>,
    mac_only_encrypted: bool,
}

fn split_keys(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(|s| s.trim().to_owned()).collect(),
        _ => Vec::new(),
    }
}

/// The first `.sops.yaml` creation rule whose `path_regex` matches `file`, looking from the
/// working directory upwards as sops does.
fn creation_rule(file: &Path) -> CliResult<Option<Rule>> {
    let Ok(mut dir) = std::env::current_dir() else { return Ok(None) };
    let config = loop {
        let candidate = dir.join(".sops.yaml");
        if candidate.is_file() {
            break candidate;
        }
        if !dir.pop() {
            return Ok(None);
        }
    };
    let text = io::read_file(&config)?;
    let docs = yaml::parse_documents(&text)
        .map_err(|e| CliError::new(format!("cannot parse {}", config.display())).source(e))?;
    let base = config.parent().map(Path::to_path_buf).unwrap_or_default();
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let relative = absolute.strip_prefix(&base).unwrap_or(&absolute).to_string_lossy().into_owned();
    let rules =
        docs.first().and_then(|d| d.get("creation_rules")).and_then(Value::as_array).cloned().unwrap_or_default();
    for rule in rules {
        if let Some(pattern) = rule.get("path_regex").and_then(Value::as_str) {
            let regex = regex::Regex::new(pattern)
                .map_err(|e| CliError::new(format!("invalid path_regex in {}", config.display())).source(e))?;
            if !regex.is_match(&relative) {
                continue;
            }
        }
        let mut key_groups: Vec<Vec<String>> = rule
            .get("key_groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|g| split_keys(g.get("age")))
            .collect();
        if key_groups.is_empty() {
            key_groups.push(split_keys(rule.get("age")));
        }
        let selection = Selection::from_fields(|k| rule.get(k).and_then(Value::as_str).map(str::to_owned));
        return Ok(Some(Rule {
            key_groups,
            shamir_threshold: rule.get("shamir_threshold").and_then(Value::as_u64).map(|n| n as usize),
            selection,
            mac_only_encrypted: rule.get("mac_only_encrypted").and_then(Value::as_bool).unwrap_or(false),
        }));
    }
    Ok(None)
}

pub fn encrypt(command: &EncryptCommand) -> CliResult {
    let origin = command.file.display().to_string();
    let input = io::read_bytes(&command.file)?;
    let store = command.input_type.unwrap_or_else(|| store_of(&command.file));
    let mut docs = match store {
        Store::Binary => {
            let text = String::from_utf8(input.clone()).map_err(|_| {
                CliError::new(format!("{origin} is not UTF-8 text"))
                    .hint("binary files that are not text are not supported yet; use sops")
            })?;
            vec![serde_json::json!({ "data": text })]
        }
        _ => read_documents(&input, store, &origin)?,
    };
    let rule = creation_rule(&command.file)?.unwrap_or_default();
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
        _ => None,
    });
    // A Kubernetes Secret with no rule saying otherwise: encrypt only its data.
    let is_secret = docs.iter().any(|d| d.get("kind").and_then(Value::as_str) == Some("Secret"));
    let selection = flag_selection.or(rule.selection).unwrap_or(if is_secret {
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
        .map_err(|e| CliError::new(format!("cannot encrypt {origin}")).source(e))?;
    if store != Store::Binary && has_comments(&input) {
        eprintln!("note: comments are not carried into the encrypted file yet");
    }
    let text = write_encrypted(docs, &meta, command.output_type.unwrap_or(store))?;
    if command.in_place {
        return io::write_atomic(&command.file, &text, Privacy::Public);
    }
    io::print_bytes(&text)
}

/// Encrypted documents with their metadata, in `store`'s layout.
fn write_encrypted(mut docs: Vec<Value>, meta: &Value, store: Store) -> CliResult<Vec<u8>> {
    match store {
        Store::Dotenv => {
            let mut out = write_documents(&docs, Store::Dotenv)?;
            let mut flat = Vec::new();
            sealant_core::sops::flatten(meta, "", &mut flat);
            for (k, v) in flat {
                out.extend_from_slice(format!("sops_{k}={}\n", v.replace('\n', "\\n")).as_bytes());
            }
            Ok(out)
        }
        Store::Binary => {
            let data = docs.first().and_then(|d| d.get("data")).cloned().unwrap_or(Value::Null);
            write_documents(&[serde_json::json!({ "data": data, "sops": meta })], Store::Json)
        }
        other => {
            for doc in docs.iter_mut() {
                if let Value::Object(map) = doc {
                    map.insert("sops".to_owned(), meta.clone());
                }
            }
            write_documents(&docs, other)
        }
    }
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

/// `{"encrypted":true}` when the file has sops metadata, as `sops filestatus` prints.
pub fn filestatus(command: &FileCommand) -> CliResult {
    let input = io::read_bytes(&command.file)?;
    let store = command.input_type.unwrap_or_else(|| store_of(&command.file));
    let encrypted = read_documents(&input, store, &command.file.display().to_string())
        .ok()
        .is_some_and(|mut docs| take_metadata(&mut docs).is_ok());
    io::print(&format!("{{\"encrypted\":{encrypted}}}\n"))
}

/// A new data key: every value is encrypted again, to the same recipients and with the same rules.
pub fn rotate(command: &FileCommand) -> CliResult {
    let origin = command.file.display().to_string();
    let input = io::read_bytes(&command.file)?;
    let store = command.input_type.unwrap_or_else(|| store_of(&command.file));
    if store == Store::Binary {
        return Err(CliError::new("rotating binary files is not supported yet").hint("use sops rotate"));
    }
    let mut docs = read_documents(&input, store, &origin)?;
    let meta = take_metadata(&mut docs).map_err(|e| CliError::new(format!("{origin} is not a SOPS file")).source(e))?;
    if meta.get("encrypted_comment_regex").or(meta.get("unencrypted_comment_regex")).is_some() {
        return Err(CliError::new(format!("{origin} selects values by comments, which are not supported yet"))
            .hint("use sops rotate"));
    }
    let (identities, _) = gather_identities()?;
    decrypt_documents(&mut docs, &meta, &identities, false)
        .map_err(|e| CliError::new(format!("cannot decrypt {origin}")).source(e))
        .hint("set SOPS_AGE_KEY_FILE (or another age identity source) to a key of the file")?;
    let options = sealant_core::sops::options_from_metadata(&meta);
    let new_meta = encrypt_documents(&mut rand::rng(), &mut docs, &options, time::OffsetDateTime::now_utc())
        .map_err(|e| CliError::new(format!("cannot encrypt {origin} again")).source(e))?;
    if has_comments(&input) {
        eprintln!("note: comments are not carried into the rotated file yet");
    }
    let text = write_encrypted(docs, &new_meta, store)?;
    if command.in_place {
        return io::write_atomic(&command.file, &text, Privacy::Public);
    }
    io::print_bytes(&text)
}

/// Follow `["a"]["b"][0]` into the tree.
fn extract<'a>(doc: &'a Value, path: &str) -> CliResult<&'a Value> {
    let bad = || CliError::usage(format!("invalid --extract {path:?}")).hint(r#"use the form '["key"]["inner"][0]'"#);
    let mut node = doc;
    let mut rest = path.trim();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').ok_or_else(bad)?;
        let end = match inner.strip_prefix('"') {
            Some(quoted) => quoted.find('"').map(|i| i + 2),
            None => inner.find(']'),
        }
        .ok_or_else(bad)?;
        let (segment, after) = inner.split_at(end);
        rest = after.strip_prefix(']').ok_or_else(bad)?;
        node = match segment.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(key) => node.get(key),
            None => segment.parse::<usize>().ok().and_then(|i| node.get(i)),
        }
        .ok_or_else(|| CliError::new(format!("{path} is not in the file")))?;
    }
    Ok(node)
}

pub fn decrypt(command: &DecryptCommand) -> CliResult {
    let origin = command.file.display().to_string();
    let input = io::read_bytes(&command.file)?;
    let store = command.input_type.unwrap_or_else(|| store_of(&command.file));
    let mut docs = read_documents(&input, store, &origin)?;
    let meta = take_metadata(&mut docs)
        .map_err(|e| CliError::new(format!("{origin} is not a SOPS file")).source(e))
        .hint("encrypt it with `sops --encrypt` first, or check --input-type")?;
    let (identities, tried) = gather_identities()?;
    let raw_data = decrypt_documents(&mut docs, &meta, &identities, command.ignore_mac).map_err(|e| match e {
        SopsError::NoIdentity { recipients, .. } => CliError::new(format!(
            "no age identity could decrypt {origin}: it is encrypted to {recipients}; tried {}",
            if tried.is_empty() { "none".to_owned() } else { tried.join(", ") }
        ))
        .hint("set SOPS_AGE_KEY_FILE (or SOPS_AGE_KEY, SOPS_AGE_KEY_CMD, SOPS_AGE_SSH_PRIVATE_KEY_FILE) to a matching key"),
        SopsError::MacMismatch => CliError::new(format!("cannot decrypt {origin}"))
            .source(e)
            .hint("restore the file from version control; --ignore-mac decrypts it anyway"),
        e => CliError::new(format!("cannot decrypt {origin}")).source(e),
    })?;
    let output = command.output_type.unwrap_or(store);
    let plain = zeroize::Zeroizing::new(match &command.extract {
        Some(path) => match extract(docs.first().unwrap_or(&Value::Null), path)? {
            Value::String(s) => s.clone().into_bytes(),
            other if other.is_object() || other.is_array() => write_documents(std::slice::from_ref(other), output)?,
            other => other.to_string().into_bytes(),
        },
        None if output == Store::Binary => match raw_data {
            Some(raw) => raw.expose().to_vec(),
            None => write_documents(&docs, output)?,
        },
        None => write_documents(&docs, output)?,
    });
    if store != Store::Binary && has_comments(&input) {
        eprintln!("note: comments are not carried into the decrypted output yet");
    }
    if command.in_place {
        return io::write_atomic(&command.file, &plain, Privacy::Private);
    }
    io::print_bytes(&plain)
}
