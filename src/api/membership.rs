//! `Membership`: one user or group, at customer level or in one workspace, with roles and
//! individually granted permissions.

use super::access::{Permission, Role};
use super::common::{AccountType, DeletionPolicy, Email, LocalRef, ManagementPolicy, Tracking};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Roles a workspace membership (with `workspaceRef`) may hold. Kept equal to the domain's
/// role scopes by a test.
pub const WORKSPACE_ROLES: &[Role] = &[Role::WorkspaceAdministrator, Role::User];
/// Roles a customer-level membership (without `workspaceRef`) may hold.
pub const CUSTOMER_ROLES: &[Role] =
    &[Role::GlobalAdministrator, Role::CustomerSuccessAccountManager, Role::IncidentManager, Role::User];

const ROLE_SCOPE_RULE: &str = "!has(self.roles) || (has(self.workspaceRef) ? self.roles.all(r, r in ['WorkspaceAdministrator', 'User']) : self.roles.all(r, r in ['GlobalAdministrator', 'CustomerSuccessAccountManager', 'IncidentManager', 'User']))";
const ROLE_SCOPE_MESSAGE: &str = "a role does not fit the scope: with workspaceRef the roles may be WorkspaceAdministrator and User; without it (customer level) GlobalAdministrator, CustomerSuccessAccountManager, IncidentManager and User; ServiceAdministrator comes only from the Customer's serviceAdministrator";
const PERMISSION_SCOPE_RULE: &str = "!has(self.permissions) || (has(self.workspaceRef) ? self.permissions.all(p, !(p in ['CustomerLevelAdministrator', 'MicrosoftCustomerLevelAdministrator', 'ViewOpenCanvas', 'ManageOpenCanvas', 'ViewCloudSupportRequestVisibilityDashboard', 'ManageCloudSupportRequestVisibilityDashboard', 'ViewEngagements'])) : self.permissions.all(p, p in ['CustomerLevelAdministrator', 'MicrosoftCustomerLevelAdministrator', 'ViewOpenCanvas', 'ManageOpenCanvas', 'ViewCloudSupportRequestVisibilityDashboard', 'ManageCloudSupportRequestVisibilityDashboard', 'ViewEngagements']))";
const PERMISSION_SCOPE_MESSAGE: &str = "a permission does not fit the scope: customer-level permissions (CustomerLevelAdministrator, MicrosoftCustomerLevelAdministrator, ViewOpenCanvas, ManageOpenCanvas, ViewCloudSupportRequestVisibilityDashboard, ManageCloudSupportRequestVisibilityDashboard, ViewEngagements) need a Membership without workspaceRef; all others need a workspaceRef";

/// Every individual permission must be grantable (or held) for `User` or for one of the
/// roles of the membership, as the permission matrix says. Generated from the matrix by
/// `domain::matrix::grantable_cel_rule` (a test keeps this copy equal to it): the API server
/// enforces it at `kubectl apply` time, before the operator sees the object.
const PERMISSION_GRANTABLE_RULE: &str = "!has(self.permissions) || self.permissions.all(p, p in ['ViewOpenCanvas', 'ManageOpenCanvas', 'ViewEngagements', 'SupportContact', 'ViewAllSupportCases', 'LearningManager', 'Learning', 'CustomerActivity', 'Programs', 'InviteUsers', 'Health', 'SharedFiles', 'CustomerPulseSurvey', 'ContractDetails'] || (has(self.roles) && (('WorkspaceAdministrator' in self.roles && p in ['ManageUsers']) || ('GlobalAdministrator' in self.roles && p in ['CustomerLevelAdministrator', 'ViewCloudSupportRequestVisibilityDashboard', 'ManageCloudSupportRequestVisibilityDashboard']) || ('CustomerSuccessAccountManager' in self.roles && p in ['MicrosoftCustomerLevelAdministrator', 'ViewCloudSupportRequestVisibilityDashboard', 'ManageUsers']))))";
/// Message shown when [`PERMISSION_GRANTABLE_RULE`] fails.
pub const PERMISSION_GRANTABLE_MESSAGE: &str = "a permission is not grantable to a member holding these roles: only User's grantable permissions, and those a role of this membership holds, may be listed (servicehub validate names the permission and the role that gives it)";

/// The CEL source of the grantability rule, for the test that ties it to the matrix.
pub fn permission_grantable_rule() -> &'static str {
    PERMISSION_GRANTABLE_RULE
}

/// The CEL source of the permission-scope rule, for the test that ties it to the matrix.
pub fn permission_scope_rule() -> &'static str {
    PERMISSION_SCOPE_RULE
}

/// The CEL source of the role-scope rule, for the test that ties it to the domain.
pub fn role_scope_rule() -> &'static str {
    ROLE_SCOPE_RULE
}

