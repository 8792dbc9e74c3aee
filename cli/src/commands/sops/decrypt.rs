//! `sealant sops decrypt`: the plaintext of a file, whole or one part (`--extract`).

use super::*;

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

/// What `--extract` points at.
fn extract<'a>(doc: &'a mut Node, path: &str) -> CliResult<&'a Node> {
    let mut node = doc;
    for step in parse_path(path, 91)? {
        node = step_into(node, &step).ok_or_else(|| CliError::new(format!("{path} is not in the file")))?;
    }
    Ok(node)
}

pub fn decrypt(command: &DecryptCommand) -> CliResult {
    must_exist(&command.file, 100)?;
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
