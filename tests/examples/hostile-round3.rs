//! Hostile-input benchmark, round 3 (issue 26's figures; not a test), against a controller on
//! the local control plane:
//!  1. RSS peak while 4 clients post 4 MiB bodies of a million tiny items (`- 0`) at once;
//!  2. RSS peak after 200 requests with 100 KB methods, then one `/metrics` scrape;
//!  3. RSS after 8,500 requests with 30 KB `X-Forwarded-For` values;
//!  4. `/healthz` answers within 100 ms while 600 idle connections are held on the API port;
//!  5. RSS with 260 SealedSecrets carrying a 1 MB template annotation each (the API server
//!     limits the object's own annotations to 256 KiB, not the template's), running and after a
//!     cold restart;
//!  6. the delay of another tenant's SealedSecret while one tenant's 8 SealedSecrets of 1,500
//!     items each are decrypted.
//!
//! ```sh
//! cargo build --release -p sealant -p sealant-controller
//! cargo run --release -p sealant-tests --example hostile-round3
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark script: fail loudly

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use sealant_crds::SealedSecret;
use sealant_tests::cluster::{
    RunningController, TestNamespace, admin_client, apply_crd, create_demo_key, peak_rss_while, rss_kib,
};

/// The highest RSS of `pid` while `work` runs, in MiB.
fn peak_while<T>(pid: u32, work: impl FnOnce() -> T) -> (T, f64) {
    let (result, peak) = peak_rss_while(pid, Duration::from_millis(500), work);
    (result, mib(peak))
}

