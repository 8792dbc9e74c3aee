//! `sealant lint`: a guard for pre-commit and CI that finds plaintext Secrets and SOPS files that
//! are not fully encrypted, without false alarms on SealedSecrets and encrypted SOPS files.

use std::path::{Path, PathBuf};

use regex::Regex;
use sealant_core::yaml;
use sealant_sops::stores::Store;
use sealant_sops::{take_metadata, unencrypted_values};
use serde_json::Value;

use crate::error::{CliError, CliResult};
use crate::io;

#[derive(Debug, clap::Args)]
pub struct LintCommand {
    /// Files and directories to check (default: the current directory).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// One finding: `file:line: what`.
#[derive(Debug, PartialEq, Eq)]
pub struct Finding {
    pub line: usize,
    pub what: String,
}

/// Extensions of template files whose output is a manifest (`secret.yaml.j2`).
const TEMPLATE_EXTENSIONS: [&str; 5] = ["j2", "jinja", "tpl", "tmpl", "gotmpl"];

/// Files that can reach a cluster: manifests by name, templated manifests, kustomize's
/// `Kustomization`, and files without an extension (judged by their content: one that is not
/// YAML or JSON and names no Secret is passed over).
fn lintable(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let manifest = |n: &str| n.ends_with(".yaml") || n.ends_with(".yml") || n.ends_with(".json");
    let templated =
        name.rsplit_once('.').is_some_and(|(stem, ext)| TEMPLATE_EXTENSIONS.contains(&ext) && manifest(stem));
    manifest(&name) || templated || !name.contains('.') || is_leftover(path)
}

/// A temporary file of `sealant`'s atomic writer that a SIGKILL left behind: it may hold plaintext.
fn is_leftover(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(io::TEMP_PREFIX))
}

/// The text of a file as kubectl would read it: UTF-16 with a byte-order mark (what Windows
/// PowerShell 5's `>` writes) is decoded, and bytes that are not UTF-8 are replaced, so that a
/// stray Latin-1 byte cannot hide a Secret.
fn decode(bytes: &[u8]) -> String {
    let utf16 = |pairs: std::slice::ChunksExact<'_, u8>, big: bool| {
        let units: Vec<u16> = pairs
            .map(|p| if big { u16::from_be_bytes([p[0], p[1]]) } else { u16::from_le_bytes([p[0], p[1]]) })
            .collect();
        String::from_utf16_lossy(&units)
    };
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest.chunks_exact(2), false),
        [0xFE, 0xFF, rest @ ..] => utf16(rest.chunks_exact(2), true),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// What a template action becomes in [`without_templates`]: a value that is only this comes from
/// the chart's values at deploy time, not from the file.
const TEMPLATED: &str = "__sealant_templated__";

/// `text` with Go/Helm template actions taken out, so the YAML around them can be examined:
/// a line of actions only becomes empty (line numbers stay), an action inside a line a word.
fn without_templates(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = line.strip_suffix('\n').map_or((line, ""), |b| (b, "\n"));
        let mut kept = String::new();
        let mut rest = body;
        while let Some(open) = rest.find("{{") {
            kept.push_str(&rest[..open]);
            match rest[open..].find("}}") {
                Some(close) => {
                    kept.push_str(TEMPLATED);
                    rest = &rest[open + close + 2..];
                }
                None => {
                    rest = "";
                }
            }
        }
        kept.push_str(rest);
        if body.contains("{{") && kept.replace(TEMPLATED, "").trim().is_empty() {
            kept.clear();
        }
        out.push_str(&kept);
        out.push_str(end);
    }
    out
}

