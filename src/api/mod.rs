//! The `servicehub.io/v1alpha1` API: the custom resource types users write as YAML.
//!
//! Types only, no I/O. Every field carries a doc comment written for the user, because it
//! becomes the CRD description that `kubectl explain` shows. Static invariants live here as
//! CEL rules (`x-kubernetes-validations`) so the API server enforces them and
//! `validate_cel` checks the same rules without a cluster.

pub mod access;
pub mod common;
pub mod conditions;
pub mod customer;
pub mod lockbox_policy;
pub mod membership;
pub mod workspace;

pub use access::{Permission, Role};
pub use common::{
    AccountType, DeletionPolicy, EMAIL_RULE, Email, GoDuration, LocalRef, ManagementPolicy, Person, Tracking,
};
pub use customer::{Customer, CustomerSpec, CustomerStatus};
pub use lockbox_policy::{LockboxPolicy, LockboxPolicySpec, LockboxPolicyStatus};
pub use membership::{Membership, MembershipSpec, MembershipStatus};
pub use workspace::{Workspace, WorkspaceSpec, WorkspaceStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every kind this operator owns.
pub const GROUP: &str = "servicehub.io";
/// The only served version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in YAML.
pub const API_VERSION: &str = "servicehub.io/v1alpha1";

/// The annotation that pauses an object: with the value `"true"`, the operator writes
/// nothing for it (store, status, invitations), except a `Paused` condition set once, and
/// its deletion keeps its rows in the store. Removing it resumes from the current spec.
pub const PAUSED_ANNOTATION: &str = "servicehub.io/paused";

/// Whether an object carries `servicehub.io/paused: "true"`.
pub fn is_paused(meta: &kube::api::ObjectMeta) -> bool {
    meta.annotations.as_ref().and_then(|a| a.get(PAUSED_ANNOTATION)).is_some_and(|v| v == "true")
}

/// The annotation through which an object takes over the rows the store keeps under another
/// id (a store prepared by `servicehub apply`, a restored backup, an earlier tool): its value
/// is that store id, which the object is then keyed by instead of its `metadata.uid`.
pub const ADOPT_ANNOTATION: &str = "servicehub.io/adopt";

/// The store id an object adopts (`servicehub.io/adopt`), if any.
pub fn adopted_id(meta: &kube::api::ObjectMeta) -> Option<&str> {
    meta.annotations.as_ref().and_then(|a| a.get(ADOPT_ANNOTATION)).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The four kinds, in dependency order (a later kind refers to earlier ones).
pub const KINDS: [&str; 4] = ["Customer", "Workspace", "Membership", "LockboxPolicy"];

/// All four CustomResourceDefinitions, in dependency order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Customer::crd(), Workspace::crd(), Membership::crd(), LockboxPolicy::crd()]
}

/// The CRDs as multi-document YAML: what `servicehub crd` prints and `crds/` holds.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

/// File name under `crds/` for one CRD, e.g. `customers.servicehub.io.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

#[cfg(test)]
mod cel_tests;
