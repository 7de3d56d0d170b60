//! What the store holds, as plain records. Enum-like columns hold the API's names
//! (`Premier`, `WorkspaceAdministrator`, ...) so the database is readable on its own.

use crate::api::{Permission, Role};
use crate::domain::rules::Source;
use serde::Serialize;
use std::collections::BTreeSet;

/// A customer row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CustomerRecord {
    /// `metadata.uid` of the Customer object.
    pub uid: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// `Premier` or `Unified`.
    pub agreement_kind: String,
    /// Agreement id.
    pub agreement_id: String,
    /// Start date, `YYYY-MM-DD`.
    pub start_date: String,
    /// End date, `YYYY-MM-DD`.
    pub end_date: Option<String>,
    /// `Direct` or `Delegated`.
    pub administration_model: String,
    /// Entra group receiving the administrator role when delegated.
    pub admin_group_id: Option<String>,
    /// Customer settings as JSON.
    pub settings: String,
    /// Newsletter subscriptions as JSON.
    pub newsletters: String,
    /// `Pending`, `Active` or `Expired`.
    pub phase: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: String,
    /// Hash of the spec this row was last written from (drift detection).
    pub spec_hash: String,
}

/// A workspace row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkspaceRecord {
    /// `metadata.uid` of the Workspace, or `default:<customer uid>` for one the operator created.
    pub id: String,
    /// The customer's uid.
    pub customer_uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `Workspace` (from an object) or `Customer` (created as the default workspace).
    pub origin: String,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: Option<String>,
    /// The customer's default workspace.
    pub is_default: bool,
    /// The MSA exception as written (`None`: follow the agreement).
    pub allow_personal: Option<bool>,
    /// Whether personal accounts are accepted, after the agreement's default.
    pub personal_allowed: bool,
    /// Support benefits as JSON.
    pub support_benefits: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: String,
    /// Hash of the spec this row was last written from.
    pub spec_hash: String,
}

/// A user of a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    /// The customer's uid.
    pub customer_uid: String,
    /// Normalized (lower-case) email, unique per customer.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// `WorkOrSchool` or `Personal`.
    pub account_type: String,
}

/// One grant a membership holds: a permission and where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Grant {
    /// The permission.
    pub permission: Permission,
    /// `role:<Role>` or `individual`.
    #[serde(serialize_with = "source_label")]
    pub source: Source,
}

fn source_label<S: serde::Serializer>(s: &Source, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&s.label())
}

/// A membership row with its roles and grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MembershipRecord {
    /// `metadata.uid` of the Membership, or a key derived from the Customer or Workspace that
    /// implies it (`<uid>/serviceAdministrator`, `<uid>/admin/<email>`, ...).
    pub id: String,
    /// The customer's uid.
    pub customer_uid: String,
    /// The workspace id for workspace scope; `None` at customer level.
    pub workspace_id: Option<String>,
    /// `Membership`, `Customer` or `Workspace`: which object implies it.
    pub origin: String,
    /// Namespace of that object.
    pub namespace: String,
    /// Name of that object.
    pub name: String,
    /// `User` or `Group`.
    pub subject_kind: String,
    /// Normalized email, or `group:<id>`.
    pub subject_key: String,
    /// `Delete` or `Orphan`.
    pub deletion_policy: String,
    /// Hash of the desired roles and grants this row was last written from.
    pub spec_hash: String,
    /// Roles held.
    pub roles: BTreeSet<Role>,
    /// Grants held.
    pub grants: BTreeSet<Grant>,
}

/// Invitation states.
pub mod invitation_state {
    /// Written, not yet delivered.
    pub const PENDING: &str = "Pending";
    /// Delivered.
    pub const SENT: &str = "Sent";
    /// Accepted by its recipient.
    pub const ACCEPTED: &str = "Accepted";
    /// Not accepted in time.
    pub const EXPIRED: &str = "Expired";
    /// Cancelled because the membership went away.
    pub const REVOKED: &str = "Revoked";
    /// Delivery gave up.
    pub const FAILED: &str = "Failed";
}

