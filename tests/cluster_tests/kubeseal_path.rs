//! The kubeseal path: `sealant cert` and `sealant seal` without `--cert` reach the controller
//! through the API server's service proxy. The controller runs in a network namespace of the
//! test's own, behind a Pod, Endpoints and EndpointSlice objects that name its address (the API server refuses
//! loopback endpoints and only proxies to addresses of Pods).

use sealant_tests::cluster::{NetNs, ProcessGuard, built_binary, http};

use super::*;

/// Our controller in a network namespace of the test's own, reached through the API server's
/// service proxy as `sealed-secrets-controller` in `n`, with the demo key: what a
/// Deployment, its Pod, Service and EndpointSlice would make. Stopped when dropped.
pub(crate) struct Proxied {
    /// The certificate it serves.
    pub served: Vec<u8>,
    // Held so that the controller and its namespace live as long as this does.
    _netns: NetNs,
    _controller: ProcessGuard,
}

pub(crate) async fn behind_the_proxy(client: &Client, n: &str) -> Proxied {
    let netns = NetNs::create();
    let (served, controller) = behind_the_proxy_in(client, n, "keys-example/demo.secret.yaml", &netns, 8080).await;
    Proxied { served, _netns: netns, _controller: controller }
}

/// A controller in `netns` on `port` (and `port + 1` for metrics) with the key Secret in `key`
/// (a path in the repository), behind the Service `sealed-secrets-controller` of `n` on the
/// plane that `netns` is behind (`client` is for that plane): the certificate it serves and its
/// process. Several can share one network namespace.
pub(crate) async fn behind_the_proxy_in(
    client: &Client,
    n: &str,
    key: &str,
    netns: &NetNs,
    port: u16,
) -> (Vec<u8>, ProcessGuard) {
    let n = n.to_owned();
    let keys = std::fs::read_to_string(repo().join(key)).unwrap();
    let mut key: Value = sealant_core::yaml::parse_documents(&keys).unwrap().remove(0);
    key["metadata"]["namespace"] = json!(n);
    Api::<Secret>::namespaced(client.clone(), &n)
        .create(&PostParams::default(), &serde_json::from_value(key).unwrap())
        .await
        .unwrap();
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &netns.name])
        .arg(built_binary("sealant-controller"))
        .arg("--kubeconfig")
        .arg(netns.kubeconfig())
        .args(["--namespace", &n, "--all-namespaces=false", "--key-renew-period=0"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .arg(format!("--listen-addr={}:{port}", netns.inner_ip))
        .arg(format!("--listen-metrics-addr={}:{}", netns.inner_ip, port + 1))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let controller = ProcessGuard::spawn(command);
    let cert_url = format!("http://{}:{port}/v1/cert.pem", netns.inner_ip);
    let served = eventually(Duration::from_secs(60), || async {
        http(&cert_url, "GET", b"").ok().filter(|(code, _)| *code == 200).map(|(_, body)| body)
    })
    .await
    .expect("the controller in the namespace serves its certificate");

    // What a Deployment would have made: a Pod with that address, a Service and its Endpoints.
    let objects = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "controller", "labels": {"name": "sealed-secrets-controller"}},
               "spec": {"automountServiceAccountToken": false, "containers": [{"name": "c", "image": "sealant-controller"}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sealed-secrets-controller"},
               "spec": {"ports": [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": port}]}}),
    ];
    let apply = |object: Value| {
        let mut command = sealant_tests::cluster::kubectl_command();
        command.args(["apply", "-n", &n, "-f", "-"]).env("KUBECONFIG", &netns.plane_kubeconfig);
        let out = sealant_tests::cluster::output_with_stdin(command, &object.to_string());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    objects.into_iter().for_each(apply);
    let pod_status = json!({"status": {"phase": "Running", "podIP": netns.inner_ip, "podIPs": [{"ip": netns.inner_ip}],
        "conditions": [{"type": "Ready", "status": "True"}]}});
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &n);
    pods.patch_status("controller", &PatchParams::default(), &Patch::Merge(&pod_status)).await.unwrap();
    let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "sealed-secrets-controller"},
        "subsets": [{"addresses": [{"ip": netns.inner_ip, "targetRef": {"kind": "Pod", "name": "controller", "namespace": n}}],
                     "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}]});
    // The service proxy reads Endpoints up to 1.36 and EndpointSlices from 1.37 (found on 1.37:
    // "no endpoints available" with Endpoints alone); a cluster's controllers write both.
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "sealed-secrets-controller-1", "labels": {"kubernetes.io/service-name": "sealed-secrets-controller"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [netns.inner_ip], "conditions": {"ready": true},
                       "targetRef": {"kind": "Pod", "name": "controller", "namespace": n}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}]});
    [endpoints, slice].into_iter().for_each(apply);

    (served, controller)
}

#[tokio::test]
async fn cert_and_seal_reach_the_controller_through_the_service_proxy() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "proxy").await;
    let n = ns.name.clone();
    let proxied = behind_the_proxy(&client, &n).await;
    let served = proxied.served.clone();

    let sealant = |args: &[&str], stdin: &str| {
        let mut command = Command::new(built_binary("sealant"));
        command
            .args(args)
            .args(["--controller-namespace", &n])
            .env("KUBECONFIG", &control_plane().kubeconfig)
            .env_remove("SEALED_SECRETS_CERT");
        sealant_tests::cluster::output_with_stdin(command, stdin)
    };
    let fetched = sealant(&["cert"], "");
    assert!(fetched.status.success(), "sealant cert: {}", String::from_utf8_lossy(&fetched.stderr));
    assert_eq!(fetched.stdout, served, "the certificate came through the service proxy");

    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "via-proxy", "namespace": n},
        "stringData": {"token": "through-the-api-server"}});
    let sealed = sealant(&["seal", "-o", "json"], &secret.to_string());
    assert!(sealed.status.success(), "sealant seal: {}", String::from_utf8_lossy(&sealed.stderr));
    let doc: Value = serde_json::from_slice(&sealed.stdout).unwrap();
    assert_eq!(
        doc["metadata"]["annotations"]["sealant.dev/sealing-key"],
        "SHA256:UiPCCwEGnl16N4tqnF5IaK+odrC3rrKdO75+eVx7o8U"
    );

    // kubeseal --validate and --re-encrypt go through the same proxy.
    let dir = tempfile::tempdir().unwrap();
    let kubeseal = dir.path().join("kubeseal");
    std::os::unix::fs::symlink(built_binary("sealant"), &kubeseal).unwrap();
    let file = dir.path().join("sealed.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let kubeseal_run = |args: &[&str]| {
        Command::new(&kubeseal)
            .args(args)
            .args(["--controller-namespace", &n])
            .env("KUBECONFIG", &control_plane().kubeconfig)
            .output()
            .unwrap()
    };
    let valid = kubeseal_run(&["--validate", "-f", file.to_str().unwrap()]);
    assert!(valid.status.success(), "kubeseal --validate: {}", String::from_utf8_lossy(&valid.stderr));
    let mut renamed = doc.clone();
    renamed["metadata"]["name"] = json!("renamed");
    let renamed_file = dir.path().join("renamed.json");
    std::fs::write(&renamed_file, renamed.to_string()).unwrap();
    let invalid = kubeseal_run(&["--validate", "-f", renamed_file.to_str().unwrap()]);
    assert_eq!(invalid.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("unable to decrypt sealed secret: renamed"));
    let before = std::fs::read_to_string(&file).unwrap();
    let rotated = kubeseal_run(&["--re-encrypt", "-f", file.to_str().unwrap()]);
    assert!(rotated.status.success(), "kubeseal --re-encrypt: {}", String::from_utf8_lossy(&rotated.stderr));
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_ne!(serde_json::from_str::<Value>(&before).unwrap()["spec"], after["spec"], "rewritten in place");

    // client-go's flags pick the identity, with no kubeconfig at all: the ordinary user may not
    // use this namespace's service proxy; the admin may, and not when impersonating the user.
    let plane = control_plane();
    let server = format!("https://127.0.0.1:{}", plane.env["APISERVER_PORT"]);
    let ca = plane.dir.join("ca.crt");
    let as_flags = |token: &str, extra: &[&str]| {
        let mut args = vec!["--fetch-cert", "--controller-namespace", &n, "--server", &server, "--token", token];
        args.push("--certificate-authority");
        args.push(ca.to_str().unwrap());
        args.extend_from_slice(extra);
        Command::new(&kubeseal)
            .args(&args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("SEALED_SECRETS_CERT")
            .output()
            .unwrap()
    };
    let admin = as_flags(&plane.env["ADMIN_TOKEN"], &["--request-timeout=30s"]);
    assert!(admin.status.success(), "admin token: {}", String::from_utf8_lossy(&admin.stderr));
    assert_eq!(admin.stdout, served);
    let user = as_flags(&plane.env["USER_TOKEN"], &[]);
    assert!(!user.status.success() && String::from_utf8_lossy(&user.stderr).contains("forbidden"));
    let impersonated = as_flags(&plane.env["ADMIN_TOKEN"], &["--as", "user", "--as-group", "developers"]);
    assert!(!impersonated.status.success(), "impersonation took effect");
    assert!(
        String::from_utf8_lossy(&impersonated.stderr).contains("\"user\""),
        "{}",
        String::from_utf8_lossy(&impersonated.stderr)
    );

    // With upstream's Helm chart RBAC (its service-proxier Role, bound to every authenticated
    // user), the ordinary user fetches the certificate through the Service, as with kubeseal.
    let rbac = std::fs::read_to_string(repo().join("tests/fixtures/upstream-chart/rbac.yaml")).unwrap();
    let out = kubectl(&["apply", "-f", "-"], Some(&rbac.replace("NAMESPACE", &n)));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fetched = eventually(Duration::from_secs(30), || async {
        let user = as_flags(&plane.env["USER_TOKEN"], &[]);
        user.status.success().then_some(user.stdout)
    })
    .await;
    assert_eq!(fetched.as_deref(), Some(served.as_slice()), "the user fetched the certificate through the proxy");

    // And the controller opens it.
    let ss: SealedSecret = serde_json::from_value(doc).unwrap();
    Api::<SealedSecret>::namespaced(client.clone(), &n).create(&PostParams::default(), &ss).await.unwrap();
    let opened = eventually(Duration::from_secs(30), || async {
        Api::<Secret>::namespaced(client.clone(), &n).get_opt("via-proxy").await.ok().flatten()
    })
    .await
    .expect("the controller unsealed what was sealed through the proxy");
    assert_eq!(opened.data.unwrap()["token"].0, b"through-the-api-server");
}
