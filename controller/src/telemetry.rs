//! Structured logs: text or JSON, info to stdout and warnings to stderr (upstream's default).

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::flags::{Flags, LogFormat};

pub fn init(flags: &Flags) -> Result<(), String> {
    let level: Level = flags.log_level.to_ascii_lowercase().parse().map_err(|_| {
        format!("invalid --log-level {}: use DEBUG, INFO, WARN or ERROR", sealant_core::error::quoted(&flags.log_level))
    })?;
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(Level::WARN)
        .with_target("sealant_controller", level)
        .with_target("sealant_crds", level)
        .with_target("kube_runtime", Level::WARN);
    let info_out = flags.log_info_stdout;
    let writer = std::io::stderr.with_max_level(Level::WARN).or_else(move || -> Box<dyn std::io::Write> {
        if info_out { Box::new(std::io::stdout()) } else { Box::new(std::io::stderr()) }
    });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match flags.log_format {
        LogFormat::Json => registry.with(tracing_subscriber::fmt::layer().json().with_writer(writer)).try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(writer),
            )
            .try_init(),
    };
    result.map_err(|e| e.to_string())
}
