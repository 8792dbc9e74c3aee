//! Load benchmark (not a test): 1000 SealedSecrets of 3 values applied at once to a controller
//! with an RSA-4096 key, on the local control plane. Prints the time until every Secret exists,
//! p50/p99 create→Secret latency, the controller's RSS (peak, and settled: 30 s after the last
//! Secret), decryptions per second, and the time until every SealedSecret is reconciled again
//! after a cold restart. With UNRELATED, that many Secrets of 100 KB that the controller does not
//! own (as Helm release Secrets are) are created first in another namespace. With `backlog`, the
//! SealedSecrets are all created before the controller starts (a restart after an outage, or an
//! install over existing SealedSecrets): the whole backlog reaches its queue at once, which is
//! where its memory peaks; times are then from the controller's start.
//!
//!     cargo build --release -p sealant-controller
//!     cargo run --release -p sealant-tests --example controller-load [COUNT [UNRELATED [backlog]]]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark script: fail loudly

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use sealant_core::Certificate;
use sealant_crds::{SealOptions, SealedSecret, seal_secret};
use sealant_tests::cluster::{
    RunningController, TestNamespace, admin_client, apply_crd, create_demo_key, eventually, repo, rss_kib,
};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let unrelated: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(0);
    let backlog = std::env::args().nth(3).is_some_and(|a| a == "backlog");
    let client = admin_client().await;
    apply_crd().await;
    let other = TestNamespace::create(&client, "unrelated").await;
    if unrelated > 0 {
        println!("creating {unrelated} unrelated Secrets of 100 KB...");
        let api = Api::<Secret>::namespaced(client.clone(), &other.name);
        futures::stream::iter(0..unrelated)
            .map(|i| {
                let api = api.clone();
                async move {
                    let secret = Secret {
                        metadata: kube::api::ObjectMeta { name: Some(format!("release-{i}")), ..Default::default() },
                        type_: Some("helm.sh/release.v1".into()),
                        data: Some(BTreeMap::from([("release".into(), ByteString(vec![b'h'; 100 * 1024]))])),
                        ..Default::default()
                    };
                    api.create(&PostParams::default(), &secret).await.unwrap();
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    }
    let ns = TestNamespace::create(&client, "load").await;
    let n = ns.name.clone();
    create_demo_key(&client, &n).await;
    let cert =
        Certificate::from_pem(&std::fs::read_to_string(repo().join("keys-example/demo.tls.crt")).unwrap()).unwrap();

    println!("sealing {count} SealedSecrets of 3 values (RSA-4096)...");
    let mut rng = rand::rng();
    let sealed: Vec<SealedSecret> = (0..count)
        .map(|i| {
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("s{i}")),
                    namespace: Some(n.clone()),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([
                    ("user".into(), ByteString(format!("user-{i}").into_bytes())),
                    ("password".into(), ByteString(format!("password-{i}-{}", "x".repeat(24)).into_bytes())),
                    ("url".into(), ByteString(format!("postgres://db-{i}.internal:5432/app").into_bytes())),
                ])),
                ..Default::default()
            };
            seal_secret(&mut rng, &cert, &secret, &SealOptions::default()).unwrap()
        })
        .collect();

    // The unrelated Secrets' namespace is watched too: they are in the controller's view.
    let start_controller =
        || RunningController::start(&n, &[other.name.as_str()], &["--key-renew-period=0", "--log-level=WARN"]);
    let controller = (!backlog).then(start_controller);

    // Watch Secrets as they appear.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch_seen = seen.clone();
    let secrets_api = Api::<Secret>::namespaced(client.clone(), &n);
    let watch = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher::watcher(secrets_api, watcher::Config::default()).applied_objects());
        while let Ok(Some(s)) = stream.try_next().await {
            watch_seen.lock().unwrap().entry(s.name_any()).or_insert_with(Instant::now);
        }
    });

    let api = Api::<SealedSecret>::namespaced(client.clone(), &n);
    let mut start = Instant::now();
    let mut created: HashMap<String, Instant> = futures::stream::iter(sealed)
        .map(|ss| {
            let api = api.clone();
            async move {
                let name = ss.name_any();
                api.create(&PostParams::default(), &ss).await.unwrap();
                (name, Instant::now())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let applied = start.elapsed();
    let mut controller = match controller {
        Some(controller) => controller,
        None => {
            start = Instant::now();
            created.values_mut().for_each(|at| *at = start);
            start_controller()
        }
    };
    controller.ready().await;
    let pid = controller.process.child.id();
    let peak_rss = Arc::new(std::sync::atomic::AtomicU64::new(rss_kib(pid)));
    let all = eventually(Duration::from_secs(1800), || {
        let (seen, peak_rss) = (seen.clone(), peak_rss.clone());
        async move {
            peak_rss.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
            (seen.lock().unwrap().len() >= count).then_some(())
        }
    })
    .await;
    let peak_rss = peak_rss.load(std::sync::atomic::Ordering::Relaxed);
    assert!(all.is_some(), "not every Secret appeared");
    let until_all = start.elapsed();
    let mut latencies: Vec<Duration> = {
        let seen = seen.lock().unwrap();
        created.iter().filter_map(|(name, at)| seen.get(name).map(|s| s.saturating_duration_since(*at))).collect()
    };
    latencies.sort();
    let decryptions = controller.metric("sealant_decryptions_total").unwrap_or(0.0);
    watch.abort();

    println!("applied {count} SealedSecrets in {:.2} s", applied.as_secs_f64());
    println!("time until all Secrets exist: {:.2} s", until_all.as_secs_f64());
    println!(
        "create→Secret latency: p50 {:.0} ms, p99 {:.0} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    let now_rss = rss_kib(pid);
    let high_water = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:")?.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(30)).await;
    println!(
        "controller RSS: {} MiB peak ({} MiB high-water mark), {} MiB when the last Secret appeared, {} MiB \
         settled (30 s later)",
        peak_rss / 1024,
        high_water / 1024,
        now_rss / 1024,
        rss_kib(pid) / 1024
    );
    println!(
        "decryptions: {decryptions} in {:.2} s = {:.0} per second",
        until_all.as_secs_f64(),
        decryptions / until_all.as_secs_f64()
    );

    // Every status written too: a Secret without its Synced condition is half the job.
    let synced = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|ss| ss.status.iter().flat_map(|s| &s.conditions).any(|c| c.type_ == "Synced" && c.status == "True"))
        .count();
    println!("status Synced=True: {synced} of {count}");
    assert_eq!(synced, count, "every SealedSecret reports Synced");

    controller.process.terminate();
    let restart = Instant::now();
    let controller =
        RunningController::start(&n, &[other.name.as_str()], &["--key-renew-period=0", "--log-level=WARN"]);
    controller.ready().await;
    let synced = eventually(Duration::from_secs(1800), || async {
        (controller.metric("sealed_secrets_controller_unseal_requests_total")? >= count as f64).then_some(())
    })
    .await;
    assert!(synced.is_some());
    println!(
        "cold restart: all {count} reconciled {:.2} s after start, {} decryptions, RSS {} MiB",
        restart.elapsed().as_secs_f64(),
        controller.metric("sealant_decryptions_total").unwrap_or(-1.0),
        rss_kib(controller.process.child.id()) / 1024
    );
}
