//! `sealant sops` against every real sops users run: 3.11 (PyPI's, the oldest tested), 3.12.0
//! (the first with post-quantum age) and the newest 3.13 (tests/peers). For each version, every
//! store (YAML, JSON, dotenv, INI, binary) and recipients of each kind (X25519, ssh-ed25519,
//! post-quantum from 3.12 on, and classic with post-quantum in one file):
//! - a file the real sops wrote is decrypted by us to the same bytes it prints;
//! - we change one value in it (`set`): the real sops opens the result (its MAC) and shows the
//!   change, and every other value keeps its ciphertext;
//! - a file we wrote from the same input is opened by the real sops, to the same bytes;
//! - `rotate` by us on its file and by it on ours: each opens the other's result;
//! - key groups with a Shamir threshold from `.sops.yaml`, both ways; `updatekeys` by us adds a
//!   post-quantum recipient that the real sops then opens the file with.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sealant_tests::cluster::{built_binary, repo, sops_binary};

const KEY_A: &str = "age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw";

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/sops")
}

/// The post-quantum demo recipient (tests/fixtures/sops/age-keys-pq.txt).
fn pq_recipient() -> String {
    let text = std::fs::read_to_string(fixtures().join("age-keys-pq.txt")).unwrap();
    text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_owned()
}

fn ssh_recipient() -> String {
    std::fs::read_to_string(fixtures().join("ssh_ed25519.pub")).unwrap().trim().to_owned()
}

/// One real sops.
struct Sops {
    name: &'static str,
    program: PathBuf,
    post_quantum: bool,
}

fn every_sops() -> Vec<Sops> {
    vec![
        Sops { name: "sops 3.11", program: PathBuf::from("sops"), post_quantum: false },
        Sops { name: "sops 3.12", program: sops_binary("sops-3.12"), post_quantum: true },
        Sops { name: "sops 3.13", program: sops_binary("sops"), post_quantum: true },
    ]
}

/// A directory with the identities every tool reads: a keys file with X25519 keys A and B (and
/// the post-quantum one, for versions that read it), the SSH key, an empty HOME.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new(post_quantum: bool) -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let mut text = std::fs::read_to_string(fixtures().join("age-keys.txt")).unwrap();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if post_quantum {
            text += &std::fs::read_to_string(fixtures().join("age-keys-pq.txt")).unwrap();
        }
        std::fs::write(dir.path().join("keys.txt"), text).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Keys { dir }
    }

    fn apply(&self, command: &mut Command) {
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("SOPS_AGE_KEY_FILE", self.dir.path().join("keys.txt"))
            .env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", fixtures().join("ssh_ed25519"))
            .stdin(Stdio::null());
    }
}

fn run(mut command: Command, keys: &Keys, dir: &Path) -> Output {
    keys.apply(&mut command);
    command.current_dir(dir).output().unwrap()
}

fn theirs(sops: &Sops, keys: &Keys, dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(&sops.program);
    command.arg("--disable-version-check").args(args);
    run(command, keys, dir)
}

fn ours(keys: &Keys, dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(built_binary("sealant"));
    command.arg("sops").args(args);
    run(command, keys, dir)
}

/// A real sops (`Some`) or ours, ready for its arguments.
fn sops_command(program: Option<&Path>) -> Command {
    match program {
        Some(p) => {
            let mut c = Command::new(p);
            c.arg("--disable-version-check");
            c
        }
        None => {
            let mut c = Command::new(built_binary("sealant"));
            c.arg("sops");
            c
        }
    }
}

