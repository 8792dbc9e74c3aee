//! Side by side (issue 20; a benchmark, not a test): upstream's controller v0.40.0 and ours, one
//! at a time, as Pods on the node under upstream's chart objects (one Deployment, its image
//! switched), on the same COUNT SealedSecrets of 3 values sealed to one RSA-4096 key, upstream
//! first. For each:
//!  - from the controller's start with every SealedSecret in place and no Secret: the time until
//!    every Secret exists, decryptions per second, the CPU seconds and peak RSS of its process,
//!    and its RSS 30 s later;
//!  - a restart with every Secret in place: the time until every SealedSecret is reconciled again
//!    (`sealed_secrets_controller_unseal_requests_total`), the CPU seconds it took, and ours'
//!    decryptions (upstream decrypts every object on every reconcile);
//!  - `/v1/verify` requests per second from one client for 10 s;
//!  - then the same with 4 newer keys added (5 in the keyring), every object still sealed to the
//!    oldest: upstream tries the keys in turn. KEYS (default `1 5`) chooses the rounds.
//!
//! Both run with their API client unthrottled and `/v1/verify` unlimited (`--kubeclient-qps=-1`,
//! `--rate-limit=100000`; ours takes and ignores the first): upstream's defaults (5 requests per
//! second to the API server, 2 verifications per second) would measure those limits instead.
//! The files carry no `sealant.dev/sealing-key` annotation, as kubeseal's do not.
//!
//! ```sh
//! cargo build --release -p sealant -p sealant-controller
//! cargo run --release -p sealant-tests --example side-by-side [COUNT [KEYS...]]   # as root: the node
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark script: fail loudly

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, PostParams};
use sealant_core::Certificate;
use sealant_crds::{SealOptions, SealedSecret, seal_secret};
use sealant_tests::cluster::{built_binary, client_from, http};
use sealant_tests::node::{Node, node};
use serde_json::json;

const NS: &str = "kube-system";
const DEPLOYMENT: &str = "sealed-secrets-controller";
const BENCH: &str = "side-by-side";

/// What one controller did in one round.
#[derive(Debug, Default, Clone)]
struct Figures {
    settle: f64,
    cpu: f64,
    peak_mib: f64,
    settled_mib: f64,
    restart: f64,
    restart_cpu: f64,
    restart_decryptions: Option<f64>,
    verify_per_second: f64,
}

fn status_of(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// User and system CPU seconds of `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0
}

/// The running controller Pod: (host pid, Pod IP).
fn running(node: &Node) -> Option<(u32, String)> {
    let pods = node.get_json(&["pods", "-n", NS, "-l", "app.kubernetes.io/name=sealed-secrets"]);
    let pod = pods["items"].as_array()?.iter().find(|p| {
        p["metadata"]["deletionTimestamp"].is_null()
            && p["status"]["containerStatuses"][0]["ready"] == true
            && p["status"]["podIP"].is_string()
    })?;
    let id = pod["status"]["containerStatuses"][0]["containerID"].as_str()?;
    Some((node.container_pid(id), pod["status"]["podIP"].as_str()?.to_owned()))
}

