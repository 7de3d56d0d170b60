//! `Customer`: one support agreement and the people it names.

use super::common::{AccountType, DeletionPolicy, Email, ManagementPolicy, Person, Tracking};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Services Hub customer: one support agreement with Microsoft. When the agreement becomes
/// active, the operator creates the default workspace and invites the service administrator
/// and the named support contacts to it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "servicehub.io",
    version = "v1alpha1",
    kind = "Customer",
    namespaced,
    status = "CustomerStatus",
    shortname = "cust",
    category = "servicehub",
    doc = "A Services Hub customer: one support agreement (Premier or Unified), its service administrator, support contacts and global administrators.",
    printcolumn(name = "Display Name", type_ = "string", json_path = ".spec.displayName"),
    printcolumn(name = "Agreement", type_ = "string", json_path = ".spec.agreement.kind"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Default Workspace", type_ = "string", json_path = ".status.defaultWorkspace", priority = "1"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSpec {
    /// Customer name shown in the Services Hub and in invitations, e.g. `Contoso Ltd`.
    #[schemars(length(min = 1, max = 256))]
    pub display_name: String,
    /// The support agreement: its kind, id and the dates it is in force.
    pub agreement: Agreement,
    /// The service administrator: workspace administrator of the default workspace, with
    /// full access to the Cloud Support Request Visibility dashboard.
    pub service_administrator: Person,
    /// Support contacts named in the agreement. Each is invited to the default workspace
    /// with the Support Contact permission when the agreement becomes active.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub support_contacts: Vec<Person>,
    /// Services Hub global administrators: administrative and feature access at customer level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub global_administrators: Vec<Person>,
    /// Who administers the agreement: the support manager directly (`Direct`, the default),
    /// or a Microsoft Entra group that receives the administrator role (`Delegated`).
    #[serde(default)]
    pub administration: Administration,
    /// Customer-wide settings from the Admin Center.
    #[serde(default)]
    pub settings: CustomerSettings,
    /// Newsletter subscriptions and who receives each one (at most 20 newsletters of 250
    /// subscribers each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // The bounds keep the subscriber email rule within the API server's CEL cost budget,
    // which multiplies its cost by both maxItems (see tests/it/cel_cost.rs).
    #[schemars(length(max = 20))]
    pub newsletters: Vec<Newsletter>,
    /// What happens in the Services Hub when this Customer is deleted: `Delete` (the default)
    /// removes its workspaces, grants and pending invitations; `Orphan` leaves them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `Manage` (the default) makes the store match this object; `Observe` changes nothing and
    /// reports in status how the store differs (`differences`, condition `Synced`).
    #[serde(default, skip_serializing_if = "ManagementPolicy::is_manage")]
    pub management_policy: ManagementPolicy,
}

/// The kind of support agreement.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum AgreementKind {
    /// Premier Support. Workspaces accept work or school and personal accounts.
    Premier,
    /// Unified Support. Workspaces accept only work or school accounts unless a workspace
    /// sets `allowPersonalAccounts: true`.
    Unified,
}

impl AgreementKind {
    /// Whether workspaces under this kind of agreement accept personal (MSA) accounts by default.
    pub fn allows_personal_accounts_by_default(self) -> bool {
        matches!(self, AgreementKind::Premier)
    }

    /// The name as written in YAML and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AgreementKind::Premier => "Premier",
            AgreementKind::Unified => "Unified",
        }
    }

    /// The kind a stored name stands for; anything but `Premier` is treated as `Unified`,
    /// the stricter rule on personal accounts.
    pub fn from_name(name: &str) -> AgreementKind {
        if name == AgreementKind::Premier.as_str() { AgreementKind::Premier } else { AgreementKind::Unified }
    }
}

