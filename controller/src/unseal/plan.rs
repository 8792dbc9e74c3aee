//! What the Secret of a SealedSecret should be, decided without any I/O: from the SealedSecret,
//! the Secret that exists (if any) and the keyring.

use sealant_core::error::quoted;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sealant_crds::{
    MANAGED_ANNOTATION, PATCH_ANNOTATION, SealedSecret, SecretTemplateSpec, UnsealError, UnsealOptions, unseal,
};
use sha2::{Digest, Sha256};

use crate::keys::keyring::{KEY_LABEL, KeySecrets, Keyring};

/// On the Secret: digest of the SealedSecret it was made from.
pub const SOURCE_DIGEST_ANNOTATION: &str = "sealant.dev/source-digest";
/// On the Secret: keyed MAC of its data, so a restart can trust it without decrypting again.
pub const DATA_MAC_ANNOTATION: &str = "sealant.dev/data-mac";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error(transparent)]
    Unseal(#[from] UnsealError),
    #[error("Resource {} already exists and is not managed by SealedSecret", quoted(.0))]
    NotManaged(String),
    #[error("the target Secret is immutable: it cannot be changed, only deleted and recreated")]
    Immutable,
    #[error("no keys are loaded yet")]
    NoKeys,
    #[error("Secrets of type {} are Kubernetes' own credentials; a SealedSecret cannot make one", quoted(.0))]
    ForeignType(String),
    #[error(
        "the Secret would be read as a sealing key or take the name of one (the key label, or a \
         name under the key prefix, in the controller's namespace): keys and their backup are \
         made by the controller or an operator, never unsealed"
    )]
    KeySecret,
    #[error(
        "the Secret was rewritten {} times in {} minutes: something else keeps changing it; \
         writing stops until the SealedSecret changes",
        WriteBudget::MAX_WRITES,
        WriteBudget::WINDOW.as_secs() / 60
    )]
    Contested,
}

/// How often one SealedSecret's Secret may be written before the controller concludes that
/// another writer (a controller, a person, a webhook) keeps changing it, and stops rather than
/// fight: per object and generation, at most [`WriteBudget::MAX_WRITES`] in a window of
/// [`WriteBudget::WINDOW`] that opens at the first write. One entry per SealedSecret written in
/// the last window, of 48 bytes: objects are told apart by a keyed hash of `namespace/name`
/// (two sharing one would only share a budget), and entries whose window closed are dropped as
/// the map grows.
#[derive(Debug, Default)]
pub struct WriteBudget {
    recent: HashMap<u64, Writes>,
    hasher: std::hash::RandomState,
    /// Entries after the last sweep of closed windows.
    swept: usize,
}

#[derive(Debug)]
struct Writes {
    generation: Option<i64>,
    since: Instant,
    count: u32,
}

impl WriteBudget {
    pub const MAX_WRITES: u32 = 10;
    pub const WINDOW: Duration = Duration::from_secs(600);

    /// Whether `key` (at `generation`) may be written `now`. Only writes that succeeded count
    /// ([`WriteBudget::record`]): a write the API server refuses (a webhook down, a 5xx) fights
    /// nobody, and is retried without limit.
    pub fn allow(&self, key: &str, generation: Option<i64>, now: Instant) -> bool {
        self.recent.get(&self.hash(key)).is_none_or(|w| !w.current(generation, now) || w.count < Self::MAX_WRITES)
    }

    /// Count a write of `key` that the API server accepted.
    pub fn record(&mut self, key: &str, generation: Option<i64>, now: Instant) {
        if self.recent.len() >= (2 * self.swept).max(1024) {
            self.recent.retain(|_, w| now.saturating_duration_since(w.since) <= Self::WINDOW);
            self.recent.shrink_to_fit();
            self.swept = self.recent.len();
        }
        let hash = self.hash(key);
        let writes = self.recent.entry(hash).or_insert(Writes { generation, since: now, count: 0 });
        if !writes.current(generation, now) {
            *writes = Writes { generation, since: now, count: 0 };
        }
        writes.count += 1;
    }

