//! What users see of each SealedSecret, compared between upstream's controller v0.40.0 and
//! ours for the same inputs (issue 20): the Synced condition and the Events, for one that
//! unseals and for each failure (no key opens it, sealed for another name, a template that does
//! not parse, a Secret of the same name not made by a SealedSecret). Upstream runs first, in
//! namespace `cmp-upstream`; then the Deployment's image becomes ours, and the same inputs go
//! to `cmp-ours`. Differences that stay are README's ("where we differ").

use std::collections::BTreeMap;

use super::*;

/// What a user sees of one SealedSecret: the Synced condition's status, reason and message,
/// and its Events as (type, reason, message), oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: String,
    reason: String,
    message: String,
    events: Vec<(String, String, String)>,
}

const CASES: [&str; 5] = ["good", "no-key", "other-name", "bad-template", "not-managed"];

/// The same five inputs in `namespace`, sealed with the certificate the cluster serves.
fn apply_cases(node: &Node, namespace: &str) {
    node.kubectl_ok(&["create", "namespace", namespace], None);
    let sealant = built_binary("sealant");
    let seal = |name: &str, args: &[&str]| -> Value {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "stringData": {"password": format!("value-of-{name}")}});
        let mut all = vec!["seal", "-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&sealant_as_user(node, &sealant, &all, &secret.to_string())).unwrap()
    };
    let demo = repo().join("keys-example/demo.tls.crt");
    let mut cases = vec![seal("good", &[]), seal("no-key", &["--cert", demo.to_str().unwrap()])];
    // Sealed for `elsewhere`, applied as `other-name`: the strict scope's label does not match.
    let mut other = seal("elsewhere", &[]);
    other["metadata"]["name"] = json!("other-name");
    cases.push(other);
    let mut template = seal("bad-template", &[]);
    template["spec"]["template"]["data"] = json!({"config": "password={{ .password"});
    cases.push(template);
    cases.push(seal("not-managed", &[]));
    node.kubectl_ok(&["create", "secret", "generic", "not-managed", "-n", namespace, "--from-literal=k=v"], None);
    for case in cases {
        node.kubectl_ok(&["apply", "-f", "-"], Some(&case.to_string()));
    }
}

/// What each case shows, once every one has a Synced condition and its Events have come.
fn observe(node: &Node, namespace: &str) -> BTreeMap<String, Seen> {
    let conditions =
        wait_for(Duration::from_secs(90), &format!("every SealedSecret in {namespace} to be reported"), || {
            let list = node.get_json(&["sealedsecrets", "-n", namespace]);
            let mut seen = BTreeMap::new();
            for ss in list["items"].as_array()? {
                let name = ss["metadata"]["name"].as_str()?.to_owned();
                let synced = ss["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Synced")?;
                let text = |f: &str| synced[f].as_str().unwrap_or_default().to_owned();
                seen.insert(name, (text("status"), text("reason"), text("message")));
            }
            (seen.len() == CASES.len()).then_some(seen)
        });
    // Events are written after the status, and retried failures add more of the same.
    std::thread::sleep(Duration::from_secs(5));
    let events = node.get_json(&["events", "-n", namespace, "--sort-by=.metadata.creationTimestamp"]);
    conditions
        .into_iter()
        .map(|(name, (status, reason, message))| {
            let mut of_it: Vec<(String, String, String)> = events["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| {
                    e["involvedObject"]["kind"] == "SealedSecret" && e["involvedObject"]["name"] == name.as_str()
                })
                .map(|e| {
                    let text = |f: &str| e[f].as_str().unwrap_or_default().to_owned();
                    (text("type"), text("reason"), text("message"))
                })
                .collect();
            of_it.dedup();
            (name, Seen { status, reason, message, events: of_it })
        })
        .collect()
}

#[test]
fn upstream_and_ours_report_the_same_inputs_alike() {
    let node = node();
    let ours = node.controller_image("status-compare");
    let upstream = upstream_image(node);
    uninstall(node);
    let _cleanup = Uninstall(node);
    let (rbac, controller) = install_upstream_chart(node, Some(&upstream));
    wait_rolled_out(node, 1, Duration::from_secs(180), "upstream's controller", || fetch_cert(node).is_ok());
    apply_cases(node, "cmp-upstream");
    let theirs = observe(node, "cmp-upstream");

    node.kubectl_ok(
        &["set", "image", "-n", NS, &format!("deployment/{DEPLOYMENT}"), &format!("controller={ours}")],
        None,
    );
    wait_rolled_out(node, 1, Duration::from_secs(180), "our controller", || fetch_cert(node).is_ok());
    apply_cases(node, "cmp-ours");
    let mine = observe(node, "cmp-ours");
    for case in CASES {
        eprintln!("{case}:\n  upstream: {:?}\n  ours:     {:?}", theirs[case], mine[case]);
    }

    let kinds = |seen: &Seen| seen.events.iter().map(|(t, r, _)| (t.clone(), r.clone())).collect::<Vec<_>>();
    for case in CASES {
        let (a, b) = (&theirs[case], &mine[case]);
        assert_eq!(a.status, b.status, "{case}: Synced");
        assert_eq!(kinds(a), kinds(b), "{case}: the Events' types and reasons");
        assert_eq!(a.reason, "", "{case}: upstream writes no reason");
    }
    // The same words, status and Events, where ours are not from another template engine.
    for case in ["good", "no-key", "other-name"] {
        assert_eq!((&theirs[case].message, &theirs[case].events), (&mine[case].message, &mine[case].events), "{case}");
    }
    assert_eq!(theirs["not-managed"].events, mine["not-managed"].events);
    // Upstream's status says which step failed; its Event does not, nor do ours.
    assert_eq!(theirs["not-managed"].message, format!("failed update: {}", mine["not-managed"].message));
    // A template that does not parse: both name the item and the fault, in their engines' words.
    for seen in [&theirs["bad-template"], &mine["bad-template"]] {
        assert!(seen.message.contains("config") && seen.message.contains("unclosed action"), "{seen:?}");
    }
    let reasons: Vec<&str> = CASES.iter().map(|case| mine[*case].reason.as_str()).collect();
    assert_eq!(reasons, ["Unsealed", "DecryptFailed", "DecryptFailed", "TemplateError", "SecretNotManaged"]);

    for namespace in ["cmp-upstream", "cmp-ours"] {
        node.kubectl_ok(&["delete", "namespace", namespace, "--wait=false"], None);
    }
    node.kubectl_ok(&["delete", "-f", "-", "--ignore-not-found"], Some(&controller));
    node.kubectl_ok(&["delete", "-f", "-", "--ignore-not-found"], Some(&rbac));
}
