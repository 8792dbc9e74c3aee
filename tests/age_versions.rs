//! Sealant's age (key backups and SOPS share it) against the real `age`: Debian's 1.1 and 1.3
//! (tests/peers/age), both ways, for X25519 and ssh-ed25519 recipients, and with 1.3 for
//! post-quantum ones (`age-keygen -pq`), armored and binary; and the mixing rule both enforce.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sealant_core::age_keys::{self, AgeError};
use sealant_tests::cluster::age_binary;

#[track_caller]
fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// One real age: its `age` and `age-keygen`, and whether it knows post-quantum keys.
struct Age {
    name: &'static str,
    age: PathBuf,
    keygen: PathBuf,
    post_quantum: bool,
}

fn every_age() -> [Age; 2] {
    [
        Age { name: "age 1.1 (Debian)", age: "age".into(), keygen: "age-keygen".into(), post_quantum: false },
        Age { name: "age 1.3", age: age_binary("age"), keygen: age_binary("age-keygen"), post_quantum: true },
    ]
}

/// A new identity file made by the real age-keygen (`-pq` for post-quantum): its recipient.
fn keygen(age: &Age, file: &Path, post_quantum: bool) -> String {
    let _ = std::fs::remove_file(file);
    let mut command = Command::new(&age.keygen);
    if post_quantum {
        command.arg("-pq");
    }
    run(command.arg("-o").arg(file));
    let out = run(Command::new(&age.keygen).arg("-y").arg(file));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn both_ways_with_each_real_age_for_every_recipient_kind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"]).arg(d.join("id")));
    let ssh = std::fs::read_to_string(d.join("id.pub")).unwrap().trim().to_owned();
    let plain = b"apiVersion: v1\nkind: List\nitems: []\n";
    std::fs::write(d.join("plain"), plain).unwrap();
    let mut cases = 0;
    for age in every_age() {
        let classic = keygen(&age, &d.join("classic.txt"), false);
        let mut kinds =
            vec![("X25519", classic, d.join("classic.txt"), "-r"), ("ssh-ed25519", ssh.clone(), d.join("id"), "-R")];
        if age.post_quantum {
            let pq = keygen(&age, &d.join("pq.txt"), true);
            assert!(pq.starts_with("age1pq1"), "{pq}");
            kinds.push(("post-quantum", pq, d.join("pq.txt"), "-r"));
        }
        for (kind, recipient, identity, flag) in &kinds {
            for armor in [false, true] {
                let case = format!("{} {kind}{}", age.name, if armor { " armored" } else { "" });
                // Ours, opened by it.
                let recipients = age_keys::parse_recipients(std::slice::from_ref(recipient)).unwrap();
                let ours = age_keys::encrypt(&recipients, plain, armor).unwrap();
                std::fs::write(d.join("ours.age"), &ours).unwrap();
                let opened = run(Command::new(&age.age).arg("-d").arg("-i").arg(identity).arg(d.join("ours.age")));
                assert_eq!(opened.stdout, plain, "{case}: age opens ours");

                // Its, opened by us with the identity file as it wrote it.
                let recipient_arg =
                    if *flag == "-R" { d.join("id.pub").display().to_string() } else { recipient.clone() };
                let mut command = Command::new(&age.age);
                command.arg("-o").arg(d.join("theirs.age")).arg(flag).arg(&recipient_arg);
                if armor {
                    command.arg("-a");
                }
                run(command.arg(d.join("plain")));
                let theirs = std::fs::read(d.join("theirs.age")).unwrap();
                let identity_file = std::fs::read(identity).unwrap();
                let opened = age_keys::decrypt_with_file(&identity_file, &theirs).unwrap();
                assert_eq!(opened.expose(), plain, "{case}: we open its");
                cases += 1;
            }
        }
    }
    println!("{cases} cases, both ways");
}

/// Post-quantum and classic recipients in one file: age 1.3 refuses, and so do we, with a
/// message that says why.
#[test]
fn post_quantum_and_classic_recipients_are_not_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let age = &every_age()[1];
    let pq = keygen(age, &d.join("pq.txt"), true);
    let classic = keygen(age, &d.join("classic.txt"), false);
    std::fs::write(d.join("plain"), b"x").unwrap();
    let theirs = Command::new(&age.age).args(["-r", &pq, "-r", &classic]).arg(d.join("plain")).output().unwrap();
    assert!(!theirs.status.success(), "age 1.3 refuses to mix them");
    let ours = age_keys::parse_recipients(&[pq, classic]);
    assert!(matches!(ours, Err(AgeError::MixedRecipients)));
    assert!(ours.err().unwrap().to_string().contains("cannot be mixed"));
}
