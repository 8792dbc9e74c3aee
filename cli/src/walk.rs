//! The one directory walk of `lint`, `validate`, `reencrypt` and `keys usage`: the same files
//! in the same order whichever command asks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{CliError, CliResult};

/// Directories [`Skip::Vendored`] never enters unless named on the command line: build output
/// and vendored dependencies. Hidden directories are skipped too; hidden files are not (a leftover
/// temporary file of ours is one).
const SKIPPED_DIRS: [&str; 3] = ["target", "node_modules", "vendor"];

/// Version control's own directories, never entered unless named.
const VERSION_CONTROL: [&str; 4] = [".git", ".hg", ".svn", ".jj"];

/// Which directories a walk leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Version control, hidden directories, build output and vendored dependencies: the files
    /// a check of one's own manifests wants.
    Vendored,
    /// Only version control: the plaintext gate, for which a Secret in `.github/` or `vendor/` is
    /// as much a leak as one anywhere else.
    VersionControl,
}

/// Every file under `paths` that `wanted` accepts, in name order, each with whether it was named
/// on the command line (a named file is always taken).
pub fn files(paths: &[PathBuf], skip: Skip, wanted: impl Fn(&Path) -> bool) -> CliResult<Vec<(PathBuf, bool)>> {
    let mut out = Vec::new();
    let mut entered = HashSet::new();
    for path in paths {
        let before = out.len();
        // A path that is not there is an error, never nothing to report: a typo in a CI job or a
        // renamed folder must not turn a gate green.
        std::fs::metadata(path).and_then(|_| walk(path, true, skip, &wanted, &mut entered, &mut out)).map_err(|e| {
            CliError::new(format!("cannot read {}", path.display()))
                .source(e)
                .hint("check that the path exists and is readable")
        })?;
        if out.len() == before && path.is_dir() {
            return Err(CliError::new(format!("{} holds no file to check", path.display()))
                .hint("give the folder that holds your manifests (YAML or JSON files)"));
        }
    }
    Ok(out)
}

/// `entered`: every directory walked so far, resolved: a symbolic link back to one (a loop, or
/// two links to one folder) is not walked again.
fn walk(
    path: &Path,
    explicit: bool,
    skip: Skip,
    wanted: &impl Fn(&Path) -> bool,
    entered: &mut HashSet<PathBuf>,
    out: &mut Vec<(PathBuf, bool)>,
) -> std::io::Result<()> {
    if path.is_dir() {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let skipped = match skip {
            Skip::Vendored => SKIPPED_DIRS.contains(&name.as_str()) || name.starts_with('.'),
            Skip::VersionControl => VERSION_CONTROL.contains(&name.as_str()),
        };
        if !explicit && skipped {
            return Ok(());
        }
        if !entered.insert(path.canonicalize()?) {
            return Ok(());
        }
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            walk(&entry.path(), false, skip, wanted, entered, out)?;
        }
    } else if explicit || wanted(path) {
        out.push((path.to_path_buf(), explicit));
    }
    Ok(())
}

/// YAML and JSON files, by extension.
pub fn manifests(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_hidden_and_vendored_directories_but_not_named_ones() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["a.yaml", "b.txt", ".git/c.yaml", "vendor/d.yaml", "sub/e.json", ".hidden.yaml"] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "x").unwrap();
        }
        let found = files(&[dir.path().to_path_buf(), dir.path().join("vendor")], Skip::Vendored, manifests).unwrap();
        let names: Vec<String> =
            found.iter().map(|(p, _)| p.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(names, [".hidden.yaml", "a.yaml", "sub/e.json", "vendor/d.yaml"]);
        // The plaintext gate enters all but version control.
        let found = files(&[dir.path().to_path_buf()], Skip::VersionControl, manifests).unwrap();
        let names: Vec<String> =
            found.iter().map(|(p, _)| p.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(names, [".hidden.yaml", "a.yaml", "sub/e.json", "vendor/d.yaml"]);
    }

    #[test]
    fn a_missing_path_or_a_folder_with_nothing_to_check_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = files(&[dir.path().join("nope")], Skip::Vendored, manifests).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let empty = files(&[dir.path().to_path_buf()], Skip::Vendored, manifests).unwrap_err();
        assert!(empty.to_string().contains("holds no file to check"), "{empty}");
    }

    #[test]
    fn symbolic_link_loops_are_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.yaml"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/up")).unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("self")).unwrap();
        std::os::unix::fs::symlink("sub", dir.path().join("again")).unwrap();
        let found = files(&[dir.path().to_path_buf()], Skip::Vendored, manifests).unwrap();
        let names: Vec<String> =
            found.iter().map(|(p, _)| p.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(names, ["again/a.yaml"]);
    }
}
