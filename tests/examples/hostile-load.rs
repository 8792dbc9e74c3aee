//! Hostile-input benchmark (not a test; issue 10's figures), against a controller on the local
//! control plane, and the CLI:
//!  - the controller's RSS while 40 clients post 3.7 MB verify bodies at once, and after;
//!  - `/healthz` latency while two clients post 80 KB deeply nested bodies without pause;
//!  - the time and peak memory of `sealant sops` refusing a "billion laughs" alias bomb.
//!
//! ```sh
//! cargo build --release -p sealant -p sealant-controller
//! cargo run --release -p sealant-tests --example hostile-load
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark script: fail loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sealant_tests::cluster::{
    RunningController, TestNamespace, admin_client, apply_crd, built_binary, create_demo_key, http, peak_rss_while,
    rss_kib,
};

/// A SealedSecret of 512 junk items, about 3.7 MB of JSON. Each item is shaped like a real one
/// (a 512-byte RSA block, then AES-GCM data), so each costs an RSA private-key operation.
fn big_body(namespace: &str) -> Vec<u8> {
    use base64::Engine as _;
    let mut raw = vec![0x02, 0x00];
    raw.extend((0..5400u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let item = base64::engine::general_purpose::STANDARD.encode(&raw);
    let items: Vec<String> = (0..512).map(|i| format!("\"k{i}\":\"{item}\"")).collect();
    format!(
        r#"{{"apiVersion":"bitnami.com/v1alpha1","kind":"SealedSecret","metadata":{{"name":"big","namespace":"{namespace}"}},"spec":{{"encryptedData":{{{}}}}}}}"#,
        items.join(",")
    )
    .into_bytes()
}

#[tokio::main]
async fn main() {
    let client = admin_client().await;
    apply_crd().await;
    let ns = TestNamespace::create(&client, "hostile").await;
    create_demo_key(&client, &ns.name).await;
    // A limit no client here reaches: the bodies must be parsed, not turned away.
    let controller = RunningController::start(
        &ns.name,
        &[],
        &["--key-renew-period=0", "--log-level=WARN", "--rate-limit=1000000", "--rate-limit-burst=1000000"],
    );
    controller.ready().await;
    let pid = controller.process.child.id();
    let verify = format!("{}/v1/verify", controller.url);

    // 1. Memory under 40 concurrent maximum bodies.
    let body = Arc::new(big_body(&ns.name));
    println!("verify body: {:.2} MB", body.len() as f64 / 1e6);
    let idle = rss_kib(pid);
    let ((codes, took), peak) = peak_rss_while(pid, Duration::from_secs(2), || {
        let start = Instant::now();
        let clients: Vec<_> = (0..40)
            .map(|_| {
                let (url, body) = (verify.clone(), body.clone());
                std::thread::spawn(move || http(&url, "POST", &body).map(|(code, _)| code).unwrap_or(0))
            })
            .collect();
        let codes: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        (codes, start.elapsed())
    });
    let mut tally = std::collections::BTreeMap::new();
    codes.iter().for_each(|c| *tally.entry(*c).or_insert(0) += 1);
    println!(
        "40 concurrent verifies: RSS {} MiB idle, {} MiB peak, {} MiB 2 s after; answers {tally:?} in {took:.1?}",
        idle / 1024,
        peak / 1024,
        rss_kib(pid) / 1024
    );

    // 2. /healthz while deeply nested bodies arrive.
    let deep = Arc::new(format!("a: {}", "[".repeat(80_000)).into_bytes());
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..2)
        .map(|_| {
            let (url, deep, stop) = (verify.clone(), deep.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut sent = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let _ = http(&url, "POST", &deep);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let t = Instant::now();
        let (code, _) = http(&format!("{}/healthz", controller.url), "GET", b"").unwrap();
        assert_eq!(code, 200);
        latencies.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    let sent: u32 = attackers.into_iter().map(|a| a.join().unwrap()).sum();
    latencies.sort();
    let p99 = latencies[(latencies.len() - 1) * 99 / 100];
    println!(
        "/healthz under deep nesting ({sent} bodies of 80 KB in 10 s): {} probes, p50 {:.1?}, p99 {p99:.1?}, max {:.1?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );

    // 3. The alias bomb, through the CLI.
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.yaml");
    let mut text = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        text.push_str(&format!("{0}: &{0} [{1}]\n", pair[1], vec![format!("*{}", pair[0]); 9].join(",")));
    }
    std::fs::write(&bomb, &text).unwrap();
    for command in ["filestatus", "decrypt"] {
        let out = std::process::Command::new("/usr/bin/time")
            .args(["-f", "%e s, %M KiB peak"])
            .arg(built_binary("sealant"))
            .args(["sops", command])
            .arg(&bomb)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!(
            "alias bomb ({} bytes), sops {command}: exit {:?}, {}",
            text.len(),
            out.status.code(),
            stderr.trim().replace('\n', " | ")
        );
    }
    drop(controller);
}
