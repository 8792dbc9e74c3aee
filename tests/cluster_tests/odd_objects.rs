//! Objects that upstream's CRD lets the API server store but that typed code can trip on (a
//! `null` where a string is expected, a number under `encryptedData`'s preserved unknown fields,
//! unknown fields): what the API server stores of each under upstream's CRD and under ours
//! (issue 35), and that each fails alone in our controller, with a status, while the others
//! keep unsealing, also when a restart's initial list holds them.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use sealant_tests::cluster::{RunningController, upstream_chart};

use super::controller::{apply_sealed, demo_sealed, install_keys, synced};
use super::*;

/// Upstream's CRD under a group of its own, so that it can be served beside ours.
const UPSTREAM_GROUP: &str = "upstream.sealant.test";

/// Spec shapes, each beside an item that opens (`good`), as a user's tools might send them.
fn odd_specs(good: &Value) -> Vec<(&'static str, Value)> {
    let item = good["spec"]["encryptedData"]["password"].clone();
    let with = |patch: Value| {
        let mut spec = json!({"encryptedData": {"password": item}});
        merge(&mut spec, patch);
        spec
    };
    vec![
        ("template.data value null", with(json!({"template": {"data": {"password": null, "t": "{{ .password }}"}}}))),
        ("template.data null", with(json!({"template": {"data": null}}))),
        ("template.metadata null", with(json!({"template": {"metadata": null}}))),
        ("template.type null", with(json!({"template": {"type": null}}))),
        ("template.immutable null", with(json!({"template": {"immutable": null}}))),
        ("template null", with(json!({"template": null}))),
        ("template.metadata.labels value null", with(json!({"template": {"metadata": {"labels": {"a": null}}}}))),
        ("data null", with(json!({"data": null}))),
        ("encryptedData value null", with(json!({"encryptedData": {"other": null}}))),
        ("encryptedData value number", with(json!({"encryptedData": {"other": 5}}))),
        ("encryptedData value object", with(json!({"encryptedData": {"other": {"x": 1}}}))),
        ("encryptedData value list", with(json!({"encryptedData": {"other": ["x"]}}))),
        ("unknown field in spec", with(json!({"extra": {"x": 1}}))),
        ("unknown field in template", with(json!({"template": {"extra": 1}}))),
    ]
}

/// JSON merge: `patch`'s values over `into`'s, objects merged, `null` kept (not a deletion).
fn merge(into: &mut Value, patch: Value) {
    match (into, patch) {
        (Value::Object(into), Value::Object(patch)) => {
            for (k, v) in patch {
                match into.get_mut(&k) {
                    Some(existing) if v.is_object() && existing.is_object() => merge(existing, v),
                    _ => {
                        into.insert(k, v);
                    }
                }
            }
        }
        (into, patch) => *into = patch,
    }
}

async fn install_upstream_crd_beside_ours(client: &Client) -> ApiResource {
    install_crd(client).await;
    let path = upstream_chart().join("crds/bitnami.com_sealedsecrets.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut doc = sealant_core::yaml::parse_documents(&yaml).unwrap().remove(0);
    let name = format!("sealedsecrets.{UPSTREAM_GROUP}");
    doc["metadata"] = json!({"name": name});
    doc["spec"]["group"] = json!(UPSTREAM_GROUP);
    let crd: CustomResourceDefinition = serde_json::from_value(doc).unwrap();
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    api.patch(&name, &PatchParams::apply("sealant-tests").force(), &Patch::Apply(&crd)).await.unwrap();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(UPSTREAM_GROUP, "v1alpha1", "SealedSecret"));
    let served = eventually(Duration::from_secs(30), || async {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
        api.list(&Default::default()).await.ok().map(|_| ())
    })
    .await;
    assert!(served.is_some(), "the API server does not serve upstream's CRD under {UPSTREAM_GROUP}");
    resource
}

/// Create `spec` as a SealedSecret of `resource`: the spec the API server stored, or its code.
async fn stored(
    client: &Client,
    namespace: &str,
    resource: &ApiResource,
    name: &str,
    spec: &Value,
) -> Result<Value, u16> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let object =
        json!({"apiVersion": resource.api_version, "kind": "SealedSecret", "metadata": {"name": name}, "spec": spec});
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    match api.create(&PostParams::default(), &object).await {
        Ok(created) => Ok(created.data["spec"].clone()),
        Err(kube::Error::Api(status)) => Err(status.code),
        Err(e) => panic!("{name}: {e}"),
    }
}

