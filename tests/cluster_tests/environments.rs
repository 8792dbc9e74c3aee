//! `.sealant.yaml` against two real clusters: two control planes, each with a controller of its
//! own key reached through its API server's service proxy, under a kubeconfig context each.
//! `certs fetch` writes both certificates; one secret sealed for both is unsealed by each
//! controller from its own output and refused by the other's; after one cluster's key is rotated
//! `certs check` fails, and passes again after `certs fetch`; the new-cluster runbook
//! (`reencrypt --private-key --to`) moves a folder from one to the other, and the other's
//! controller opens it.

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use sealant_crds::SealedSecret;
use sealant_tests::cluster::{NetNs, PrivatePlane, client_from, output_with_stdin};

use super::controller::synced;
use super::kubeseal_path::behind_the_proxy_in;
use super::*;

/// `sealant ARGS` in `dir` with `kubeconfig`: (exit code, stdout, stderr).
fn sealant(dir: &Path, kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(sealant_tests::cluster::built_binary("sealant"));
    command.args(args).current_dir(dir).env("KUBECONFIG", kubeconfig).env_remove("SEALED_SECRETS_CERT");
    let out = output_with_stdin(command, "");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A kubeconfig with a context per plane, `one` (current) and `two`, each its own API server,
/// certificate authority and admin token: what a user with two clusters has.
fn two_contexts(dir: &Path, planes: [(&Path, &HashMap<String, String>); 2]) -> std::path::PathBuf {
    let mut text = String::from("apiVersion: v1\nkind: Config\ncurrent-context: one\nclusters:\n");
    let names = ["one", "two"];
    for (name, (plane_dir, env)) in names.iter().zip(planes) {
        text += &format!(
            "- name: {name}\n  cluster:\n    server: {}\n    certificate-authority: {}\n",
            env["APISERVER_URL"],
            plane_dir.join("ca.crt").display()
        );
    }
    text += "users:\n";
    for (name, (_, env)) in names.iter().zip(planes) {
        text += &format!("- name: {name}\n  user:\n    token: {}\n", env["ADMIN_TOKEN"]);
    }
    text += "contexts:\n";
    for name in names {
        text += &format!("- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n");
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
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
    let netns = NetNs::create();
    let _one = behind_the_proxy_in(&client, &one.name, "keys-example/demo.secret.yaml", &netns, 8080).await;

    // The second cluster: a control plane of the test's own, stopped with it.
    let plane_two = PrivatePlane::start_reachable("environments");
    let client_two = client_from(&plane_two.kubeconfig).await;
    install_crd(&client_two).await;
    let two = "env-two";
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": two}})).unwrap();
    Api::<Namespace>::all(client_two.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    let netns_two = NetNs::behind(&plane_two.kubeconfig, &plane_two.env);
    let two_key = "tests/fixtures/sealed-secrets/python-generated/keys/key-a.secret.yaml";
    let _two = behind_the_proxy_in(&client_two, two, two_key, &netns_two, 8080).await;

    let repo_dir = tempfile::tempdir().unwrap();
    let dir = repo_dir.path();
    let plane_one = control_plane();
    let kubeconfig = two_contexts(dir, [(&plane_one.dir, &plane_one.env), (&plane_two.dir, &plane_two.env)]);
    std::fs::create_dir_all(dir.join("apps")).unwrap();
    std::fs::write(
        dir.join(".sealant.yaml"),
        format!(
            "clusters:\n  one:\n    cert: certs/one.pem\n    context: one\n    controller_namespace: {}\n  two:\n    cert: certs/two.pem\n    context: two\n    controller_namespace: {}\n\
             rules:\n  - path_regex: ^apps/\n    clusters: [one, two]\n    scope: cluster-wide\n    output: sealed/{{cluster}}/{{stem}}.yaml\n",
            one.name, two
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
    apply(&client_two, sealed_for(dir, "sealed/two/db.yaml", two, "db")).await;
    apply(&client, sealed_for(dir, "sealed/two/api.yaml", &one.name, "not-mine")).await;
    synced(&client, &one.name, "db", "True").await;
    synced(&client_two, two, "db", "True").await;
    apply(&client_two, sealed_for(dir, "sealed/one/api.yaml", two, "not-mine")).await;
    synced(&client, &one.name, "not-mine", "False").await;
    synced(&client_two, two, "not-mine", "False").await;

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
    apply(&client_two, sealed_for(dir, "sealed/one/db.yaml", two, "moved")).await;
    synced(&client_two, two, "moved", "True").await;
    let secret = Api::<Secret>::namespaced(client_two.clone(), two).get("moved").await.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"db-password");
}
