//! `sealant sops rotate`: a new data key, every value encrypted again.

use super::*;

#[derive(Debug, clap::Args)]
pub struct RotateCommand {
    #[command(flatten)]
    pub file: FileCommand,
    /// The format to write the file in (default: its own).
    #[arg(long, value_enum)]
    pub output_type: Option<Store>,
}

/// A new data key: every value is encrypted again, to the same recipients and with the same rules.
pub fn rotate(RotateCommand { file: command, output_type }: &RotateCommand) -> CliResult {
    must_exist(&command.file, 2)?;
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