/// Whether text that does not parse could still be a Secret: then it must not pass unseen.
fn may_hold_a_secret(text: &str) -> bool {
    Regex::new(r#"(?m)^\s*-?\s*"?kind"?\s*:\s*"?Secret"?\s*,?\s*$|"kind"\s*:\s*"Secret""#)
        .is_ok_and(|r| r.is_match(text))
}

/// The text of each document with the line it starts on (1-based).
fn documents(text: &str) -> Vec<(usize, String)> {
    if yaml::looks_like_json(text) {
        // A JSON stream: one piece per value, each with the line it starts on.
        let mut docs = Vec::new();
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
        let mut start = 0;
        while let Some(Ok(_)) = stream.next() {
            let end = stream.byte_offset();
            let piece = &text[start..end];
            let leading = piece.len() - piece.trim_start().len();
            let line = text[..start + leading].matches('\n').count() + 1;
            docs.push((line, piece.trim_start().to_owned()));
            start = end;
        }
        if docs.is_empty() {
            docs.push((1, text.to_owned()));
        }
        return docs;
    }
    yaml::split_documents(text)
}

/// The line (1-based, within `doc`) of the first line matching `pattern`, else 1.
fn line_of(doc: &str, pattern: &str) -> usize {
    Regex::new(pattern).ok().and_then(|r| doc.lines().position(|l| r.is_match(l))).map_or(1, |i| i + 1)
}

/// Whether a Secret's `data`/`stringData` holds a value written in the file (not one that a
/// template action fills in).
fn has_literal(v: Option<&Value>) -> bool {
    v.and_then(Value::as_object).is_some_and(|m| {
        m.iter().any(|(k, v)| !k.contains(TEMPLATED) && !v.as_str().is_some_and(|v| v.contains(TEMPLATED)))
    })
}

/// Plaintext left in a SOPS document (`text`, YAML or JSON), by the selection rules of its
/// metadata as sops applies them (sealant_sops::unencrypted_values): the key paths, or why the
/// document cannot be checked.
fn sops_plaintext(text: &str) -> Result<Vec<String>, String> {
    let store = if yaml::looks_like_json(text) { Store::Json } else { Store::Yaml };
    let mut docs = store.read_encrypted(text.as_bytes()).map_err(|e| e.to_string())?;
    let meta = take_metadata(&mut docs).map_err(|e| e.to_string())?;
    let doc = docs.into_iter().next().ok_or("no document")?;
    unencrypted_values(&doc, &meta).map_err(|e| e.to_string())
}

fn check_document(doc: &Value, text: &str, file_name: &str, findings: &mut Vec<(usize, String)>) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let kind_line = |k: &str| line_of(text, &format!(r#"^\s*-?\s*"?kind"?\s*:\s*"?{k}"?\s*(,|#|$)"#));
    if let Some(sops) = doc.get("sops").filter(|s| s.is_object()) {
        let plain = match sops_plaintext(text) {
            Ok(plain) => plain,
            Err(e) => {
                findings
                    .push((line_of(text, r#"^\s*sops\s*:|"sops""#), format!("cannot check this SOPS document: {e}")));
                Vec::new()
            }
        };
        if sops.get("mac").and_then(Value::as_str).is_none_or(|m| !m.starts_with("ENC[")) {
            findings.push((line_of(text, r#"^\s*sops\s*:|"sops""#), "SOPS file without an encrypted MAC".to_owned()));
        }
        // The file's own selection (`encrypted_regex: ^data$`) is the file's word, not a proof: a
        // Secret's values are checked whatever it says.
        let mut plain = plain;
        if kind == "Secret" {
            for field in ["data", "stringData"] {
                for (key, value) in doc.get(field).and_then(Value::as_object).into_iter().flatten() {
                    let path = format!("{field}.{key}");
                    if !value.as_str().is_some_and(|v| v.starts_with("ENC[")) && !plain.contains(&path) {
                        plain.push(path);
                    }
                }
            }
        }
        for path in plain {
            let key = path.rsplit('.').next().unwrap_or(&path);
            let pattern = format!(r#"^\s*-?\s*"?{}"?\s*:"#, regex::escape(key));
            findings.push((line_of(text, &pattern), format!("SOPS value {path} is not encrypted")));
        }
        return;
    }
    match kind {
        "Secret" => {
            let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>");
            let name = name.replace(TEMPLATED, "{{…}}");
            for field in ["data", "stringData"] {
                if has_literal(doc.get(field)) {
                    findings.push((
                        kind_line("Secret"),
                        format!("plaintext Secret {name} ({field}): seal it with `sealant seal`"),
                    ));
                    break;
                }
            }
        }
        // kubectl applies the items of any list (`List`, `SecretList`, even `ConfigMapList`).
        list if list.ends_with("List") => {
            for item in doc.get("items").and_then(Value::as_array).into_iter().flatten() {
                check_document(item, text, file_name, findings);
            }
        }
        "Kustomization" => check_kustomization(doc, text, findings),
        _ if file_name == "kustomization" || file_name.starts_with("kustomization.") => {
            check_kustomization(doc, text, findings)
        }
        _ => {}
    }
}

fn check_kustomization(doc: &Value, text: &str, findings: &mut Vec<(usize, String)>) {
    let generators = doc.get("secretGenerator").and_then(Value::as_array).cloned().unwrap_or_default();
    for generator in generators {
        let name = generator.get("name").and_then(Value::as_str).unwrap_or("<unnamed>");
        let pattern = format!(r#"name\s*:\s*"?{}"?\s*$"#, regex::escape(name));
        for source in ["literals", "envs", "files"] {
            if generator.get(source).and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
                let what = match source {
                    "literals" => "holds plaintext literals",
                    "envs" => "reads plaintext env files from the repository",
                    _ => "reads plaintext files from the repository",
                };
                findings.push((line_of(text, &pattern), format!("kustomize secretGenerator {name} {what}")));
            }
        }
    }
}

/// Every finding in one file's text.
pub fn lint_text(file_name: &str, text: &str) -> Result<Vec<Finding>, String> {
    let mut findings = Vec::new();
    for (start, doc_text) in documents(text) {
        let docs = yaml::parse_documents(&doc_text).map_err(|e| e.to_string())?;
        let mut local = Vec::new();
        for doc in &docs {
            check_document(doc, &doc_text, file_name, &mut local);
        }
        findings.extend(local.into_iter().map(|(line, what)| Finding { line: start + line - 1, what }));
    }
    Ok(findings)
}

/// `sealant seal -f FILE` and what a .sealant.yaml rule makes of it, when a rule covers `file`.
fn sealing_command(file: &Path, findings: &[Finding]) -> Option<String> {
    if !findings.iter().any(|f| f.what.starts_with("plaintext Secret ")) {
        return None;
    }
    let config = crate::config::Config::for_file(file).ok().flatten()?;
    let decision = config.decide(file).ok()?;
    let clusters: Vec<&str> = decision.targets.iter().map(|t| t.cluster).collect();
    Some(format!(
        "`sealant seal -f {}` seals it for {} (rule {} of {})",
        file.display(),
        clusters.join(" and "),
        decision.rule,
        crate::config::shown(&config.path)
    ))
}

pub fn run(command: &LintCommand) -> CliResult {
    let paths = if command.paths.is_empty() { vec![PathBuf::from(".")] } else { command.paths.clone() };
    let files: Vec<PathBuf> = crate::walk::files(&paths, crate::walk::Skip::VersionControl, lintable)?
        .into_iter()
        .map(|(file, _)| file)
        .collect();
    let mut report = String::new();
    let mut count = 0;
    for file in &files {
        let mut say = |line: usize, what: &str| {
            count += 1;
            report.push_str(&format!("{}:{line}: {what}\n", file.display()));
        };
        if is_leftover(file) {
            say(1, "a temporary file an interrupted sealant left behind (it may hold plaintext): delete it");
            continue;
        }
        let bytes = match io::read_document(file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                say(1, "cannot examine this file: it is larger than 64 MiB");
                continue;
            }
            Err(_) => continue,
        };
        let text = decode(&bytes);
        let name = file.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let findings = match lint_text(&name, &text) {
            Ok(findings) => Ok(findings),
            // Helm templates: examine the YAML around the template actions.
            Err(_) if text.contains("{{") => lint_text(&name, &without_templates(&text)),
            Err(e) => Err(e),
        };
        match findings {
            Ok(findings) => {
                // In a repository with a .sealant.yaml, say the command that seals the file for
                // its cluster(s) (README "Environments").
                let how = sealing_command(file, &findings);
                for f in &findings {
                    match &how {
                        Some(how) if f.what.starts_with("plaintext Secret ") => {
                            let what = f.what.trim_end_matches(": seal it with `sealant seal`");
                            say(f.line, &format!("{what}: {how}"))
                        }
                        _ => say(f.line, &f.what),
                    }
                }
            }
            Err(_) if may_hold_a_secret(&text) => {
                say(1, "cannot examine this file, which names a Secret: it does not parse as YAML or JSON")
            }
            // Other files that are not YAML: not ours to judge.
            Err(_) => {}
        }
    }
    io::print(&report)?;
    if count == 0 {
        return Ok(());
    }
    Err(CliError::new(format!("{count} plaintext secret(s) found"))
        .hint("seal Secrets with `sealant seal` (or encrypt with `sops`) and commit only the sealed form"))
}
