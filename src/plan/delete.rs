//! Deletion: `Delete` removes the object's rows (grants revoked, pending invitations
//! cancelled; user records and the audit log kept); `Orphan` leaves them and stops managing
//! them. Never blocked by an invalid spec or a missing parent: it needs only the identity,
//! the policy and the snapshot.

use super::members::{emit, step};
use super::membership::is_last_admin;
use super::{Context, Identity, guard};
use crate::api::{DeletionPolicy, Role};
use crate::store::{Batch, Change, GuardTable, Snapshot, Step};

/// Why a deletion is held back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteRefused(pub String);

/// Plan the deletion of an object of `table` kind.
pub fn plan_delete(
    table: GuardTable,
    id: &Identity,
    policy: DeletionPolicy,
    snapshot: &Snapshot,
    ctx: &Context,
) -> Result<Batch, DeleteRefused> {
    let mut work = snapshot.clone();
    let mut steps: Vec<Step> = Vec::new();
    let exists = snapshot.version_of(table, &id.uid).is_some();
    if exists {
        let what = format!("{} {}/{}", table.kind(), id.namespace, id.name);
        if table == GuardTable::Membership
            && policy == DeletionPolicy::Delete
            && let Some(m) = snapshot.memberships.get(&id.uid)
            && let Some(ws) = &m.record.workspace_id
            && m.record.roles.contains(&Role::WorkspaceAdministrator)
            && snapshot.workspaces.contains_key(ws)
            && is_last_admin(snapshot, ws, &id.uid)
        {
            let name = snapshot.workspaces.get(ws).map(|w| w.record.name.clone()).unwrap_or_default();
            return Err(DeleteRefused(format!(
                "{} is the last Workspace Administrator of workspace {name}; add another administrator before deleting {what}",
                m.record.subject_key
            )));
        }
        let change = match (policy, table) {
            (DeletionPolicy::Orphan, _) => Change::Release { table, id: id.uid.clone() },
            (DeletionPolicy::Delete, GuardTable::Customer) => Change::DeleteCustomer { uid: id.uid.clone() },
            (DeletionPolicy::Delete, GuardTable::Workspace) => Change::DeleteWorkspace { id: id.uid.clone() },
            (DeletionPolicy::Delete, GuardTable::Membership) => Change::DeleteMembership { id: id.uid.clone() },
            (DeletionPolicy::Delete, GuardTable::LockboxPolicy) => Change::DeletePolicy { uid: id.uid.clone() },
        };
        let summary = match policy {
            DeletionPolicy::Orphan => format!("stop managing {what}; its rows stay (deletionPolicy: Orphan)"),
            DeletionPolicy::Delete => format!("delete {what} with what it provisioned"),
        };
        emit(&mut work, &mut steps, step(change, summary, false, None));
    }
    Ok(Batch {
        actor: ctx.actor.clone(),
        at: ctx.now.as_second(),
        guard: exists.then(|| guard(snapshot, table, &id.uid)),
        steps,
    })
}

/// What deleting the object of `table` does beyond the object itself, one line per row a
/// person would care about: with `Delete`, the workspaces, memberships and policy that go
/// with it; with `Orphan`, the same rows, which stay and are no longer managed. Empty when
/// the object provisions nothing else (a Membership's own grants are the Membership).
pub fn consequences(table: GuardTable, id: &Identity, snapshot: &Snapshot) -> Vec<String> {
    let ws_name = |wid: &str| snapshot.workspaces.get(wid).map(|w| w.record.name.clone()).unwrap_or_default();
    let member = |m: &crate::store::MembershipRecord| {
        let at = match &m.workspace_id {
            Some(w) => format!("in workspace {}", ws_name(w)),
            None => "at customer level".to_owned(),
        };
        let roles: Vec<&str> = m.roles.iter().map(|r| r.as_str()).collect();
        let roles = if roles.is_empty() { String::new() } else { format!(" ({})", roles.join(", ")) };
        format!("membership of {} {at}{roles}, from {}/{}", m.subject_key, m.origin, m.name)
    };
    let sorted = |rows: Vec<String>| {
        let mut rows = rows;
        rows.sort();
        rows
    };
    match table {
        GuardTable::Workspace => sorted(
            snapshot
                .memberships
                .values()
                .filter(|m| m.record.workspace_id.as_deref() == Some(id.uid.as_str()))
                .map(|m| member(&m.record))
                .collect(),
        ),
        GuardTable::Customer if snapshot.customer.as_ref().is_some_and(|c| c.record.uid == id.uid) => {
            let mut out =
                sorted(snapshot.workspaces.values().map(|w| format!("workspace {}", w.record.name)).collect());
            out.extend(sorted(snapshot.memberships.values().map(|m| member(&m.record)).collect()));
            out.extend(snapshot.policies.values().map(|p| format!("LockboxPolicy {}", p.record.name)));
            out
        }
        _ => Vec::new(),
    }
}
