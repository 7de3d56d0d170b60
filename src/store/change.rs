//! The changes a plan asks the store to make, and the batch that carries one object's plan
//! into one transaction.

use super::records::*;
use crate::api::Role;

/// One change to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Insert or update a customer.
    PutCustomer(CustomerRecord),
    /// Remove a customer and everything under it (the audit log stays).
    DeleteCustomer {
        /// Its uid.
        uid: String,
    },
    /// Insert or update a workspace.
    PutWorkspace(WorkspaceRecord),
    /// Remove a workspace with its memberships and grants; pending invitations are revoked.
    DeleteWorkspace {
        /// Its id.
        id: String,
    },
    /// Insert a user, or update their display name and account type.
    PutUser(UserRecord),
    /// Insert or update a membership row (roles and grants are separate changes).
    PutMembership(MembershipRecord),
    /// Remove a membership with its roles and grants; a pending invitation is revoked.
    DeleteMembership {
        /// Its id.
        id: String,
    },
    /// Assign a role.
    AddRole {
        /// Membership id.
        membership_id: String,
        /// The role.
        role: Role,
    },
    /// Remove a role.
    RemoveRole {
        /// Membership id.
        membership_id: String,
        /// The role.
        role: Role,
    },
    /// Add a grant.
    AddGrant {
        /// Membership id.
        membership_id: String,
        /// The grant.
        grant: Grant,
    },
    /// Remove a grant.
    RemoveGrant {
        /// Membership id.
        membership_id: String,
        /// The grant.
        grant: Grant,
    },
    /// Issue an invitation (or re-issue one that was revoked or expired) and queue its delivery
    /// in the outbox, in the same transaction.
    IssueInvitation {
        /// The invitation as issued; `issue` is the issue number.
        invitation: InvitationRecord,
        /// What the message says, as JSON, for the delivery worker.
        payload: String,
    },
    /// Revoke a pending or sent invitation.
    RevokeInvitation {
        /// Scope key.
        scope_key: String,
        /// Subject key.
        subject_key: String,
    },
    /// Insert or update a lockbox policy.
    PutPolicy(PolicyRecord),
    /// Remove a lockbox policy.
    DeletePolicy {
        /// Its uid.
        uid: String,
    },
    /// Stop managing a row (deletion policy `Orphan`): it stays, but no object owns it.
    Release {
        /// Which table.
        table: GuardTable,
        /// Row id.
        id: String,
    },
}

impl Change {
    /// `(kind, action)` for the audit log.
    pub fn audit_action(&self) -> (&'static str, &'static str) {
        match self {
            Change::PutCustomer(_) => ("Customer", "customer.put"),
            Change::DeleteCustomer { .. } => ("Customer", "customer.delete"),
            Change::PutWorkspace(_) => ("Workspace", "workspace.put"),
            Change::DeleteWorkspace { .. } => ("Workspace", "workspace.delete"),
            Change::PutUser(_) => ("User", "user.put"),
            Change::PutMembership(_) => ("Membership", "membership.put"),
            Change::DeleteMembership { .. } => ("Membership", "membership.delete"),
            Change::AddRole { .. } => ("Membership", "role.add"),
            Change::RemoveRole { .. } => ("Membership", "role.remove"),
            Change::AddGrant { .. } => ("Membership", "grant.add"),
            Change::RemoveGrant { .. } => ("Membership", "grant.remove"),
            Change::IssueInvitation { .. } => ("Invitation", "invitation.issue"),
            Change::RevokeInvitation { .. } => ("Invitation", "invitation.revoke"),
            Change::PutPolicy(_) => ("LockboxPolicy", "lockbox_policy.put"),
            Change::DeletePolicy { .. } => ("LockboxPolicy", "lockbox_policy.delete"),
            Change::Release { table, .. } => (table.kind(), "release"),
        }
    }

