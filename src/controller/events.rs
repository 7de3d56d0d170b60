//! Events (`events.k8s.io/v1`) about the objects the operator manages.
//!
//! kube's `Recorder` keeps every Event it sent for six minutes to fold repeats into a
//! series. The operator never repeats itself (it emits on transitions, and an error only on
//! the first failure of a streak), so that cache only cost memory: about 10 KiB per object
//! during a rollout of 10,000 Memberships. This publisher sends each Event once and keeps
//! nothing.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType};

/// Sends Events as one reporting controller instance.
#[derive(Clone)]
pub struct Publisher {
    client: kube::Client,
    controller: String,
    instance: String,
}

impl Publisher {
    /// A publisher reporting as `controller` (the field manager's name), replica `instance`.
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Publisher {
        Publisher { client, controller: controller.to_owned(), instance: instance.to_owned() }
    }

    /// Create the Event about `regarding`, in its namespace.
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = jiff::Timestamp::now();
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(&self.controller), now.as_nanosecond());
        let event = K8sEvent {
            metadata: ObjectMeta { name: Some(name), namespace: Some(namespace.clone()), ..Default::default() },
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(match ev.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..Default::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), &namespace).create(&PostParams::default(), &event).await?;
        Ok(())
    }
}
