//! Templates as users write them for upstream v0.40, through both controllers (issue 35): each
//! case is sealed once (cluster-wide, so the same objects serve two namespaces), applied to
//! upstream's controller in `corpus-upstream`, then, with the Deployment's image made ours, to
//! `corpus-ours`. Whether each unseals must be the same, and the Secret's data byte for byte;
//! the differences that stay are README's ("Compared with upstream").

use std::collections::BTreeMap;

use base64::Engine as _;

use super::*;

/// (name, items as stringData, spec.template.data): a `null` value is upstream v0.40's
/// input-only item. Items hold `<&>` so that JSON's HTML escaping shows.
fn corpus() -> Vec<(&'static str, Value, Value)> {
    let items = json!({"user": "app", "password": "s3<&>cr3t"});
    let case = |name: &'static str, templates: Value| (name, items.clone(), templates);
    vec![
        case(
            "plain-sibling",
            json!({"host": "db.local", "dsn": "postgres://{{ .user }}:{{ .password }}@{{ .host }}/app"}),
        ),
        case("plain-sibling-as-written", json!({"a": "{{ .user }}", "b": "[{{ .a }}]"})),
        case("item-wins-over-plain", json!({"password": "plain", "copy": "{{ .password }}"})),
        case("null-omits-an-item", json!({"password": null, "dsn": "{{ .user }}:{{ .password }}"})),
        case("null-without-an-item", json!({"nothing": null, "t": "[{{ .nothing }}]"})),
        case("null-only", json!({"password": null, "user": null})),
        case("missing-key", json!({"t": "{{ .nope }}"})),
        case(
            "upper-lower-title",
            json!({"t": "{{ .user | upper }}-{{ \"A B\" | lower }}-{{ \"hello world\" | title }}"}),
        ),
        case("basic-auth-b64enc", json!({"auth": "{{ printf \"%s:%s\" .user .password | b64enc }}"})),
        case("b64-round-trip", json!({"t": "{{ .password | b64enc | b64dec }}"})),
        case(
            "dockerconfigjson-by-hand",
            json!({".dockerconfigjson": "{\"auths\":{\"r.example\":{\"auth\":\"{{ printf \"%s:%s\" .user .password | b64enc }}\"}}}"}),
        ),
        case(
            "dockerconfigjson-dict-tojson",
            json!({".dockerconfigjson": "{{ dict \"auths\" (dict \"r.example\" (dict \"username\" .user \"password\" .password)) | toJson }}"}),
        ),
        case(
            "topretty-json",
            json!({"config.json": "{{ dict \"user\" .user \"tags\" (list \"a\" 1) | toPrettyJson }}"}),
        ),
        case("toraw-json", json!({"t": "{{ dict \"p\" .password | toRawJson }}"})),
        case("tojson-string", json!({"t": "{{ toJson .password }}"})),
        case("default", json!({"t": "{{ .missing | default \"fallback\" }}/{{ .user | default \"x\" }}"})),
        case("quote-squote", json!({"t": "{{ .user | quote }} {{ .user | squote }}"})),
        case("list-join", json!({"t": "{{ list .user \"x\" | join \",\" }}"})),
        case("trim-replace", json!({"t": "{{ \"  x \" | trim }}{{ .user | trimPrefix \"a\" | replace \"p\" \"P\" }}"})),
        case("sha256sum", json!({"t": "{{ .password | sha256sum }}"})),
        case(
            "nindent-yaml",
            json!({"config.yaml": "db:{{ printf \"user: %s\\npassword: %s\" .user .password | nindent 2 }}"}),
        ),
        case("if-eq", json!({"t": "{{ if eq .user \"app\" }}yes{{ else }}no{{ end }}"})),
        case("range-list", json!({"t": "{{ range $i, $e := list \"a\" \"b\" }}{{ $i }}={{ $e }};{{ end }}"})),
        case(
            "dict-haskey-get",
            json!({"t": "{{ $d := dict \"k\" .user }}{{ if hasKey $d \"k\" }}{{ get $d \"k\" }}{{ end }}"}),
        ),
        case(
            "splitlist-first-last",
            json!({"t": "{{ $p := splitList \":\" \"h:5432\" }}{{ first $p }}/{{ last $p }}"}),
        ),
        case("coalesce-ternary", json!({"t": "{{ coalesce .missing .user }}-{{ ternary \"y\" \"n\" true }}"})),
        case("urlquery-html", json!({"t": "{{ .password | urlquery }} {{ .password | html }}"})),
        case("printf-verbs", json!({"t": "{{ printf \"%q %5s|%-5s|\" .user \"a\" \"b\" }}"})),
        case("cat-tostring", json!({"t": "{{ cat .user 1 }}{{ toString 2 }}"})),
        (
            "dotted-and-dashed-keys",
            json!({"db.password": "p1", "api-key": "k1"}),
            json!({"t": "{{ index . \"db.password\" }}/{{ index . \"api-key\" }}"}),
        ),
        case("parse-error", json!({"t": "{{ .user "})),
        case("unknown-function", json!({"t": "{{ .user | nosuchfunction }}"})),
        case("collision-that-fails", json!({"password": "{{ .user | nosuchfunction }}"})),
    ]
}

