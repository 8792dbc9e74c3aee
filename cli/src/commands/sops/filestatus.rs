//! `sealant sops filestatus`: whether a file is encrypted.

use super::*;

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
