//! The node a test run shares (`tests/cluster/up --node`) and the controller image built here
//! (`deploy/image/build`), for the node tests: the controller installed as users install it.
//!
//! Like the control plane, the node is keyed by the test run (nextest's pid): the first test
//! process starts it under a file lock and it stops itself when the run ends. It needs root; a
//! node that cannot start fails the test with the reason, never skips it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::cluster::{read_env, repo, up_for_run, upstream_binary};

/// A running control plane with a node.
#[derive(Debug)]
pub struct Node {
    pub dir: PathBuf,
    /// Admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
    /// An ordinary user's kubeconfig (user `user`, group `developers`).
    pub user_kubeconfig: PathBuf,
    /// containerd's socket, for `ctr`.
    pub containerd: String,
}

static NODE: OnceLock<Node> = OnceLock::new();

/// The run's node, started if needed.
pub fn node() -> &'static Node {
    NODE.get_or_init(start)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|v| v.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn start() -> Node {
    assert!(is_root(), "the node tests run containerd, kubelet and iptables and need root: run them as root");
    let dir = up_for_run("node", &["--node"], &[]);
    let containerd = read_env(&dir.join("node/env"))
        .remove("CONTAINERD_ADDRESS")
        .expect("CONTAINERD_ADDRESS in the node's env file");
    Node { kubeconfig: dir.join("kubeconfig"), user_kubeconfig: dir.join("user.kubeconfig"), dir, containerd }
}

impl Node {
    /// `kubectl` with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_as(&self.kubeconfig, args, stdin)
    }

    /// `kubectl` with the admin kubeconfig, which must succeed; its standard output.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(out.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get ... -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&all, None)).expect("kubectl's JSON")
    }

    /// `ctr` in containerd's `k8s.io` namespace (the CRI's), which must succeed.
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .args(["--address", &self.containerd, "-n", "k8s.io"])
            .args(args)
            .output()
            .expect("run ctr");
        assert!(out.status.success(), "ctr {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The controller image, built once per run by deploy/image/build and imported into the
    /// node's containerd as `localhost/sealant-controller:<tag>`; returns that reference.
    pub fn controller_image(&self, tag: &str) -> String {
        let archive = self.dir.join("sealant-controller.oci.tar");
        let lock = std::fs::File::create(self.dir.join("image.lock")).expect("create the image lock");
        lock.lock().expect("lock the image lock file");
        if !archive.is_file() {
            let out = Command::new(repo().join("deploy/image/build"))
                .args(["--name", "localhost/sealant-controller:built", "--out"])
                .arg(&archive)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .expect("run deploy/image/build");
            assert!(out.status.success(), "deploy/image/build failed (its messages are above)");
            self.ctr(&["images", "import", archive.to_str().expect("a UTF-8 path")]);
        }
        let reference = format!("localhost/sealant-controller:{tag}");
        self.ctr(&["images", "tag", "--force", "localhost/sealant-controller:built", &reference]);
        reference
    }

    /// The archive deploy/image/build wrote (after [`Node::controller_image`]).
    pub fn image_archive(&self) -> PathBuf {
        self.dir.join("sealant-controller.oci.tar")
    }

    /// What upstream's chart installs (tests/fixtures/upstream-chart), after the CRD, with `image`
    /// as the controller's when given (the fixture names upstream's, which cannot be pulled here).
    /// Returns the RBAC and controller manifests as applied, to remove them afterwards.
    pub fn install_upstream_chart(&self, image: Option<&str>) -> (String, String) {
        let crd = repo().join("crds/sealedsecrets.bitnami.com.yaml");
        self.kubectl_ok(&["apply", "--server-side", "-f", crd.to_str().unwrap()], None);
        self.kubectl_ok(
            &["wait", "--for=condition=Established", "crd/sealedsecrets.bitnami.com", "--timeout=60s"],
            None,
        );
        let rbac = std::fs::read_to_string(repo().join("tests/fixtures/upstream-chart/rbac.yaml")).unwrap();
        // The fixture suffixes cluster-wide names for tests that share a cluster; the node has its own.
        let rbac = rbac.replace("-NAMESPACE", "").replace("NAMESPACE", "kube-system");
        self.kubectl_ok(&["apply", "-f", "-"], Some(&rbac));
        let controller = std::fs::read_to_string(repo().join("tests/fixtures/upstream-chart/controller.yaml")).unwrap();
        let controller = match image {
            Some(image) => controller.replace("docker.io/bitnami/sealed-secrets-controller:0.24.5", image),
            None => controller,
        };
        self.kubectl_ok(&["apply", "-f", "-"], Some(&controller));
        (rbac, controller)
    }

    /// Upstream's controller as an image: its static binary at `/usr/local/bin/controller`, the
    /// chart's command, in one FROM-scratch layer run as 1001, imported into the node.
    pub fn upstream_image(&self) -> String {
        let reference = "localhost/sealed-secrets-controller:upstream".to_owned();
        let archive = self.dir.join("upstream-controller.oci.tar");
        let binary = upstream_binary("controller");
        let out = Command::new("python3")
            .arg(repo().join("deploy/image/oci-archive.py"))
            .args(["--out", archive.to_str().unwrap(), "--name", &reference, "--created", "0"])
            .arg(format!("--file={}=/usr/local/bin/controller", binary.display()))
            .args(["--dir", "/tmp=1777", "--entrypoint", "/usr/local/bin/controller", "--user", "1001:1001"])
            .output()
            .unwrap();
        assert!(out.status.success(), "oci-archive.py: {}", String::from_utf8_lossy(&out.stderr));
        self.ctr(&["images", "import", archive.to_str().unwrap()]);
        reference
    }

    /// The host pid of a container, from its Pod status's `containerd://<id>`.
    pub fn container_pid(&self, container_id: &str) -> u32 {
        let id = container_id.strip_prefix("containerd://").unwrap_or(container_id);
        self.ctr(&["tasks", "ls"])
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(id)).then(|| f.next()?.parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no running task for container {id}"))
    }
}

