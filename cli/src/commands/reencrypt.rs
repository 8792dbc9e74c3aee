//! `sealant reencrypt`: re-seal files to the controller's newest key (through `/v1/rotate`), in
//! place, keeping each file's format and layout; files already sealed to that key are left alone.
//! With `--private-key`, offline: opened with keys the caller holds (an old cluster's key
//! backup) and sealed to another certificate (`--to CLUSTER` of .sealant.yaml, or `--cert`).

use std::path::{Path, PathBuf};

use sealant_core::yaml;
use sealant_crds::{SEALING_KEY_ANNOTATION, SealedSecret};
use serde_json::Value;

use crate::cluster::{ClusterArgs, ControllerApi};
use crate::commands::cert::{self, CertArgs};
use crate::commands::unseal::load_keys;
use crate::commands::validate::sealed_secret_files;
use crate::config::Config;
use crate::error::{CliError, CliResult, Hint};
use crate::io::{self, Format, Privacy};
use crate::render;

#[derive(Debug, clap::Args)]
pub struct ReencryptCommand {
    /// SealedSecret files and directories, rewritten in place.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// The controller's own URL, instead of the API server's service proxy.
    #[arg(long, value_name = "URL", env = "SEALED_SECRETS_CONTROLLER_URL")]
    pub controller_url: Option<String>,
    /// Change nothing: exit 1 when any SealedSecret is not sealed to the newest key (for CI).
    #[arg(long)]
    pub check: bool,
    /// With --check: the newest certificate, to check offline; with --private-key: the
    /// certificate to re-seal to.
    #[arg(long, value_name = "PATH|URL")]
    pub cert: Option<String>,
    /// Re-seal offline, opening the items with these private keys (PEM, key Secrets, or a key
    /// backup's List; repeatable): no controller is asked. Needs --to or --cert.
    #[arg(long = "private-key", value_name = "FILE", value_delimiter = ',')]
    pub private_keys: Vec<PathBuf>,
    /// With --private-key: the cluster of .sealant.yaml whose committed certificate to re-seal to
    /// (moving SealedSecrets to a new cluster).
    #[arg(long, value_name = "CLUSTER", requires = "private_keys")]
    pub to: Option<String>,
}

/// SealedSecrets in `files` not sealed to one of `fingerprints`: `file: name: sealed to X`.
fn stale_objects(files: &[(PathBuf, bool)], fingerprints: &[String]) -> Vec<String> {
    let mut stale = Vec::new();
    for (path, _) in files {
        let Ok(Ok(text)) = io::read_document(path).map(String::from_utf8) else { continue };
        let Ok(docs) = yaml::parse_documents(&text) else { continue };
        for doc in docs.iter().filter(|d| d.get("kind").and_then(Value::as_str) == Some("SealedSecret")) {
            let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>");
            let sealed_to = doc
                .pointer(&format!("/metadata/annotations/{}", SEALING_KEY_ANNOTATION.replace('/', "~1")))
                .and_then(Value::as_str);
            if !sealed_to.is_some_and(|f| fingerprints.iter().any(|want| want == f)) {
                stale.push(format!("{}: {name}: sealed to {}", path.display(), sealed_to.unwrap_or("an unknown key")));
            }
        }
    }
    stale
}

/// Who re-seals: the controller (its newest key), or this process with keys it was given.
enum Resealer {
    Controller(ControllerApi),
    Offline { keys: Vec<sealant_core::PrivateKey>, to: sealant_core::Certificate },
}

impl Resealer {
    async fn reseal(&self, ss: &Value) -> CliResult<Value> {
        match self {
            Resealer::Controller(api) => rotate(api, ss).await,
            Resealer::Offline { keys, to } => {
                let name = ss.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
                let parsed: SealedSecret = serde_json::from_value(ss.clone())
                    .map_err(|e| CliError::new(format!("{name} is not a valid SealedSecret")).source(e))?;
                let resealed = sealant_crds::reseal(&mut rand::rng(), &parsed, keys, to.public_key())
                    .map_err(|e| CliError::new(format!("cannot open {name} with the given keys")).source(e))
                    .hint("give the private keys of the cluster it was sealed for (its key backup)")?;
                render::to_value(&resealed)
            }
        }
    }
}

