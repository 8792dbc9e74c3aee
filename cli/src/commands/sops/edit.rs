//! `sealant sops edit`: the plaintext in a private copy for the editor, wiped whatever happens;
//! a signal cancels the edit, as in sops.

use super::*;

#[derive(Debug, clap::Args)]
pub struct EditCommand {
    /// The encrypted file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The file's format (default: from its extension; anything else is binary).
    #[arg(long, value_enum)]
    pub input_type: Option<Store>,
    /// Open the file even if the MAC does not match.
    #[arg(long)]
    pub ignore_mac: bool,
}

/// The editor sops would start: `SOPS_EDITOR`, else `EDITOR`, else the first of vim, nano, vi.
fn editor() -> CliResult<Vec<String>> {
    let configured =
        std::env::var("SOPS_EDITOR").ok().or_else(|| std::env::var("EDITOR").ok()).filter(|e| !e.trim().is_empty());
    if let Some(command) = configured {
        return Ok(command.split_whitespace().map(str::to_owned).collect());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["vim", "nano", "vi"]
        .iter()
        .find(|name| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .map(|name| vec![(*name).to_owned()])
        .ok_or_else(|| CliError::new("no editor found").hint("set EDITOR (or SOPS_EDITOR)"))
}

/// The plaintext copy for the editor, in a private directory; overwritten with zeros and
/// removed when dropped, whatever happens.
struct PlainCopy {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl PlainCopy {
    fn new(name: &std::ffi::OsStr, contents: &[u8]) -> CliResult<PlainCopy> {
        use std::os::unix::fs::OpenOptionsExt as _;
        use std::os::unix::fs::PermissionsExt as _;
        // 0700 from the start: an editor that saves by writing a new file and renaming it
        // makes that file with the umask's mode, so the directory must keep others out.
        let dir = tempfile::Builder::new()
            .prefix("sealant-edit-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|e| CliError::new("cannot create a private temporary directory").source(e))?;
        let path = dir.path().join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let mut file = options.open(&path).map_err(|e| CliError::new("cannot create the temporary file").source(e))?;
        std::io::Write::write_all(&mut file, contents)
            .map_err(|e| CliError::new("cannot write the temporary file").source(e))?;
        Ok(PlainCopy { _dir: dir, path })
    }
}

impl Drop for PlainCopy {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::metadata(&self.path)
            && let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(&self.path)
        {
            let zeros = vec![0u8; usize::try_from(meta.len()).unwrap_or(0)];
            let _ = std::io::Write::write_all(&mut file, &zeros).and_then(|()| file.sync_all());
        }
    }
}

/// Run the editor and wait for it. The caller holds the termination signals (Ctrl+C goes to
/// the editor too), so this process outlives the editor and wipes the plaintext copy.
fn run_editor(program: &str, args: &[String], path: &Path) -> CliResult<std::process::ExitStatus> {
    std::process::Command::new(program)
        .args(args)
        .arg(path)
        .status()
        .map_err(|e| CliError::new(format!("cannot start the editor {}", quoted(program))).source(e))
}

/// An edit stopped by a signal: nothing is saved, and the signal ends the process once the
/// plaintext copy is wiped.
fn cancelled(origin: &str) -> CliError {
    let message = format!("the edit was interrupted; {origin} is unchanged");
    // Said now: the signal ends the process before main could print the error.
    eprintln!("error: {message}");
    CliError::new(message)
}

/// Wait for Enter; `false` when a signal (Ctrl+C) came first.
fn wait_for_enter() -> bool {
    let (answered, answer) = std::sync::mpsc::channel();
    // A read of the terminal is restarted after a signal; so it runs on its own thread, which is
    // left blocked when the user stops.
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = answered.send(std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0));
    });
    loop {
        if signals::pending() {
            return false;
        }
        match answer.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(entered) => return entered && !signals::pending(),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
}

pub fn edit(command: &EditCommand) -> CliResult {
    let store = store_for(command.input_type, &command.file);
    let mut file = open(&command.file, store, command.ignore_mac)?;
    let plain =
        zeroize::Zeroizing::new(store.write_editable(&file.docs).map_err(|e| sops_error(&file.origin, &[], e))?);
    let name = command.file.file_name().unwrap_or(std::ffi::OsStr::new("secret"));
    // Before the copy: dropped after it, so a signal ends the process only once it is wiped.
    let _held = signals::hold();
    let copy = PlainCopy::new(name, &plain)?;
    let editor = editor()?;
    loop {
        let (program, args) = editor.split_first().ok_or_else(|| CliError::new("the editor command is empty"))?;
        let status = run_editor(program, args, &copy.path)?;
        if signals::pending() {
            return Err(cancelled(&file.origin));
        }
        if !status.success() {
            return Err(CliError::new(format!(
                "the editor {} failed ({status}); {} is unchanged",
                quoted(program),
                file.origin
            )));
        }
        let edited = zeroize::Zeroizing::new(io::read_bytes(&copy.path)?);
        if *edited == *plain {
            // sops' FileHasNotBeenModified: scripts tell an edit that changed nothing by it.
            return Err(CliError::new(format!("{} has not changed", file.origin)).exit(200));
        }
        let problem = match store.read_plain(&edited) {
            Ok(docs) if docs.iter().any(|d| d.get("sops").is_some()) => "a top-level `sops` key is reserved".to_owned(),
            Ok(docs) => {
                file.docs = docs;
                return file.save(&command.file);
            }
            Err(e) => e.to_string(),
        };
        // Keep the edits: let the user fix them when there is someone to ask.
        if !std::io::stdin().is_terminal() {
            return Err(CliError::new(format!("the edited file is invalid: {problem}; {} is unchanged", file.origin)));
        }
        eprintln!(
            "the edited file is invalid: {problem}\npress Enter to edit it again, or Ctrl+C to leave {} unchanged",
            file.origin
        );
        if !wait_for_enter() {
            return Err(cancelled(&file.origin));
        }
    }
}
