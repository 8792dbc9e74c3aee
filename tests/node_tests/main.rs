//! Node tests: the controller installed as users install it, as Pods from the image built here,
//! on a real node (tests/cluster/up --node: containerd, kubelet, kube-proxy, kube-scheduler).
//!
//! Every test installs into kube-system under the names kubeseal expects, so they run one at a
//! time (the `node` test group in .config/nextest.toml) and each removes what it installed.
//! Figures (time to Ready, failover, RSS) are printed for the notes; nothing asserts a time
//! beyond generous timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step should stop the test loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sealant_tests::cluster::{built_binary, jsonnet_binary, repo, upstream_file};
use sealant_tests::node::{Node, kubectl_as, node, process_facts};
use serde_json::{Value, json};

mod helm;
mod image;
mod install;
mod rollback;
mod status;
mod template_corpus;
mod upgrade;
mod upstream_keys;
mod upstream_status;

const NS: &str = "kube-system";
const DEPLOYMENT: &str = "sealed-secrets-controller";
/// The path kubeseal fetches the certificate on, through the API server's service proxy (its port
/// name is the Service's first port's).
const CERT_PROXY_PATH: &str =
    "/api/v1/namespaces/kube-system/services/http:sealed-secrets-controller:http/proxy/v1/cert.pem";

/// Poll `check` every 200 ms until it returns `Some`, for at most `timeout`.
fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The Deployment has rolled out: every replica updated, ready and available, no old ones left.
fn rolled_out(node: &Node, replicas: i64) -> bool {
    let d = node.get_json(&["deployment", "-n", NS, DEPLOYMENT]);
    let s = &d["status"];
    let n = |f: &str| s[f].as_i64().unwrap_or(0);
    s["observedGeneration"] == d["metadata"]["generation"]
        && n("updatedReplicas") == replicas
        && n("readyReplicas") == replicas
        && n("availableReplicas") == replicas
        && n("replicas") == replicas
}

