//! A snapshot of what the store holds for one customer: the input of every plan. After a
//! batch is applied, [`Snapshot::apply`] mirrors it, so a bulk run plans thousands of objects
//! against one load instead of re-reading the store for each.

use super::change::{Batch, Change, GuardTable};
use super::records::*;
use imbl::OrdMap;
use std::sync::Arc;

/// A row with its optimistic-concurrency version.
///
/// The row sits behind an `Arc`: a persistent map copies a whole node (up to 64 entries) on
/// the first change after a copy is taken, and every plan takes one. Copying records (a dozen
/// strings each) made planning 10,000 memberships cost ~10 s of allocation (issue 18);
/// copying `Arc`s costs a counter each. A change to one row copies that row only
/// ([`Arc::make_mut`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// Row version (1 when inserted, +1 per guarded batch).
    pub version: i64,
    /// The row.
    pub record: Arc<T>,
}

impl<T> Versioned<T> {
    /// A row as stored at `version`.
    pub fn new(version: i64, record: T) -> Self {
        Versioned { version, record: Arc::new(record) }
    }
}

/// Everything the store holds for one customer (managed rows only). The maps are persistent
/// (structure-sharing), so a planner's working copy costs O(1) to take, not O(rows).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The customer, if stored.
    pub customer: Option<Versioned<CustomerRecord>>,
    /// Workspaces by id.
    pub workspaces: OrdMap<String, Versioned<WorkspaceRecord>>,
    /// Memberships by id.
    pub memberships: OrdMap<String, Versioned<MembershipRecord>>,
    /// Users by normalized email.
    pub users: OrdMap<String, Arc<UserRecord>>,
    /// Invitations by `(scope_key, subject_key)`.
    pub invitations: OrdMap<(String, String), Arc<InvitationRecord>>,
    /// Lockbox policies by uid.
    pub policies: OrdMap<String, Versioned<PolicyRecord>>,
}

impl Snapshot {
    /// The managed workspace with this name.
    pub fn workspace_named(&self, name: &str) -> Option<&Versioned<WorkspaceRecord>> {
        self.workspaces.values().find(|w| w.record.name == name)
    }

    /// The customer's default workspace.
    pub fn default_workspace(&self) -> Option<&Versioned<WorkspaceRecord>> {
        self.workspaces.values().find(|w| w.record.is_default)
    }

    /// The version of a guarded row, if it exists.
    pub fn version_of(&self, table: GuardTable, id: &str) -> Option<i64> {
        match table {
            GuardTable::Customer => self.customer.as_ref().filter(|c| c.record.uid == id).map(|c| c.version),
            GuardTable::Workspace => self.workspaces.get(id).map(|w| w.version),
            GuardTable::Membership => self.memberships.get(id).map(|m| m.version),
            GuardTable::LockboxPolicy => self.policies.get(id).map(|p| p.version),
        }
    }

    /// Mirror a batch the store has applied.
    pub fn apply(&mut self, batch: &Batch) {
        for step in &batch.steps {
            self.apply_change(&step.change);
        }
        if let Some(g) = &batch.guard
            && g.expected.is_some()
        {
            let v = match g.table {
                GuardTable::Customer => self.customer.as_mut().map(|c| &mut c.version),
                GuardTable::Workspace => self.workspaces.get_mut(&g.id).map(|w| &mut w.version),
                GuardTable::Membership => self.memberships.get_mut(&g.id).map(|m| &mut m.version),
                GuardTable::LockboxPolicy => self.policies.get_mut(&g.id).map(|p| &mut p.version),
            };
            if let Some(v) = v {
                *v += 1;
            }
        }
    }

