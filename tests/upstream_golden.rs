//! The golden cases of our `kubeseal` (`cli/tests/cmd/kubeseal-*.toml`, and cases here that
//! write files) run once with the real kubeseal (upstream's, pinned by tests/peers) and once with
//! `sealant` under the name `kubeseal` (issue 20). Exit codes, standard output (ciphertexts
//! aside) and the files written must be the same, but for the differences in [`DIFFERENCES`],
//! each with its reason; README's "where we differ from kubeseal" says the same. A difference
//! that goes away, or a new one, fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use sealant_tests::cluster::{built_binary, output_with_stdin, repo, upstream_binary};
use serde_json::Value;

/// (case, what differs, why).
const DIFFERENCES: &[(&str, &str, &str)] = &[
    ("kubeseal-version", "stdout", "each prints its own version"),
    (
        "kubeseal-bad-boolean",
        "stdout",
        "on a flag it cannot read, kubeseal prints its whole usage to standard output, where a \
         script's sealed file goes; ours prints the error and a hint to standard error only",
    ),
];

/// One case: arguments and standard input, run in a folder holding `files`; afterwards the
/// files named in `written` are compared too.
#[derive(Debug)]
struct Case {
    name: String,
    args: Vec<String>,
    stdin: String,
    files: Vec<(&'static str, String)>,
    written: Vec<&'static str>,
}

/// What one kubeseal did: its exit code, its output and the files it wrote, ciphertexts aside.
#[derive(Debug, PartialEq)]
struct Outcome {
    exit: Option<i32>,
    stdout: String,
    files: Vec<(String, String)>,
}

/// The golden cases whose binary is `kubeseal`, from their TOML files.
fn golden_cases() -> Vec<Case> {
    let dir = repo().join("cli/tests/cmd");
    let mut cases = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("kubeseal-") || path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let doc: toml_edit::DocumentMut = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let args = doc["args"]
            .as_array()
            .map_or_else(Vec::new, |a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect());
        let stdin = doc.get("stdin").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        cases.push(Case { name, args, stdin, files: Vec::new(), written: Vec::new() });
    }
    cases
}

/// Cases that write files: `-w`, `--merge-into` (a JSON file), and the recovery of a secret
/// into a file.
fn writing_cases() -> Vec<Case> {
    let cert = repo().join("keys-example/demo.tls.crt").display().to_string();
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: ns\nstringData:\n  a: b\n";
    let mut seal = Command::new(built_binary("sealant"));
    seal.args(["seal", "-o", "json", "--cert", &cert]);
    let sealed = String::from_utf8(output_with_stdin(seal, secret).stdout).unwrap();
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        Case {
            name: "write-file".into(),
            args: owned(&["--cert", &cert, "-o", "json", "-w", "out.json"]),
            stdin: secret.into(),
            files: Vec::new(),
            written: vec!["out.json"],
        },
        Case {
            name: "merge-into-json".into(),
            args: owned(&["--cert", &cert, "--merge-into", "sealed.json"]),
            stdin: secret.replace("a: b", "c: d"),
            files: vec![("sealed.json", sealed.clone())],
            written: vec!["sealed.json"],
        },
        Case {
            name: "recovery-unseal-to-file".into(),
            args: owned(&[
                "--recovery-unseal",
                "--recovery-private-key",
                &repo().join("keys-example/demo.tls.key").display().to_string(),
                "-f",
                "sealed.json",
                "-w",
                "secret.json",
            ]),
            stdin: String::new(),
            files: vec![("sealed.json", sealed)],
            written: vec!["secret.json"],
        },
    ]
}

/// `text` with every ciphertext (an `encryptedData` value, or the whole of `--raw`'s output)
/// replaced, and our own annotation, which kubeseal does not write, removed; as JSON when it
/// parses as JSON or YAML.
fn normalized(text: &str) -> String {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.len() > 300 && !trimmed.contains(char::is_whitespace) {
        return "<ciphertext>".into();
    }
    let parsed: Option<Value> =
        serde_json::from_str(trimmed).ok().or_else(|| serde_yaml_ng::from_str(trimmed).ok().filter(Value::is_object));
    let Some(mut value) = parsed else { return text.to_owned() };
    if let Some(data) = value.pointer_mut("/spec/encryptedData").and_then(Value::as_object_mut) {
        for v in data.values_mut() {
            *v = "<ciphertext>".into();
        }
    }
    if let Some(annotations) = value.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.remove("sealant.dev/sealing-key");
        if annotations.is_empty() {
            value["metadata"].as_object_mut().unwrap().remove("annotations");
        }
    }
    serde_json::to_string_pretty(&value).unwrap()
}

fn run(program: &Path, case: &Case) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in &case.files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let mut command = Command::new(program);
    // Paths in the TOML cases are the repository's; the files of the writing cases are the folder's.
    command.args(&case.args).current_dir(if case.files.is_empty() && case.written.is_empty() {
        repo()
    } else {
        dir.path().to_owned()
    });
    command.env("KUBECONFIG", "/nonexistent/kubeconfig");
    let out = output_with_stdin(command, &case.stdin);
    let files = case
        .written
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|_| "<not written>".into());
            ((*name).to_owned(), normalized(&text))
        })
        .collect();
    Outcome { exit: out.status.code(), stdout: normalized(&String::from_utf8_lossy(&out.stdout)), files }
}

#[test]
fn the_real_kubeseal_and_ours_agree_on_the_golden_cases() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("kubeseal");
    std::os::unix::fs::symlink(built_binary("sealant"), &ours).unwrap();
    let theirs = upstream_binary("kubeseal");
    let mut found = BTreeSet::new();
    let mut report = String::new();
    let cases: Vec<Case> = golden_cases().into_iter().chain(writing_cases()).collect();
    assert!(cases.len() >= 15, "the golden cases were not found: {cases:?}");
    for case in &cases {
        let (a, b) = (run(&theirs, case), run(&ours, case));
        let mut differs = Vec::new();
        if a.exit != b.exit {
            differs.push("exit");
        }
        if a.stdout != b.stdout {
            differs.push("stdout");
        }
        if a.files != b.files {
            differs.push("files");
        }
        for what in differs {
            found.insert((case.name.clone(), what));
            report.push_str(&format!("{} ({what}):\n  kubeseal: {a:?}\n  ours:     {b:?}\n", case.name));
        }
    }
    let listed: BTreeSet<(String, &str)> = DIFFERENCES.iter().map(|(c, w, _)| ((*c).to_owned(), *w)).collect();
    assert_eq!(found, listed, "the differences from the real kubeseal changed:\n{report}");
}