#[tokio::test]
async fn the_api_server_stores_odd_specs_alike_under_upstreams_crd_and_ours() {
    let client = admin_client().await;
    let upstream = install_upstream_crd_beside_ours(&client).await;
    let ours = ApiResource::erase::<SealedSecret>(&());
    let ns = TestNamespace::create(&client, "odd-stored").await;
    let good = demo_sealed(&ns.name, "good", json!({}));
    let mut facts = Vec::new();
    for (i, (case, spec)) in odd_specs(&good).into_iter().enumerate() {
        let name = format!("odd-{i}");
        let theirs = stored(&client, &ns.name, &upstream, &name, &spec).await;
        let mine = stored(&client, &ns.name, &ours, &name, &spec).await;
        assert_eq!(theirs, mine, "{case}: stored differently under upstream's CRD and ours");
        let fact = match &mine {
            Ok(spec) => format!("stored {spec}"),
            Err(code) => format!("refused ({code})"),
        };
        eprintln!("Kubernetes {}: {case}: {fact}", sealant_tests::cluster::k8s_version());
        facts.push((case, mine));
    }
    let of = |case: &str| facts.iter().find(|(c, _)| *c == case).map(|(_, f)| f.clone()).unwrap();
    // Upstream v0.40's `null` for an input-only item is pruned under its own CRD (whose
    // `template.data` values are not `nullable`), as under ours: the API server stores the object
    // without that key, so neither controller ever sees the `null` of an object it watches.
    let kept = of("template.data value null").expect("a null template value is accepted");
    assert_eq!(kept["template"]["data"], json!({"t": "{{ .password }}"}), "{kept}");
    // `null` where the schema says `nullable` is kept; our types read it as absent, as Go does.
    assert_eq!(of("template.metadata null").unwrap()["template"]["metadata"], Value::Null);
    assert_eq!(of("template.data null").unwrap()["template"]["data"], Value::Null);
    // Under `encryptedData`, only strings: its preserved unknown fields do not let others in.
    for case in ["encryptedData value number", "encryptedData value object", "encryptedData value list"] {
        assert_eq!(of(case), Err(422), "{case}");
    }
}

/// Every odd spec the API server accepts, beside ordinary SealedSecrets: each odd one gets its own
/// status, the ordinary ones unseal, before and after a restart whose initial list holds them all.
#[tokio::test]
async fn odd_objects_fail_alone_and_never_stop_the_watch() {
    let client = admin_client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "odd-watch").await;
    let n = ns.name.clone();
    install_keys(&client, &n, &std::fs::read_to_string(repo().join("keys-example/demo.secret.yaml")).unwrap()).await;
    let resource = ApiResource::erase::<SealedSecret>(&());
    // The odd ones first, then the ordinary ones, before the controller starts: the initial list
    // (streamed or paged) holds them all.
    let mut odd = Vec::new();
    for (i, (case, _)) in odd_specs(&json!({})).into_iter().enumerate() {
        let name = format!("odd-{i}");
        let good = demo_sealed(&n, &name, json!({}));
        let spec = odd_specs(&good).remove(i).1;
        if let Ok(kept) = stored(&client, &n, &resource, &name, &spec).await {
            // What the API server kept decides: a value under `encryptedData` that is not a
            // string makes the object invalid; any other shape unseals.
            let invalid = kept["encryptedData"].as_object().unwrap().values().any(|v| !v.is_string());
            odd.push((case, name, invalid, kept));
        }
    }
    for i in 0..3 {
        apply_sealed(&client, &n, demo_sealed(&n, &format!("before-{i}"), json!({}))).await;
    }
    let controller = RunningController::start(&n, &[], &[]);
    controller.ready().await;
    for i in 0..3 {
        synced(&client, &n, &format!("before-{i}"), "True").await;
    }
    let reported = |name: String| {
        let client = client.clone();
        let n = n.clone();
        async move {
            let api = Api::<SealedSecret>::namespaced(client, &n);
            eventually(Duration::from_secs(60), || async {
                let ss = api.get(&name).await.ok()?;
                let condition = ss.status?.conditions.into_iter().find(|c| c.type_ == "Synced")?;
                Some((condition.status, condition.reason.unwrap_or_default(), condition.message.unwrap_or_default()))
            })
            .await
            .unwrap_or_else(|| panic!("{name} got no status"))
        }
    };
    for (case, name, invalid, _) in &odd {
        let (status, reason, message) = reported(name.clone()).await;
        eprintln!("{case}: Synced={status} {reason} {message}");
        if *invalid {
            assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"), "{case}: {message}");
            assert!(message.contains("spec.encryptedData[\"other\"] is not a string"), "{case}: {message}");
        } else {
            assert_eq!(status, "True", "{case}: {reason} {message}");
        }
    }
    // Upstream v0.40's input-only item: left out where the API server kept its `null` (it
    // prunes it: see the test above), and read by its sibling either way.
    if let Some((_, name, _, kept)) = odd.iter().find(|(case, ..)| *case == "template.data value null") {
        let secret: Secret = Api::namespaced(client.clone(), &n).get(name).await.unwrap();
        let data = secret.data.unwrap_or_default();
        let null_kept = kept["template"]["data"].as_object().is_some_and(|d| d.contains_key("password"));
        assert_eq!(data.contains_key("password"), !null_kept, "{:?}", data.keys());
        assert_eq!(data["t"].0, b"hunter2");
    }

    // A restart with them all in the initial list, then a new one: it unseals within the wait.
    drop(controller);
    let controller = RunningController::start(&n, &[], &[]);
    controller.ready().await;
    apply_sealed(&client, &n, demo_sealed(&n, "after", json!({}))).await;
    synced(&client, &n, "after", "True").await;
    let log = controller.log_text();
    assert!(!log.contains("cannot list or watch"), "the watch failed:\n{log}");
    assert_eq!(controller.metric("sealant_controller_errors_total{kind=\"watch\"}").unwrap_or(0.0), 0.0, "{log}");
}