    pub fn forget(&mut self, key: &str) {
        self.recent.remove(&self.hash(key));
    }

    fn hash(&self, key: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, key)
    }
}

impl Writes {
    /// Whether these writes still count: same generation, window still open.
    fn current(&self, generation: Option<i64>, now: Instant) -> bool {
        self.generation == generation && now.saturating_duration_since(self.since) <= WriteBudget::WINDOW
    }
}

/// Secret types Kubernetes itself gives meaning to, which a SealedSecret must never make: a
/// service account token's data is filled in by kube-controller-manager (a write war), and
/// both it and a bootstrap token (in kube-system) are cluster credentials that whoever may
/// create a SealedSecret could mint.
const FOREIGN_TYPES: &[&str] = &["kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token"];

fn foreign_type(type_: Option<&str>) -> Option<&'static str> {
    type_.and_then(|t| FOREIGN_TYPES.iter().copied().find(|f| *f == t))
}

/// How a failure is reported, in one place for every kind: the reason of the status condition
/// (Sealant's, PascalCase), the Event's reason and the `unseal_errors_total` reason label.
/// The last two are upstream's own values, which its alerts, dashboards and scripts match:
/// Events say only `ErrUnsealFailed` or `ErrUpdateFailed`, the metric `unseal`, `unmanaged`,
/// `update` or `fetch` (Sealant adds `template_backoff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reasons {
    pub category: &'static str,
    pub event: &'static str,
    pub metric: &'static str,
}

pub const UNSEAL_FAILED: &str = "ErrUnsealFailed";
pub const UPDATE_FAILED: &str = "ErrUpdateFailed";

impl Reasons {
    pub const fn new(category: &'static str, event: &'static str, metric: &'static str) -> Reasons {
        Reasons { category, event, metric }
    }
}

impl PlanError {
    pub fn reasons(&self) -> Reasons {
        match self {
            PlanError::Unseal(e) => Reasons::new(e.category(), UNSEAL_FAILED, "unseal"),
            PlanError::NotManaged(_) => Reasons::new("SecretNotManaged", UPDATE_FAILED, "unmanaged"),
            PlanError::Immutable => Reasons::new("SecretImmutable", UPDATE_FAILED, "update"),
            PlanError::NoKeys => Reasons::new("NoKeys", UNSEAL_FAILED, "unseal"),
            PlanError::ForeignType(_) | PlanError::KeySecret => Reasons::new("InvalidSpec", UNSEAL_FAILED, "unseal"),
            PlanError::Contested => Reasons::new("SecretContested", UPDATE_FAILED, "update"),
        }
    }

    /// The status condition's reason.
    pub fn category(&self) -> &'static str {
        self.reasons().category
    }
}

/// The type the API server gives a Secret that names none.
const DEFAULT_TYPE: &str = "Opaque";

/// What to do with the Secret.
#[derive(Debug)]
pub enum Plan {
    /// The Secret is already what the SealedSecret says: nothing was decrypted.
    UpToDate,
    /// Create or replace the Secret with this one; `decrypted` items were opened to make it.
    Write { secret: Box<Secret>, create: bool, decrypted: usize },
    /// The Secret already holds exactly what the SealedSecret says, but without our
    /// bookkeeping annotations: written by upstream's controller (or by hand). It is left as it
    /// is, byte for byte; the caller remembers it was checked, to not decrypt it again.
    Matches { decrypted: usize, digest: SourceDigest },
}

/// SHA-256 of everything in a SealedSecret that shapes its Secret ([`source_digest`]); on the
/// Secret it is written `sha256:<hex>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceDigest([u8; 32]);

impl std::fmt::Display for SourceDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What of a SealedSecret's template the Secret's labels, annotations and type must match, and
/// the template's properties the decisions read: all the controller's cache keeps of its spec.
/// The labels and annotations themselves are not kept (a tenant may write a megabyte of them
/// per object), only their digest: its size is fixed, whatever the template holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// SHA-256 of the type, labels and annotations, as [`shape_digest`] writes them.
    digest: [u8; 32],
    /// The template's type, when it is one another controller fills in.
    pub foreign_type: Option<&'static str>,
    /// The template labels its Secret with the key label (whatever the value).
    pub key_label: bool,
}