    /// The row the change is about, for the audit log.
    pub fn object_key(&self) -> String {
        match self {
            Change::PutCustomer(c) => c.uid.clone(),
            Change::DeleteCustomer { uid } | Change::DeletePolicy { uid } => uid.clone(),
            Change::PutWorkspace(w) => w.id.clone(),
            Change::DeleteWorkspace { id } | Change::DeleteMembership { id } | Change::Release { id, .. } => id.clone(),
            Change::PutUser(u) => format!("{}/{}", u.customer_uid, u.email),
            Change::PutMembership(m) => m.id.clone(),
            Change::AddRole { membership_id, .. }
            | Change::RemoveRole { membership_id, .. }
            | Change::AddGrant { membership_id, .. }
            | Change::RemoveGrant { membership_id, .. } => membership_id.clone(),
            Change::IssueInvitation { invitation, .. } => {
                format!("{}/{}", invitation.scope_key, invitation.subject_key)
            }
            Change::RevokeInvitation { scope_key, subject_key } => format!("{scope_key}/{subject_key}"),
            Change::PutPolicy(p) => p.uid.clone(),
        }
    }

    /// The state after the change, as JSON, for the audit log.
    pub fn after_json(&self) -> Option<String> {
        let v = match self {
            Change::PutCustomer(c) => serde_json::to_value(c),
            Change::PutWorkspace(w) => serde_json::to_value(w),
            Change::PutUser(u) => serde_json::to_value(u),
            Change::PutMembership(m) => serde_json::to_value(MembershipRow0::from(m)),
            Change::AddRole { role, .. } => Ok(serde_json::json!({ "role": role })),
            Change::AddGrant { grant, .. } => serde_json::to_value(grant),
            Change::IssueInvitation { invitation, .. } => serde_json::to_value(invitation),
            Change::PutPolicy(p) => serde_json::to_value(p),
            _ => return None,
        };
        v.ok().map(|v| v.to_string())
    }
}

/// A membership without roles and grants, for the audit log of `PutMembership`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct MembershipRow0<'a> {
    id: &'a str,
    workspace_id: &'a Option<String>,
    origin: &'a str,
    object: String,
    subject: &'a str,
    deletion_policy: &'a str,
}

impl<'a> From<&'a MembershipRecord> for MembershipRow0<'a> {
    fn from(m: &'a MembershipRecord) -> Self {
        MembershipRow0 {
            id: &m.id,
            workspace_id: &m.workspace_id,
            origin: &m.origin,
            object: format!("{}/{}", m.namespace, m.name),
            subject: &m.subject_key,
            deletion_policy: &m.deletion_policy,
        }
    }
}

/// One planned change with its human-readable description and audit context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The change.
    pub change: Change,
    /// What it does, for people: "grant Learning (individual) to lee.gu@contoso.com in contoso/emea".
    pub summary: String,
    /// Whether it restores something changed behind the operator's back.
    pub drift: bool,
    /// The state before, as JSON, for the audit log.
    pub before: Option<String>,
}

/// Tables whose rows are guarded by a version and owned by an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuardTable {
    /// `customers`.
    Customer,
    /// `workspaces`.
    Workspace,
    /// `memberships`.
    Membership,
    /// `lockbox_policies`.
    LockboxPolicy,
}

impl GuardTable {
    /// The kind name.
    pub fn kind(self) -> &'static str {
        match self {
            GuardTable::Customer => "Customer",
            GuardTable::Workspace => "Workspace",
            GuardTable::Membership => "Membership",
            GuardTable::LockboxPolicy => "LockboxPolicy",
        }
    }

    /// `(table, key column)`.
    pub fn table(self) -> (&'static str, &'static str) {
        match self {
            GuardTable::Customer => ("customers", "uid"),
            GuardTable::Workspace => ("workspaces", "id"),
            GuardTable::Membership => ("memberships", "id"),
            GuardTable::LockboxPolicy => ("lockbox_policies", "uid"),
        }
    }
}

/// Optimistic concurrency: the batch applies only if the owning row still has the version
/// the plan was made from (`None`: the row must not exist yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    /// Which table.
    pub table: GuardTable,
    /// Row id.
    pub id: String,
    /// Version the plan saw.
    pub expected: Option<i64>,
}

/// One object's plan, applied in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Who makes the change, for the audit log.
    pub actor: crate::domain::actor::Actor,
    /// When (Unix seconds).
    pub at: i64,
    /// The version check; `None` for batches that own no row.
    pub guard: Option<Guard>,
    /// The changes, in order.
    pub steps: Vec<Step>,
}

impl Batch {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}