/// (Synced status, the Secret's data in base64) of each case in `namespace`.
fn outcomes(node: &Node, namespace: &str, count: usize) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    let statuses = wait_for(Duration::from_secs(180), &format!("every case in {namespace} to be reported"), || {
        let list = node.get_json(&["sealedsecrets", "-n", namespace]);
        let mut seen = BTreeMap::new();
        for ss in list["items"].as_array()? {
            let synced = ss["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Synced")?;
            seen.insert(ss["metadata"]["name"].as_str()?.to_owned(), synced["status"].as_str()?.to_owned());
        }
        (seen.len() == count).then_some(seen)
    });
    let secrets = node.get_json(&["secrets", "-n", namespace]);
    statuses
        .into_iter()
        .map(|(name, status)| {
            let data = secrets["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["metadata"]["name"] == name.as_str())
                .and_then(|s| s["data"].as_object().cloned())
                .map(|d| d.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned())).collect())
                .unwrap_or_default();
            (name, (status, data))
        })
        .collect()
}

fn apply_all(node: &Node, namespace: &str, sealed: &[Value]) {
    node.kubectl_ok(&["create", "namespace", namespace], None);
    for object in sealed {
        node.kubectl_ok(&["apply", "-n", namespace, "-f", "-"], Some(&object.to_string()));
    }
}

#[test]
fn a_template_corpus_unseals_alike_through_upstream_and_ours() {
    let node = node();
    let ours = node.controller_image("corpus");
    let upstream = upstream_image(node);
    uninstall(node);
    let _cleanup = Uninstall(node);
    let (rbac, controller) = install_upstream_chart(node, Some(&upstream));
    wait_rolled_out(node, 1, Duration::from_secs(180), "upstream's controller", || fetch_cert(node).is_ok());
    let cert = std::env::temp_dir().join(format!("corpus-cert-{}.pem", std::process::id()));
    std::fs::write(&cert, fetch_cert(node).unwrap()).unwrap();

    let sealant = built_binary("sealant");
    let cases = corpus();
    let sealed: Vec<Value> = cases
        .iter()
        .map(|(name, items, templates)| {
            let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": items});
            let args = ["seal", "-o", "json", "--scope", "cluster-wide", "--cert", cert.to_str().unwrap()];
            let mut object: Value =
                serde_json::from_str(&sealant_as_user(node, &sealant, &args, &secret.to_string())).unwrap();
            object["spec"]["template"]["data"] = templates.clone();
            object
        })
        .collect();
    apply_all(node, "corpus-upstream", &sealed);
    let theirs = outcomes(node, "corpus-upstream", cases.len());

    node.kubectl_ok(
        &["set", "image", "-n", NS, &format!("deployment/{DEPLOYMENT}"), &format!("controller={ours}")],
        None,
    );
    wait_rolled_out(node, 1, Duration::from_secs(180), "our controller", || fetch_cert(node).is_ok());
    apply_all(node, "corpus-ours", &sealed);
    let mine = outcomes(node, "corpus-ours", cases.len());

    let decode = |data: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        let engine = base64::engine::general_purpose::STANDARD;
        data.iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&engine.decode(v).unwrap()).into_owned()))
            .collect()
    };
    let mut differences = Vec::new();
    for (name, _, _) in &cases {
        let (a, b) = (&theirs[*name], &mine[*name]);
        eprintln!(
            "{name}: upstream Synced={} {:?}\n{:width$}ours     Synced={} {:?}",
            a.0,
            decode(&a.1),
            "",
            b.0,
            decode(&b.1),
            width = name.len() + 2
        );
        if a != b {
            differences.push(*name);
        }
    }
    assert!(differences.is_empty(), "cases that differ between upstream v0.40.0 and ours: {differences:?}");
    let failing: Vec<&str> = cases.iter().map(|(n, _, _)| *n).filter(|n| mine[*n].0 != "True").collect();
    assert_eq!(failing, ["parse-error", "unknown-function", "collision-that-fails"]);

    for namespace in ["corpus-upstream", "corpus-ours"] {
        node.kubectl_ok(&["delete", "namespace", namespace, "--wait=false"], None);
    }
    node.kubectl_ok(&["delete", "-f", "-", "--ignore-not-found"], Some(&controller));
    node.kubectl_ok(&["delete", "-f", "-", "--ignore-not-found"], Some(&rbac));
    let _ = std::fs::remove_file(cert);
}
