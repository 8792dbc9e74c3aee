//! `.sealant.yaml` against real controllers: two "clusters", each a controller with its own key
//! reached through the API server's service proxy under its own kubeconfig context. `certs
//! fetch` writes both certificates; one secret sealed for both is unsealed by each controller
//! from its own output and refused by the other; after one cluster's key is rotated `certs check`
//! fails, and passes again after `certs fetch`; the new-cluster runbook (`reencrypt
//! --private-key --to`) moves a folder from one to the other, and the other's controller opens it.
//!
//! The two controllers share one control plane (two namespaces, two contexts naming them): what
//! the CLI sees of a cluster is its context, its controller and its key, which differ.

use sealant_crds::SealedSecret;
use sealant_tests::cluster::{NetNs, output_with_stdin};

use super::controller::synced;
use super::kubeseal_path::behind_the_proxy_in;
use super::*;

/// `sealant ARGS` in `dir` with `kubeconfig`: (exit code, stdout, stderr).
fn sealant(dir: &std::path::Path, kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(sealant_tests::cluster::built_binary("sealant"));
    command.args(args).current_dir(dir).env("KUBECONFIG", kubeconfig).env_remove("SEALED_SECRETS_CERT");
    let out = output_with_stdin(command, "");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of the admin kubeconfig with contexts `one` and `two` (the same API server and user).
fn two_contexts(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::copy(&control_plane().kubeconfig, &path).unwrap();
    let path_str = path.to_str().unwrap();
    let get = |field: &str| {
        let out = kubectl(
            &["config", "view", "--kubeconfig", path_str, "-o", &format!("jsonpath={{.contexts[0].context.{field}}}")],
            None,
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let (cluster, user) = (get("cluster"), get("user"));
    for context in ["one", "two"] {
        let out = kubectl(
            &[
                "config",
                "set-context",
                context,
                "--kubeconfig",
                path_str,
                &format!("--cluster={cluster}"),
                &format!("--user={user}"),
            ],
            None,
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    path
}

/// A sealed file of `dir` as an object for `namespace` (cluster-wide scope: any namespace).
fn sealed_for(dir: &std::path::Path, file: &str, namespace: &str, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let mut doc = sealant_core::yaml::parse_documents(&text).unwrap().remove(0);
    doc["metadata"]["namespace"] = json!(namespace);
    doc["metadata"]["name"] = json!(name);
    doc
}

async fn apply(client: &Client, doc: Value) {
    let ss: SealedSecret = serde_json::from_value(doc).unwrap();
    let ns = ss.metadata.namespace.clone().unwrap();
    Api::<SealedSecret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &ss).await.unwrap();
}

#[tokio::test]
async fn certs_fetch_and_check_and_sealing_for_two_clusters_each_unsealing_its_own() {
    let client = admin_client().await;
    install_crd(&client).await;
    let one = TestNamespace::create(&client, "env-one").await;
    let two = TestNamespace::create(&client, "env-two").await;
    let netns = NetNs::create();
    let _one = behind_the_proxy_in(&client, &one.name, "keys-example/demo.secret.yaml", &netns, 8080).await;
    let two_key = "tests/fixtures/sealed-secrets/python-generated/keys/key-a.secret.yaml";
    let _two = behind_the_proxy_in(&client, &two.name, two_key, &netns, 9080).await;

    let repo_dir = tempfile::tempdir().unwrap();
    let dir = repo_dir.path();
    let kubeconfig = two_contexts(dir);
    std::fs::create_dir_all(dir.join("apps")).unwrap();
    std::fs::write(
        dir.join(".sealant.yaml"),
        format!(
            "clusters:\n  one:\n    cert: certs/one.pem\n    context: one\n    controller_namespace: {}\n  two:\n    cert: certs/two.pem\n    context: two\n    controller_namespace: {}\n\
             rules:\n  - path_regex: ^apps/\n    clusters: [one, two]\n    scope: cluster-wide\n    output: sealed/{{cluster}}/{{stem}}.yaml\n",
            one.name, two.name
        ),
    )
    .unwrap();
    for name in ["db", "api"] {
        std::fs::write(
            dir.join(format!("apps/{name}.secret.yaml")),
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  password: {name}-password\n"
            ),
        )
        .unwrap();
    }

    // Nothing committed yet: check fails; fetch writes both; check passes.
    let (code, out, _) = sealant(dir, &kubeconfig, &["certs", "check"]);
    assert_eq!(code, 1, "{out}");
    let (code, out, err) = sealant(dir, &kubeconfig, &["certs", "fetch"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("one: SHA256:UiPC") && out.contains("two: SHA256:SOgz"), "{out}");
    let (code, out, err) = sealant(dir, &kubeconfig, &["certs", "check"]);
    assert_eq!(code, 0, "{out}{err}");

    // One secret sealed for both; each controller opens its own output and not the other's.
    for name in ["db", "api"] {
        let (code, _, err) = sealant(dir, &kubeconfig, &["seal", "-f", &format!("apps/{name}.secret.yaml")]);
        assert_eq!(code, 0, "{err}");
    }
    apply(&client, sealed_for(dir, "sealed/one/db.yaml", &one.name, "db")).await;
    apply(&client, sealed_for(dir, "sealed/two/db.yaml", &two.name, "db")).await;
    apply(&client, sealed_for(dir, "sealed/two/api.yaml", &one.name, "not-mine")).await;
    synced(&client, &one.name, "db", "True").await;
    synced(&client, &two.name, "db", "True").await;
    synced(&client, &one.name, "not-mine", "False").await;

    // Cluster one's key rotated: check fails for one only, fetch shows the change, check passes.
    let (code, _, err) =
        sealant(dir, &kubeconfig, &["keys", "rotate", "--bits", "2048", "--controller-namespace", &one.name]);
    assert_eq!(code, 0, "{err}");
    let rotated = eventually(Duration::from_secs(60), || async {
        let (code, out, _) = sealant(dir, &kubeconfig, &["certs", "check"]);
        (code == 1).then_some(out)
    })
    .await
    .expect("certs check fails once cluster one seals with its new key");
    assert!(rotated.contains("run sealant certs fetch one") && rotated.contains("two: ok"), "{rotated}");
    let (code, out, err) = sealant(dir, &kubeconfig, &["certs", "fetch"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("one: SHA256:UiPC")
            && out.contains(" -> SHA256:")
            && out.contains("two: SHA256:SOgz")
            && out.contains("(unchanged)"),
        "{out}"
    );
    let (code, out, err) = sealant(dir, &kubeconfig, &["certs", "check"]);
    assert_eq!(code, 0, "{out}{err}");

    // The runbook: cluster one's folder moved to cluster two with one's key backup, offline;
    // two's controller opens it.
    let (code, _, err) = sealant(
        dir,
        &kubeconfig,
        &[
            "reencrypt",
            "--private-key",
            repo().join("keys-example/demo.secret.yaml").to_str().unwrap(),
            "--to",
            "two",
            "sealed/one",
        ],
    );
    assert_eq!(code, 0, "{err}");
    apply(&client, sealed_for(dir, "sealed/one/db.yaml", &two.name, "moved")).await;
    synced(&client, &two.name, "moved", "True").await;
    let secret = Api::<Secret>::namespaced(client.clone(), &two.name).get("moved").await.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"db-password");
}
