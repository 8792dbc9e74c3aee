//! User-facing errors: what failed, why, and on its own line what to do about it.

use std::fmt;

/// Exit status for a failure (usage errors exit 2 through clap).
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// An error for the terminal: `error: <what>: <cause>...` then `hint: <what to do>`.
#[derive(Debug)]
pub struct CliError {
    what: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    hint: Option<String>,
    usage: bool,
    /// An exit status of its own (sops' codes for sops failures).
    exit: Option<u8>,
}

pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    pub fn new(what: impl Into<String>) -> Self {
        Self { what: what.into(), source: None, hint: None, usage: false, exit: None }
    }

    /// A mistake in how the command was called: exit status 2.
    pub fn usage(what: impl Into<String>) -> Self {
        Self { usage: true, ..Self::new(what) }
    }

    pub fn source(mut self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Exit with `code` instead of 1 (or 2 for usage).
    pub fn exit(mut self, code: u8) -> Self {
        self.exit = Some(code);
        self
    }

    pub fn has_hint(&self) -> bool {
        self.hint.is_some()
    }

    pub fn exit_code(&self) -> u8 {
        self.exit.unwrap_or(if self.usage { EXIT_USAGE } else { EXIT_FAILURE })
    }

    /// As kubeseal exits: 1 for every error found after its flags were read, usage included.
    pub fn kubeseal_exit_code(&self) -> u8 {
        self.exit.unwrap_or(EXIT_FAILURE)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause: Option<&(dyn std::error::Error + 'static)> = self.source.as_deref().map(|e| e as _);
        f.write_str(&sealant_core::error::one_line(format!("error: {}", self.what), cause))?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

/// Attach the failing step to any error, as `.context()` would.
pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> CliResult<T>;
}

impl<T, E> Context<T> for Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn context(self, what: impl Into<String>) -> CliResult<T> {
        self.map_err(|e| CliError::new(what).source(e))
    }
}

/// Append a hint to an error result.
pub trait Hint<T> {
    fn hint(self, hint: impl Into<String>) -> CliResult<T>;
}

impl<T> Hint<T> for CliResult<T> {
    fn hint(self, hint: impl Into<String>) -> CliResult<T> {
        self.map_err(|e| if e.has_hint() { e } else { e.hint(hint) })
    }
}
