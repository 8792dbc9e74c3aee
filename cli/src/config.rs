//! `.sealant.yaml`: which cluster a file is sealed for, chosen by its path, as sops chooses keys
//! with `.sops.yaml`'s creation rules. Found by walking up from the file's own directory; the
//! first rule whose `path_regex` matches the file's path (relative to the config's directory)
//! decides the cluster(s), the scope and where the output goes. No matching rule is an error.
//!
//! ```yaml
//! clusters:
//!   prod-eu:
//!     cert: certs/prod-eu.pem              # committed; or an http(s):// URL
//!     context: prod-eu                     # kubeconfig context, for `sealant certs fetch/check`
//!     controller_namespace: kube-system    # and controller_name, as the flags
//!     fingerprint: SHA256:...              # optional pin
//! rules:
//!   - path_regex: ^clusters/(?P<cluster>[^/]+)/secrets/
//!     scope: strict
//!     output: "{dir}/../sealed/{stem}.yaml"
//!   - path_regex: ^shared/
//!     clusters: [prod-eu, prod-us]
//!     output: "clusters/{cluster}/sealed/{stem}.yaml"
//! ```

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use regex::Regex;
use sealant_core::Scope;
use sealant_core::error::quoted;
use serde::Deserialize;

use crate::error::{CliError, CliResult, Hint};

/// The file name looked for in each directory, from the target file's up to the root.
pub const FILE_NAME: &str = ".sealant.yaml";

/// Placeholders an output pattern may use.
const PLACEHOLDERS: [&str; 5] = ["{dir}", "{name}", "{stem}", "{ext}", "{cluster}"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    clusters: BTreeMap<String, ClusterEntry>,
    #[serde(default)]
    rules: Vec<RuleEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterEntry {
    /// The committed certificate (relative to the config's directory), or an http(s):// URL.
    pub cert: String,
    pub context: Option<String>,
    pub controller_name: Option<String>,
    pub controller_namespace: Option<String>,
    /// `SHA256:...` of the certificate's public key, as `sealant cert --info` prints it.
    pub fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    path_regex: String,
    cluster: Option<String>,
    clusters: Option<Vec<String>>,
    scope: Option<String>,
    output: Option<String>,
}

/// A loaded `.sealant.yaml`.
#[derive(Debug)]
pub struct Config {
    /// The file itself.
    pub path: PathBuf,
    /// Its directory (canonical): rule paths and certificates are relative to it.
    pub dir: PathBuf,
    pub clusters: BTreeMap<String, ClusterEntry>,
    pub rules: Vec<Rule>,
}

#[derive(Debug)]
pub struct Rule {
    pub path_regex: Regex,
    /// The clusters named in the rule; empty when the `cluster` capture names it.
    pub clusters: Vec<String>,
    pub scope: Option<Scope>,
    pub output: Option<String>,
}

/// What the config says for one file.
#[derive(Debug)]
pub struct Decision<'a> {
    /// 1-based, as a user counts the rules.
    pub rule: usize,
    pub path_regex: &'a str,
    /// The file's path relative to the config's directory, with `/`.
    pub relative: String,
    pub scope: Option<Scope>,
    /// Each cluster with where its output goes (None: standard output).
    pub targets: Vec<Target<'a>>,
}

#[derive(Debug)]
pub struct Target<'a> {
    pub cluster: &'a str,
    pub entry: &'a ClusterEntry,
    pub output: Option<PathBuf>,
}

impl Config {
    /// The config for `file`: the nearest `.sealant.yaml` from its directory (symbolic links
    /// resolved) upwards, if any.
    pub fn for_file(file: &Path) -> CliResult<Option<Config>> {
        let real = resolve(file)?;
        real.parent().map_or(Ok(None), upwards)
    }

    /// The nearest config from `path` (a directory, or a file's directory) upwards, if any.
    pub fn near(path: &Path) -> CliResult<Option<Config>> {
        let start = if path.is_dir() { path } else { path.parent().unwrap_or(Path::new(".")) };
        let start = if start.as_os_str().is_empty() { Path::new(".") } else { start };
        upwards(&resolve(start)?)
    }