#[track_caller]
fn ok(out: Output, what: &str) -> Vec<u8> {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// (file in tests/fixtures, the type flags, a key to change with `set`, its new value)
const STORES: [(&str, &[&str], &str, &str); 6] = [
    ("sops/v3.11.0-generated/plain/basic.yaml", &[], r#"["string"]"#, r#""changed""#),
    ("local/sops-comments.yaml", &[], r#"["z"]"#, r#""changed""#),
    ("sops/v3.11.0-generated/plain/basic.json", &[], r#"["string"]"#, r#""changed""#),
    ("sops/v3.11.0-generated/plain/basic.env", &[], r#"["DB_USER"]"#, r#""changed""#),
    ("sops/v3.11.0-generated/plain/basic.ini", &[], r#"["section one"]["key"]"#, r#""changed""#),
    (
        "sops/v3.11.0-generated/plain/blob.bin",
        &["--input-type", "binary", "--output-type", "binary"],
        r#"["data"]"#,
        r#""changed""#,
    ),
];

/// `first`, the type flags, then `last`: a command line for both tools.
fn command_line<'a>(first: &[&'a str], types: &[&'a str], last: &[&'a str]) -> Vec<&'a str> {
    first.iter().chain(types).chain(last).copied().collect()
}

/// The lines of an encrypted file that hold a value's ciphertext (`ENC[...]`, the MAC aside)
/// and changed.
fn changed_ciphertexts(before: &str, after: &str) -> usize {
    let values = |text: &str| -> Vec<String> {
        text.lines().filter(|l| l.contains("ENC[") && !l.contains("mac")).map(str::to_owned).collect()
    };
    let before = values(before);
    values(after).iter().filter(|l| !before.contains(l)).count()
}

#[test]
fn every_store_and_recipient_kind_both_ways_with_each_real_sops() {
    let pq = pq_recipient();
    let ssh = ssh_recipient();
    for sops in every_sops() {
        let keys = Keys::new(sops.post_quantum);
        let mut recipient_sets = vec![("X25519", KEY_A.to_owned()), ("ssh-ed25519", ssh.clone())];
        if sops.post_quantum {
            recipient_sets.push(("post-quantum", pq.clone()));
            recipient_sets.push(("X25519 and post-quantum", format!("{KEY_A},{pq}")));
        }
        for (path, types, key, value) in STORES {
            let store = path.rsplit('/').next().unwrap();
            for (kind, recipients) in &recipient_sets {
                let case = format!("{} {store} {kind}", sops.name);
                let dir = tempfile::tempdir().unwrap();
                let d = dir.path();
                let input = repo().join("tests/fixtures").join(path);
                let input = input.to_str().unwrap();

                // Theirs, opened by us to the bytes it prints itself.
                let enc = command_line(&["encrypt", "--age", recipients], types, &[input]);
                let their_file = d.join(format!("theirs.{store}"));
                std::fs::write(&their_file, ok(theirs(&sops, &keys, d, &enc), &format!("{case}: sops encrypt")))
                    .unwrap();
                let their_path = their_file.to_str().unwrap();
                let dec = command_line(&["decrypt"], types, &[their_path]);
                let reference = ok(theirs(&sops, &keys, d, &dec), &format!("{case}: sops decrypt"));
                assert_eq!(ok(ours(&keys, d, &dec), &format!("{case}: we decrypt theirs")), reference, "{case}");

                // One value changed by us: it opens the result and sees the change; the other
                // values keep their ciphertext.
                let before = std::fs::read_to_string(&their_file).unwrap();
                let set = command_line(&["set"], types, &[their_path, key, value]);
                ok(ours(&keys, d, &set), &format!("{case}: we set"));
                let after = std::fs::read_to_string(&their_file).unwrap();
                let changed = changed_ciphertexts(&before, &after);
                let extract = command_line(&["decrypt", "--extract", key], types, &[their_path]);
                let seen = ok(theirs(&sops, &keys, d, &extract), &format!("{case}: sops opens what we set"));
                assert_eq!(String::from_utf8_lossy(&seen), "changed", "{case}");
                if !store.ends_with(".bin") {
                    assert_eq!(changed, 1, "{case}: only the value set is encrypted again:\n{after}");
                }

                // Ours from the same input, opened by it to the same bytes.
                let our_file = d.join(format!("ours.{store}"));
                std::fs::write(&our_file, ok(ours(&keys, d, &enc), &format!("{case}: we encrypt"))).unwrap();
                let our_path = our_file.to_str().unwrap();
                let dec_ours = command_line(&["decrypt"], types, &[our_path]);
                let opened = ok(theirs(&sops, &keys, d, &dec_ours), &format!("{case}: sops opens ours"));
                assert_eq!(opened, ok(ours(&keys, d, &dec_ours), &format!("{case}: we open ours")), "{case}");

                // rotate, each on the other's file.
                let rot = command_line(&["rotate", "-i"], types, &[their_path]);
                ok(ours(&keys, d, &rot), &format!("{case}: we rotate theirs"));
                ok(theirs(&sops, &keys, d, &extract), &format!("{case}: sops opens theirs rotated by us"));
                let rot = command_line(&["rotate", "-i"], types, &[our_path]);
                ok(theirs(&sops, &keys, d, &rot), &format!("{case}: sops rotates ours"));
                assert_eq!(ok(ours(&keys, d, &dec_ours), &format!("{case}: we open ours rotated by sops")), opened);
            }
        }
    }
}

/// Key groups with a Shamir threshold from `.sops.yaml` (a group each for X25519 key A, the SSH
/// key and, from 3.12 on, the post-quantum key; threshold 2), both ways with each version; then
/// `updatekeys` by us to a rule with one more recipient, which the real sops opens the file with.
#[test]
fn shamir_key_groups_and_updatekeys_with_each_real_sops() {
    let pq = pq_recipient();
    let ssh = ssh_recipient();
    for sops in every_sops() {
        let keys = Keys::new(sops.post_quantum);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let third = if sops.post_quantum {
            pq.clone()
        } else {
            "age1tmaae3ld5vpevmsh5yacsauzx8jetg300mpvc4ugp5zr5l6ssq9sla97ep".into()
        };
        std::fs::write(
            d.join(".sops.yaml"),
            format!(
                "creation_rules:\n  - path_regex: \\.yaml$\n    shamir_threshold: 2\n    key_groups:\n      - age: [{KEY_A}]\n      - age: ['{ssh}']\n      - age: [{third}]\n"
            ),
        )
        .unwrap();
        std::fs::copy(fixtures().join("v3.11.0-generated/plain/shamir.yaml"), d.join("plain.yaml")).unwrap();
        let case = sops.name;
        std::fs::write(
            d.join("theirs.yaml"),
            ok(theirs(&sops, &keys, d, &["encrypt", "--filename-override", "theirs.yaml", "plain.yaml"]), case),
        )
        .unwrap();
        std::fs::write(
            d.join("ours.yaml"),
            ok(ours(&keys, d, &["encrypt", "--filename-override", "ours.yaml", "plain.yaml"]), case),
        )
        .unwrap();
        for file in ["theirs.yaml", "ours.yaml"] {
            let text = std::fs::read_to_string(d.join(file)).unwrap();
            assert!(
                text.contains("shamir_threshold: 2") && text.matches("recipient:").count() == 3,
                "{case} {file}:\n{text}"
            );
            let by_them = ok(theirs(&sops, &keys, d, &["decrypt", file]), &format!("{case}: sops opens {file}"));
            let by_us = ok(ours(&keys, d, &["decrypt", file]), &format!("{case}: we open {file}"));
            assert_eq!(by_them, by_us, "{case} {file}");
        }

        // updatekeys: one group, keys A and the third; the data key and values stay.
        std::fs::write(
            d.join(".sops.yaml"),
            format!("creation_rules:\n  - path_regex: \\.yaml$\n    age: {KEY_A},{third}\n"),
        )
        .unwrap();
        let before = std::fs::read_to_string(d.join("theirs.yaml")).unwrap();
        ok(ours(&keys, d, &["updatekeys", "-y", "theirs.yaml"]), &format!("{case}: we updatekeys"));
        let after = std::fs::read_to_string(d.join("theirs.yaml")).unwrap();
        assert_eq!(changed_ciphertexts(&before, &after), 0, "{case}: values keep their ciphertext");
        assert!(!after.contains("shamir_threshold: 2") && after.contains(&third[..30]), "{case}:\n{after}");
        let only_third = Keys::new(sops.post_quantum);
        let keys_file = only_third.dir.path().join("keys.txt");
        let third_identity = if sops.post_quantum { "age-keys-pq.txt" } else { "age-keys.txt" };
        std::fs::copy(fixtures().join(third_identity), &keys_file).unwrap();
        let mut command = Command::new(&sops.program);
        command.args(["--disable-version-check", "decrypt", "theirs.yaml"]);
        only_third.apply(&mut command);
        command.env_remove("SOPS_AGE_SSH_PRIVATE_KEY_FILE");
        ok(command.current_dir(d).output().unwrap(), &format!("{case}: sops opens it with the third key alone"));
    }
}

/// The identity sources sops 3.12 and 3.13 added, each given alone to the real sops 3.13 and to
/// us: several keys on one `SOPS_AGE_KEY` line, post-quantum ones among them;
/// `SOPS_AGE_KEY_CMD` and `SOPS_AGE_SSH_PRIVATE_KEY_CMD`, run with `SOPS_AGE_RECIPIENT` naming
/// the recipient asked for. Both open the file, or both refuse it.
#[test]
fn identity_sources_of_sops_3_13_alike() {
    let pq = pq_recipient();
    let ssh = ssh_recipient();
    let sops = every_sops().pop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keys = Keys::new(true);
    let input = fixtures().join("v3.11.0-generated/plain/basic.yaml");
    let encrypt = |recipients: &str, file: &str| {
        let out = theirs(&sops, &keys, d, &["encrypt", "--age", recipients, input.to_str().unwrap()]);
        std::fs::write(d.join(file), ok(out, file)).unwrap();
    };
    encrypt(&pq, "pq.yaml");
    encrypt(&ssh, "ssh.yaml");
    let secret_line = |file: &str| {
        let text = std::fs::read_to_string(fixtures().join(file)).unwrap();
        text.lines().filter(|l| l.starts_with("AGE-SECRET-KEY")).collect::<Vec<_>>().join(" ")
    };
    let log = d.join("asked-for");
    let script = d.join("key-cmd.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$SOPS_AGE_RECIPIENT\" >> {log}\n[ \"$SOPS_AGE_RECIPIENT\" = \"{pq}\" ] && cat {}\nexit 0\n",
            fixtures().join("age-keys-pq.txt").display(),
            log = log.display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&script, permissions).unwrap();
    let ssh_key = fixtures().join("ssh_ed25519");
    // (case, file, variable, value, opens)
    let cases: Vec<(&str, &str, &str, String, bool)> = vec![
        (
            "SOPS_AGE_KEY, classic and post-quantum on one line",
            "pq.yaml",
            "SOPS_AGE_KEY",
            format!("{} {}", secret_line("age-keys.txt"), secret_line("age-keys-pq.txt")),
            true,
        ),
        ("SOPS_AGE_KEY, the classic keys alone", "pq.yaml", "SOPS_AGE_KEY", secret_line("age-keys.txt"), false),
        (
            "SOPS_AGE_KEY, a word that is not a key",
            "pq.yaml",
            "SOPS_AGE_KEY",
            format!("{} not-a-key", secret_line("age-keys-pq.txt")),
            false,
        ),
        (
            "SOPS_AGE_KEY_CMD, a key for the recipient asked for",
            "pq.yaml",
            "SOPS_AGE_KEY_CMD",
            script.display().to_string(),
            true,
        ),
        (
            "SOPS_AGE_SSH_PRIVATE_KEY_CMD",
            "ssh.yaml",
            "SOPS_AGE_SSH_PRIVATE_KEY_CMD",
            format!("cat '{}'", ssh_key.display()),
            true,
        ),
    ];
    for (case, file, variable, value, opens) in cases {
        let _ = std::fs::remove_file(&log);
        let mut results = Vec::new();
        for program in [Some(&sops.program), None] {
            let mut command = sops_command(program.map(PathBuf::as_path));
            command.args(["decrypt", file]);
            keys.apply(&mut command);
            command.env_remove("SOPS_AGE_KEY_FILE").env_remove("SOPS_AGE_SSH_PRIVATE_KEY_FILE").env(variable, &value);
            let out = command.current_dir(d).output().unwrap();
            results.push(out.status.success());
            if opens {
                assert!(out.status.success(), "{case}: {:?} {}", program, String::from_utf8_lossy(&out.stderr));
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            for secret in [secret_line("age-keys.txt"), secret_line("age-keys-pq.txt")] {
                assert!(!stderr.contains(&secret[20..50]), "{case}: no key in a message: {stderr}");
            }
        }
        assert_eq!(results, [opens, opens], "{case}: sops 3.13, then us");
        if variable == "SOPS_AGE_KEY_CMD" {
            let asked = std::fs::read_to_string(&log).unwrap();
            assert!(asked.lines().all(|l| l == pq), "{case}: asked for the file's recipient: {asked}");
        }
    }
}

/// The exit codes scripts read, as each real sops gives them (issue 36): a file that is not there
/// (100 for encrypt and decrypt, 2 for set, unset and rotate, 1 for the others), a file to
/// decrypt that does not parse (1; 2 to encrypt), `set` with a value that is not JSON (7), and
/// `edit` that changes nothing (200).
#[test]
fn exit_codes_are_each_real_sops_own() {
    let junk: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for sops in every_sops() {
        let keys = Keys::new(false);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("plain.yaml"), "a: 1\nb: x\n").unwrap();
        std::fs::write(d.join("bad.yaml"), "a: [1\n").unwrap();
        std::fs::write(d.join("junk.bin"), &junk).unwrap();
        std::fs::write(d.join("junk.yaml"), &junk).unwrap();
        let encrypted = ok(ours(&keys, d, &["encrypt", "--age", KEY_A, "plain.yaml"]), "encrypt");
        let cases: [&[&str]; 20] = [
            &["decrypt", "missing.yaml"],
            &["encrypt", "--age", KEY_A, "missing.yaml"],
            &["set", "missing.yaml", r#"["a"]"#, "1"],
            &["unset", "missing.yaml", r#"["a"]"#],
            &["rotate", "missing.yaml"],
            &["updatekeys", "-y", "missing.yaml"],
            &["filestatus", "missing.yaml"],
            &["decrypt", "bad.yaml"],
            &["decrypt", "junk.bin"],
            &["decrypt", "junk.yaml"],
            &["decrypt", "plain.yaml"],
            &["set", "bad.yaml", r#"["a"]"#, "1"],
            &["unset", "bad.yaml", r#"["a"]"#],
            &["rotate", "bad.yaml"],
            &["updatekeys", "-y", "bad.yaml"],
            &["filestatus", "bad.yaml"],
            &["encrypt", "--age", KEY_A, "bad.yaml"],
            &["encrypt", "--age", KEY_A, "junk.yaml"],
            &["set", "enc.yaml", r#"["b"]"#, "not-json"],
            &["edit", "enc.yaml"],
        ];
        for args in cases {
            let code = |program: Option<&Path>| {
                std::fs::write(d.join("enc.yaml"), &encrypted).unwrap();
                let mut command = sops_command(program);
                command.args(args);
                keys.apply(&mut command);
                // An editor that changes nothing.
                command.env("EDITOR", "true");
                command.current_dir(d).output().unwrap().status.code()
            };
            assert_eq!(code(None), code(Some(&sops.program)), "{}: sops {}", sops.name, args.join(" "));
        }
    }
}
