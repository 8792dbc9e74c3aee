//! Every flag of upstream's controller and kubeseal (at the version tests/peers pins) is one ours
//! takes, with upstream's default or a value of its type: an upstream Deployment's args never
//! crash-loop ours, and no script's kubeseal line breaks on ours (issue 20). Which of them are
//! only accepted is said in README.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::process::Command;

use sealant_tests::cluster::{built_binary, upstream_binary};

/// `--name=value` for each flag in upstream `program`'s `--help`, with its default, or a value of
/// its type (booleans without a default: false, so that no action runs).
fn upstream_flags(program: &str) -> Vec<String> {
    let help = Command::new(upstream_binary(program)).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout).into_owned() + &String::from_utf8_lossy(&help.stderr);
    let mut flags = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('-')) {
        let mut words = line.split_whitespace();
        let mut name = words.next().unwrap().trim_end_matches(',');
        if !name.starts_with("--") {
            name = words.next().unwrap();
        }
        if name == "--version" || name == "--help" {
            continue;
        }
        let kind = words.next().filter(|w| w.chars().next().is_some_and(char::is_lowercase) && !w.contains(' '));
        let kind = kind.filter(|w| {
            ["string", "int", "uint", "duration", "float32", "strings", "stringArray", "severity", "traceLocation"]
                .contains(w)
                || *w == "moduleSpec"
                || *w == "Level"
        });
        let default = line.rsplit_once("(default ").map(|(_, d)| d.trim_end_matches(')').trim_matches('"').to_owned());
        let value = match (kind, default) {
            (_, Some(default)) => default,
            (None, None) => "false".into(),
            (Some("int" | "uint" | "float32" | "Level" | "severity"), None) => "1".into(),
            (Some("duration"), None) => "1m".into(),
            (Some("moduleSpec"), None) => "x=1".into(),
            (Some(_), None) => "x".into(),
        };
        // An empty default is no value to give (pflag would take "", and so would a script only
        // by mistake).
        let value = if value.is_empty() { "x".into() } else { value };
        flags.push(format!("{name}={value}"));
    }
    assert!(flags.len() >= 25, "upstream's --help lists its flags: {text}");
    flags
}

/// Each flag alone, then all at once (as a Deployment or a script passes them), before `--help`:
/// accepted, so the help is printed (an unknown flag or a bad value fails before it).
fn takes_every_flag(ours: &std::path::Path, flags: &[String]) {
    for flag in flags {
        let out = Command::new(ours).arg(flag).arg("--help").output().unwrap();
        assert!(
            out.status.success(),
            "{flag}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(ours).args(flags).arg("--help").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unknown = Command::new(ours).args(["--no-such-flag=1", "--help"]).output().unwrap();
    assert!(!unknown.status.success(), "the check can fail");
}

#[test]
fn our_controller_takes_every_flag_of_upstreams() {
    takes_every_flag(&built_binary("sealant-controller"), &upstream_flags("controller"));
}

#[test]
fn our_kubeseal_takes_every_flag_of_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let kubeseal = dir.path().join("kubeseal");
    std::os::unix::fs::symlink(built_binary("sealant"), &kubeseal).unwrap();
    takes_every_flag(&kubeseal, &upstream_flags("kubeseal"));
}
