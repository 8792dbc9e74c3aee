//! Golden CLI tests (tests/cmd/*.toml: args, stdin, stdout, stderr, exit status), including the
//! binary invoked under the name `kubeseal`, plus the cases trycmd cannot express.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::io::Read;
use std::process::{Command, Stdio};

fn sealant() -> &'static str {
    env!("CARGO_BIN_EXE_sealant")
}

#[test]
fn golden_cases() {
    let dir = tempfile::tempdir().unwrap();
    let kubeseal = dir.path().join("kubeseal");
    std::os::unix::fs::symlink(sealant(), &kubeseal).unwrap();
    trycmd::TestCases::new()
        .register_bin("kubeseal", &kubeseal)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .case("tests/cmd/*.toml")
        .run();
}

/// `sealant ... | head -c0`: the reader is gone before we write. That is not an error.
#[test]
fn closed_stdout_is_not_an_error() {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut child = Command::new(sealant())
        .current_dir(repo)
        .args(["cert", "--cert", "keys-example/demo.tls.crt"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}, stderr {stderr}");
    assert_eq!(stderr, "");
}

/// `-w` never leaves a half-written file behind, and keeps an existing file's mode.
#[test]
fn write_is_atomic_and_keeps_the_mode() {
    use std::os::unix::fs::PermissionsExt;
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sealed.json");
    std::fs::write(&out, "previous").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();

    // A failing seal leaves the previous content alone.
    let failed = Command::new(sealant())
        .current_dir(repo)
        .args([
            "seal",
            "--cert",
            "tests/fixtures/local/expired-2048.crt",
            "-f",
            "keys-example/example.secret.yaml",
            "-w",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous");

    let ok = Command::new(sealant())
        .current_dir(repo)
        .args(["seal", "--cert", "keys-example/demo.tls.crt", "-f", "keys-example/example.secret.yaml", "-w"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.starts_with("{\n  \"kind\": \"SealedSecret\""), "the .json extension sets the format: {written}");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left behind");
}

/// `-w` on a symbolic link writes the file it names and leaves the link a link (as the real sops
/// does for `-i` and `edit`, which share this writer); a chain of links is followed too.
#[test]
fn write_goes_through_symbolic_links() {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    let file = dir.path().join("real/sealed.yaml");
    std::fs::write(&file, "previous").unwrap();
    let link = dir.path().join("link.yaml");
    std::os::unix::fs::symlink("real/sealed.yaml", &link).unwrap();
    let chain = dir.path().join("chain.yaml");
    std::os::unix::fs::symlink(&link, &chain).unwrap();
    let ok = Command::new(sealant())
        .current_dir(repo)
        .args(["seal", "--cert", "keys-example/demo.tls.crt", "-f", "keys-example/example.secret.yaml", "-w"])
        .arg(&chain)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    for l in [&link, &chain] {
        assert!(std::fs::symlink_metadata(l).unwrap().file_type().is_symlink(), "{} is still a link", l.display());
    }
    assert!(std::fs::read_to_string(&file).unwrap().contains("kind: SealedSecret"), "the real file was written");
}

/// `kubeseal --recovery-unseal -w FILE` writes the recovered Secret there, 0600, not to stdout.
#[test]
fn recovery_unseal_writes_to_the_output_file() {
    use std::os::unix::fs::PermissionsExt;
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dir = tempfile::tempdir().unwrap();
    let kubeseal = dir.path().join("kubeseal");
    std::os::unix::fs::symlink(sealant(), &kubeseal).unwrap();
    let out = dir.path().join("recovered.json");
    let fixtures = "tests/fixtures/sealed-secrets/real-kubeseal-v0.14.1";
    let run = Command::new(&kubeseal)
        .current_dir(repo)
        .args(["--recovery-unseal", "--recovery-private-key", &format!("{fixtures}/tls.key"), "-f"])
        .arg(format!("{fixtures}/credentials.sealedsecret.yaml"))
        .arg("-w")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(run.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&run.stdout));
    assert!(std::fs::read_to_string(&out).unwrap().contains("\"name\": \"credentials\""));
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600, "it holds plaintext");
}

/// Certificates that kubeseal takes: a weak or not yet valid one seals with a warning, a key above
/// aws-lc's 8192 bits seals and unseals through the `rsa` crate.
#[test]
fn unusual_certificates_seal_with_a_word() {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let seal = |cert: &str| {
        Command::new(sealant())
            .current_dir(repo)
            .args(["seal", "--cert", cert, "-f", "keys-example/example.secret.yaml"])
            .output()
            .unwrap()
    };
    for (cert, warning) in [
        ("tests/fixtures/local/weak-1024.crt", "warning: the certificate's RSA key has 1024 bits"),
        ("tests/fixtures/local/not-yet-valid-2099.crt", "warning: the certificate is not valid before 2099"),
    ] {
        let out = seal(cert);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.contains(warning), "{cert}: {stderr}");
    }
    let large = seal("tests/fixtures/local/large-9216.crt");
    assert!(large.status.success(), "{}", String::from_utf8_lossy(&large.stderr));
    assert!(large.stderr.is_empty(), "{}", String::from_utf8_lossy(&large.stderr));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sealed.yaml"), &large.stdout).unwrap();
    let opened = Command::new(sealant())
        .current_dir(repo)
        .args(["unseal", "--private-key", "tests/fixtures/local/large-9216.key", "-f"])
        .arg(dir.path().join("sealed.yaml"))
        .output()
        .unwrap();
    assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stderr));
}

