//! The Helm chart (deploy/chart) rendered by the real helm, as objects.

use std::path::Path;
use std::process::Command;

use serde::Deserialize as _;
use serde_json::Value;

use crate::cluster::{helm_binary, repo};

/// The release name the tests install and render under (any name gives the same objects).
pub const RELEASE: &str = "sealant";

/// `helm template` of the chart into `namespace` with `args` (`--set=…`, `--values`), CRDs
/// included when asked by `args`; the output as text, or helm's error.
pub fn template(namespace: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm_binary())
        .args(["template", RELEASE])
        .arg(repo().join("deploy/chart"))
        .args(["--namespace", namespace])
        .args(args)
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("UTF-8 from helm"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The objects `helm template` renders, in its order.
pub fn render(namespace: &str, args: &[&str]) -> Vec<Value> {
    let text = template(namespace, args).unwrap_or_else(|e| panic!("helm template {args:?}: {e}"));
    documents(&text)
}

/// helm's error for values it must refuse.
pub fn render_err(namespace: &str, args: &[&str]) -> String {
    match template(namespace, args) {
        Ok(text) => panic!("helm template {args:?} rendered, want an error:\n{text}"),
        Err(e) => e,
    }
}

/// `helm` for the cluster of `kubeconfig`, with its cache, configuration and data under `home`
/// (none of the user's).
pub fn helm_command(kubeconfig: &Path, home: &Path) -> Command {
    let mut command = Command::new(helm_binary());
    command
        .env("KUBECONFIG", kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    command
}

/// The non-empty documents of a multi-document YAML stream, as JSON values.
pub fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("YAML from helm or kubectl"))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn objects_of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The only object of `kind`.
pub fn the<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    match objects_of_kind(objects, kind)[..] {
        [one] => one,
        ref many => panic!("{} objects of kind {kind}, want one", many.len()),
    }
}