/// The shape of a template without labels, annotations or type: most SealedSecrets'.
static PLAIN: std::sync::LazyLock<Shape> = std::sync::LazyLock::new(|| Shape::of(&SecretTemplateSpec::default()));

impl Shape {
    pub fn plain() -> &'static Shape {
        &PLAIN
    }

    pub fn of(template: &SecretTemplateSpec) -> Shape {
        let (labels, annotations) = (template.metadata.labels.as_ref(), template.metadata.annotations.as_ref());
        Shape {
            digest: shape_digest(template.type_.as_deref(), labels, annotations.into_iter().flatten()),
            foreign_type: foreign_type(template.type_.as_deref()),
            key_label: labels.is_some_and(|l| l.contains_key(KEY_LABEL)),
        }
    }
}

/// SHA-256 of a Secret's type (the default when it names none), labels and annotations, each
/// string length-prefixed so that no two different sets write the same bytes.
fn shape_digest<'a>(
    type_: Option<&str>,
    labels: Option<&BTreeMap<String, String>>,
    annotations: impl Iterator<Item = (&'a String, &'a String)>,
) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut put = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    };
    put(type_.unwrap_or(DEFAULT_TYPE).as_bytes());
    for (k, v) in labels.into_iter().flatten() {
        put(k.as_bytes());
        put(v.as_bytes());
    }
    put(b"annotations");
    for (k, v) in annotations {
        put(k.as_bytes());
        put(v.as_bytes());
    }
    hash.finalize().into()
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret.metadata.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

fn is_true(secret: &Secret, key: &str) -> bool {
    annotation(secret, key) == Some("true")
}

/// Digest of everything in a SealedSecret that shapes its Secret.
pub fn source_digest(ss: &SealedSecret) -> SourceDigest {
    let mut source = serde_json::json!({
        "namespace": ss.metadata.namespace,
        "name": ss.metadata.name,
        "uid": ss.metadata.uid,
        "annotations": ss.metadata.annotations,
        "spec": ss.spec,
    });
    // A spec read with a value of the wrong type is not the spec without it (which a Secret
    // may already match); added only then, so that every other digest stays what it was.
    if let Some(reason) = &ss.spec.invalid {
        source["invalid"] = reason.as_str().into();
    }
    let bytes = serde_json::to_vec(&source).unwrap_or_default();
    SourceDigest(Sha256::digest(bytes).into())
}

/// The bytes the data MAC covers: the source digest, the type and every data item.
fn mac_message(digest: &str, secret: &Secret) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    put(digest.as_bytes());
    put(secret.type_.as_deref().unwrap_or(DEFAULT_TYPE).as_bytes());
    for (k, v) in secret.data.iter().flatten() {
        put(k.as_bytes());
        put(&v.0);
    }
    out
}

fn controlled_by(secret: &Secret, owner: &ObjectMeta) -> bool {
    let uid = owner.uid.as_deref();
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "SealedSecret" && uid.is_some_and(|u| o.uid == u))
}

fn written_by_us(secret: &Secret, keyring: &Keyring) -> bool {
    match (annotation(secret, SOURCE_DIGEST_ANNOTATION), annotation(secret, DATA_MAC_ANNOTATION)) {
        (Some(digest), Some(mac)) => keyring.verify_mac(mac, &mac_message(digest, secret)),
        _ => false,
    }
}

/// Whether the existing Secret's labels, annotations (except ours) and type are the
/// template's: then only the data could differ, which the MAC covers.
fn shape_matches(existing: &Secret, shape: &Shape) -> bool {
    let ours = |k: &&String| k.as_str() != SOURCE_DIGEST_ANNOTATION && k.as_str() != DATA_MAC_ANNOTATION;
    let annotations = existing.metadata.annotations.iter().flatten().filter(|(k, _)| ours(k));
    shape_digest(existing.type_.as_deref(), existing.metadata.labels.as_ref(), annotations) == shape.digest
}

