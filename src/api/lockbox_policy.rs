//! `LockboxPolicy`: whether Microsoft support engineers need approval to access customer
//! content, who approves, and how long requests and access last.

use super::access::Role;
use super::common::{Email, GoDuration, LocalRef, ManagementPolicy, Tracking};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The Customer Lockbox policy of one customer. At most one per customer.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "servicehub.io",
    version = "v1alpha1",
    kind = "LockboxPolicy",
    plural = "lockboxpolicies",
    namespaced,
    status = "LockboxPolicyStatus",
    shortname = "lbp",
    category = "servicehub",
    doc = "The Customer Lockbox policy of a Services Hub customer: approval of Microsoft engineers' access to customer content.",
    printcolumn(name = "Customer", type_ = "string", json_path = ".spec.customerRef.name"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "Pending", type_ = "integer", json_path = ".status.pendingRequests"),
    printcolumn(name = "Active", type_ = "integer", json_path = ".status.activeRequests"),
    printcolumn(name = "Next Deadline", type_ = "string", json_path = ".status.nextDeadline", priority = "1"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    cel
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.enabled || size(self.approvers.emails) + size(self.approvers.roles) > 0").message("an enabled policy needs at least one approver in approvers.emails or approvers.roles").field_path(".approvers"))]
pub struct LockboxPolicySpec {
    /// The Customer this policy belongs to, in the same namespace. Immutable.
    pub customer_ref: LocalRef,
    /// When true (the default), Microsoft engineers need an approver's decision before they
    /// access customer content. When false, requests are recorded as `NotRequired`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who may approve, deny or revoke requests.
    #[serde(default)]
    pub approvers: Approvers,
    /// How long a request waits for a decision before it expires by itself, as a Go duration
    /// (`12h`, `90m`). From 1m to 96h; default 12h.
    #[serde(default = "default_pending_ttl")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('96h')").message("must be between 1m and 96h"))]
    pub pending_ttl: GoDuration,
    /// The longest access an approval may give, as a Go duration. From 1m to 336h (14 days); default 8h.
    #[serde(default = "default_max_access")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('336h')").message("must be between 1m and 336h (14 days)"))]
    pub max_access_duration: GoDuration,
    /// Workloads whose content the policy protects. Default: all three.
    #[serde(default = "all_workloads")]
    #[schemars(length(min = 1, max = 3), extend("x-kubernetes-list-type" = "set"))]
    pub workloads: Vec<Workload>,
    /// Extra addresses told about every request and decision, besides the approvers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub notification_recipients: Vec<Email>,
    /// `Manage` (the default) makes the store match this object; `Observe` changes nothing and
    /// reports in status how the store differs (`differences`, condition `Synced`).
    #[serde(default, skip_serializing_if = "ManagementPolicy::is_manage")]
    pub management_policy: ManagementPolicy,
}

fn default_true() -> bool {
    true
}

/// Default for `pendingTtl`: the Services Hub's 12 hours.
pub fn default_pending_ttl() -> GoDuration {
    GoDuration::from_static("12h")
}

/// Default for `maxAccessDuration`: 8 hours.
pub fn default_max_access() -> GoDuration {
    GoDuration::from_static("8h")
}

fn all_workloads() -> Vec<Workload> {
    vec![Workload::ExchangeOnline, Workload::SharePointOnline, Workload::OneDriveForBusiness]
}

/// Who may decide lockbox requests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approvers {
    /// Approvers by email address.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub emails: Vec<Email>,
    /// Approvers by role: everyone holding one of these customer roles, resolved when a request is created.
    #[serde(default)]
    #[schemars(length(max = 2), extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(r, r in ['GlobalAdministrator', 'ServiceAdministrator'])").message("approver roles may be GlobalAdministrator and ServiceAdministrator: lockbox decisions are made at customer level"))]
    pub roles: Vec<Role>,
}

/// A Microsoft 365 workload covered by Customer Lockbox.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum Workload {
    /// Exchange Online.
    ExchangeOnline,
    /// SharePoint Online.
    SharePointOnline,
    /// OneDrive for Business.
    OneDriveForBusiness,
}

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 3] =
        [Workload::ExchangeOnline, Workload::SharePointOnline, Workload::OneDriveForBusiness];

    /// The name, as in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::ExchangeOnline => "ExchangeOnline",
            Workload::SharePointOnline => "SharePointOnline",
            Workload::OneDriveForBusiness => "OneDriveForBusiness",
        }
    }
}

/// Observed state of a LockboxPolicy, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockboxPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Whether the policy in force requires approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Requests waiting for a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_requests: Option<i64>,
    /// Requests whose access is in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_requests: Option<i64>,
    /// The next moment a request expires or its access ends (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_deadline: Option<String>,
    /// What the status reports on observing (`managementPolicy: Observe`) and adopting.
    #[serde(flatten)]
    pub tracking: Tracking,
}
