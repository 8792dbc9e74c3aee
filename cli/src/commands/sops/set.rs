//! `sealant sops set`: one value set, given as JSON, without showing any other.

use super::*;

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

pub fn set(command: &SetCommand) -> CliResult {
    must_exist(&command.file, 2)?;
    let steps = parse_path(&command.path, 7)?;
    check_binary_path(store_for(command.input_type, &command.file), &steps, false)?;
    let raw = match &command.value {
        Some(v) => zeroize::Zeroizing::new(v.clone()),
        None => zeroize::Zeroizing::new(io::read_input(None, "the value")?),
    };
    let json: Value = serde_json::from_str(raw.trim_end_matches('\n'))
        // sops' ErrorInvalidSetFormat.
        .map_err(|_| CliError::new("the value is not JSON").exit(7).hint(r#"quote a string as JSON: '"s3cret"'"#))?;
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
