//! The binary's command line: upstream's flags and environment variables, and clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::process::Command;

fn controller() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sealant-controller"))
}

#[test]
fn help_lists_upstream_flags() {
    let out = controller().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--key-renew-period",
        "--key-cutoff-time",
        "--key-order-priority",
        "--listen-addr",
        "--rate-limit",
        "--update-status",
        "--leader-elect",
        "--log-format",
        "--kubeconfig",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(help.contains("SEALED_SECRETS_KEY_RENEW_PERIOD"), "environment variables are documented");
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [&["--log-format", "xml"][..], &["--key-renew-period", "30d"], &["--listen-addr", "nowhere"]] {
        let out = controller().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn environment_variables_set_flags_and_the_command_line_wins() {
    let out = controller().env("SEALED_SECRETS_LOG_FORMAT", "xml").arg("--help").output().unwrap();
    assert!(out.status.success(), "--help does not validate other values");
    let out = controller().env("SEALED_SECRETS_KEY_RENEW_PERIOD", "30d").arg("--version").output().unwrap();
    assert!(out.status.success());
    let out =
        controller().env("SEALED_SECRETS_KEY_RENEW_PERIOD", "30d").args(["--key-cutoff-time", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an invalid environment value is a usage error");
}

#[test]
fn a_bad_cutoff_time_fails_before_touching_the_cluster() {
    let out = controller()
        .args(["--key-cutoff-time", "yesterday", "--kubeconfig", "/nonexistent", "--log-format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("key-cutoff-time"), "{logs}");
}