/// A generated key is written 0600: it is a private key, also over an existing 0644 file.
#[test]
fn generated_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.yaml");
    let cert = dir.path().join("cert.pem");
    std::fs::write(&key, "an older, public file\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(sealant())
        .args(["keys", "generate", "--bits", "2048", "-w"])
        .arg(&key)
        .arg("--cert-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"", "the key is not printed when written to a file");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&cert).unwrap().permissions().mode() & 0o777, 0o644);

    // The pair works: seal to the certificate, unseal with the key Secret.
    let sealed = Command::new(sealant())
        .args(["seal", "--raw", "--scope", "cluster-wide", "--cert"])
        .arg(&cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"value")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(sealed.status.success());
    let item = String::from_utf8(sealed.stdout).unwrap();
    let doc = format!(
        "{{\"apiVersion\":\"bitnami.com/v1alpha1\",\"kind\":\"SealedSecret\",\"metadata\":{{\"name\":\"x\",\"annotations\":{{\"sealedsecrets.bitnami.com/cluster-wide\":\"true\"}}}},\"spec\":{{\"encryptedData\":{{\"k\":\"{}\"}}}}}}",
        item.trim()
    );
    let file = dir.path().join("sealed.json");
    std::fs::write(&file, doc).unwrap();
    let opened = Command::new(sealant())
        .args(["unseal", "-o", "json", "--private-key"])
        .arg(&key)
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stderr));
    assert!(String::from_utf8_lossy(&opened.stdout).contains("\"k\": \"dmFsdWU=\""));
}

/// The lint corpus: every file under findings/ is reported, nothing under clean/.
#[test]
fn lint_has_no_false_positive_and_no_false_negative() {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(sealant()).current_dir(repo).args(["lint", "tests/fixtures/lint"]).output().unwrap();
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(!report.contains("/clean/"), "false positives:\n{report}");
    let mut files = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(repo).join("tests/fixtures/lint/findings")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    assert!(files.len() >= 14);
    for file in files {
        let shown = file.strip_prefix(repo).unwrap().display().to_string();
        assert!(report.contains(&format!("{shown}:")), "{shown} was not reported:\n{report}");
    }
}

fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).unwrap_or_default().windows(needle.len()).any(|w| w == needle) {
                hits.push(path);
            }
        }
    }
    hits
}

