//! `Workspace`: one segment of a customer's agreement, with its own administrators and its
//! own rule on personal (MSA) accounts.

use super::common::{DeletionPolicy, LocalRef, ManagementPolicy, Person, Tracking};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A workspace of a Services Hub customer. Support case data is visible only to the
/// workspace's members, and each workspace needs its own invitation.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "servicehub.io",
    version = "v1alpha1",
    kind = "Workspace",
    namespaced,
    status = "WorkspaceStatus",
    shortname = "ws",
    category = "servicehub",
    doc = "A workspace of a Services Hub customer, with its own administrators and its own rule on personal (MSA) accounts.",
    printcolumn(name = "Customer", type_ = "string", json_path = ".spec.customerRef.name"),
    printcolumn(name = "Default", type_ = "boolean", json_path = ".spec.default"),
    printcolumn(name = "Personal Accounts", type_ = "boolean", json_path = ".status.personalAccountsAllowed"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.members"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    cel
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.default || size(self.administrators) > 0").message("a workspace needs at least one administrator in administrators; only the default workspace may rely on the service administrator alone").field_path(".administrators"))]
pub struct WorkspaceSpec {
    /// The Customer this workspace belongs to, in the same namespace. Immutable.
    pub customer_ref: LocalRef,
    /// Workspace name shown in the Services Hub, e.g. `Contoso EMEA`.
    #[schemars(length(min = 1, max = 256))]
    pub display_name: String,
    /// What the workspace is for: the part of the organisation or the goals it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Marks this Workspace as the customer's default workspace, the one the service
    /// administrator and support contacts are invited to. At most one per customer; when no
    /// Workspace sets it, the operator creates `<customer>-default`.
    #[serde(default)]
    pub default: bool,
    /// The workspace's administrators. Each holds the Workspace Administrator role here and
    /// receives an invitation.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub administrators: Vec<Person>,
    /// The MSA exception: whether personal (Microsoft) accounts may join. When unset it follows
    /// the agreement: Premier allows them, Unified does not. Turning it off does not remove
    /// existing personal-account members; they are reported in the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_personal_accounts: Option<bool>,
    /// Additional support benefits bought for this workspace, e.g. `Designated Support Engineering`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(min = 1, max = 128)), extend("x-kubernetes-list-type" = "set"))]
    pub support_benefits: Vec<String>,
    /// What happens in the Services Hub when this Workspace is deleted: `Delete` (the default)
    /// removes the workspace with its grants and pending invitations; `Orphan` leaves it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `Manage` (the default) makes the store match this object; `Observe` changes nothing and
    /// reports in status how the store differs (`differences`, condition `Synced`).
    #[serde(default, skip_serializing_if = "ManagementPolicy::is_manage")]
    pub management_policy: ManagementPolicy,
}

/// Observed state of a Workspace, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` and `PersonalAccountsPresent`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Whether personal (MSA) accounts may join, after applying the agreement's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_accounts_allowed: Option<bool>,
    /// Number of members (users and groups) with access to this workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i64>,
    /// What the status reports on observing (`managementPolicy: Observe`) and adopting.
    #[serde(flatten)]
    pub tracking: Tracking,
}
