//! `sealant sops updatekeys`: the data key wrapped for the recipients of the matching rule.

use super::*;

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
