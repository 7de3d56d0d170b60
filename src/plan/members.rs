//! One desired membership (from a Membership object, or implied by a Customer or a
//! Workspace) and the steps that make its stored row, roles, grants, user and invitation
//! match. Shared by every planner.

use super::Context;
use crate::api::Role;
use crate::store::{Change, Grant, InvitationRecord, MembershipRecord, Snapshot, Step, UserRecord, invitation_state};
use std::collections::BTreeSet;

/// A membership as the spec wants it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DesiredMembership {
    /// Row id.
    pub id: String,
    /// Workspace id, or `None` at customer level.
    pub workspace_id: Option<String>,
    /// Workspace name for messages.
    pub workspace_name: Option<String>,
    /// `Membership`, `Customer` or `Workspace`.
    pub origin: String,
    /// Namespace of the owning object.
    pub namespace: String,
    /// Name of the owning object.
    pub name: String,
    /// `User` or `Group`.
    pub subject_kind: String,
    /// Normalized email or `group:<id>`.
    pub subject_key: String,
    /// The user's email as written (users only).
    pub email: Option<String>,
    /// Display name.
    pub display_name: String,
    /// `WorkOrSchool` or `Personal` (users only).
    pub account_type: Option<String>,
    /// Roles held.
    pub roles: BTreeSet<Role>,
    /// Grants held.
    pub grants: BTreeSet<Grant>,
    /// `Delete` or `Orphan`.
    pub deletion_policy: String,
    /// Whether to invite (users only, and not after the agreement ended).
    #[serde(skip)]
    pub invite: bool,
    /// The Membership's spec as JSON; empty when implied by a Customer or Workspace. Not
    /// hashed: the hash covers what the spec resolves to.
    #[serde(skip)]
    pub applied_spec: String,
}

/// The object that implies memberships (a Customer or a Workspace) and what they inherit from it.
pub(crate) struct Owner<'a> {
    /// `Customer` or `Workspace`.
    pub(crate) origin: &'a str,
    /// The owning object.
    pub(crate) id: &'a super::Identity,
    /// Its deletion policy.
    pub(crate) deletion_policy: crate::api::DeletionPolicy,
    /// Whether its people are invited.
    pub(crate) invite: bool,
}

impl DesiredMembership {
    /// A person named by a Customer or Workspace: at customer level, or in workspace
    /// `(id, name)`; `in_default` when that is the customer's default workspace.
    pub(crate) fn for_person(
        owner: &Owner<'_>,
        id: String,
        person: &crate::api::Person,
        workspace: Option<(&str, &str)>,
        in_default: bool,
        roles: &[Role],
        individual: &[crate::api::Permission],
    ) -> DesiredMembership {
        DesiredMembership {
            id,
            workspace_id: workspace.map(|w| w.0.to_owned()),
            workspace_name: workspace.map(|w| w.1.to_owned()),
            origin: owner.origin.to_owned(),
            namespace: owner.id.namespace.clone(),
            name: owner.id.name.clone(),
            subject_kind: "User".to_owned(),
            subject_key: person.email.normalized(),
            email: Some(person.email.to_string()),
            display_name: person.shown_name().to_owned(),
            account_type: Some(person.account_type.as_str().to_owned()),
            roles: roles.iter().copied().collect(),
            grants: grants_for(workspace.is_some(), roles, individual, in_default),
            deletion_policy: format!("{:?}", owner.deletion_policy),
            invite: owner.invite,
            applied_spec: String::new(),
        }
    }
}

/// What the invitation message says; the delivery worker adds the link and the token.
#[derive(serde::Serialize)]
struct InvitationPayload<'a> {
    customer: &'a str,
    customer_name: &'a str,
    namespace: &'a str,
    workspace: Option<&'a str>,
    email: &'a str,
    display_name: &'a str,
    roles: Vec<&'static str>,
    /// The object whose spec invites, and who applied it: `Membership contoso/lee (applied by
    /// operator)`. The CLI's name is not proven, the object is.
    invited_by: String,
    /// Which accounts the scope takes: `any`, or `workOrSchool` (Unified without the MSA
    /// exception), for the message's sign-in hint.
    accounts: &'static str,
}

impl DesiredMembership {
    fn scope_key(&self, customer_uid: &str) -> String {
        self.workspace_id.clone().unwrap_or_else(|| customer_uid.to_owned())
    }

    /// "in workspace W" or "at customer level".
    fn in_scope(&self) -> String {
        match &self.workspace_name {
            Some(w) => format!("in workspace {w}"),
            None => "at customer level".to_owned(),
        }
    }

    /// "to workspace W" or "at customer level".
    fn to_scope(&self) -> String {
        match &self.workspace_name {
            Some(w) => format!("to workspace {w}"),
            None => "at customer level".to_owned(),
        }
    }