/// CI sealing: values from the environment are sealed in memory; no file anywhere (HOME,
/// TMPDIR, the working directory) holds them in plaintext afterwards.
#[test]
fn ci_sealing_leaves_no_plaintext_on_disk() {
    let repo = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let (home, tmp, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let value = "ci-plaintext-4f1d9c2e-never-on-disk";
    let out = Command::new(sealant())
        .current_dir(work.path())
        .env_clear()
        .env("HOME", home.path())
        .env("TMPDIR", tmp.path())
        .env("DB_PASSWORD", value)
        .args([
            "seal",
            "--name",
            "db",
            "-n",
            "prod",
            "--from-env-var",
            "password=DB_PASSWORD",
            "--from-literal",
            "user=app",
        ])
        .arg("--cert")
        .arg(repo.join("keys-example/demo.tls.crt"))
        .args(["--type", "kubernetes.io/basic-auth", "-w", "db.sealed.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(work.path().join("db.sealed.yaml").is_file());
    for dir in [home.path(), tmp.path(), work.path()] {
        assert!(files_containing(dir, value.as_bytes()).is_empty(), "plaintext found under {}", dir.display());
    }
    // The sealed file opens to the value.
    let opened = Command::new(sealant())
        .current_dir(work.path())
        .args(["unseal", "-o", "json", "-f", "db.sealed.yaml", "--private-key"])
        .arg(repo.join("keys-example/demo.tls.key"))
        .output()
        .unwrap();
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
    assert!(String::from_utf8_lossy(&opened.stdout).contains(&encoded));
}

/// A one-route HTTP server on loopback for `--cert URL`: `answer(path)` gives the raw response
/// (None: accept and say nothing). Serves until the test ends.
fn serve(answer: impl Fn(&str) -> Option<Vec<u8>> + Send + 'static) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request_line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut request_line);
            let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            match answer(&path) {
                Some(response) => {
                    let _ = stream.write_all(&response);
                }
                None => held.push(stream),
            }
        }
    });
    base
}

fn cert_from(url: &str, extra: &[&str]) -> std::process::Output {
    Command::new(sealant()).args(["cert", "--cert", url]).args(extra).output().unwrap()
}

