//! Events about SealedSecrets, written through the core API (`v1` Events), as upstream writes
//! them: the RBAC of upstream's Helm chart grants core `events` create and patch, not
//! `events.k8s.io`. They read the same through either API.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client, Resource};
use sealant_crds::SealedSecret;

/// What upstream's controller names itself in events.
const COMPONENT: &str = "sealed-secrets-controller";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

#[derive(Clone)]
pub struct Events {
    client: Client,
    /// This replica (the Pod's name), for `reportingInstance`.
    instance: String,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("instance", &self.instance).finish_non_exhaustive()
    }
}

impl Events {
    pub fn new(client: Client, instance: String) -> Self {
        Events { client, instance }
    }

    /// The event about the SealedSecret `ss` (its metadata): what it says, from whom.
    pub fn event(&self, ss: &ObjectMeta, type_: EventType, reason: &str, note: String) -> Event {
        let now = Timestamp::now();
        Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", ss.name.as_deref().unwrap_or_default())),
                namespace: ss.namespace.clone(),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(SealedSecret::api_version(&()).into_owned()),
                kind: Some(SealedSecret::kind(&()).into_owned()),
                name: ss.name.clone(),
                namespace: ss.namespace.clone(),
                uid: ss.uid.clone(),
                resource_version: ss.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_owned()),
            message: Some(note),
            type_: Some(match type_ {
                EventType::Normal => "Normal".to_owned(),
                EventType::Warning => "Warning".to_owned(),
            }),
            source: Some(EventSource { component: Some(COMPONENT.to_owned()), host: None }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(1),
            action: Some("Unseal".to_owned()),
            reporting_component: Some(COMPONENT.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }

    pub async fn publish(&self, ss: &ObjectMeta, type_: EventType, reason: &str, note: String) -> kube::Result<()> {
        let api = Api::<Event>::namespaced(self.client.clone(), ss.namespace.as_deref().unwrap_or_default());
        api.create(&PostParams::default(), &self.event(ss, type_, reason, note)).await.map(|_| ())
    }
}