    fn record(&self, customer_uid: &str) -> MembershipRecord {
        MembershipRecord {
            id: self.id.clone(),
            customer_uid: customer_uid.to_owned(),
            workspace_id: self.workspace_id.clone(),
            origin: self.origin.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            subject_kind: self.subject_kind.clone(),
            subject_key: self.subject_key.clone(),
            deletion_policy: self.deletion_policy.clone(),
            spec_hash: super::spec_hash(self),
            applied_spec: self.applied_spec.clone(),
            roles: Default::default(),
            grants: Default::default(),
        }
    }

    /// Append the steps that make the store hold this membership.
    pub fn plan(
        &self,
        snapshot: &mut Snapshot,
        customer_uid: &str,
        customer_display: &str,
        ctx: &Context,
        steps: &mut Vec<Step>,
    ) {
        let who = self.email.as_deref().unwrap_or(&self.subject_key).to_owned();
        let at = self.in_scope();
        let to = self.to_scope();
        if let (Some(email), Some(account)) = (&self.email, &self.account_type) {
            let user = UserRecord {
                customer_uid: customer_uid.to_owned(),
                email: self.subject_key.clone(),
                display_name: self.display_name.clone(),
                account_type: account.clone(),
            };
            // A user is recorded when first named and not rewritten afterwards: several
            // objects may name the same person with different display names, and rewriting on
            // each reconcile would make them undo one another forever.
            if !snapshot.users.contains_key(&self.subject_key) {
                emit(snapshot, steps, step(Change::PutUser(user), format!("add user {email}"), false, None));
            }
        }
        let record = self.record(customer_uid);
        let stored = snapshot.memberships.get(&self.id).map(|v| v.record.clone());
        let stored = stored.as_ref();
        // Same desired state as last written, but different roles or grants: someone changed
        // the store behind the operator's back.
        let drift = stored.is_some_and(|s| s.spec_hash == record.spec_hash);
        // The same row now names another person (a Customer's serviceAdministrator was
        // replaced): the former one's invitation goes, as when a support contact is replaced.
        let replaced = stored.is_some_and(|s| s.subject_key != record.subject_key);
        if let Some(s) = stored.filter(|_| replaced) {
            let scope_key = s.workspace_id.clone().unwrap_or_else(|| customer_uid.to_owned());
            let live = snapshot
                .invitations
                .get(&(scope_key.clone(), s.subject_key.clone()))
                .is_some_and(|i| i.membership_id == self.id && invitation_state::is_live(&i.state));
            if live {
                let c = Change::RevokeInvitation { scope_key, subject_key: s.subject_key.clone() };
                emit(snapshot, steps, step(c, format!("revoke the invitation of {} {at}", s.subject_key), false, None));
            }
        }
        match stored {
            None => emit(
                snapshot,
                steps,
                step(Change::PutMembership(record.clone()), format!("add {who} {to}"), false, None),
            ),
            Some(s) if !same_row(s, &record) => {
                let before = serde_json::to_string(&without_children(s)).ok();
                emit(
                    snapshot,
                    steps,
                    step(
                        Change::PutMembership(record.clone()),
                        format!("update membership of {who} {at}"),
                        false,
                        before,
                    ),
                );
            }
            Some(_) => {}
        }
        let empty = (BTreeSet::new(), BTreeSet::new());
        let (have_roles, have_grants) = stored.map(|s| (&s.roles, &s.grants)).unwrap_or((&empty.0, &empty.1));
        for role in self.roles.difference(have_roles) {
            let c = Change::AddRole { membership_id: self.id.clone(), role: *role };
            emit(snapshot, steps, step(c, format!("assign role {role} to {who} {at}"), drift, None));
        }
        for role in have_roles.difference(&self.roles) {
            let c = Change::RemoveRole { membership_id: self.id.clone(), role: *role };
            emit(snapshot, steps, step(c, format!("remove role {role} from {who} {at}"), drift, None));
        }
        for g in self.grants.difference(have_grants) {
            let c = Change::AddGrant { membership_id: self.id.clone(), grant: *g };
            let s = format!("grant {} ({}) to {who} {at}", g.permission, g.source.label());
            emit(snapshot, steps, step(c, s, drift, None));
        }
        for g in have_grants.difference(&self.grants) {
            let c = Change::RemoveGrant { membership_id: self.id.clone(), grant: *g };
            let s = format!("revoke {} ({}) from {who} {at}", g.permission, g.source.label());
            emit(snapshot, steps, step(c, s, drift, None));
        }
        if self.invite
            && let Some(email) = &self.email
        {
            let scope_key = self.scope_key(customer_uid);
            let existing = snapshot.invitations.get(&(scope_key.clone(), self.subject_key.clone())).cloned();
            // A revoked invitation (the membership went away and came back) is issued anew;
            // expiry and failed delivery are the delivery worker's business.
            let reissue = |i: &InvitationRecord| i.state == invitation_state::REVOKED;
            // Issue numbers count per membership row and scope, across the people it named,
            // so a replaced person's message never shares the new one's idempotency key
            // (`invitation/<membership>/<scope>/<issue>`). Only a row whose person changed can
            // have invitations for someone else, so only then is the scan paid.
            let after = if replaced {
                snapshot
                    .invitations
                    .values()
                    .filter(|i| i.membership_id == self.id && i.scope_key == scope_key)
                    .map(|i| i.issue)
                    .max()
                    .unwrap_or(0)
            } else {
                0
            };
            let issue = match existing {
                None => Some(after + 1),
                Some(i) if reissue(&i) => Some(i.issue.max(after) + 1),
                Some(_) => None,
            };
            if let Some(issue) = issue {
                let payload = InvitationPayload {
                    customer: customer_display,
                    customer_name: &self.name,
                    namespace: &self.namespace,
                    workspace: self.workspace_name.as_deref(),
                    email,
                    display_name: &self.display_name,
                    roles: self.roles.iter().map(|r| r.as_str()).collect(),
                    accounts: {
                        let personal = match &self.workspace_id {
                            Some(id) => snapshot.workspaces.get(id).is_some_and(|w| w.record.personal_allowed),
                            None => snapshot.customer.as_ref().is_some_and(|c| c.record.agreement_kind != "Unified"),
                        };
                        if personal { "any" } else { "workOrSchool" }
                    },
                    invited_by: format!(
                        "{} {}/{} (applied by {})",
                        self.origin, self.namespace, self.name, ctx.actor.name
                    ),
                };
                let invitation = InvitationRecord {
                    customer_uid: customer_uid.to_owned(),
                    membership_id: self.id.clone(),
                    scope_key,
                    subject_key: self.subject_key.clone(),
                    email: email.clone(),
                    issue,
                    state: invitation_state::PENDING.to_owned(),
                    attempts: 0,
                    created_at: ctx.now.as_second(),
                    sent_at: None,
                    expires_at: None,
                    accepted_at: None,
                    accepted_by: None,
                    last_error: None,
                };
                let payload = serde_json::to_string(&payload).unwrap_or_default();
                emit(
                    snapshot,
                    steps,
                    step(Change::IssueInvitation { invitation, payload }, format!("invite {email} {to}"), false, None),
                );
            }
        }
    }
}