/// A support agreement with Microsoft.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.endDate) || self.endDate > self.startDate").message("endDate must be after startDate").field_path(".endDate"))]
pub struct Agreement {
    /// `Premier` or `Unified`. Decides whether workspaces accept personal accounts by default.
    pub kind: AgreementKind,
    /// The agreement's identifier, as on the contract, e.g. `U-2024-000123`.
    #[schemars(length(min = 1, max = 64))]
    pub id: String,
    /// The date the agreement takes effect (`YYYY-MM-DD`, UTC). Nothing is provisioned before it.
    pub start_date: jiff::civil::Date,
    /// The date the agreement ends (`YYYY-MM-DD`, UTC), if it does. From that date no new
    /// invitations are issued and the customer is `Expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<jiff::civil::Date>,
}

/// How the agreement is administered.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.model == 'Delegated' ? has(self.groupId) : !has(self.groupId)").message("groupId is required when model is Delegated and must be omitted when model is Direct").field_path(".groupId"))]
pub struct Administration {
    /// `Direct`: the customer's support manager administers the agreement. `Delegated`:
    /// administration is delegated to the Microsoft Entra group named by `groupId`.
    #[serde(default)]
    pub model: AdministrationModel,
    /// Object id (a GUID) of the Microsoft Entra group that receives the administrator role.
    /// Required when `model` is `Delegated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 36),
        regex(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
    )]
    pub group_id: Option<String>,
}

/// Administration model of the agreement.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AdministrationModel {
    /// The support manager administers directly.
    #[default]
    Direct,
    /// Administration is delegated to a Microsoft Entra group.
    Delegated,
}

/// Customer-wide settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSettings {
    /// Show people's names (rather than anonymous ids) in learning reports. Default true.
    #[serde(default = "default_true")]
    pub show_personal_names_in_learning_reports: bool,
    /// Let users send in-product feedback. Default true.
    #[serde(default = "default_true")]
    pub in_product_feedback: bool,
}

impl Default for CustomerSettings {
    fn default() -> Self {
        CustomerSettings { show_personal_names_in_learning_reports: true, in_product_feedback: true }
    }
}

fn default_true() -> bool {
    true
}

/// A newsletter subscription and its subscribers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Newsletter {
    /// Name of the newsletter, e.g. `Security Updates`.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Email addresses that receive it (at most 250).
    #[serde(default)]
    #[schemars(length(max = 250))]
    pub subscribers: Vec<Email>,
}

/// Lifecycle phase of the agreement, from its dates and the clock.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CustomerPhase {
    /// Before the start date: nothing is provisioned yet.
    Pending,
    /// In force: the default workspace exists and invitations are issued.
    Active,
    /// On or after the end date: no new invitations are issued.
    Expired,
}

impl CustomerPhase {
    /// The name as written in status and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerPhase::Pending => "Pending",
            CustomerPhase::Active => "Active",
            CustomerPhase::Expired => "Expired",
        }
    }
}

/// Observed state of a Customer, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, following the Kubernetes conventions.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `Pending` before the start date, `Active` while in force, `Expired` from the end date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CustomerPhase>,
    /// Name of the default workspace (a Workspace object, or `<customer>-default` created by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_workspace: Option<String>,
    /// When a `Pending` customer becomes active (RFC 3339), or when an active one expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition: Option<String>,
    /// Counts of what the Services Hub holds for this customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<CustomerCounts>,
    /// What the status reports on observing (`managementPolicy: Observe`) and adopting.
    #[serde(flatten)]
    pub tracking: Tracking,
}

/// Counts of what the Services Hub holds for a customer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerCounts {
    /// Workspaces of the customer.
    pub workspaces: i64,
    /// Distinct users known to the customer.
    pub users: i64,
    /// Invitations not yet accepted.
    pub pending_invitations: i64,
}

impl Customer {
    /// Everyone the agreement names, with the account type they sign in with.
    pub fn named_people(&self) -> impl Iterator<Item = &Person> {
        std::iter::once(&self.spec.service_administrator)
            .chain(self.spec.support_contacts.iter())
            .chain(self.spec.global_administrators.iter())
    }

    /// Whether any named person uses a personal account.
    pub fn names_personal_accounts(&self) -> bool {
        self.named_people().any(|p| p.account_type == AccountType::Personal)
    }
}