#[test]
fn cert_urls_are_bounded_in_size_time_and_redirects() {
    let pem = std::fs::read(format!("{}/../keys-example/demo.tls.crt", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let expected = String::from_utf8(pem.clone()).unwrap();
    let base = serve(move |path| {
        let ok = |body: &[u8]| {
            let mut r =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
            r.extend_from_slice(body);
            r
        };
        let to = |location: &str| {
            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .into_bytes()
        };
        match path {
            "/cert.pem" => Some(ok(&pem)),
            "/moved" => Some(to("/cert.pem")),
            "/huge" => Some(ok(&vec![b'A'; 64 << 20])),
            "/loop" => Some(to("/loop")),
            _ => None,
        }
    });

    let moved = cert_from(&format!("{base}/moved"), &[]);
    assert!(moved.status.success(), "a redirect is followed: {}", String::from_utf8_lossy(&moved.stderr));
    assert_eq!(String::from_utf8_lossy(&moved.stdout), expected);

    let huge = cert_from(&format!("{base}/huge"), &[]);
    let stderr = String::from_utf8_lossy(&huge.stderr);
    assert!(!huge.status.success() && stderr.contains("larger than 1024 KiB"), "{stderr}");

    let looped = cert_from(&format!("{base}/loop"), &[]);
    let stderr = String::from_utf8_lossy(&looped.stderr);
    assert!(!looped.status.success() && stderr.contains("more than 5 redirects"), "{stderr}");

    // kubectl's --request-timeout, which the kubeseal name takes, bounds a URL as well.
    let dir = tempfile::tempdir().unwrap();
    let kubeseal = dir.path().join("kubeseal");
    std::os::unix::fs::symlink(sealant(), &kubeseal).unwrap();
    let silent = Command::new(&kubeseal)
        .args(["--fetch-cert", "--cert", &format!("{base}/silent"), "--request-timeout", "2s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&silent.stderr);
    assert!(!silent.status.success() && stderr.contains("no answer within 2 s"), "{stderr}");
}

/// A backup is an age file anyone with the recipient can make: `keys restore` restores only key
/// Secrets, only the keys `--expect` names, and checks all of them before writing anything.
#[test]
fn keys_restore_refuses_a_forged_backup_before_touching_the_cluster() {
    use base64::Engine as _;
    let repo = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("identity.txt");
    assert!(Command::new("age-keygen").arg("-o").arg(&identity).output().unwrap().status.success());
    let recipient =
        String::from_utf8(Command::new("age-keygen").arg("-y").arg(&identity).output().unwrap().stdout).unwrap();
    let b64 = |path: &str| base64::engine::general_purpose::STANDARD.encode(std::fs::read(repo.join(path)).unwrap());
    let key = |name: &str, key: &str, cert: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "labels": {"sealedsecrets.bitnami.com/sealed-secrets-key": "active"}},
            "data": {"tls.key": b64(key), "tls.crt": b64(cert)}})
    };
    let demo = key("sealed-secrets-keydemo", "keys-example/demo.tls.key", "keys-example/demo.tls.crt");
    let foreign = key(
        "sealed-secrets-keyevil",
        "tests/fixtures/sealed-secrets/python-generated/keys/key-a.tls.key",
        "tests/fixtures/sealed-secrets/python-generated/keys/key-a.tls.crt",
    );
    let token = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": "bootstrap-token-abcdef"}, "data": {"token-id": "YWJjZGVm"}});
    let restore = |items: Vec<serde_json::Value>, expect: &[&str]| {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        let file = dir.path().join("backup.age");
        let mut age =
            Command::new("age").args(["-r", recipient.trim(), "-o"]).arg(&file).stdin(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut age.stdin.take().unwrap(), list.to_string().as_bytes()).unwrap();
        assert!(age.wait().unwrap().success());
        let mut args = vec!["keys".to_owned(), "restore".to_owned(), file.display().to_string(), "-i".to_owned()];
        args.push(identity.display().to_string());
        for e in expect {
            args.extend(["--expect".to_owned(), (*e).to_owned()]);
        }
        let out = Command::new(sealant())
            .current_dir(repo)
            .args(&args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    };
    let demo_cert = "keys-example/demo.tls.crt";
    let err = restore(vec![demo.clone(), token], &[demo_cert]);
    assert!(err.contains("\"bootstrap-token-abcdef\", which is not a key Secret"), "{err}");
    let err = restore(vec![demo.clone(), foreign], &[demo_cert]);
    assert!(
        err.contains("sealed-secrets-keyevil") && err.contains("which --expect does not name: nothing restored"),
        "{err}"
    );
    let err = restore(vec![demo.clone()], &["SHA256:nope"]);
    assert!(err.contains("which --expect does not name"), "{err}");
    // Checked and shown; then the cluster (none here) is the only thing that fails.
    let err = restore(vec![demo], &[demo_cert]);
    assert!(err.starts_with("SHA256:") && err.contains("sealed-secrets-keydemo"), "{err}");
    assert!(!err.contains("nothing restored"), "{err}");
}

/// Upstream v0.40's `null` for an input-only item is dropped by the API server: `validate` says
/// so rather than pass a file that will not do what it says.
#[test]
fn validate_says_a_template_null_will_not_leave_the_item_out() {
    let repo = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let example = std::fs::read_to_string(repo.join("keys-example/example.sealedsecret.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input-only.yaml");
    let with_null = example.replace(
        "    type: Opaque",
        "    type: Opaque\n    data:\n      password: null\n      dsn: \"{{ .username }}:{{ .password }}\"",
    );
    std::fs::write(&file, &with_null).unwrap();
    let out = Command::new(sealant()).arg("validate").arg(&file).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("demo-credentials: spec.template.data.password: null is dropped by the API server"),
        "{stdout}"
    );
    // The same file without the null passes.
    std::fs::write(&file, with_null.replace("      password: null\n", "")).unwrap();
    let out = Command::new(sealant()).arg("validate").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// A kubeconfig with a syntax error next to a token: the error says where, never the lines
/// (the YAML parser's own message quotes them), so no CI log gets the credential.
#[test]
fn a_broken_kubeconfig_is_reported_by_position_without_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "users:\n- name: u\n  user:\n    token: TOKEN-Zq7Xv9kWm\n    bad: [unclosed\ncontexts: []\n",
            "at line 8, column 9",
        ),
        ("users:\n- name: u\n  user:\n    token: [TOKEN-Zq7Xv9kWm, 5]\n", "at line 6, column"),
    ];
    for (text, position) in cases {
        let file = dir.path().join("kubeconfig");
        std::fs::write(&file, format!("apiVersion: v1\nkind: Config\n{text}")).unwrap();
        for args in [&["keys", "list"][..], &["cert"], &["status"]] {
            let out = Command::new(sealant()).args(args).env("KUBECONFIG", &file).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            assert!(!stderr.contains("Zq7Xv9kWm") && !stdout_holds(&out.stdout), "{args:?}: {stderr}");
            assert!(stderr.contains("cannot read the kubeconfig") && stderr.contains(position), "{args:?}: {stderr}");
        }
    }
}

fn stdout_holds(stdout: &[u8]) -> bool {
    String::from_utf8_lossy(stdout).contains("Zq7Xv9kWm")
}