/// One user or group in a workspace, or at customer level, with roles and individually
/// granted permissions. Every grant is checked against the Services Hub permission matrix.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "servicehub.io",
    version = "v1alpha1",
    kind = "Membership",
    namespaced,
    status = "MembershipStatus",
    shortname = "mbr",
    category = "servicehub",
    doc = "One user or group in a Services Hub workspace (or at customer level), with roles and individually granted permissions.",
    printcolumn(name = "Customer", type_ = "string", json_path = ".spec.customerRef.name"),
    printcolumn(name = "Workspace", type_ = "string", json_path = ".spec.workspaceRef.name"),
    printcolumn(name = "Subject", type_ = "string", json_path = ".spec.subject.email"),
    printcolumn(name = "Roles", type_ = "string", json_path = ".spec.roles"),
    printcolumn(name = "Invitation", type_ = "string", json_path = ".status.invitation.state"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    cel
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.workspaceRef) == has(oldSelf.workspaceRef)").message("workspaceRef cannot be added or removed: delete and re-create the Membership to change its scope").field_path(".workspaceRef"),
    validation = Rule::new(ROLE_SCOPE_RULE).message(ROLE_SCOPE_MESSAGE).field_path(".roles"),
    validation = Rule::new(PERMISSION_SCOPE_RULE).message(PERMISSION_SCOPE_MESSAGE).field_path(".permissions"),
    validation = Rule::new(PERMISSION_GRANTABLE_RULE).message(PERMISSION_GRANTABLE_MESSAGE).field_path(".permissions"),
)]
pub struct MembershipSpec {
    /// The Customer this membership belongs to, in the same namespace. Immutable.
    pub customer_ref: LocalRef,
    /// The Workspace, in the same namespace, for a workspace membership. Omit it for a
    /// customer-level membership (Global Administrator, CSAM, Incident Manager, customer-level
    /// permissions). Immutable, and cannot be added or removed later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_ref: Option<LocalRef>,
    /// Who is a member: a `User` (by email) or a Microsoft Entra `Group` (by object id).
    pub subject: Subject,
    /// Roles held in this scope. Each role brings the permissions the matrix gives it.
    /// Every member also holds `User` implicitly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 6), extend("x-kubernetes-list-type" = "set"))]
    pub roles: Vec<Role>,
    /// Permissions granted individually, on top of the roles. Only permissions the matrix
    /// marks as grantable may be listed; deprecated ones are accepted with a warning and never granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), extend("x-kubernetes-list-type" = "set"))]
    pub permissions: Vec<Permission>,
    /// What happens in the Services Hub when this Membership is deleted: `Delete` (the default)
    /// revokes its grants and cancels a pending invitation; `Orphan` leaves them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `Manage` (the default) makes the store match this object; `Observe` changes nothing and
    /// reports in status how the store differs (`differences`, condition `Synced`).
    #[serde(default, skip_serializing_if = "ManagementPolicy::is_manage")]
    pub management_policy: ManagementPolicy,
}

/// The kind of member.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SubjectKind {
    /// A person, identified by email.
    User,
    /// A Microsoft Entra group, identified by its object id.
    Group,
}

/// Who a Membership is for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.kind == 'User' ? (has(self.email) && !has(self.groupId)) : (has(self.groupId) && !has(self.email) && !has(self.accountType))").message("a User subject needs email and no groupId; a Group subject needs groupId and neither email nor accountType"))]
pub struct Subject {
    /// `User` or `Group`.
    pub kind: SubjectKind,
    /// The user's sign-in email address. Required for a `User`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// Name shown in the Services Hub and in the invitation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
    /// The user's kind of account: `WorkOrSchool` (when unset) or `Personal`. Users only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_type: Option<AccountType>,
    /// Object id (a GUID) of the Microsoft Entra group. Required for a `Group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 36),
        regex(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
    )]
    pub group_id: Option<String>,
}

impl Subject {
    /// The account type, defaulting to work or school.
    pub fn account_type(&self) -> AccountType {
        self.account_type.unwrap_or_default()
    }

    /// A stable key for the subject: the normalized email of a user, `group:<id>` for a group.
    pub fn key(&self) -> String {
        match (self.kind, &self.email, &self.group_id) {
            (SubjectKind::User, Some(email), _) => email.normalized(),
            (SubjectKind::Group, _, Some(id)) => format!("group:{}", id.to_ascii_lowercase()),
            // Unreachable for a spec that passed CEL; keep a distinct, visible key anyway.
            _ => "invalid-subject".to_owned(),
        }
    }
}

/// Observed state of a Membership, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`, and `InvitationFailed` when delivery gave up.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The invitation sent for this membership.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<InvitationStatus>,
    /// What the member may do in this scope, and where each permission comes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective_permissions: Vec<EffectivePermission>,
    /// What the status reports on observing (`managementPolicy: Observe`) and adopting.
    #[serde(flatten)]
    pub tracking: Tracking,
}

/// State of the invitation for a membership.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationStatus {
    /// `Pending`, `Sent`, `Accepted`, `Expired`, `Revoked` or `Failed`.
    pub state: String,
    /// When the invitation was sent (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// When the invitation stops being acceptable (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When the invitation was accepted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<String>,
    /// The account that accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
    /// How many times it was issued (a re-issue after expiry or revocation has a new token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<i64>,
    /// Delivery attempts of this issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i64>,
    /// Why the last delivery attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One permission the member holds, with its sources.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectivePermission {
    /// The permission.
    pub permission: Permission,
    /// Where it comes from: `role:<Role>` for each role that gives it, `individual` for an individual grant.
    pub sources: Vec<String>,
    /// False when the member may use the data but not export it (Microsoft roles, matrix footnote 1).
    pub export_allowed: bool,
}
