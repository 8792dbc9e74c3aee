//! `sealant sops unset`: one value removed.

use super::*;

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

pub fn unset(command: &UnsetCommand) -> CliResult {
    must_exist(&command.file, 2)?;
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
