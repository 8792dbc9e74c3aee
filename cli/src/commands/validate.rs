//! `sealant validate`: offline checks of SealedSecret files, with no private key.

use sealant_core::error::quoted;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sealant_core::{Certificate, Scope, yaml};
use serde_json::Value;

use crate::cluster::{ClusterArgs, ControllerApi};
use crate::commands::cert::{self, CertArgs};
use crate::error::{CliError, CliResult};
use crate::io;

#[derive(Debug, clap::Args)]
pub struct ValidateCommand {
    /// Files and directories to check (directories are searched for .yaml, .yml and .json).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Also check each item's length against this certificate's key.
    #[arg(long, value_name = "PATH|URL", env = "SEALED_SECRETS_CERT")]
    pub cert: Option<String>,
    /// Also ask the controller (through /v1/verify) whether it can decrypt each SealedSecret.
    #[arg(long)]
    pub online: bool,
    /// With --online: the controller's own URL instead of the API server's service proxy.
    #[arg(long, value_name = "URL", env = "SEALED_SECRETS_CONTROLLER_URL", requires = "online")]
    pub controller_url: Option<String>,
}

/// The key the first SealedSecret of `text` names as sealed to (our annotation), if any.
fn sealed_to(text: &str) -> Option<String> {
    let docs = yaml::parse_documents(text).ok()?;
    docs.iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some("SealedSecret"))?
        .pointer(&format!("/metadata/annotations/{}", sealant_crds::SEALING_KEY_ANNOTATION.replace('/', "~1")))?
        .as_str()
        .map(str::to_owned)
}

/// Every file under `paths` to check: (path, given explicitly).
pub fn sealed_secret_files(paths: &[PathBuf]) -> CliResult<Vec<(PathBuf, bool)>> {
    crate::walk::files(paths, crate::walk::Skip::Vendored, crate::walk::manifests)
}

/// Ask the controller about every SealedSecret in `text`.
async fn check_online(api: &ControllerApi, file: &str, text: &str) -> CliResult<Vec<Problem>> {
    let mut problems = Vec::new();
    let Ok(docs) = yaml::parse_documents(text) else {
        return Ok(problems);
    };
    for doc in docs.iter().filter(|d| d.get("kind").and_then(Value::as_str) == Some("SealedSecret")) {
        let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>");
        let (code, body) = api.post_patiently("/v1/verify", doc.to_string().into_bytes()).await?;
        match code {
            200 => {}
            409 => problems.push(Problem {
                file: file.to_owned(),
                what: format!("{name}: the controller cannot decrypt it (sealed to another key, or for another name, namespace or scope)"),
            }),
            other => problems.push(Problem { file: file.to_owned(), what: format!("{name}: the controller answered {other}: {}", body.trim()) }),
        }
    }
    Ok(problems)
}

/// One thing wrong with one document.
#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub what: String,
}

const API_VERSION: &str = "bitnami.com/v1alpha1";
/// RSA ciphertext (u16 prefix) + GCM tag: the least an item can be.
const GCM_TAG_LEN: usize = 16;

/// Check every SealedSecret in `text`. `explicit` files must hold at least one.
pub fn check_text(file: &str, text: &str, explicit: bool, cert: Option<&Certificate>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut push = |what: String| problems.push(Problem { file: file.to_owned(), what });
    let docs = match yaml::parse_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            push(format!("cannot parse: {e}"));
            return problems;
        }
    };
    let mut found = 0;
    for (i, doc) in docs.iter().enumerate() {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let is_bitnami = api_version.starts_with("bitnami.com/");
        if kind != "SealedSecret" && !is_bitnami {
            continue;
        }
        found += 1;
        let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let at = if name.is_empty() { format!("document {}", i + 1) } else { name.to_owned() };
        for problem in check_document(doc, kind, api_version, cert) {
            push(format!("{at}: {problem}"));
        }
    }
    if found == 0 && explicit {
        push("no SealedSecret in this file".to_owned());
    }
    problems
}

