//! Files and terminals: reading input, printing output, and writing files atomically.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{CliError, CliResult, Context, Hint};

/// Output document format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// The format a file's extension asks for, if it asks.
    pub fn from_extension(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// The format of an existing document's text.
    pub fn of_text(text: &str) -> Format {
        if sealant_core::yaml::looks_like_json(text) { Format::Json } else { Format::Yaml }
    }
}

/// Largest YAML or JSON input: far above any Kubernetes object (etcd stores at most 1.5 MB),
/// far below what would exhaust memory once parsed.
pub const MAX_DOCUMENT_BYTES: u64 = 64 << 20;
/// Largest file of any kind (SOPS binary files included).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// All of `reader`, refused past `limit` bytes before it is all in memory.
fn read_at_most(reader: impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than the {} MiB this command reads", limit >> 20),
        ));
    }
    Ok(bytes)
}

/// A YAML or JSON file's bytes, at most [`MAX_DOCUMENT_BYTES`].
pub fn read_document(path: &Path) -> std::io::Result<Vec<u8>> {
    read_at_most(std::fs::File::open(path)?, MAX_DOCUMENT_BYTES)
}

/// `-` or no path means standard input.
pub fn read_input(path: Option<&Path>, what: &str) -> CliResult<String> {
    match path.filter(|p| p.as_os_str() != "-") {
        Some(path) => read_file(path),
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("(tty detected: expecting json/yaml {what} in stdin)");
            }
            let bytes = read_at_most(stdin.lock(), MAX_DOCUMENT_BYTES).context("cannot read standard input")?;
            String::from_utf8(bytes)
                .map_err(|_| CliError::new("standard input is not UTF-8 text").hint("give a YAML or JSON document"))
        }
    }
}

pub fn read_file(path: &Path) -> CliResult<String> {
    let bytes = read_document(path)
        .context(format!("cannot read {}", path.display()))
        .hint("check that the file exists and that you may read it")?;
    String::from_utf8(bytes).map_err(|_| {
        CliError::new(format!("{} is not UTF-8 text", path.display())).hint("give a YAML or JSON document")
    })
}

pub fn read_bytes(path: &Path) -> CliResult<Vec<u8>> {
    std::fs::File::open(path)
        .and_then(|file| read_at_most(file, MAX_FILE_BYTES))
        .context(format!("cannot read {}", path.display()))
        .hint("check that the file exists and that you may read it")
}

/// Print to standard output. A reader that went away (`| head`) is not an error.
pub fn print(text: &str) -> CliResult {
    print_bytes(text.as_bytes())
}

/// Print bytes (which need not be text) to standard output, like [`print`].
pub fn print_bytes(bytes: &[u8]) -> CliResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::new("cannot write to standard output").source(e))
        }
        _ => Ok(()),
    }
}

/// Who may read a file we create.
#[derive(Clone, Copy, Debug)]
pub enum Privacy {
    /// Safe to commit: 0644.
    Public,
    /// Holds a private key: 0600.
    Private,
}

/// The name every temporary file of [`write_atomic`] starts with, so that `lint` can report one
/// that a SIGKILL left behind (it may hold plaintext).
pub const TEMP_PREFIX: &str = ".sealant-tmp-";

/// The file `path` names once symbolic links are followed (at most 40, as the kernel does; a
/// link to nothing yet names the file to create). A link the kernel's `protected_symlinks` would
/// not follow is refused: in a sticky directory anyone may write to (`/tmp`), one owned by
/// neither this user nor the directory's owner (another user's trap for a victim's `-w`).
fn through_links(path: &Path) -> CliResult<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(&current) else { break };
        let dir = match current.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let (Some(me), Ok(link), Ok(parent)) = (me, std::fs::symlink_metadata(&current), std::fs::metadata(&dir))
            && parent.mode() & 0o1002 == 0o1002
            && link.uid() != me
            && link.uid() != parent.uid()
        {
            return Err(CliError::new(format!(
                "{} is a symbolic link of user {} in a shared directory: not followed",
                current.display(),
                link.uid()
            ))
            .hint("another user may have put it there to have you overwrite its target; write elsewhere"));
        }
        current = if target.is_absolute() { target } else { dir.join(&target) };
    }
    Ok(current)
}

/// Write `contents` to `path` all at once: a temporary file in the same directory, synced, then
/// renamed over the target. A public file keeps an existing file's permissions (a new one gets
/// 0644); a private one is always 0600. SIGINT, SIGTERM and SIGHUP wait until the temporary
/// file is renamed or removed.
pub fn write_atomic(path: &Path, contents: &[u8], privacy: Privacy) -> CliResult {
    let _held = crate::signals::hold();
    // Through a symbolic link to the file it names, as the real sops and an editor do: the link
    // stays a link, and the file it points to gets the new contents.
    let target = through_links(path)?;
    let path = target.as_path();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let fail = |e: std::io::Error| {
        CliError::new(format!("cannot write {}", path.display()))
            .source(e)
            .hint("check that the directory exists and that you may write to it")
    };
    // Created 0600, so a private file is never readable by others, not even while written.
    let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(&dir).map_err(fail)?;
    if let Privacy::Public = privacy {
        use std::os::unix::fs::PermissionsExt;
        let permissions = match std::fs::metadata(path) {
            Ok(existing) => existing.permissions(),
            Err(_) => std::fs::Permissions::from_mode(0o644),
        };
        tmp.as_file().set_permissions(permissions).map_err(fail)?;
    }
    tmp.write_all(contents).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_users_link_in_a_shared_sticky_directory_is_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("tmp");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "mine").unwrap();
        let trap = shared.join("out.yaml");
        std::os::unix::fs::symlink(&victim, &trap).unwrap();
        // Our own link is followed, as an editor would.
        write_atomic(&trap, b"sealed", Privacy::Public).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "sealed");
        // Another user's is not (only root can give a link away; others skip this part).
        if std::os::unix::fs::lchown(&trap, Some(65534), None).is_ok() {
            assert!(write_atomic(&trap, b"again", Privacy::Public).is_err());
            assert_eq!(std::fs::read_to_string(&victim).unwrap(), "sealed");
        }
    }
}