/// Wait until the Deployment has rolled out with `replicas` (see [`rolled_out`]) and `extra`
/// holds; on a timeout, print what the cluster says of the controller's Pods before failing.
fn wait_rolled_out(node: &Node, replicas: i64, timeout: Duration, what: &str, extra: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !(rolled_out(node, replicas) && extra()) {
        if Instant::now() > deadline {
            for args in [
                &["get", "deployment,replicaset,pods,events", "-n", NS, "-o", "wide"][..],
                &["describe", "pods", "-n", NS],
                &["logs", "-n", NS, &format!("deployment/{DEPLOYMENT}"), "--all-containers", "--tail", "50"],
            ] {
                let out = node.kubectl(args, None);
                eprintln!(
                    "$ kubectl {}\n{}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The controller's Pods that are Running and not being deleted.
fn controller_pods(node: &Node, selector: &str) -> Vec<Value> {
    let pods = node.get_json(&["pods", "-n", NS, "-l", selector]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null())
        .cloned()
        .collect()
}

/// The Lease holder, if any: a replica's identity is its Pod's name.
fn lease_holder(node: &Node) -> Option<String> {
    let out = node.kubectl(&["get", "lease", "-n", NS, DEPLOYMENT, "-o", "json"], None);
    let lease: Value = serde_json::from_slice(&out.stdout).ok()?;
    let holder = lease["spec"]["holderIdentity"].as_str()?;
    Some(holder.to_owned())
}

/// Wait for the Lease holder and check it is one of `pods`, by name; the holder.
fn leader_among(node: &Node, pods: &[Value]) -> String {
    let names: Vec<String> = pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_owned()).collect();
    let leader = wait_for(Duration::from_secs(30), "a Lease holder", || lease_holder(node));
    assert!(names.contains(&leader), "the Lease holder {leader} is one of {names:?}");
    leader
}

/// The certificate through the service proxy, as an ordinary user (kubeseal --fetch-cert).
fn fetch_cert(node: &Node) -> Result<String, String> {
    let out = kubectl_as(&node.user_kubeconfig, &["get", "--raw", CERT_PROXY_PATH], None);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// `sealant` (or its kubeseal name) with the ordinary user's kubeconfig.
fn sealant_as_user(node: &Node, program: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", &node.user_kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sealant");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{} {}: {}", program.display(), args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Seal a Secret with the certificate the cluster serves (fetched through the Service proxy,
/// the kubeseal path) and apply it; returns the Secret's plaintext for comparison.
fn seal_and_apply(node: &Node, namespace: &str, name: &str) -> String {
    let value = format!("value-of-{name}");
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"password": value},
    });
    let sealed = sealant_as_user(node, &built_binary("sealant"), &["seal"], &secret.to_string());
    node.kubectl_ok(&["apply", "-f", "-"], Some(&sealed));
    value
}

/// Wait for the Secret the controller makes and return its `password`.
fn unsealed_password(node: &Node, namespace: &str, name: &str, timeout: Duration) -> String {
    wait_for(timeout, &format!("Secret {namespace}/{name}"), || {
        let out = node.kubectl(&["get", "secret", "-n", namespace, name, "-o", "json"], None);
        let secret: Value = serde_json::from_slice(&out.stdout).ok()?;
        let b64 = secret["data"]["password"].as_str()?;
        let bytes = base64_decode(b64);
        Some(String::from_utf8(bytes).unwrap())
    })
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).expect("base64 from the API server")
}

/// What upstream's chart installs (see [`Node::install_upstream_chart`]).
fn install_upstream_chart(node: &Node, image: Option<&str>) -> (String, String) {
    node.install_upstream_chart(image)
}

/// Upstream's controller as an image (see [`Node::upstream_image`]).
fn upstream_image(node: &Node) -> String {
    node.upstream_image()
}

/// Remove what the tests install into kube-system, and wait until its Pods are gone.
fn uninstall(node: &Node) {
    for args in [
        &["delete", "deployment", "-n", NS, DEPLOYMENT, "--ignore-not-found", "--wait=true"][..],
        &["delete", "secret", "-n", NS, "-l", "sealedsecrets.bitnami.com/sealed-secrets-key", "--ignore-not-found"],
        &["delete", "lease", "-n", NS, DEPLOYMENT, "--ignore-not-found"],
        &["delete", "service", "-n", NS, DEPLOYMENT, "sealed-secrets-controller-metrics", "--ignore-not-found"],
        &["delete", "pdb", "-n", NS, DEPLOYMENT, "--ignore-not-found"],
    ] {
        node.kubectl_ok(args, None);
    }
    wait_for(Duration::from_secs(90), "the controller's Pods to go", || {
        let pods = node.get_json(&["pods", "-n", NS, "-o", "name"]);
        let left = pods["items"].as_array().map_or(0, |items| {
            items.iter().filter(|p| p["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(DEPLOYMENT))).count()
        });
        (left == 0).then_some(())
    });
}

/// Runs [`uninstall`] when dropped, also when the test fails.
struct Uninstall(&'static Node);

impl Drop for Uninstall {
    fn drop(&mut self) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| uninstall(self.0))).is_err() {
            eprintln!("warning: could not remove the controller from kube-system");
        }
    }
}

/// Check each controller Pod's process from the node's view, against what `deploy/` declares;
/// returns each Pod's RSS in KiB.
fn check_security_context(node: &Node, pods: &[Value]) -> Vec<u64> {
    pods.iter()
        .map(|pod| {
            let name = pod["metadata"]["name"].as_str().unwrap();
            let id = pod["status"]["containerStatuses"][0]["containerID"].as_str().unwrap();
            let facts = process_facts(node.container_pid(id));
            assert!(facts.uids.iter().all(|u| *u == 1001), "{name}: uids {:?}, want 1001", facts.uids);
            assert_eq!(facts.cap_effective, 0, "{name}: effective capabilities");
            assert_eq!(facts.cap_permitted, 0, "{name}: permitted capabilities");
            assert!(facts.no_new_privs, "{name}: allowPrivilegeEscalation: false means NoNewPrivs");
            assert_eq!(facts.seccomp_mode, 2, "{name}: RuntimeDefault means a seccomp filter");
            assert!(facts.read_only_root, "{name}: readOnlyRootFilesystem");
            facts.rss_kib
        })
        .collect()
}

/// Poll the certificate through the Service proxy in the background until dropped; counts
/// answers and failures (with the first failure's message).
struct CertPoller {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU32>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CertPoller {
    fn start(node: &'static Node, want: String) -> CertPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU32::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match fetch_cert(node) {
                        Ok(cert) if cert == want => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => failed.lock().unwrap().push("a different certificate".to_owned()),
                        Err(e) => failed.lock().unwrap().push(e),
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        CertPoller { stop, ok, failed, thread: Some(thread) }
    }

    /// Stop polling; (answers, failures).
    fn finish(mut self) -> (u32, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (self.ok.load(Ordering::Relaxed), std::mem::take(&mut *self.failed.lock().unwrap()))
    }
}

/// Whether every controller Pod runs `image`.
fn all_run(node: &Node, image: &str) -> bool {
    let pods = controller_pods(node, "name=sealed-secrets-controller");
    pods.len() == 2 && pods.iter().all(|p| p["spec"]["containers"][0]["image"] == image)
}

/// Run `change` while the certificate is fetched through the Service every 100 ms, wait until
/// both replicas run `image`; the time it took and how many fetches answered. Fails on any
/// failed fetch.
fn without_a_failed_fetch(
    node: &'static Node,
    cert: &str,
    image: &str,
    what: &str,
    change: impl FnOnce(),
) -> (f64, u32) {
    let poller = CertPoller::start(node, cert.to_owned());
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    change();
    wait_rolled_out(node, 2, Duration::from_secs(240), what, || all_run(node, image));
    let took = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let (answers, failures) = poller.finish();
    assert!(
        failures.is_empty(),
        "{} of {} fetches failed during {what}: {:?}",
        failures.len(),
        answers as usize + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(answers > 10, "the poller ran ({answers} answers)");
    (took, answers)
}

/// A kustomization in a temporary directory that uses `base` with the image swapped.
fn overlay(base: &Path, image: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (name, tag) = image.rsplit_once(':').unwrap();
    // kustomize wants the base as a path relative to the overlay.
    let relative: PathBuf = std::iter::repeat_n("..", dir.path().components().count() - 1)
        .collect::<PathBuf>()
        .join(base.strip_prefix("/").unwrap());
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\nimages:\n  - name: ghcr.io/sealant-dev/sealant-controller\n    newName: {name}\n    newTag: \"{tag}\"\n",
            relative.display()
        ),
    )
    .unwrap();
    dir
}

fn repo_abs() -> PathBuf {
    repo().canonicalize().unwrap()
}