fn annotations(doc: &Value, pointer: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let map = doc.pointer(pointer)?.as_object()?;
    Some(map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
}

fn check_document(doc: &Value, kind: &str, api_version: &str, cert: Option<&Certificate>) -> Vec<String> {
    let mut problems = Vec::new();
    if kind != "SealedSecret" {
        problems.push(format!("kind: {} is not SealedSecret", quoted(kind)));
    }
    if api_version != API_VERSION {
        problems.push(format!("apiVersion: {} is not {API_VERSION}", quoted(api_version)));
    }
    let scope = Scope::from_annotations(annotations(doc, "/metadata/annotations").as_ref());
    let template_scope = Scope::from_annotations(annotations(doc, "/spec/template/metadata/annotations").as_ref());
    if doc.pointer("/spec/template/metadata/annotations").is_some() && scope != template_scope {
        problems.push(format!(
            "metadata.annotations: scope is {scope} but spec.template.metadata.annotations says {template_scope}; the controller uses metadata's"
        ));
    }
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        problems.push("metadata.name: missing".to_owned());
    }
    if namespace.is_empty() && scope.needs_namespace() {
        problems.push(format!(
            "metadata.namespace: missing, but scope {scope} binds the items to a namespace (apply it with -n exactly as it was sealed)"
        ));
    }
    let Some(spec) = doc.get("spec") else {
        problems.push("spec: missing".to_owned());
        return problems;
    };
    let encrypted = spec.get("encryptedData");
    if spec.get("data").is_some_and(|d| !d.is_null()) {
        if encrypted.and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
            problems.push("spec.data: set together with spec.encryptedData".to_owned());
        }
        return problems;
    }
    let Some(items) = encrypted.and_then(Value::as_object) else {
        problems.push("spec.encryptedData: missing or not a map".to_owned());
        return problems;
    };
    // Upstream v0.40's input-only item: what it means is not what a cluster does with it.
    let templates = spec.pointer("/template/data").and_then(Value::as_object).into_iter().flatten();
    for (key, _) in templates.filter(|(_, v)| v.is_null()) {
        problems.push(format!(
            "spec.template.data.{}: null is dropped by the API server (template.data's values are not nullable in \
             upstream's CRD or ours), so the item stays in the Secret, with upstream's controller as with ours",
            sealant_core::error::printable(key)
        ));
    }
    for (key, value) in items {
        let at = format!("spec.encryptedData.{key}");
        let Some(text) = value.as_str() else {
            problems.push(format!("{at}: not a string"));
            continue;
        };
        let Ok(item) = STANDARD.decode(text) else {
            problems.push(format!("{at}: not valid base64"));
            continue;
        };
        let Some((prefix, _)) = item.split_first_chunk::<2>() else {
            problems.push(format!("{at}: too short to be a sealed value"));
            continue;
        };
        let rsa_len = usize::from(u16::from_be_bytes(*prefix));
        if item.len() < 2 + rsa_len + GCM_TAG_LEN || rsa_len < 128 {
            problems.push(format!("{at}: too short to be a sealed value ({} bytes)", item.len()));
            continue;
        }
        if let Some(cert) = cert {
            let want = cert.public_key().size_bytes();
            if rsa_len != want {
                problems.push(format!(
                    "{at}: sealed to a {}-bit key, but the certificate's key is {} bits",
                    rsa_len * 8,
                    cert.public_key().bits()
                ));
            }
        }
    }
    problems
}

pub async fn run(command: &ValidateCommand, cluster: &ClusterArgs) -> CliResult {
    let cert = match &command.cert {
        Some(source) => {
            let args = CertArgs { cert: Some(source.clone()), controller_url: None };
            Some(cert::parse(&cert::load_pem(&args, cluster).await?)?)
        }
        None => None,
    };
    // In a repository with a .sealant.yaml, the committed certificates: each file is checked
    // against the one its items were sealed to (our sealing-key annotation).
    let committed: std::collections::BTreeMap<String, Certificate> = match (&cert, command.paths.first()) {
        (None, Some(first)) => crate::config::Config::near(first)?
            .map(|config| {
                config.committed_certificates().into_iter().map(|(_, _, c)| (c.public_key().fingerprint(), c)).collect()
            })
            .unwrap_or_default(),
        _ => Default::default(),
    };
    let files = sealed_secret_files(&command.paths)?;
    let api = match command.online {
        true => Some(ControllerApi::connect(command.controller_url.as_deref(), cluster).await?),
        false => None,
    };
    let mut problems = Vec::new();
    for (path, explicit) in &files {
        let shown = path.display().to_string();
        match io::read_document(path).map(String::from_utf8) {
            Ok(Ok(text)) => {
                let by_config = sealed_to(&text).and_then(|fingerprint| committed.get(&fingerprint));
                problems.extend(check_text(&shown, &text, *explicit, cert.as_ref().or(by_config)));
                if let Some(api) = &api {
                    problems.extend(check_online(api, &shown, &text).await?);
                }
            }
            Ok(Err(_)) => problems.push(Problem { file: shown, what: "not UTF-8 text".into() }),
            Err(e) => problems.push(Problem { file: shown, what: format!("cannot read: {e}") }),
        }
    }
    let report: String = problems.iter().map(|p| format!("{}: {}\n", p.file, p.what)).collect();
    io::print(&report)?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(format!("{} problem(s) found", problems.len()))
            .hint("fix the lines above; reseal with `sealant seal` when an item is broken"))
    }
}