/// `kubectl` with the given kubeconfig.
pub fn kubectl_as(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut child = crate::cluster::kubectl_command()
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl is installed");
    let mut input = child.stdin.take().expect("kubectl's stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write to kubectl");
    }
    drop(input);
    child.wait_with_output().expect("kubectl's output")
}

/// What the kernel says of a process: the facts a securityContext promises.
#[derive(Debug)]
pub struct ProcessFacts {
    /// Real, effective, saved and filesystem uids.
    pub uids: Vec<u32>,
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub no_new_privs: bool,
    /// 2: a seccomp filter is installed.
    pub seccomp_mode: u32,
    pub read_only_root: bool,
    pub rss_kib: u64,
}

/// Read [`ProcessFacts`] for `pid` from /proc.
pub fn process_facts(pid: u32) -> ProcessFacts {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process's status");
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_else(|| panic!("{name} in status"))
    };
    let hex = |name: &str| u64::from_str_radix(field(name), 16).expect("a hex capability set");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("the process's mountinfo");
    // Fields: id parent major:minor root mount-point options ...; the last "/" entry is the root.
    let root_options = mountinfo
        .lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(4) == Some(&"/")).then(|| f.get(5).map(|o| (*o).to_owned())).flatten()
        })
        .expect("a root mount");
    ProcessFacts {
        uids: field("Uid:").split_whitespace().filter_map(|u| u.parse().ok()).collect(),
        cap_effective: hex("CapEff:"),
        cap_permitted: hex("CapPrm:"),
        no_new_privs: field("NoNewPrivs:") == "1",
        seccomp_mode: field("Seccomp:").parse().expect("a seccomp mode"),
        read_only_root: root_options.split(',').any(|o| o == "ro"),
        rss_kib: field("VmRSS:").split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0),
    }
}
