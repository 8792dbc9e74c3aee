//! Hostile input against a running controller (issue 10): no answer, status or log line
//! depends on a plaintext, and no request or stored object crashes, stalls or floods it.

use std::io::{Read, Write};
use std::net::TcpStream;

use sealant_tests::cluster::http;

use super::controller::{apply_sealed, controller_with_demo_key, demo_sealed, secret, synced};
use super::*;

/// POST with one `X-Forwarded-For` header: the status code.
fn post_from(url: &str, path: &str, forwarded_for: &str, body: &[u8]) -> u16 {
    let host = url.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: {forwarded_for}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// Ten `/healthz` probes on fresh connections, as kubelet sends them: each answered 200 in time.
fn probes_answer(addr: &str, while_: &str) {
    for probe in 0..10 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        assert!(response.starts_with(b"HTTP/1.1 200"), "probe {probe} {while_}: {response:?}");
    }
}

/// A value that no log line holds by chance.
const PASSWORD: &str = "Zq7#Xv9kWm";

fn with_template(mut doc: Value, template: &str) -> Value {
    doc["spec"]["template"]["data"] = json!({ "t": template });
    doc
}

/// A template that fails exactly when the first character of the password is `c`: the answer
/// of verify and rotate must be the same for every `c`, right or wrong.
#[tokio::test]
async fn verify_and_rotate_are_no_plaintext_oracle() {
    let client = admin_client().await;
    let (ns, controller) =
        controller_with_demo_key(&client, "oracle", &["--rate-limit=1000", "--rate-limit-burst=1000"]).await;
    let base = demo_sealed(&ns.name, "s", json!({"stringData": {"password": PASSWORD}}));
    for guess in ['Z', 'x'] {
        // The guess 'Z' (right) fails to render, 'x' (wrong) renders.
        let probe =
            format!(r#"{{{{ if eq (slice .password 0 1) "{guess}" }}}}{{{{ index .password 99 }}}}{{{{ end }}}}"#);
        let doc = with_template(base.clone(), &probe);
        let (code, body) = http(&format!("{}/v1/verify", controller.url), "POST", doc.to_string().as_bytes()).unwrap();
        assert_eq!((code, body.len()), (200, 0), "verify answered differently for guess {guess}");
        let (code, _) = http(&format!("{}/v1/rotate", controller.url), "POST", doc.to_string().as_bytes()).unwrap();
        assert_eq!(code, 200, "rotate answered differently for guess {guess}");
    }
    // A template that would allocate a petabyte is not even looked at by verify.
    let bomb = with_template(
        json!({"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": "b", "namespace": ns.name}, "spec": {"encryptedData": {}}}),
        r#"{{ "0123456789" | repeat 100000000000000 }}"#,
    );
    let (code, _) = http(&format!("{}/v1/verify", controller.url), "POST", bomb.to_string().as_bytes()).unwrap();
    assert_eq!(code, 200);
    let (code, _) = http(&format!("{}/healthz", controller.url), "GET", b"").unwrap();
    assert_eq!(code, 200, "the controller is still up");
}

