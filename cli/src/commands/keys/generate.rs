//! `sealant keys generate`: a controller-format key Secret for bring-your-own-key.

use super::*;

#[derive(Debug, clap::Args)]
pub struct GenerateCommand {
    /// RSA key size in bits.
    #[arg(long, default_value_t = DEFAULT_KEY_BITS as u16, value_parser = clap::value_parser!(u16).range(2048..=16384))]
    pub bits: u16,
    /// Certificate validity in days.
    #[arg(long, default_value_t = 3650)]
    pub days: u32,
    /// Common name for the certificate's subject and issuer (the controller's --my-cn).
    #[arg(long, default_value = "")]
    pub cn: String,
    /// Name of the key Secret (default: sealed-secrets-key plus 5 random characters).
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace of the controller.
    #[arg(short = 'n', long, default_value = "kube-system")]
    pub namespace: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub format: Format,
    /// Write the key Secret to FILE (mode 0600) instead of standard output.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Also write the certificate PEM to FILE, for offline sealing with --cert.
    #[arg(long, value_name = "FILE")]
    pub cert_out: Option<PathBuf>,
}

fn random_suffix(rng: &mut impl rand::Rng) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

pub fn generate(command: &GenerateCommand) -> CliResult {
    let mut rng = rand::rng();
    let valid_for = Duration::from_secs(u64::from(command.days) * 24 * 3600);
    let generated =
        cert::generate(&mut rng, usize::from(command.bits), valid_for, &command.cn, OffsetDateTime::now_utc())
            .map_err(|e| CliError::new("cannot generate the key").source(e))?;
    let name = command.name.clone().unwrap_or_else(|| format!("sealed-secrets-key{}", random_suffix(&mut rng)));
    let secret = key_secret(&generated, KeyName::Name(name), &command.namespace, BTreeMap::new(), BTreeMap::new());
    let secret = render::secret_value(&secret)?;
    let format = command.write.as_deref().and_then(Format::from_extension).unwrap_or(command.format);
    let text = zeroize::Zeroizing::new(render::documents(&[secret], format)?);
    if let Some(path) = &command.cert_out {
        io::write_atomic(path, generated.certificate.pem().as_bytes(), Privacy::Public)?;
    }
    match &command.write {
        Some(path) => io::write_atomic(path, text.as_bytes(), Privacy::Private),
        None => io::print(&text),
    }
}
