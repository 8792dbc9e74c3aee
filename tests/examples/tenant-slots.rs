//! How long another tenant's SealedSecret waits while one tenant's heavy SealedSecrets are
//! decrypted (issue 26, finding 8), against a controller watching every namespace on the local
//! control plane: for each count given (default 8, 32 and 64), that many SealedSecrets of 1,500
//! items in one namespace, then the controller started, then one small SealedSecret in another
//! namespace; printed: the small one's
//! time until its Secret exists, and how many heavy ones were done by then. kube-runtime runs 32
//! reconciles at once, so 32 and more is where a tenant could hold every one.
//!
//! ```sh
//! cargo build --release -p sealant-controller
//! cargo run --release -p sealant-tests --example tenant-slots -- 8 32 64
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark script: fail loudly

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, PostParams};
use sealant_crds::SealedSecret;
use sealant_tests::cluster::{RunningController, TestNamespace, admin_client, apply_crd, create_demo_key, repo};

const ITEMS: usize = 1_500;

#[tokio::main]
async fn main() {
    let counts: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a count")).collect();
    let counts = if counts.is_empty() { vec![8, 32, 64] } else { counts };
    let client = admin_client().await;
    apply_crd().await;
    let cert = sealant_core::cert::Certificate::from_pem(
        &std::fs::read_to_string(repo().join("keys-example/demo.tls.crt")).unwrap(),
    )
    .unwrap();
    let seal = |namespace: &str, name: &str, items: usize| {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace},
            "stringData": (0..items).map(|i| (format!("k{i}"), "v".to_owned())).collect::<BTreeMap<_, _>>(),
        }))
        .unwrap();
        sealant_crds::seal_secret(&mut rand::rng(), &cert, &secret, &sealant_crds::SealOptions::default()).unwrap()
    };
    let flags = ["--key-renew-period=0", "--log-level=WARN", "--all-namespaces=true"];
    for count in counts {
        let home = TestNamespace::create(&client, "slots").await;
        create_demo_key(&client, &home.name).await;
        let tenant = TestNamespace::create(&client, "slots-tenant").await;
        let victim = TestNamespace::create(&client, "slots-victim").await;
        let heavy = Api::<SealedSecret>::namespaced(client.clone(), &tenant.name);
        for i in 0..count {
            heavy.create(&PostParams::default(), &seal(&tenant.name, &format!("heavy-{i}"), ITEMS)).await.unwrap();
        }
        // The backlog is there when the controller starts (a restart, a new key), and the
        // other namespace's SealedSecret comes once every heavy one is queued.
        let controller = RunningController::start(&home.name, &[], &flags);
        controller.ready().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let created = Instant::now();
        let light = seal(&victim.name, "light", 1);
        Api::<SealedSecret>::namespaced(client.clone(), &victim.name)
            .create(&PostParams::default(), &light)
            .await
            .unwrap();
        let secrets = Api::<Secret>::namespaced(client.clone(), &victim.name);
        while secrets.get_opt("light").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let waited = created.elapsed().as_secs_f64();
        let done = Api::<Secret>::namespaced(client.clone(), &tenant.name).list(&ListParams::default()).await.unwrap();
        println!(
            "{count} x {ITEMS} items in one namespace: another namespace's Secret after {waited:.1} s ({} heavy done by then)",
            done.items.len()
        );
        drop(controller);
    }
}