/// Failing templates stored as SealedSecrets: the status, the events and the log name the key
/// and the function, never the plaintext, a piece of it or its length; bombs are TemplateErrors.
#[tokio::test]
async fn template_failures_reveal_nothing_and_bombs_do_not_crash() {
    let client = admin_client().await;
    // Each template's message is checked: no backoff between their evaluations here (the
    // backoff has a test of its own).
    let (ns, controller) = controller_with_demo_key(&client, "tmplerr", &["--template-backoff=0"]).await;
    let n = ns.name.as_str();
    let cases = [
        ("index", r#"{{ index "" (index .password 0) }}"#),
        ("slice", "{{ slice .password 3 100 }}"),
        ("b64dec", "{{ .password | b64dec }}"),
        ("repeat", r#"{{ "0123456789" | repeat 100000000000000 }}"#),
        ("indent", r#"{{ "x" | indent 100000000000000 }}"#),
        ("loop", "{{ range 100000000 }}{{ .password }}{{ end }}"),
    ];
    for (name, template) in cases {
        let doc = demo_sealed(n, name, json!({"stringData": {"password": PASSWORD}}));
        apply_sealed(&client, n, with_template(doc, template)).await;
    }
    let mut messages = String::new();
    for (name, _) in cases {
        let ss = synced(&client, n, name, "False").await;
        let condition = ss.status.unwrap().conditions.remove(0);
        assert_eq!(condition.reason.as_deref(), Some("TemplateError"), "{name}");
        messages.push_str(&condition.message.unwrap_or_default());
        messages.push('\n');
        assert!(secret(&client, n, name).await.is_none());
    }
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), n);
    for event in events.list(&Default::default()).await.unwrap() {
        messages.push_str(&event.note.unwrap_or_default());
        messages.push('\n');
    }
    let all = format!("{messages}{}", controller.log_text());
    for piece in PASSWORD.as_bytes().windows(3) {
        let piece = std::str::from_utf8(piece).unwrap();
        assert!(!all.contains(piece), "{piece:?} appears in a status, event or log line:\n{all}");
    }
    // Nor its length or a byte value (log lines hold timestamps, so only statuses and events).
    let numbers: Vec<String> =
        std::iter::once(PASSWORD.len()).chain(PASSWORD.bytes().map(usize::from)).map(|n| n.to_string()).collect();
    for number in &numbers {
        // Positions (`at line L, column C`) count in the template's source, which is public.
        let found = messages
            .lines()
            .map(|l| l.split(" (at line").next().unwrap_or_default())
            .any(|l| l.split(|c: char| !c.is_ascii_digit()).any(|d| d == number));
        assert!(!found, "{number} appears in a status or event:\n{messages}");
    }
    assert!(messages.contains("repeat: the result would exceed 1 MiB"), "the bound is named:\n{messages}");
    let (code, _) = http(&format!("{}/healthz", controller.url), "GET", b"").unwrap();
    assert_eq!(code, 200);
}

/// From a trusted proxy (here the test's loopback, as the API server would be), the limit follows
/// the hop the proxy appends, not what a client writes first; rotate is limited too. From any
/// other peer, X-Forwarded-For is not believed: varying it gets no fresh bucket (issue 26, 10).
#[tokio::test]
async fn rate_limit_is_keyed_on_the_proxy_hop() {
    let client = admin_client().await;
    let (ns, controller) = controller_with_demo_key(
        &client,
        "ratelimit",
        &["--rate-limit=1", "--rate-limit-burst=2", "--trusted-proxies=127.0.0.0/8"],
    )
    .await;
    let body = demo_sealed(&ns.name, "s", json!({})).to_string();
    for path in ["/v1/verify", "/v1/rotate"] {
        let codes: Vec<u16> = (0..4)
            .map(|i| post_from(&controller.url, path, &format!("203.0.113.{i}, 10.9.9.9"), body.as_bytes()))
            .collect();
        assert!(codes.contains(&429), "{path}: spoofed first hops got fresh buckets: {codes:?}");
        assert_eq!(post_from(&controller.url, path, "10.9.9.10", body.as_bytes()), 200, "another client");
    }
    drop(controller);

    let (ns, direct) =
        controller_with_demo_key(&client, "ratelimit-direct", &["--rate-limit=1", "--rate-limit-burst=2"]).await;
    let body = demo_sealed(&ns.name, "s", json!({})).to_string();
    let codes: Vec<u16> =
        (0..10).map(|i| post_from(&direct.url, "/v1/verify", &format!("10.9.9.{i}"), body.as_bytes())).collect();
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert!(limited >= 6, "a direct client chose its bucket with X-Forwarded-For: {codes:?}");
}

/// Deep nesting is refused before parsing, half-sent requests are cut at the read timeout, and
/// a SealedSecret that would make the controller fight kube-controller-manager is refused.
#[tokio::test]
async fn parsers_connections_and_write_loops_are_bounded() {
    let client = admin_client().await;
    let (ns, controller) = controller_with_demo_key(
        &client,
        "bounds",
        &["--read-timeout=2s", "--write-timeout=2s", "--rate-limit=100", "--rate-limit-burst=100"],
    )
    .await;
    let deep = format!("a: {}", "[".repeat(80_000));
    let (code, _) = http(&format!("{}/v1/verify", controller.url), "POST", deep.as_bytes()).unwrap();
    assert_eq!(code, 500);

    let host = controller.url.strip_prefix("http://").unwrap();
    let mut slow = TcpStream::connect(host).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    slow.write_all(b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{").unwrap();
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest);
    assert!(closed.is_ok(), "the server closed the half-sent request (not the client's guard): {closed:?}");

    let n = ns.name.as_str();
    let token = json!({"type": "kubernetes.io/service-account-token",
        "metadata": {"annotations": {"kubernetes.io/service-account.name": "default"}}});
    apply_sealed(&client, n, demo_sealed(n, "token", token)).await;
    let ss = synced(&client, n, "token", "False").await;
    assert_eq!(ss.status.unwrap().conditions[0].reason.as_deref(), Some("InvalidSpec"));
    assert!(secret(&client, n, "token").await.is_none(), "no Secret to fight over");
}

/// Another writer that keeps changing a Secret (a controller, a person, a webhook): the
/// controller restores it a bounded number of times, then says so and stops fighting.
#[tokio::test]
async fn a_fight_over_a_secret_ends() {
    let client = admin_client().await;
    let (ns, _controller) = controller_with_demo_key(&client, "fight", &[]).await;
    let n = ns.name.as_str();
    apply_sealed(&client, n, demo_sealed(n, "fought", json!({}))).await;
    synced(&client, n, "fought", "True").await;
    let secrets = Api::<Secret>::namespaced(client.clone(), n);
    let sealed = Api::<SealedSecret>::namespaced(client.clone(), n);
    let mut restored = 0;
    for round in 0..30 {
        let tamper = json!({"data": {"password": base64_of(&format!("tampered-{round}"))}});
        secrets.patch("fought", &PatchParams::default(), &Patch::Merge(&tamper)).await.unwrap();
        let back = eventually(Duration::from_secs(10), || async {
            let data = secrets.get("fought").await.ok()?.data?;
            (data["password"].0 == b"hunter2").then_some(())
        })
        .await;
        if back.is_none() {
            break;
        }
        restored += 1;
    }
    assert!((5..=10).contains(&restored), "restored {restored} times");
    let contested = eventually(Duration::from_secs(30), || async {
        let status = sealed.get("fought").await.ok()?.status?;
        let reason = status.conditions.first()?.reason.clone()?;
        (reason == "SecretContested").then_some(())
    })
    .await;
    assert!(contested.is_some(), "the status says why writing stopped");
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Issue 26, finding 1, on the real API server: a tenant who may only create SealedSecrets, in
/// the controller's own namespace, cannot plant a sealing key, neither by the key label nor by
/// the legacy key's name: the SealedSecrets are refused (InvalidSpec), no Secret is made, and the
/// controller still serves and uses its own certificate.
#[tokio::test]
async fn a_sealed_secret_cannot_plant_a_sealing_key() {
    let client = admin_client().await;
    let (ns, controller) = controller_with_demo_key(&client, "plant", &[]).await;
    let n = ns.name.clone();
    let (_, own_cert) = http(&format!("{}/v1/cert.pem", controller.url), "GET", b"").unwrap();
    let tenant_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "tenant", "namespace": n},
        "rules": [{"apiGroups": ["bitnami.com"], "resources": ["sealedsecrets"], "verbs": ["get", "list", "create", "update", "patch"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "tenant", "namespace": n},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
        "subjects": [{"kind": "User", "name": "user", "apiGroup": "rbac.authorization.k8s.io"}]});
    for object in [tenant_role, binding] {
        let out = kubectl(&["apply", "-f", "-"], Some(&object.to_string()));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let tenant = sealant_tests::cluster::client_from(&sealant_tests::cluster::control_plane().user_kubeconfig).await;
    let tenant_api = Api::<SealedSecret>::namespaced(tenant, &n);

    // The attacker's own key pair (a real one from the fixtures), as a kubernetes.io/tls Secret.
    let fixtures = repo().join("tests/fixtures/sealed-secrets/real-kubeseal-v0.14.1");
    let key_pair = json!({
        "type": "kubernetes.io/tls",
        "stringData": {
            "tls.crt": std::fs::read_to_string(fixtures.join("tls.crt")).unwrap(),
            "tls.key": std::fs::read_to_string(fixtures.join("tls.key")).unwrap(),
        },
    });
    let mut labelled = key_pair.clone();
    labelled["metadata"] = json!({"labels": {"sealedsecrets.bitnami.com/sealed-secrets-key": "active"}});
    for (name, extra) in [("planted", labelled), ("sealed-secrets-key", key_pair)] {
        let doc = demo_sealed(&n, name, extra);
        tenant_api.create(&PostParams::default(), &serde_json::from_value(doc).unwrap()).await.unwrap();
        let refused = synced(&client, &n, name, "False").await;
        assert_eq!(refused.status.unwrap().conditions[0].reason.as_deref(), Some("InvalidSpec"), "{name}");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for name in ["planted", "sealed-secrets-key"] {
        assert!(secret(&client, &n, name).await.is_none(), "no Secret {name} was made");
    }
    let (_, served) = http(&format!("{}/v1/cert.pem", controller.url), "GET", b"").unwrap();
    assert_eq!(served, own_cert, "the controller still serves its own certificate");
    assert_eq!(controller.metric("sealant_keys"), Some(1.0));

    // Issue 34: the next key's name, told by the served certificate, and the backup's are the
    // controller's; a SealedSecret cannot take them.
    let cert = sealant_core::Certificate::from_pem(&String::from_utf8_lossy(&own_cert)).unwrap();
    let next = format!("sealed-secrets-key-{:x}-0", cert.not_before().unix_timestamp());
    for name in [next.as_str(), "sealed-secrets-key-backup"] {
        let doc = demo_sealed(&n, name, json!({}));
        tenant_api.create(&PostParams::default(), &serde_json::from_value(doc).unwrap()).await.unwrap();
        let refused = synced(&client, &n, name, "False").await;
        assert_eq!(refused.status.unwrap().conditions[0].reason.as_deref(), Some("InvalidSpec"), "{name}");
        assert!(secret(&client, &n, name).await.is_none(), "no Secret {name} was made");
    }
    // A Secret that took the next key's name some other way: a renewal is a failure, counted.
    let squatter: Secret =
        serde_json::from_value(json!({"metadata": {"name": next}, "stringData": {"x": "y"}})).unwrap();
    Api::<Secret>::namespaced(client.clone(), &n).create(&PostParams::default(), &squatter).await.unwrap();
    let pid = controller.process.child.id().to_string();
    assert!(Command::new("kill").args(["-USR1", &pid]).status().unwrap().success());
    let counted = eventually(Duration::from_secs(30), || async {
        (controller.metric("sealant_key_renewal_failures_total")? >= 1.0).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the blocked renewal was not counted: {}", controller.log_text());
    assert!(controller.log_text().contains("is taken by a Secret that is not a key"), "{}", controller.log_text());
    assert_eq!(controller.metric("sealant_keys"), Some(1.0));
}

/// Issue 26, findings 2, 3 and 5, against a running controller: held connections do not keep
/// the probe out, unknown HTTP methods add no label values, and a body of a million tiny items
/// is refused before it costs more than its size.
#[tokio::test]
async fn held_connections_odd_methods_and_tiny_items_cost_nothing() {
    let client = admin_client().await;
    let (_ns, controller) = controller_with_demo_key(&client, "held", &[]).await;
    let addr = controller.url.strip_prefix("http://").unwrap().to_owned();

    let held: Vec<TcpStream> = (0..600).filter_map(|_| TcpStream::connect(&addr).ok()).collect();
    assert!(held.len() >= 512, "the attacker holds at least the old cap");
    probes_answer(&addr, "with 600 held connections");
    drop(held);

    // Issue 34: requests that wait (a body sent slowly, a turn at the work) held their
    // connections: from enough addresses, each under the rate limit, they filled the cap and
    // kept out the probes. 200 loopback addresses, 3 waiting requests each.
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let mut waiting = Vec::new();
    for i in 0..600u32 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from(([127, 1, (i / 3 / 250) as u8, (i / 3 % 250) as u8 + 1], 0))).unwrap();
        let Ok(stream) = socket.connect(target).await else { continue };
        let Ok(mut stream) = stream.into_std() else { continue };
        stream.set_nonblocking(false).unwrap();
        if stream.write_all(b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{").is_ok() {
            waiting.push(stream);
        }
    }
    assert!(waiting.len() >= 512, "the attacker holds at least the cap: {}", waiting.len());
    tokio::time::sleep(Duration::from_millis(500)).await;
    probes_answer(&addr, "beside 600 waiting requests");
    drop(waiting);

    let method = "X".repeat(10_000);
    for _ in 0..20 {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ =
            write!(stream, "{method} /v1/verify HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(!response.starts_with("HTTP/1.1 200"), "{response}");
    }
    let (_, metrics) = http(&controller.metrics_url, "GET", b"").unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(!metrics.contains("XXXXXXXX"), "a method became a label value");
    assert!(metrics.len() < 100_000, "{} bytes of metrics", metrics.len());

    let pid = controller.process.child.id();
    let idle = sealant_tests::cluster::rss_kib(pid);
    let tiny_items = b"- 0\n".repeat(1 << 20);
    // (After the odd methods spent this client's rate limit.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (response, peak) = sealant_tests::cluster::peak_rss_while(pid, Duration::from_millis(300), || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "POST /v1/verify HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            tiny_items.len()
        );
        let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&tiny_items));
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    });
    assert!(response.starts_with("HTTP/1.1 500"), "the body was read and refused: {response}");
    assert!(peak < idle + 64 * 1024, "a 4 MiB body of tiny items took RSS from {idle} to {peak} KiB");
}