/// Whether the existing Secret already is what a SealedSecret says, decided without decrypting,
/// from what the controller's cache keeps of it: its metadata, template shape and source digest.
pub fn up_to_date(
    meta: &ObjectMeta,
    shape: &Shape,
    digest: &SourceDigest,
    existing: Option<&Secret>,
    keyring: &Keyring,
    keys: &KeySecrets,
) -> Result<bool, PlanError> {
    if let Some(kind) = shape.foreign_type {
        return Err(PlanError::ForeignType(kind.to_owned()));
    }
    let (namespace, name) = (meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default());
    // The existing Secret's labels count too: patching one that is already a key (the
    // patch annotation merges) would replace a key.
    let existing_labels = existing.and_then(|e| e.metadata.labels.as_ref());
    if keys.would_watch(namespace, name, existing_labels) || (shape.key_label && namespace == keys.namespace) {
        return Err(PlanError::KeySecret);
    }
    let Some(existing) = existing else { return Ok(false) };
    // Ours: controlled by this SealedSecret, or (without ownerReferences, when the template
    // asks to skip them) carrying a data MAC only our keys can have made.
    let owned = controlled_by(existing, meta) || written_by_us(existing, keyring);
    let patch = is_true(existing, PATCH_ANNOTATION);
    if !owned && !patch && !is_true(existing, MANAGED_ANNOTATION) {
        return Err(PlanError::NotManaged(meta.name.clone().unwrap_or_default()));
    }
    let digest = digest.to_string();
    let trusted = annotation(existing, SOURCE_DIGEST_ANNOTATION) == Some(digest.as_str())
        && annotation(existing, DATA_MAC_ANNOTATION)
            .is_some_and(|mac| keyring.verify_mac(mac, &mac_message(&digest, existing)));
    Ok(trusted && (patch || (owned && shape_matches(existing, shape))))
}

/// Decide what the Secret for `ss` must be.
pub fn plan(
    ss: &SealedSecret,
    existing: Option<&Secret>,
    keyring: &Keyring,
    options: UnsealOptions,
    keys: &KeySecrets,
) -> Result<Plan, PlanError> {
    let digest = source_digest(ss);
    if up_to_date(&ss.metadata, &Shape::of(&ss.spec.template), &digest, existing, keyring, keys)? {
        return Ok(Plan::UpToDate);
    }

    if keyring.is_empty() {
        return Err(PlanError::NoKeys);
    }
    let decrypted = ss.spec.encrypted_data.len() + usize::from(ss.spec.data.is_some());
    let desired = unseal(ss, keyring.keys(), options)?;
    // The deprecated `data` field's Secret says its type only once decrypted.
    if let Some(kind) = foreign_type(desired.type_.as_deref()) {
        return Err(PlanError::ForeignType(kind.to_owned()));
    }

    let mut secret = match existing {
        None => desired,
        Some(existing) if is_true(existing, PATCH_ANNOTATION) => {
            let mut merged = existing.clone();
            merge(&mut merged.data, desired.data);
            merge(&mut merged.metadata.labels, desired.metadata.labels);
            merge(&mut merged.metadata.annotations, desired.metadata.annotations);
            merged.type_ = desired.type_;
            if is_true(existing, MANAGED_ANNOTATION) {
                merged.metadata.owner_references = desired.metadata.owner_references;
            }
            merged
        }
        Some(existing) => {
            let mut replaced = existing.clone();
            if existing.immutable == Some(true) && existing.data != desired.data {
                return Err(PlanError::Immutable);
            }
            replaced.data = desired.data;
            replaced.metadata.labels = desired.metadata.labels;
            replaced.metadata.annotations = desired.metadata.annotations;
            replaced.metadata.owner_references = desired.metadata.owner_references;
            replaced.type_ = desired.type_;
            if existing.immutable != Some(true) {
                replaced.immutable = desired.immutable;
            }
            replaced
        }
    };
    // The labels of the deprecated `data` field's Secret, or of a patched one, count too.
    let (namespace, name) =
        (ss.metadata.namespace.as_deref().unwrap_or_default(), ss.metadata.name.as_deref().unwrap_or_default());
    if keys.would_watch(namespace, name, secret.metadata.labels.as_ref()) {
        return Err(PlanError::KeySecret);
    }
    // Write what the API server would store, so that an unchanged Secret compares equal.
    secret.type_.get_or_insert_with(|| DEFAULT_TYPE.to_owned());
    let digest_text = digest.to_string();
    let mac = keyring.mac(&mac_message(&digest_text, &secret)).unwrap_or_default();
    let annotations = secret.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(SOURCE_DIGEST_ANNOTATION.to_owned(), digest_text);
    annotations.insert(DATA_MAC_ANNOTATION.to_owned(), mac);

    if existing.is_some_and(|e| *e == secret) {
        return Ok(Plan::UpToDate);
    }
    // Only for a Secret without our annotations: ours with a stale digest is refreshed.
    if existing.is_some_and(|e| {
        annotation(e, SOURCE_DIGEST_ANNOTATION).is_none()
            && annotation(e, DATA_MAC_ANNOTATION).is_none()
            && comparable(e.clone()) == comparable(secret.clone())
    }) {
        return Ok(Plan::Matches { decrypted, digest });
    }
    Ok(Plan::Write { secret: Box::new(secret), create: existing.is_none(), decrypted })
}