/// Ask the controller to re-seal one SealedSecret to its newest key.
pub async fn rotate(api: &ControllerApi, ss: &Value) -> CliResult<Value> {
    let name = ss.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let (code, body) = api.post("/v1/rotate", ss.to_string().into_bytes()).await?;
    if code != 200 {
        return Err(CliError::new(format!("the controller cannot re-encrypt {name} ({code}): {}", body.trim()))
            .hint("it must be able to decrypt the SealedSecret: was it sealed for this cluster, name and namespace?"));
    }
    let mut answer: Value = serde_json::from_str(&body)
        .map_err(|e| CliError::new(format!("the controller's answer for {name} is not a SealedSecret")).source(e))?;
    like_the_input(&mut answer, ss);
    Ok(answer)
}

/// Upstream's controller answers `/v1/rotate` without `apiVersion` and `kind` (its kubeseal adds
/// them as it writes), and with the object's annotations copied into the template (found by the
/// node test against upstream v0.40.0): give the answer the input's type, and keep our
/// annotation out of the template, where it would name a key the items are no longer sealed to.
fn like_the_input(answer: &mut Value, input: &Value) {
    for field in ["apiVersion", "kind"] {
        if answer.get(field).is_none_or(Value::is_null)
            && let (Some(object), Some(value)) = (answer.as_object_mut(), input.get(field))
        {
            object.insert(field.to_owned(), value.clone());
        }
    }
    let in_input = input
        .pointer("/spec/template/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(SEALING_KEY_ANNOTATION));
    if !in_input
        && let Some(annotations) =
            answer.pointer_mut("/spec/template/metadata/annotations").and_then(Value::as_object_mut)
    {
        annotations.remove(SEALING_KEY_ANNOTATION);
        if annotations.is_empty()
            && let Some(meta) = answer.pointer_mut("/spec/template/metadata").and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
}

/// Insert or replace our annotation in one YAML document's text without touching anything else.
fn set_annotation_in_yaml(doc: &str, fingerprint: &str, old: Option<&str>) -> String {
    if let Some(old) = old {
        return doc.replacen(old, fingerprint, 1);
    }
    let lines: Vec<&str> = doc.split_inclusive('\n').collect();
    let Some(meta) = lines.iter().position(|l| l.trim_end() == "metadata:") else {
        return doc.to_owned();
    };
    let child_indent = lines[meta + 1..]
        .iter()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .filter(|n| *n > 0)
        .unwrap_or(2);
    let pad = " ".repeat(child_indent);
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let annotations = lines[meta + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.starts_with(&pad))
        .position(|l| l.trim_end() == format!("{pad}annotations:"));
    match annotations {
        Some(offset) => {
            let at = meta + 1 + offset;
            out.insert(at + 1, format!("{pad}{pad}{SEALING_KEY_ANNOTATION}: {fingerprint}\n"));
        }
        None => {
            out.insert(meta + 1, format!("{pad}annotations:\n{pad}{pad}{SEALING_KEY_ANNOTATION}: {fingerprint}\n"));
        }
    }
    out.concat()
}

/// Re-seal one file; `Ok(true)` when it changed.
async fn reencrypt_file(resealer: &Resealer, path: &Path, fingerprint: &str) -> CliResult<bool> {
    let text = io::read_file(path)?;
    let origin = path.display().to_string();
    let docs = yaml::parse_documents(&text).map_err(|e| CliError::new(format!("cannot parse {origin}")).source(e))?;
    let is_sealed = |d: &Value| d.get("kind").and_then(Value::as_str) == Some("SealedSecret");
    let stale = |d: &Value| {
        d.pointer(&format!("/metadata/annotations/{}", SEALING_KEY_ANNOTATION.replace('/', "~1")))
            .and_then(Value::as_str)
            != Some(fingerprint)
    };
    if !docs.iter().any(|d| is_sealed(d) && stale(d)) {
        return Ok(false);
    }
    let new_text = match Format::of_text(&text) {
        Format::Json => {
            let mut out = Vec::with_capacity(docs.len());
            for doc in docs {
                out.push(if is_sealed(&doc) && stale(&doc) { resealer.reseal(&doc).await? } else { doc });
            }
            render::documents(&out, Format::Json)?
        }
        Format::Yaml => {
            let mut pieces: Vec<String> = yaml::split_documents(&text).into_iter().map(|(_, piece)| piece).collect();
            for piece in pieces.iter_mut() {
                let Ok(mut in_piece) = yaml::parse_documents(piece) else {
                    continue;
                };
                let Some(doc) = (if in_piece.len() == 1 { in_piece.pop() } else { None }) else {
                    continue;
                };
                if !(is_sealed(&doc) && stale(&doc)) {
                    continue;
                }
                let rotated = resealer.reseal(&doc).await?;
                let old: SealedSecret = serde_json::from_value(doc)
                    .map_err(|e| CliError::new(format!("{origin} holds an invalid SealedSecret")).source(e))?;
                let new: SealedSecret = serde_json::from_value(rotated)
                    .map_err(|e| CliError::new("the controller's answer is not a SealedSecret").source(e))?;
                let mut replaced = piece.clone();
                for (key, old_item) in &old.spec.encrypted_data {
                    if let Some(new_item) = new.spec.encrypted_data.get(key) {
                        replaced = replaced.replacen(old_item.as_str(), new_item, 1);
                    }
                }
                if let (Some(old_data), Some(new_data)) = (&old.spec.data, &new.spec.data) {
                    replaced = replaced.replacen(old_data.as_str(), new_data, 1);
                }
                // Every item must now be the new one: an item written across lines (or quoted
                // differently) is not found by the text replacement, and the annotation must
                // never name the new key while an item is still sealed to the old.
                let rewritten = yaml::parse_documents(&replaced).ok().and_then(|mut d| d.pop());
                let rewritten: Option<SealedSecret> = rewritten.and_then(|d| serde_json::from_value(d).ok());
                if rewritten.as_ref().map(|r| (&r.spec.encrypted_data, &r.spec.data))
                    != Some((&new.spec.encrypted_data, &new.spec.data))
                {
                    let name = old.metadata.name.as_deref().unwrap_or("<unnamed>");
                    return Err(CliError::new(format!(
                        "cannot re-encrypt {origin} in place: the items of {name} are not written one per line"
                    ))
                    .hint("reseal it with `sealant seal` (or write its items as plain one-line values), then run reencrypt again"));
                }
                let old_fp = old.metadata.annotations.as_ref().and_then(|a| a.get(SEALING_KEY_ANNOTATION)).cloned();
                *piece = set_annotation_in_yaml(&replaced, fingerprint, old_fp.as_deref());
            }
            pieces.concat()
        }
    };
    io::write_atomic(path, new_text.as_bytes(), Privacy::Public)?;
    Ok(true)
}

pub async fn run(command: &ReencryptCommand, cluster: &ClusterArgs) -> CliResult {
    if command.cert.is_some() && !command.check && command.private_keys.is_empty() {
        return Err(CliError::usage("--cert is for --check (offline) or --private-key (re-seal offline)"));
    }
    if !command.private_keys.is_empty() && command.to.is_none() && command.cert.is_none() {
        return Err(CliError::usage(
            "--private-key re-seals offline: say to which certificate, with --to CLUSTER or --cert",
        ));
    }
    // --check in a repository with a .sealant.yaml: every SealedSecret must be sealed to one of
    // the committed certificates (after `certs fetch`, the stale ones are those to re-seal).
    if command.check
        && command.cert.is_none()
        && command.controller_url.is_none()
        && let Some(config) = Config::near(command.paths.first().map_or(Path::new("."), PathBuf::as_path))?
    {
        let mut fingerprints = Vec::new();
        for (name, entry) in &config.clusters {
            let source = CertArgs { cert: Some(config.cert_source(entry)), controller_url: None };
            let pem = cert::load_pem(&source, cluster).await?;
            let certificate = cert::parse(&pem).map_err(|_| {
                CliError::new(format!("the certificate of cluster {name} ({}) is not a PEM certificate", entry.cert))
            })?;
            fingerprints.push(certificate.public_key().fingerprint());
        }
        let files = sealed_secret_files(&command.paths)?;
        let stale = stale_objects(&files, &fingerprints);
        io::print(&stale.iter().map(|l| format!("{l}\n")).collect::<String>())?;
        if stale.is_empty() {
            return Ok(());
        }
        return Err(CliError::new(format!(
            "{} SealedSecret(s) are sealed to none of the certificates {} names",
            stale.len(),
            crate::config::shown(&config.path)
        ))
        .hint("re-seal them: sealant seal -f the input again, or sealant reencrypt (online, or --private-key --to CLUSTER)"));
    }
    let certificate = match &command.to {
        Some(name) => {
            let start = command.paths.first().map_or(Path::new("."), PathBuf::as_path);
            let config = Config::near(start)?.ok_or_else(|| {
                CliError::usage(format!(
                    "--to names a cluster of .sealant.yaml, and there is none near {}",
                    start.display()
                ))
            })?;
            let entry = config.clusters.get(name).ok_or_else(|| {
                CliError::usage(format!("{} defines no cluster {name}", crate::config::shown(&config.path)))
            })?;
            let source = CertArgs { cert: Some(config.cert_source(entry)), controller_url: None };
            let certificate = cert::parse(&cert::load_pem(&source, cluster).await?)?;
            let fingerprint = certificate.public_key().fingerprint();
            if let Some(pin) = entry.fingerprint.as_deref().filter(|p| *p != fingerprint) {
                return Err(CliError::new(format!(
                    "the certificate of cluster {name} has fingerprint {fingerprint}, but the pin is {pin}"
                )));
            }
            certificate
        }
        None => {
            let cert_args = CertArgs { cert: command.cert.clone(), controller_url: command.controller_url.clone() };
            cert::parse(&cert::load_pem(&cert_args, cluster).await?)?
        }
    };
    let fingerprint = certificate.public_key().fingerprint();
    if command.check {
        let files = sealed_secret_files(&command.paths)?;
        let stale = stale_objects(&files, std::slice::from_ref(&fingerprint));
        io::print(&stale.iter().map(|l| format!("{l}\n")).collect::<String>())?;
        if stale.is_empty() {
            return Ok(());
        }
        return Err(CliError::new(format!(
            "{} SealedSecret(s) are not sealed to the newest key {fingerprint}",
            stale.len()
        ))
        .hint("run `sealant reencrypt` on them and commit the result"));
    }
    let resealer = if command.private_keys.is_empty() {
        Resealer::Controller(ControllerApi::connect(command.controller_url.as_deref(), cluster).await?)
    } else {
        Resealer::Offline { keys: load_keys(&command.private_keys)?, to: certificate }
    };
    let files = sealed_secret_files(&command.paths)?;
    let mut changed = 0;
    for (path, _) in &files {
        if reencrypt_file(&resealer, path, &fingerprint).await? {
            changed += 1;
            eprintln!("re-encrypted {}", path.display());
        }
    }
    eprintln!("{changed} of {} file(s) re-encrypted to {fingerprint}", files.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn annotation_is_inserted_without_touching_the_rest() {
        let doc = "---\n# keep me\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: a\n  namespace: b\nspec: {}\n";
        let out = set_annotation_in_yaml(doc, "SHA256:x", None);
        assert_eq!(
            out,
            "---\n# keep me\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  annotations:\n    sealant.dev/sealing-key: SHA256:x\n  name: a\n  namespace: b\nspec: {}\n"
        );
        let with = "metadata:\n    annotations:\n        other: y\n    name: a\n";
        assert_eq!(
            set_annotation_in_yaml(with, "SHA256:x", None),
            "metadata:\n    annotations:\n        sealant.dev/sealing-key: SHA256:x\n        other: y\n    name: a\n"
        );
    }

    #[test]
    fn an_answer_like_upstreams_gets_the_inputs_type_and_no_stale_annotation() {
        let input = json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
            "metadata": {"name": "s", "annotations": {SEALING_KEY_ANNOTATION: "SHA256:old"}},
            "spec": {"encryptedData": {"a": "AgA"}}});
        // What upstream v0.40.0's /v1/rotate answered in the node test.
        let mut answer = json!({"metadata": {"name": "s"},
            "spec": {"template": {"metadata": {"name": "s", "annotations": {SEALING_KEY_ANNOTATION: "SHA256:old"}}},
                     "encryptedData": {"a": "AgB"}}});
        like_the_input(&mut answer, &input);
        assert_eq!(answer["kind"], "SealedSecret");
        assert_eq!(answer["apiVersion"], "bitnami.com/v1alpha1");
        assert!(answer["spec"]["template"]["metadata"].get("annotations").is_none(), "{answer}");
        // Ours answers complete: nothing changes.
        let ours = input.clone();
        let mut same = ours.clone();
        like_the_input(&mut same, &input);
        assert_eq!(same, ours);
    }
}