    /// The nearest config from directory `dir` upwards (for `config check`, `certs`).
    pub fn from_dir(dir: &Path) -> CliResult<Config> {
        upwards(&resolve(dir)?)?.ok_or_else(|| {
            CliError::new(format!("no {FILE_NAME} in {} or above", dir.display()))
                .hint("write one at the repository's root (README \"Environments\"), or pass --cert")
        })
    }

    pub fn load(path: &Path) -> CliResult<Config> {
        let text = crate::io::read_input(Some(path), "config")?;
        let origin = shown(path);
        let mut docs = sealant_core::yaml::parse_documents(&text)
            .map_err(|e| CliError::new(format!("cannot parse {origin}")).source(e))?;
        let doc = if docs.is_empty() { serde_json::json!({}) } else { docs.remove(0) };
        let file: File = serde_json::from_value(doc)
            .map_err(|e| CliError::new(format!("{origin} is not a valid {FILE_NAME}")).source(e))
            .hint("the keys are `clusters` (cert, context, controller_name, controller_namespace, fingerprint) and `rules` (path_regex, cluster or clusters, scope, output)")?;
        let dir = path
            .parent()
            .and_then(|d| d.canonicalize().ok())
            .ok_or_else(|| CliError::new(format!("cannot resolve the directory of {origin}")))?;
        if let Some(name) = file.clusters.keys().find(|name| !is_cluster_name(name)) {
            // A name goes into output paths through {cluster}: `../` in one would leave the tree.
            return Err(CliError::new(format!("{origin}: cluster name {} is not a plain name", quoted(name)))
                .hint("use letters, digits, '-', '_' and '.', not starting with '.'"));
        }
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, entry) in file.rules.into_iter().enumerate() {
            let n = i + 1;
            // Bounded as sops' regexes are: a few kilobytes of patterns must not cost gigabytes.
            let path_regex = regex::RegexBuilder::new(&entry.path_regex)
                .size_limit(256 << 10)
                .dfa_size_limit(256 << 10)
                .build()
                .map_err(|e| CliError::new(format!("{origin}: rule {n}: path_regex {} does not compile", quoted(&entry.path_regex))).source(e))
                .hint("it is a regular expression (Rust's regex syntax, as RE2) matched against the path from the config's directory, with /")?;
            let mut clusters: Vec<String> =
                entry.cluster.into_iter().chain(entry.clusters.into_iter().flatten()).collect();
            clusters.dedup();
            let names_capture = path_regex.capture_names().flatten().any(|c| c == "cluster");
            if clusters.is_empty() && !names_capture {
                return Err(CliError::new(format!("{origin}: rule {n} names no cluster"))
                    .hint("give it `cluster:`, `clusters:`, or a named group `(?P<cluster>...)` in path_regex"));
            }
            for c in &clusters {
                if !file.clusters.contains_key(c) {
                    return Err(CliError::new(format!(
                        "{origin}: rule {n} names cluster {}, which `clusters` does not define",
                        quoted(c)
                    ))
                    .hint(format!("the clusters are: {}", names(&file.clusters))));
                }
            }
            let scope = entry
                .scope
                .as_deref()
                .map(|s| s.parse::<Scope>().map_err(|e| CliError::new(format!("{origin}: rule {n}: scope")).source(e)))
                .transpose()?;
            if let Some(output) = &entry.output {
                check_pattern(output)
                    .map_err(|e| CliError::new(format!("{origin}: rule {n}: output {}: {e}", quoted(output))))?;
                if (clusters.len() > 1) && !output.contains("{cluster}") {
                    return Err(CliError::new(format!(
                        "{origin}: rule {n} seals for several clusters into one output"
                    ))
                    .hint("put {cluster} in its output pattern, so that each cluster's file has its own name"));
                }
            } else if clusters.len() > 1 {
                return Err(CliError::new(format!("{origin}: rule {n} seals for several clusters but has no output"))
                    .hint("give it an output pattern with {cluster}, e.g. clusters/{cluster}/sealed/{stem}.yaml"));
            }
            rules.push(Rule { path_regex, clusters, scope, output: entry.output });
        }
        Ok(Config { path: path.to_owned(), dir, clusters: file.clusters, rules })
    }

    /// What the config says for `file`; an error when no rule matches it.
    pub fn decide(&self, file: &Path) -> CliResult<Decision<'_>> {
        let relative = self.relative(file)?;
        for (i, rule) in self.rules.iter().enumerate() {
            let Some(captures) = rule.path_regex.captures(&relative) else { continue };
            let clusters: Vec<String> = if rule.clusters.is_empty() {
                let name = captures.name("cluster").map(|m| m.as_str()).unwrap_or_default();
                vec![name.to_owned()]
            } else {
                rule.clusters.clone()
            };
            let mut targets = Vec::with_capacity(clusters.len());
            for name in clusters {
                let (cluster, entry) = self.clusters.get_key_value(&name).ok_or_else(|| {
                    CliError::new(format!(
                        "{relative}: rule {} of {} selects cluster {}, which `clusters` does not define",
                        i + 1,
                        shown(&self.path),
                        quoted(&name)
                    ))
                    .hint(format!("the clusters are: {}", names(&self.clusters)))
                })?;
                let output = match rule.output.as_deref() {
                    None => None,
                    Some(pattern) => Some(self.confined(
                        &normalize(&self.dir.join(expand(pattern, &relative, cluster))),
                        i + 1,
                        &relative,
                    )?),
                };
                targets.push(Target { cluster: cluster.as_str(), entry, output });
            }
            return Ok(Decision {
                rule: i + 1,
                path_regex: rule.path_regex.as_str(),
                relative,
                scope: rule.scope,
                targets,
            });
        }
        Err(CliError::new(format!("no rule of {} matches {relative}", shown(&self.path)))
            .hint("add a rule whose path_regex matches it (sealant config explain FILE shows what each file gets), or pass --cert"))
    }

    /// `output` (of rule `rule`, for the input at `relative`) if it stays inside the config's
    /// directory once symbolic links are resolved, and is not the input itself: a config that
    /// arrives in a pull request must not aim writes anywhere the user can write.
    fn confined(&self, output: &Path, rule: usize, relative: &str) -> CliResult<PathBuf> {
        // The output need not exist yet: resolve the deepest part of it that does.
        let existing = output.ancestors().find(|a| a.exists()).unwrap_or(output);
        let resolved = resolve(existing)?.join(output.strip_prefix(existing).unwrap_or(Path::new("")));
        if !resolved.starts_with(&self.dir) {
            return Err(CliError::new(format!(
                "{relative}: rule {rule} of {} writes to {}, outside {}",
                shown(&self.path),
                shown(&resolved),
                shown(&self.dir)
            ))
            .hint("outputs stay in the config's directory tree: change the rule's output pattern"));
        }
        if resolved == self.dir.join(relative) {
            return Err(CliError::new(format!(
                "{relative}: rule {rule} of {} would write the sealed file over its input",
                shown(&self.path)
            ))
            .hint("give the output another name, e.g. {dir}/{stem}.sealed.yaml"));
        }
        Ok(output.to_owned())
    }

    /// `file`'s path from the config's directory, with `/`, symbolic links resolved.
    pub fn relative(&self, file: &Path) -> CliResult<String> {
        let real = resolve(file)?;
        let inside = real.strip_prefix(&self.dir).map_err(|_| {
            CliError::new(format!(
                "{} is outside {}, the directory of {}",
                shown(&real),
                shown(&self.dir),
                shown(&self.path)
            ))
        })?;
        Ok(inside
            .components()
            .filter_map(|c| match c {
                Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("/"))
    }

    /// A cluster's certificate as a path (a file relative to the config) or the URL.
    pub fn cert_source(&self, entry: &ClusterEntry) -> String {
        match self.cert_file(entry) {
            Some(path) => path.display().to_string(),
            None => entry.cert.clone(),
        }
    }

    /// Each cluster whose certificate is a committed file that reads as a certificate, with it
    /// (URLs and unreadable files are left out: `config check` reports those).
    pub fn committed_certificates(&self) -> Vec<(&str, &ClusterEntry, sealant_core::Certificate)> {
        self.clusters
            .iter()
            .filter_map(|(name, entry)| {
                let pem = std::fs::read_to_string(self.cert_file(entry)?).ok()?;
                Some((name.as_str(), entry, sealant_core::Certificate::from_pem(&pem).ok()?))
            })
            .collect()
    }

    /// The config's directory relative path of a cluster's certificate file, if it is a file.
    pub fn cert_file(&self, entry: &ClusterEntry) -> Option<PathBuf> {
        (!entry.cert.starts_with("http://") && !entry.cert.starts_with("https://"))
            .then(|| normalize(&self.dir.join(&entry.cert)))
    }
}

/// `path` with symbolic links resolved, or why it cannot be.
fn resolve(path: &Path) -> CliResult<PathBuf> {
    path.canonicalize().map_err(|e| CliError::new(format!("cannot resolve {}", path.display())).source(e))
}

/// The first `.sealant.yaml` in `dir` (resolved) or a directory above it, up to the
/// repository's root (the first directory holding `.git`), loaded: a config above the
/// repository, in a directory anyone may write to, must not choose the certificate.
fn upwards(dir: &Path) -> CliResult<Option<Config>> {
    for here in dir.ancestors() {
        let candidate = here.join(FILE_NAME);
        if candidate.is_file() {
            trusted(&candidate)?;
            return Config::load(&candidate).map(Some);
        }
        if here.join(".git").exists() {
            break;
        }
    }
    Ok(None)
}

/// Refuse a config that another user could have written, as git refuses a repository of
/// another owner (`safe.directory`): owned by someone else than this user (or root), or
/// writable by others.
fn trusted(path: &Path) -> CliResult<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(path).map_err(|e| CliError::new(format!("cannot read {}", shown(path))).source(e))?;
    // The owner of /proc/self is this process's effective user (Linux); elsewhere, no check.
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let foreign = me.is_some_and(|me| meta.uid() != me && meta.uid() != 0);
    if foreign || meta.permissions().mode() & 0o002 != 0 {
        let why = if foreign { format!("is owned by user {}", meta.uid()) } else { "is writable by anyone".to_owned() };
        return Err(CliError::new(format!("{} {why}: not used", shown(path)))
            .hint("a config another user could write chooses your certificates and outputs; chown it or remove it"));
    }
    Ok(())
}