/// The Secret as compared with one another writer made: without the digest and MAC
/// annotations (and no empty annotation map, as the API server stores none), and without
/// `blockOwnerDeletion`, which upstream's controller sets and ours does not.
fn comparable(mut secret: Secret) -> Secret {
    if let Some(annotations) = secret.metadata.annotations.as_mut() {
        annotations.remove(SOURCE_DIGEST_ANNOTATION);
        annotations.remove(DATA_MAC_ANNOTATION);
        if annotations.is_empty() {
            secret.metadata.annotations = None;
        }
    }
    for owner in secret.metadata.owner_references.iter_mut().flatten() {
        owner.block_owner_deletion = None;
    }
    secret
}

fn merge<V>(into: &mut Option<BTreeMap<String, V>>, from: Option<BTreeMap<String, V>>) {
    if let Some(from) = from {
        into.get_or_insert_with(BTreeMap::new).extend(from);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use sealant_core::Certificate;
    use sealant_crds::{SealOptions, seal_secret};

    use super::*;
    use crate::flags::KeyOrderPriority;

    fn repo(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
    }

    fn keyring() -> Keyring {
        let text = std::fs::read_to_string(repo("keys-example/demo.secret.yaml")).unwrap();
        let doc = sealant_core::yaml::parse_documents(&text).unwrap().remove(0);
        let secret: Secret = serde_json::from_value(doc).unwrap();
        Keyring::from_secrets([&secret], KeyOrderPriority::CertNotBefore, "sealed-secrets-key")
    }

    fn key_secrets() -> KeySecrets {
        KeySecrets { namespace: "kube-system".into(), legacy_name: "sealed-secrets-key".into() }
    }

    fn sealed(annotations: &[(&str, &str)]) -> SealedSecret {
        let cert = Certificate::from_pem(&std::fs::read_to_string(repo("keys-example/demo.tls.crt")).unwrap()).unwrap();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("s".into()),
                namespace: Some("ns".into()),
                annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            string_data: Some(BTreeMap::from([("k".into(), "v".into())])),
            ..Default::default()
        };
        let mut ss = seal_secret(&mut rand::rng(), &cert, &secret, &SealOptions::default()).unwrap();
        ss.metadata.uid = Some("uid-1".into());
        ss
    }

    fn written(plan: Plan) -> Secret {
        match plan {
            Plan::Write { secret, .. } => *secret,
            Plan::UpToDate | Plan::Matches { .. } => panic!("expected a write"),
        }
    }

    fn existing(annotations: &[(&str, &str)], owner: bool) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("s".into()),
                namespace: Some("ns".into()),
                annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                owner_references: owner.then(|| {
                    vec![OwnerReference {
                        api_version: "bitnami.com/v1alpha1".into(),
                        kind: "SealedSecret".into(),
                        name: "s".into(),
                        uid: "uid-1".into(),
                        controller: Some(true),
                        block_owner_deletion: None,
                    }]
                }),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("other".into(), ByteString(b"x".to_vec()))])),
            type_: Some("Opaque".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_written_secret_is_trusted_next_time_without_decrypting() {
        let (ring, ss) = (keyring(), sealed(&[]));
        let first = written(plan(&ss, None, &ring, UnsealOptions::default(), &key_secrets()).unwrap());
        assert!(matches!(plan(&ss, Some(&first), &ring, UnsealOptions::default(), &key_secrets()), Ok(Plan::UpToDate)));
        let mut edited = first.clone();
        edited.data.as_mut().unwrap().insert("k".into(), ByteString(b"tampered".to_vec()));
        let restored = written(plan(&ss, Some(&edited), &ring, UnsealOptions::default(), &key_secrets()).unwrap());
        assert_eq!(restored.data.unwrap()["k"].0, b"v");
    }

    #[test]
    fn a_secret_upstream_made_with_the_same_contents_is_left_byte_for_byte() {
        let (ring, ss) = (keyring(), sealed(&[]));
        // What upstream's controller writes: the data, owned by the SealedSecret, no annotations
        // of ours.
        let mut upstreams = existing(&[], true);
        upstreams.metadata.annotations = None;
        upstreams.metadata.owner_references.as_mut().unwrap()[0].block_owner_deletion = Some(true);
        upstreams.data = Some(BTreeMap::from([("k".into(), ByteString(b"v".to_vec()))]));
        assert!(matches!(
            plan(&ss, Some(&upstreams), &ring, UnsealOptions::default(), &key_secrets()),
            Ok(Plan::Matches { decrypted: 1, .. })
        ));
        upstreams.data = Some(BTreeMap::from([("k".into(), ByteString(b"stale".to_vec()))]));
        let replaced = written(plan(&ss, Some(&upstreams), &ring, UnsealOptions::default(), &key_secrets()).unwrap());
        assert_eq!(replaced.data.unwrap()["k"].0, b"v", "different data is still corrected");
    }

    #[test]
    fn foreign_secrets_are_left_alone_unless_managed_or_patch() {
        let (ring, ss) = (keyring(), sealed(&[]));
        let theirs = existing(&[], false);
        assert!(matches!(
            plan(&ss, Some(&theirs), &ring, UnsealOptions::default(), &key_secrets()),
            Err(PlanError::NotManaged(_))
        ));

        let managed = written(
            plan(
                &ss,
                Some(&existing(&[(MANAGED_ANNOTATION, "true")], false)),
                &ring,
                UnsealOptions::default(),
                &key_secrets(),
            )
            .unwrap(),
        );
        assert_eq!(managed.data.as_ref().unwrap().keys().collect::<Vec<_>>(), ["k"], "replaced");
        assert!(managed.metadata.owner_references.is_some(), "taken over");

        let patched = written(
            plan(
                &ss,
                Some(&existing(&[(PATCH_ANNOTATION, "true")], false)),
                &ring,
                UnsealOptions::default(),
                &key_secrets(),
            )
            .unwrap(),
        );
        assert_eq!(patched.data.as_ref().unwrap().keys().collect::<Vec<_>>(), ["k", "other"], "merged");
        assert!(patched.metadata.owner_references.is_none(), "patch alone never takes ownership");
    }

    #[test]
    fn an_immutable_secret_with_other_data_cannot_be_updated() {
        let (ring, ss) = (keyring(), sealed(&[]));
        let mut frozen = existing(&[], true);
        frozen.immutable = Some(true);
        assert!(matches!(
            plan(&ss, Some(&frozen), &ring, UnsealOptions::default(), &key_secrets()),
            Err(PlanError::Immutable)
        ));
    }

    #[test]
    fn a_changed_source_is_decrypted_again() {
        let ring = keyring();
        let ss = sealed(&[]);
        let first = written(plan(&ss, None, &ring, UnsealOptions::default(), &key_secrets()).unwrap());
        let mut relabelled = ss.clone();
        relabelled.metadata.annotations.get_or_insert_with(BTreeMap::new).insert("team".into(), "x".into());
        assert!(matches!(
            plan(&relabelled, Some(&first), &ring, UnsealOptions::default(), &key_secrets()),
            Ok(Plan::Write { decrypted: 1, .. })
        ));
    }

    #[test]
    fn a_malformed_spec_is_refused_even_where_the_rest_matches_a_written_secret() {
        let ring = keyring();
        let ss = sealed(&[]);
        let first = written(plan(&ss, None, &ring, UnsealOptions::default(), &key_secrets()).unwrap());
        // What the lenient read makes of `encryptedData: {extra: 5}` beside the same items.
        let mut malformed = ss.clone();
        malformed.spec.invalid = Some(r#"spec.encryptedData["extra"] is not a string"#.into());
        let refused = plan(&malformed, Some(&first), &ring, UnsealOptions::default(), &key_secrets());
        assert!(matches!(refused, Err(PlanError::Unseal(UnsealError::Malformed(_)))), "{refused:?}");
        assert_ne!(source_digest(&ss), source_digest(&malformed));
    }

    #[test]
    fn a_contested_secret_is_written_a_bounded_number_of_times() {
        // A write made when allowed, as reconcile does.
        let write = |budget: &mut WriteBudget, key: &str, generation: i64, at: Instant| {
            let allowed = budget.allow(key, Some(generation), at);
            if allowed {
                budget.record(key, Some(generation), at);
            }
            allowed
        };
        let mut budget = WriteBudget::default();
        let t0 = Instant::now();
        let allowed = (0..100).filter(|i| write(&mut budget, "ns/s", 1, t0 + Duration::from_secs(*i))).count();
        assert_eq!(allowed, WriteBudget::MAX_WRITES as usize, "a write war stops");
        assert!(budget.allow("ns/other", Some(1), t0), "objects are counted apart");
        assert!(budget.allow("ns/s", Some(2), t0 + Duration::from_secs(100)), "a new generation starts afresh");
        let mut budget = WriteBudget::default();
        let spread = (0..100).filter(|i| write(&mut budget, "ns/s", 1, t0 + Duration::from_secs(i * 120))).count();
        let budget = WriteBudget::default();
        let refused = (0..100).filter(|i| budget.allow("ns/s", Some(1), t0 + Duration::from_secs(*i))).count();
        assert_eq!(refused, 100, "writes the API server refused do not count");
        assert_eq!(spread, 100, "occasional repairs (a Secret deleted by hand) are always made");
    }

    #[test]
    fn the_budget_forgets_closed_windows_as_it_grows() {
        let mut budget = WriteBudget::default();
        let t0 = Instant::now();
        for i in 0..3000 {
            budget.record(&format!("ns/s{i}"), Some(1), t0);
        }
        assert_eq!(budget.recent.len(), 3000);
        let later = t0 + WriteBudget::WINDOW + Duration::from_secs(1);
        for i in 0..3000 {
            budget.record(&format!("other/s{i}"), Some(1), later);
        }
        assert!(budget.recent.len() <= 3000, "closed windows dropped: {}", budget.recent.len());
        assert!(budget.allow("ns/s1", Some(1), later));
    }

    #[test]
    fn service_account_and_bootstrap_tokens_are_refused_without_decrypting() {
        for kind in ["kubernetes.io/service-account-token", "bootstrap.kubernetes.io/token"] {
            let mut ss = sealed(&[]);
            ss.spec.template.type_ = Some(kind.into());
            let err = plan(&ss, None, &keyring(), UnsealOptions::default(), &key_secrets()).unwrap_err();
            assert!(matches!(err, PlanError::ForeignType(_)), "{kind}");
            assert_eq!(err.category(), "InvalidSpec");
        }
    }

    #[test]
    fn a_token_sealed_whole_in_the_deprecated_data_field_is_refused_once_decrypted() {
        let ring = keyring();
        let token = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "s", "namespace": "ns", "annotations": {"kubernetes.io/service-account.name": "priv"}},
            "data": {"token": "dA=="}});
        let label = sealant_core::Scope::Strict.label("ns", "s");
        let item = sealant_core::hybrid_encrypt(
            &mut rand::rng(),
            ring.keys()[0].public(),
            &serde_json::to_vec(&token).unwrap(),
            &label,
        )
        .unwrap();
        let mut ss = SealedSecret::default();
        (ss.metadata.name, ss.metadata.namespace) = (Some("s".into()), Some("ns".into()));
        ss.spec.data = Some(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, item));
        let err = plan(&ss, None, &ring, UnsealOptions::default(), &key_secrets()).unwrap_err();
        assert!(matches!(err, PlanError::ForeignType(_)), "{err:?}");
    }

    #[test]
    fn a_sealed_secret_never_makes_a_key_secret() {
        let (ring, keys) = (keyring(), key_secrets());
        let in_key_namespace = |name: &str| {
            let mut ss = sealed(&[]);
            ss.metadata.namespace = Some("kube-system".into());
            ss.metadata.name = Some(name.into());
            ss
        };
        // The legacy key's name, the next key's (told by the served certificate), the backup's.
        for name in ["sealed-secrets-key", "sealed-secrets-key-6939a2c0-0", "sealed-secrets-key-backup"] {
            let taken = in_key_namespace(name);
            let refused = plan(&taken, None, &ring, UnsealOptions::default(), &keys);
            assert!(matches!(refused, Err(PlanError::KeySecret)), "{name}: {refused:?}");
        }
        let near = plan(&in_key_namespace("sealed-secrets-keys"), None, &ring, UnsealOptions::default(), &keys);
        assert!(!matches!(near, Err(PlanError::KeySecret)), "{near:?}");
        let mut labelled = in_key_namespace("anything");
        labelled.spec.template.metadata.labels = Some(BTreeMap::from([(KEY_LABEL.into(), "active".into())]));
        let err = plan(&labelled, None, &ring, UnsealOptions::default(), &keys).unwrap_err();
        assert!(matches!(err, PlanError::KeySecret));
        assert_eq!(err.category(), "InvalidSpec");
        // A patched Secret that already carries the label is refused as well.
        let mut patched = existing(&[(PATCH_ANNOTATION, "true")], false);
        patched.metadata.namespace = Some("kube-system".into());
        patched.metadata.labels = Some(BTreeMap::from([(KEY_LABEL.into(), "active".into())]));
        let unlabelled = in_key_namespace("anything");
        assert!(matches!(
            plan(&unlabelled, Some(&patched), &ring, UnsealOptions::default(), &keys),
            Err(PlanError::KeySecret)
        ));
        // Elsewhere, the same label is only a label.
        let mut elsewhere = sealed(&[]);
        elsewhere.spec.template.metadata.labels = labelled.spec.template.metadata.labels.clone();
        assert!(plan(&elsewhere, None, &ring, UnsealOptions::default(), &keys).is_ok());
    }

    #[test]
    fn the_shape_keeps_a_digest_of_the_template_metadata_not_the_metadata() {
        let mut template = SecretTemplateSpec::default();
        template.metadata.annotations = Some(BTreeMap::from([("big".into(), "x".repeat(1 << 20))]));
        let shape = Shape::of(&template);
        assert!(std::mem::size_of_val(&shape) < 64, "a fixed size, whatever the template holds");
        let mut secret = existing(&[("big", &"x".repeat(1 << 20)), (SOURCE_DIGEST_ANNOTATION, "d")], true);
        assert!(shape_matches(&secret, &shape), "our own annotations do not count");
        secret.metadata.labels = Some(BTreeMap::from([("big".into(), "x".into())]));
        assert!(!shape_matches(&secret, &shape), "a label is not an annotation");
        assert!(shape_matches(&existing(&[], true), Shape::plain()));
    }

    #[test]
    fn no_keys_is_its_own_reason() {
        let ss = sealed(&[]);
        let err = plan(&ss, None, &Keyring::default(), UnsealOptions::default(), &key_secrets()).unwrap_err();
        assert_eq!(err.category(), "NoKeys");
    }
}