fn wait<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn metric(ip: &str, name: &str) -> Option<f64> {
    let (_, body) = http(&format!("http://{ip}:8081/metrics"), "GET", b"").ok()?;
    String::from_utf8_lossy(&body).lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

fn scale(node: &Node, replicas: u32) {
    node.kubectl_ok(&["scale", "-n", NS, &format!("deployment/{DEPLOYMENT}"), &format!("--replicas={replicas}")], None);
    if replicas == 0 {
        wait("the controller's Pods to go", || {
            let pods = node.get_json(&["pods", "-n", NS, "-l", "app.kubernetes.io/name=sealed-secrets"]);
            pods["items"].as_array().is_some_and(Vec::is_empty).then_some(())
        });
    }
}

/// How many Secrets the bench namespace holds (one list call of one item).
async fn secrets(api: &Api<Secret>) -> u64 {
    let list = api.list(&ListParams::default().limit(1)).await.unwrap();
    list.items.len() as u64 + list.metadata.remaining_item_count.unwrap_or(0).max(0) as u64
}

async fn round(node: &Node, client: &kube::Client, image: &str, count: usize, sample: &str) -> Figures {
    let api = Api::<Secret>::namespaced(client.clone(), BENCH);
    scale(node, 0);
    // kubectl's own wait would watch each of them at its client's 5 requests per second.
    node.kubectl_ok(&["delete", "secrets", "--all", "-n", BENCH, "--wait=false"], None);
    while secrets(&api).await > 0 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    node.kubectl_ok(
        &["set", "image", "-n", NS, &format!("deployment/{DEPLOYMENT}"), &format!("controller={image}")],
        None,
    );
    let started = Instant::now();
    scale(node, 1);
    let (pid, ip) = wait("the controller to be ready", || running(node));
    while secrets(&api).await < count as u64 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut f = Figures {
        settle: started.elapsed().as_secs_f64(),
        cpu: cpu_seconds(pid),
        peak_mib: status_of(pid, "VmHWM:"),
        ..Figures::default()
    };
    tokio::time::sleep(Duration::from_secs(30)).await;
    f.settled_mib = status_of(pid, "VmRSS:");

    // /v1/verify, one client, 10 s.
    let url = format!("http://{ip}:8080/v1/verify");
    let until = Instant::now() + Duration::from_secs(10);
    let mut answered = 0u32;
    while Instant::now() < until {
        if matches!(http(&url, "POST", sample.as_bytes()), Ok((200, _))) {
            answered += 1;
        }
    }
    f.verify_per_second = f64::from(answered) / 10.0;

    // A restart with every Secret in place.
    node.kubectl_ok(&["delete", "pods", "-n", NS, "-l", "app.kubernetes.io/name=sealed-secrets", "--wait=false"], None);
    let restarted = Instant::now();
    let (pid, ip) = wait("the restarted controller", || running(node).filter(|(p, _)| *p != pid));
    wait("every SealedSecret reconciled again", || {
        (metric(&ip, "sealed_secrets_controller_unseal_requests_total")? >= count as f64).then_some(())
    });
    f.restart = restarted.elapsed().as_secs_f64();
    f.restart_cpu = cpu_seconds(pid);
    f.restart_decryptions = metric(&ip, "sealant_decryptions_total");
    f
}

fn print_table(title: &str, upstream: &Figures, ours: &Figures, count: usize) {
    let rows: [(&str, f64, f64, bool); 8] = [
        ("time until every Secret exists (s)", upstream.settle, ours.settle, false),
        ("decryptions per second", (3 * count) as f64 / upstream.settle, (3 * count) as f64 / ours.settle, true),
        ("CPU seconds", upstream.cpu, ours.cpu, false),
        ("peak RSS (MiB)", upstream.peak_mib, ours.peak_mib, false),
        ("RSS 30 s later (MiB)", upstream.settled_mib, ours.settled_mib, false),
        ("restart: time until all reconciled (s)", upstream.restart, ours.restart, false),
        ("restart: CPU seconds", upstream.restart_cpu, ours.restart_cpu, false),
        ("/v1/verify per second, one client", upstream.verify_per_second, ours.verify_per_second, true),
    ];
    println!("\n{title}\n| | upstream v0.40.0 | ours | ours vs upstream |\n|---|---|---|---|");
    for (what, a, b, higher_is_better) in rows {
        let ratio = if higher_is_better { b / a } else { a / b };
        let word = if higher_is_better { "× the rate" } else { "× less" };
        println!("| {what} | {a:.1} | {b:.1} | {ratio:.2}{word} |");
    }
    println!(
        "| restart: decryptions | every object ({} items) | {} | |",
        3 * count,
        ours.restart_decryptions.map_or("?".into(), |d| format!("{d:.0}"))
    );
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mut rounds: Vec<usize> = std::env::args().skip(2).map(|a| a.parse().expect("a key count: 1 or 5")).collect();
    if rounds.is_empty() {
        rounds = vec![1, 5];
    }
    let node = node();
    let ours = node.controller_image("side-by-side");
    let upstream = node.upstream_image();
    for args in [
        &["delete", "deployment", "-n", NS, DEPLOYMENT, "--ignore-not-found", "--wait=true"][..],
        &["delete", "secret", "-n", NS, "-l", "sealedsecrets.bitnami.com/sealed-secrets-key", "--ignore-not-found"],
        &["delete", "namespace", BENCH, "--ignore-not-found", "--wait=true"],
    ] {
        node.kubectl_ok(args, None);
    }
    node.install_upstream_chart(Some(&upstream));
    let unthrottled = json!([
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--kubeclient-qps=-1"},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--rate-limit=100000"},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--rate-limit-burst=100000"},
    ]);
    node.kubectl_ok(
        &["patch", "deployment", "-n", NS, DEPLOYMENT, "--type=json", "-p", &unthrottled.to_string()],
        None,
    );
    // Upstream makes the key; both use it.
    let key = wait("upstream's key", || {
        let keys = node.get_json(&["secret", "-n", NS, "-l", "sealedsecrets.bitnami.com/sealed-secrets-key"]);
        keys["items"].as_array()?.first().cloned()
    });
    let pem = String::from_utf8(base64_decode(key["data"]["tls.crt"].as_str().unwrap())).unwrap();
    let cert = Certificate::from_pem(&pem).unwrap();
    scale(node, 0);

    let client = client_from(&node.kubeconfig).await;
    node.kubectl_ok(&["create", "namespace", BENCH], None);
    println!("sealing {count} SealedSecrets of 3 values (RSA-4096)...");
    let sealed: Vec<SealedSecret> = (0..count)
        .map(|i| {
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {"name": format!("s{i}"), "namespace": BENCH},
                "stringData": {"username": format!("user-{i}"), "password": format!("password-{i}"), "token": format!("token-{i}")},
            }))
            .unwrap();
            let mut ss = seal_secret(&mut rand::rng(), &cert, &secret, &SealOptions::default()).unwrap();
            if let Some(annotations) = ss.metadata.annotations.as_mut() {
                annotations.remove("sealant.dev/sealing-key");
            }
            ss
        })
        .collect();
    let sample = serde_json::to_string(&sealed[0]).unwrap();
    let api = Api::<SealedSecret>::namespaced(client.clone(), BENCH);
    futures::stream::iter(sealed)
        .map(|ss| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &ss).await.unwrap() }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    let mut results = BTreeMap::new();
    for keys in rounds {
        if keys > 1 {
            // Newer keys: the objects stay sealed to the oldest.
            for _ in 0..keys - 1 {
                let out = std::process::Command::new(built_binary("sealant"))
                    .args(["keys", "generate", "-n", NS, "-o", "json"])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                node.kubectl_ok(&["create", "-f", "-"], Some(&String::from_utf8(out.stdout).unwrap()));
                std::thread::sleep(Duration::from_millis(1100));
            }
        }
        let theirs = round(node, &client, &upstream, count, &sample).await;
        println!("upstream, {keys} key(s): {theirs:?}");
        let mine = round(node, &client, &ours, count, &sample).await;
        println!("ours, {keys} key(s): {mine:?}");
        results.insert(keys, (theirs, mine));
    }
    for (keys, (theirs, mine)) in &results {
        print_table(&format!("{count} SealedSecrets, {keys} key(s) in the keyring"), theirs, mine, count);
    }
    scale(node, 0);
    node.kubectl_ok(&["delete", "namespace", BENCH, "--wait=false"], None);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}