fn same_row(a: &MembershipRecord, b: &MembershipRecord) -> bool {
    without_children(a) == without_children(b)
}

fn without_children(m: &MembershipRecord) -> MembershipRecord {
    MembershipRecord { roles: Default::default(), grants: Default::default(), ..m.clone() }
}

/// Record a step and mirror it into the working snapshot, so later steps of the same plan
/// see it (a user named twice is added once).
pub(crate) fn emit(work: &mut Snapshot, steps: &mut Vec<Step>, step: Step) {
    work.apply_change(&step.change);
    steps.push(step);
}

/// A step without audit context.
pub(crate) fn step(change: Change, summary: String, drift: bool, before: Option<String>) -> Step {
    let summary = if drift { format!("{summary} (drift correction)") } else { summary };
    Step { change, summary, drift, before }
}

/// Steps removing a stored membership that is no longer desired.
pub(crate) fn remove(snapshot: &mut Snapshot, id: &str, steps: &mut Vec<Step>) {
    if let Some(m) = snapshot.memberships.get(id).map(|m| m.record.clone()) {
        let at = m.workspace_id.as_deref().and_then(|w| snapshot.workspaces.get(w)).map(|w| w.record.name.clone());
        let summary = match at {
            Some(w) => format!("remove {} from workspace {w}", m.subject_key),
            None => format!("remove {} at customer level", m.subject_key),
        };
        let before = serde_json::to_string(&without_children(&m)).ok();
        emit(snapshot, steps, step(Change::DeleteMembership { id: id.to_owned() }, summary, false, before));
    }
}

/// The grants a membership holds: at workspace level, the workspace rows; at customer level,
/// the customer rows plus the workspace rows its roles carry into every workspace (CSAM, IM).
pub(crate) fn grants_for(
    workspace_level: bool,
    roles: &[Role],
    individual: &[crate::api::Permission],
    in_default_workspace: bool,
) -> BTreeSet<Grant> {
    use crate::domain::matrix::Scope;
    use crate::domain::rules::{Holding, grants};
    let holding = Holding { roles, individual, in_default_workspace };
    let mut out: BTreeSet<Grant> = BTreeSet::new();
    let scopes: &[Scope] = if workspace_level { &[Scope::Workspace] } else { &[Scope::Customer, Scope::Workspace] };
    for scope in scopes {
        let h = if *scope == Scope::Workspace && !workspace_level {
            Holding { individual: &[], in_default_workspace: false, ..holding.clone() }
        } else {
            holding.clone()
        };
        out.extend(grants(*scope, &h).into_iter().map(|(permission, source)| Grant { permission, source }));
    }
    out
}