    /// Mirror one change.
    pub fn apply_change(&mut self, change: &Change) {
        match change {
            Change::PutCustomer(c) => match &mut self.customer {
                Some(v) if v.record.uid == c.uid => v.record = Arc::new(c.clone()),
                slot => *slot = Some(Versioned::new(1, c.clone())),
            },
            Change::DeleteCustomer { .. } => *self = Snapshot::default(),
            Change::PutWorkspace(w) => upsert(&mut self.workspaces, &w.id, w.clone()),
            Change::DeleteWorkspace { id } => {
                self.workspaces.remove(id);
                let gone: Vec<String> = self
                    .memberships
                    .values()
                    .filter(|m| m.record.workspace_id.as_deref() == Some(id))
                    .map(|m| m.record.id.clone())
                    .collect();
                for m in gone {
                    self.memberships.remove(&m);
                }
                self.revoke_where(|i| &i.scope_key == id);
            }
            Change::PutUser(u) => {
                self.users.insert(u.email.clone(), Arc::new(u.clone()));
            }
            Change::PutMembership(m) => match self.memberships.get_mut(&m.id) {
                Some(v) => {
                    let (roles, grants) = (v.record.roles.clone(), v.record.grants.clone());
                    v.record = Arc::new(MembershipRecord { roles, grants, ..m.clone() });
                }
                None => {
                    let record =
                        MembershipRecord { roles: Default::default(), grants: Default::default(), ..m.clone() };
                    self.memberships.insert(m.id.clone(), Versioned::new(1, record));
                }
            },
            Change::DeleteMembership { id } => {
                self.memberships.remove(id);
                self.revoke_where(|i| &i.membership_id == id);
            }
            Change::AddRole { membership_id, role } => {
                if let Some(m) = self.memberships.get_mut(membership_id) {
                    Arc::make_mut(&mut m.record).roles.insert(*role);
                }
            }
            Change::RemoveRole { membership_id, role } => {
                if let Some(m) = self.memberships.get_mut(membership_id) {
                    Arc::make_mut(&mut m.record).roles.remove(role);
                }
            }
            Change::AddGrant { membership_id, grant } => {
                if let Some(m) = self.memberships.get_mut(membership_id) {
                    Arc::make_mut(&mut m.record).grants.insert(*grant);
                }
            }
            Change::RemoveGrant { membership_id, grant } => {
                if let Some(m) = self.memberships.get_mut(membership_id) {
                    Arc::make_mut(&mut m.record).grants.remove(grant);
                }
            }
            Change::IssueInvitation { invitation, .. } => {
                let key = (invitation.scope_key.clone(), invitation.subject_key.clone());
                self.invitations.insert(key, Arc::new(invitation.clone()));
            }
            Change::RevokeInvitation { scope_key, subject_key } => {
                if let Some(inv) = self.invitations.get_mut(&(scope_key.clone(), subject_key.clone())) {
                    revoke(Arc::make_mut(inv));
                }
            }
            Change::PutPolicy(p) => upsert(&mut self.policies, &p.uid, p.clone()),
            Change::DeletePolicy { uid } => {
                self.policies.remove(uid);
            }
            Change::Release { table, id } => match table {
                GuardTable::Customer => *self = Snapshot::default(),
                GuardTable::Workspace => {
                    self.workspaces.remove(id);
                }
                GuardTable::Membership => {
                    self.memberships.remove(id);
                }
                GuardTable::LockboxPolicy => {
                    self.policies.remove(id);
                }
            },
        }
    }
}

impl Snapshot {
    fn revoke_where(&mut self, matches: impl Fn(&InvitationRecord) -> bool) {
        let keys: Vec<(String, String)> =
            self.invitations.iter().filter(|(_, i)| matches(i)).map(|(k, _)| k.clone()).collect();
        for k in keys {
            if let Some(inv) = self.invitations.get_mut(&k) {
                revoke(Arc::make_mut(inv));
            }
        }
    }
}

fn upsert<T: Clone>(map: &mut OrdMap<String, Versioned<T>>, id: &str, record: T) {
    match map.get_mut(id) {
        Some(v) => v.record = Arc::new(record),
        None => {
            map.insert(id.to_owned(), Versioned::new(1, record));
        }
    }
}

/// Pending and sent invitations are revoked; accepted, expired and failed ones keep their state.
fn revoke(inv: &mut InvitationRecord) {
    if inv.state == invitation_state::PENDING || inv.state == invitation_state::SENT {
        inv.state = invitation_state::REVOKED.to_owned();
    }
}