/// A cluster name as {cluster} puts it in a path: one plain component.
fn is_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `path` without `.` and with each `..` taking away the part before it (no file system access:
/// an output need not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A path as the user sees it: relative to the current directory when inside it.
pub fn shown(path: &Path) -> String {
    let cwd = std::env::current_dir().ok().and_then(|d| d.canonicalize().ok());
    cwd.and_then(|d| path.strip_prefix(d).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| path.display().to_string())
}

fn names(clusters: &BTreeMap<String, ClusterEntry>) -> String {
    if clusters.is_empty() { "none".to_owned() } else { clusters.keys().cloned().collect::<Vec<_>>().join(", ") }
}

/// An output pattern uses only the known placeholders.
fn check_pattern(pattern: &str) -> Result<(), String> {
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').ok_or("an unclosed {")? + start;
        let placeholder = &rest[start..=end];
        if !PLACEHOLDERS.contains(&placeholder) {
            return Err(format!("unknown placeholder {placeholder} (known: {})", PLACEHOLDERS.join(", ")));
        }
        rest = &rest[end + 1..];
    }
    Ok(())
}

/// An output pattern for the input at `relative` (from the config's directory) and `cluster`:
/// {dir} its directory, {name} its file name, {stem} the name up to its first dot, {ext} the
/// rest after that dot (`secret.yaml`), {cluster} the cluster.
pub fn expand(pattern: &str, relative: &str, cluster: &str) -> String {
    let (dir, name) = relative.rsplit_once('/').unwrap_or((".", relative));
    let (stem, ext) = name.split_once('.').unwrap_or((name, ""));
    pattern
        .replace("{dir}", dir)
        .replace("{name}", name)
        .replace("{stem}", stem)
        .replace("{ext}", ext)
        .replace("{cluster}", cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_from_the_inputs_path() {
        assert_eq!(
            expand("{dir}/{stem}.sealed.yaml", "clusters/dev/db.secret.yaml", "dev"),
            "clusters/dev/db.sealed.yaml"
        );
        assert_eq!(expand("out/{cluster}/{name}", "db.yaml", "prod"), "out/prod/db.yaml");
        assert_eq!(expand("{dir}/{stem}-{cluster}.{ext}", "a/b/c.secret.json", "x"), "a/b/c-x.secret.json");
    }

    fn repository(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::create_dir_all(dir.path().join("clusters/dev")).unwrap();
        std::fs::write(dir.path().join(FILE_NAME), config).unwrap();
        std::fs::write(dir.path().join("clusters/dev/db.yaml"), "x").unwrap();
        dir
    }

    const CLUSTERS: &str = "clusters:\n  dev: {cert: dev.pem}\n";

    fn decided(dir: &Path) -> CliResult<Option<PathBuf>> {
        let config = Config::from_dir(dir)?;
        let decision = config.decide(&dir.join("clusters/dev/db.yaml"))?;
        Ok(decision.targets[0].output.clone())
    }

    #[test]
    fn outputs_stay_in_the_configs_tree() {
        for output in ["/tmp/x.yaml", "../../x.yaml", "{dir}/../../../x.yaml", "{dir}/{name}"] {
            let dir = repository(&format!(
                "{CLUSTERS}rules:\n  - {{path_regex: ^clusters/, cluster: dev, output: \"{output}\"}}\n"
            ));
            assert!(decided(dir.path()).is_err(), "{output}");
        }
        let dir = repository(&format!(
            "{CLUSTERS}rules:\n  - {{path_regex: ^clusters/, cluster: dev, output: \"{{dir}}/../sealed/{{stem}}.yaml\"}}\n"
        ));
        let inside = decided(dir.path()).unwrap().unwrap();
        assert!(inside.ends_with("clusters/sealed/db.yaml"), "{}", inside.display());
        // Through a symbolic link out of the tree.
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("clusters/link")).unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            format!(
                "{CLUSTERS}rules:\n  - {{path_regex: ^clusters/, cluster: dev, output: \"clusters/link/{{name}}\"}}\n"
            ),
        )
        .unwrap();
        assert!(decided(dir.path()).is_err());
    }

    #[test]
    fn cluster_names_are_plain_names() {
        let dir = repository("clusters:\n  ../../x: {cert: dev.pem}\nrules: []\n");
        assert!(Config::from_dir(dir.path()).is_err());
    }

    #[test]
    fn the_search_stops_at_the_repository_and_refuses_configs_others_may_write() {
        let above = tempfile::tempdir().unwrap();
        std::fs::write(above.path().join(FILE_NAME), CLUSTERS).unwrap();
        let repo = above.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        assert!(Config::near(&repo).unwrap().is_none(), "a config above the repository is not used");
        std::fs::write(repo.join(FILE_NAME), CLUSTERS).unwrap();
        assert!(Config::near(&repo).unwrap().is_some());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(repo.join(FILE_NAME), std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(Config::near(&repo).is_err(), "writable by anyone");
        std::fs::set_permissions(repo.join(FILE_NAME), std::fs::Permissions::from_mode(0o644)).unwrap();
        // Another user's (only root can give a file away; others skip this part).
        if std::os::unix::fs::chown(repo.join(FILE_NAME), Some(65534), None).is_ok() {
            let refused = Config::near(&repo).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(refused.contains("is owned by user 65534"), "{refused}");
        }
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        assert!(check_pattern("{dir}/{stem}.yaml").is_ok());
        assert!(check_pattern("{dir}/{basename}.yaml").unwrap_err().contains("{basename}"));
        assert!(check_pattern("{dir").is_err());
    }
}
