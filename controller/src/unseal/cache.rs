//! What the controller keeps of each SealedSecret between reconciles: the part of its metadata
//! that events, status and metrics name it by, the shape its Secret's labels, annotations and type
//! must have, its status, and the digest of the whole. Its items (most of its size) are read
//! again, whole, only when it must be decrypted; its annotations (kubectl's last-applied copy is
//! a second copy of the object), managed fields, owner references, template data and labels
//! other than the metrics' one are not kept at all. At 10,000 SealedSecrets this is most of the
//! controller's memory, so every field here earns its place.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use sealant_crds::{SealedSecret, SealedSecretStatus};
use serde::Deserialize;

use crate::unseal::plan::{Shape, SourceDigest, source_digest};

/// The one label of a SealedSecret that its metrics carry (and the cache keeps).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// A SealedSecret as the controller caches it. (`Deserialize` only because kube's `Controller`
/// asks for it; it is made from a whole SealedSecret with `From`, never parsed.)
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Cached {
    pub metadata: ObjectMeta,
    /// `None` for a template without labels, annotations or type ([`Shape::plain`]).
    #[serde(skip)]
    shape: Option<Box<Shape>>,
    #[serde(skip)]
    pub status: Option<SealedSecretStatus>,
    #[serde(skip)]
    pub digest: SourceDigest,
}

impl From<SealedSecret> for Cached {
    fn from(ss: SealedSecret) -> Cached {
        let digest = source_digest(&ss);
        let shape = Shape::of(&ss.spec.template);
        let SealedSecret { metadata, status, .. } = ss;
        let labels = metadata.labels.map(|mut labels| {
            labels.retain(|k, _| k == INSTANCE_LABEL);
            labels
        });
        let metadata = ObjectMeta {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            resource_version: metadata.resource_version,
            generation: metadata.generation,
            deletion_timestamp: metadata.deletion_timestamp,
            labels: labels.filter(|l| !l.is_empty()),
            ..Default::default()
        };
        Cached { metadata, shape: (shape != *Shape::plain()).then(|| Box::new(shape)), status, digest }
    }
}

impl Cached {
    pub fn shape(&self) -> &Shape {
        self.shape.as_deref().unwrap_or(Shape::plain())
    }

    /// The SealedSecret to send with an update of its status subresource (the API server takes
    /// only the status from it, and the resourceVersion to detect a conflict).
    pub fn for_status(&self) -> SealedSecret {
        SealedSecret {
            kind: sealant_crds::types::KIND.to_owned(),
            api_version: sealant_crds::types::API_VERSION.to_owned(),
            metadata: self.metadata.clone(),
            status: self.status.clone(),
            spec: Default::default(),
        }
    }
}

impl Resource for Cached {
    type DynamicType = ();
    type Scope = <SealedSecret as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        SealedSecret::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        SealedSecret::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        SealedSecret::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        SealedSecret::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn keeps_what_decisions_read_and_the_digest_of_the_whole() {
        let mut ss = SealedSecret::default();
        ss.metadata.name = Some("db".into());
        ss.metadata.namespace = Some("app".into());
        ss.metadata.uid = Some("u1".into());
        ss.metadata.generation = Some(2);
        ss.metadata.labels =
            Some(BTreeMap::from([(INSTANCE_LABEL.into(), "prod".into()), ("team".into(), "a".into())]));
        ss.metadata.annotations =
            Some(BTreeMap::from([("kubectl.kubernetes.io/last-applied-configuration".into(), "{}".into())]));
        ss.spec.encrypted_data.insert("password".into(), "AgB...".into());
        ss.spec.template.type_ = Some("kubernetes.io/basic-auth".into());
        let digest = source_digest(&ss);

        let cached = Cached::from(ss.clone());
        assert_eq!(cached.digest, digest);
        assert_eq!(cached.metadata.name.as_deref(), Some("db"));
        assert_eq!(cached.metadata.generation, Some(2));
        assert_eq!(cached.metadata.labels, Some(BTreeMap::from([(INSTANCE_LABEL.into(), "prod".into())])));
        assert_eq!(cached.metadata.annotations, None);
        assert_ne!(cached.shape(), Shape::plain());
        let for_status = cached.for_status();
        assert_eq!(
            (for_status.kind.as_str(), for_status.api_version.as_str()),
            ("SealedSecret", "bitnami.com/v1alpha1")
        );
        assert_eq!(for_status.metadata.name.as_deref(), Some("db"));

        ss.spec.template.type_ = None;
        let plain = Cached::from(ss);
        assert!(plain.shape.is_none(), "a plain template costs no allocation");
        assert_eq!(plain.shape(), Shape::plain());
        assert_ne!(plain.digest, digest, "the digest covers the spec");
    }
}