/// An invitation: one per subject per scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InvitationRecord {
    /// The customer's uid.
    pub customer_uid: String,
    /// The membership that caused it.
    pub membership_id: String,
    /// The workspace id, or the customer uid for customer level.
    pub scope_key: String,
    /// Normalized email of the invitee.
    pub subject_key: String,
    /// Where the invitation goes.
    pub email: String,
    /// How many times it was issued (1 for the first).
    pub issue: i64,
    /// See [`invitation_state`].
    pub state: String,
    /// Delivery attempts.
    pub attempts: i64,
    /// When it was issued (Unix seconds).
    pub created_at: i64,
    /// When it was delivered.
    pub sent_at: Option<i64>,
    /// When it stops being acceptable.
    pub expires_at: Option<i64>,
    /// When it was accepted.
    pub accepted_at: Option<i64>,
}

/// A lockbox policy row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyRecord {
    /// `metadata.uid` of the LockboxPolicy.
    pub uid: String,
    /// The customer's uid.
    pub customer_uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Whether approval is required.
    pub enabled: bool,
    /// Approvers as JSON (`{"emails": [...], "roles": [...]}`).
    pub approvers: String,
    /// How long a request waits for a decision.
    pub pending_ttl_seconds: i64,
    /// Longest access an approval may give.
    pub max_access_seconds: i64,
    /// Covered workloads as JSON.
    pub workloads: String,
    /// Extra notification recipients as JSON.
    pub recipients: String,
    /// Hash of the spec this row was last written from.
    pub spec_hash: String,
}

/// What one apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Rows inserted, updated or deleted (audit entries included).
    pub rows: u64,
    /// Invitations newly issued.
    pub invitations: u64,
}

/// A customer with counts, for `get customers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CustomerRow {
    /// The stored customer.
    #[serde(flatten)]
    pub record: CustomerRecord,
    /// Managed workspaces.
    pub workspaces: i64,
    /// Known users.
    pub users: i64,
    /// Invitations not yet accepted (`Pending` or `Sent`).
    pub pending_invitations: i64,
}

/// A workspace with its member count, for `get workspaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkspaceRow {
    /// The stored workspace.
    #[serde(flatten)]
    pub record: WorkspaceRecord,
    /// Customer name.
    pub customer: String,
    /// Distinct subjects with a membership in it.
    pub members: i64,
}

/// A membership with its scope, for `get memberships`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MembershipRow {
    /// The stored membership.
    #[serde(flatten)]
    pub record: MembershipRecord,
    /// Customer name.
    pub customer: String,
    /// Workspace name, if workspace-level.
    pub workspace: Option<String>,
}

/// An invitation with names, for `get invitations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InvitationRow {
    /// The stored invitation.
    #[serde(flatten)]
    pub record: InvitationRecord,
    /// Namespace of the customer.
    pub namespace: String,
    /// Customer name.
    pub customer: String,
    /// Workspace name, or `None` at customer level.
    pub workspace: Option<String>,
}

/// A grant with names, for `get grants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantRow {
    /// Namespace.
    pub namespace: String,
    /// Customer name.
    pub customer: String,
    /// Workspace name; `None` at customer level or for every workspace.
    pub workspace: Option<String>,
    /// `customer` or `workspace`.
    pub scope: String,
    /// Subject key.
    pub subject: String,
    /// The grant.
    #[serde(flatten)]
    pub grant: Grant,
    /// The membership holding it (`Kind/name`).
    pub membership: String,
}

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When (Unix seconds).
    pub at: i64,
    /// Who: `operator`, `cli:<user>`, or an approver's email.
    pub actor: String,
    /// What was done, e.g. `grant.add`.
    pub action: String,
    /// The kind of object touched.
    pub kind: String,
    /// Which object.
    pub object: String,
    /// Whether this corrected a change made behind the operator's back.
    pub drift: bool,
    /// The state before, as JSON.
    pub before: Option<String>,
    /// The state after, as JSON.
    pub after: Option<String>,
}

/// One member of a workspace with what they may do there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Normalized email or `group:<id>`.
    pub subject: String,
    /// Grants that apply in the workspace, from every membership of the subject.
    pub grants: Vec<Grant>,
}

/// What a subject may do in one scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScopeView {
    /// Workspace id, or `None` for customer level.
    pub workspace_id: Option<String>,
    /// Workspace name.
    pub workspace: Option<String>,
    /// Grants that apply there.
    pub grants: Vec<Grant>,
}