/// Send raw bytes, read the status code (0: none).
fn raw(addr: &str, request: &[u8]) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr) else { return 0 };
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    if stream.write_all(request).is_err() {
        return 0;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn post(addr: &str, path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main]
async fn main() {
    let client = admin_client().await;
    apply_crd().await;
    let ns = TestNamespace::create(&client, "round3").await;
    create_demo_key(&client, &ns.name).await;
    let flags = ["--key-renew-period=0", "--log-level=WARN"];
    let controller = RunningController::start(&ns.name, &[], &flags);
    controller.ready().await;
    let pid = controller.process.child.id();
    let addr = controller.url.strip_prefix("http://").unwrap().to_owned();
    println!("idle RSS: {:.1} MiB", mib(rss_kib(pid)));

    // 1. Four 4 MiB bodies of tiny items at once.
    let body: Arc<Vec<u8>> = Arc::new(b"- 0\n".repeat(1 << 20));
    let (codes, peak) = peak_while(pid, || {
        let clients: Vec<_> = (0..4)
            .map(|i| {
                let (addr, body) = (addr.clone(), body.clone());
                let from = format!("X-Forwarded-For: 10.3.0.{i}\r\n");
                std::thread::spawn(move || raw(&addr, &post(&addr, "/v1/verify", &from, &body)))
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect::<Vec<_>>()
    });
    println!("1. 4 x 4 MiB of tiny items: answers {codes:?}, RSS peak {peak:.1} MiB (was 603-655 MB)");

    // 2. 200 requests with 100 KB methods, then a scrape.
    let method = "X".repeat(100_000);
    let metrics_addr = controller.metrics_url.strip_prefix("http://").unwrap().to_owned();
    let (scrape, peak) = peak_while(pid, || {
        let mut codes = std::collections::BTreeMap::new();
        for _ in 0..200 {
            let request =
                format!("{method} /v1/verify HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
            *codes.entry(raw(&addr, request.as_bytes())).or_insert(0) += 1;
        }
        let (code, scrape) = sealant_tests::cluster::http(&format!("http://{metrics_addr}"), "GET", b"").unwrap();
        (codes, code, scrape.len())
    });
    println!(
        "2. 200 x 100 KB methods: answers {:?}; scrape {} of {} bytes; RSS peak {peak:.1} MiB (was 766 MB, scrape 372 MB)",
        scrape.0, scrape.1, scrape.2
    );

    // 3. 8,500 requests with 30 KB X-Forwarded-For values (each a new "client" before).
    let before = rss_kib(pid);
    let (_, peak) = peak_while(pid, || {
        let value = "1".repeat(30_000);
        for i in 0..8_500 {
            raw(&addr, &post(&addr, "/v1/verify", &format!("X-Forwarded-For: {value}{i}\r\n"), b"{}"));
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "3. 8,500 x 30 KB X-Forwarded-For: RSS {:.1} -> {:.1} MiB, peak {peak:.1} (was 262 MiB held)",
        mib(before),
        mib(rss_kib(pid))
    );

    // 4. /healthz while 600 idle connections are held.
    let held: Vec<TcpStream> = (0..600).filter_map(|_| TcpStream::connect(&addr).ok()).collect();
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    for _ in 0..30 {
        let start = Instant::now();
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        if response.starts_with(b"HTTP/1.1 200") && start.elapsed() < Duration::from_millis(100) {
            answered += 1;
        }
        slowest = slowest.max(start.elapsed());
        std::thread::sleep(Duration::from_millis(1000));
    }
    drop(held);
    println!("4. /healthz with 600 held connections: {answered}/30 within 100 ms, slowest {slowest:?} (was 0/30)");

    // 5. 260 SealedSecrets with a 1 MB annotation each, then a cold restart.
    let api = Api::<SealedSecret>::namespaced(client.clone(), &ns.name);
    let big = "a".repeat(1_000_000);
    let template = serde_json::json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": "placeholder"},
        "spec": {"encryptedData": {}, "template": {"metadata": {"annotations": {"big": big}}}}});
    let (_, peak) = peak_while(pid, || {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                for i in 0..260 {
                    let mut doc = template.clone();
                    doc["metadata"]["name"] = serde_json::json!(format!("big-{i}"));
                    let ss: SealedSecret = serde_json::from_value(doc).unwrap();
                    api.create(&PostParams::default(), &ss).await.unwrap();
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
            })
        })
    });
    println!("5. 260 x 1 MB template metadata: running RSS {:.1} MiB, peak {peak:.1} (was 289 MB)", mib(rss_kib(pid)));
    drop(controller);
    let controller = RunningController::start(&ns.name, &[], &flags);
    let pid = controller.process.child.id();
    let (_, peak) = peak_while(pid, || std::thread::sleep(Duration::from_secs(20)));
    println!("   after a cold restart: RSS {:.1} MiB, peak {peak:.1} (was 341 MB)", mib(rss_kib(pid)));
    api.delete_collection(&DeleteParams::default(), &ListParams::default()).await.unwrap();
    drop(controller);

    // 6. Another tenant's delay while one tenant's heavy SealedSecrets are decrypted.
    let victim = TestNamespace::create(&client, "round3-victim").await;
    let controller = RunningController::start(&ns.name, &[&victim.name], &flags);
    controller.ready().await;
    let cert = sealant_core::cert::Certificate::from_pem(
        &std::fs::read_to_string(sealant_tests::cluster::repo().join("keys-example/demo.tls.crt")).unwrap(),
    )
    .unwrap();
    let seal = |namespace: &str, name: &str, items: usize| {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace},
            "stringData": (0..items).map(|i| (format!("k{i}"), "v".to_owned())).collect::<std::collections::BTreeMap<_, _>>(),
        }))
        .unwrap();
        sealant_crds::seal_secret(&mut rand::rng(), &cert, &secret, &sealant_crds::SealOptions::default()).unwrap()
    };
    let heavy: Vec<SealedSecret> = (0..8).map(|i| seal(&ns.name, &format!("heavy-{i}"), 1_500)).collect();
    let light = seal(&victim.name, "light", 1);
    for ss in &heavy {
        api.create(&PostParams::default(), ss).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let created = Instant::now();
    Api::<SealedSecret>::namespaced(client.clone(), &victim.name).create(&PostParams::default(), &light).await.unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), &victim.name);
    while secrets.get_opt("light").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "6. another tenant's Secret under 8 x 1,500 items: {:.1} s (was 10.2 s under 8 objects of 1,800)",
        created.elapsed().as_secs_f64()
    );
}
