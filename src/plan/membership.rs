//! Membership: the subject exists as a user; roles and individual permissions become grants
//! applied as a diff, each with its source; exactly one invitation per subject per scope.
//! Refused with a reason when the customer or workspace is unknown, a permission is not
//! grantable for the roles, a role does not fit the scope, a personal account is not
//! allowed, or the change would remove a workspace's last administrator.

use super::members::{DesiredMembership, grants_for};
use super::{Context, Frame, Identity, Plan, Verdict, guard};
use crate::api::membership::{InvitationStatus, MembershipStatus, SubjectKind};
use crate::api::{Membership, Role};
use crate::domain::matrix::Scope;
use crate::domain::rules::{self, GrantCheck};
use crate::domain::time::rfc3339;
use crate::store::{GuardTable, Snapshot, invitation_state};

/// Plan a Membership against its customer's snapshot.
pub fn plan_membership(
    m: &Membership,
    id: &Identity,
    snapshot: &Snapshot,
    previous: Option<&MembershipStatus>,
    ctx: &Context,
) -> Plan<MembershipStatus> {
    let spec = &m.spec;
    let frame = Frame { snapshot, id, previous, ctx };
    let refuse = |reason: &'static str, message: String| {
        finish(&frame, None, Vec::new(), snapshot.clone(), Verdict::Stalled { reason, message })
    };
    let customer_name = &spec.customer_ref.name;
    let c = match super::started_customer(snapshot, customer_name) {
        Ok(c) => c,
        Err(verdict) => return finish(&frame, None, Vec::new(), snapshot.clone(), verdict),
    };
    let scope = if spec.workspace_ref.is_some() { Scope::Workspace } else { Scope::Customer };
    let ws = match &spec.workspace_ref {
        None => None,
        Some(r) => match snapshot.workspace_named(&r.name) {
            Some(w) => Some(w.record.clone()),
            None => {
                let msg =
                    format!("spec.workspaceRef: Workspace {} of customer {customer_name} is not in the store", r.name);
                return refuse("WorkspaceNotFound", msg);
            }
        },
    };
    for (i, role) in spec.roles.iter().enumerate() {
        if !rules::membership_may_assign(*role, scope) {
            let allowed: Vec<&str> = rules::assignable_roles(scope).iter().map(|r| r.as_str()).collect();
            let msg = format!(
                "spec.roles[{i}]: role {role} cannot be held at {} level; allowed: {}",
                scope.as_str(),
                allowed.join(", ")
            );
            return refuse("RoleNotAllowed", msg);
        }
    }
    let mut warnings = Vec::new();
    for (i, p) in spec.permissions.iter().enumerate() {
        match rules::check_individual(scope, &spec.roles, *p) {
            GrantCheck::Allowed => {}
            GrantCheck::Deprecated(msg) => warnings.push(format!("spec.permissions[{i}]: {msg}")),
            GrantCheck::Refused(msg) => {
                return refuse("PermissionNotGrantable", format!("spec.permissions[{i}]: {msg}"));
            }
        }
    }
    let stored = snapshot.memberships.get(&id.uid).map(|v| v.record.clone());
    if let (Some(w), Some(email)) = (&ws, &spec.subject.email)
        && stored.is_none()
        && !w.personal_allowed
        && spec.subject.account_type() == crate::api::AccountType::Personal
    {
        let kind = crate::api::customer::AgreementKind::from_name(&c.agreement_kind);
        let at = format!("{}/{}", w.namespace, w.name);
        if let Err(msg) = rules::check_account(spec.subject.account_type(), email.as_str(), &at, kind, w.allow_personal)
        {
            return refuse("PersonalAccountNotAllowed", format!("spec.subject.accountType: {msg}"));
        }
    }
    // Guard: the last Workspace Administrator of a workspace stays.
    if let (Some(w), Some(s)) = (&ws, &stored)
        && s.roles.contains(&Role::WorkspaceAdministrator)
        && !spec.roles.contains(&Role::WorkspaceAdministrator)
        && is_last_admin(snapshot, &w.id, &id.uid)
    {
        let msg = format!(
            "spec.roles: {} is the last Workspace Administrator of workspace {}; add another administrator first",
            s.subject_key, w.name
        );
        return refuse("LastWorkspaceAdministrator", msg);
    }

    let individual: Vec<_> =
        spec.permissions.iter().copied().filter(|p| !crate::domain::matrix::row_of(*p).deprecated).collect();
    let in_default = ws.as_ref().is_some_and(|w| w.is_default);
    let (subject_kind, email, account) = match spec.subject.kind {
        SubjectKind::User => (
            "User",
            spec.subject.email.as_ref().map(|e| e.to_string()),
            Some(spec.subject.account_type().as_str().to_owned()),
        ),
        SubjectKind::Group => ("Group", None, None),
    };
    let desired = DesiredMembership {
        id: id.uid.clone(),
        workspace_id: ws.as_ref().map(|w| w.id.clone()),
        workspace_name: ws.as_ref().map(|w| w.name.clone()),
        origin: "Membership".to_owned(),
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        subject_kind: subject_kind.to_owned(),
        subject_key: spec.subject.key(),
        display_name: spec.subject.display_name.clone().or_else(|| email.clone()).unwrap_or_else(|| spec.subject.key()),
        email,
        account_type: account,
        roles: spec.roles.iter().copied().collect(),
        grants: grants_for(ws.is_some(), &spec.roles, &individual, in_default),
        deletion_policy: format!("{:?}", spec.deletion_policy),
        invite: c.phase == "Active",
        applied_spec: serde_json::to_string(&crate::api::MembershipSpec {
            management_policy: Default::default(),
            ..spec.clone()
        })
        .unwrap_or_default(),
    };
    let mut work = snapshot.clone();
    let mut steps = Vec::new();
    desired.plan(&mut work, &c.uid, &c.display_name, ctx, &mut steps);
    let message = if warnings.is_empty() {
        "the store matches the spec".to_owned()
    } else {
        format!("the store matches the spec; warnings: {}", warnings.join("; "))
    };
    finish(&frame, Some(&desired), steps, work, Verdict::Ready(message))
}

/// Whether `membership_id` holds the only Workspace Administrator role in the workspace.
pub(crate) fn is_last_admin(snapshot: &Snapshot, workspace_id: &str, membership_id: &str) -> bool {
    !snapshot.memberships.values().any(|m| {
        m.record.id != membership_id
            && m.record.workspace_id.as_deref() == Some(workspace_id)
            && m.record.roles.contains(&Role::WorkspaceAdministrator)
    })
}

fn finish(
    frame: &Frame<'_, MembershipStatus>,
    desired: Option<&DesiredMembership>,
    steps: Vec<crate::store::Step>,
    after: Snapshot,
    verdict: Verdict,
) -> Plan<MembershipStatus> {
    let id = frame.id;
    let conditions = frame.conditions(&verdict, |p| &p.conditions);
    let customer_uid = after.customer.as_ref().map(|c| c.record.uid.clone()).unwrap_or_default();
    let invitation = desired.and_then(|d| {
        let scope = d.workspace_id.clone().unwrap_or(customer_uid);
        after.invitations.get(&(scope, d.subject_key.clone())).map(|i| InvitationStatus {
            state: i.state.clone(),
            sent_at: i.sent_at.map(rfc3339),
            expires_at: i.expires_at.map(rfc3339),
            accepted_at: i.accepted_at.map(rfc3339),
            accepted_by: i.accepted_by.clone(),
            issue: Some(i.issue),
            attempts: Some(i.attempts),
            last_error: i.last_error.clone(),
        })
    });
    let mut conditions = conditions;
    if let Some((i, d)) = invitation.as_ref().zip(desired) {
        let (ok, message) = invited(i, d.email.as_deref().unwrap_or(&d.subject_key));
        use crate::api::conditions as c;
        c::set(&mut conditions, c::new(c::INVITED, ok, &i.state, message, id.generation, frame.ctx.now));
    }
    let effective = desired.map(effective_of).unwrap_or_default();
    let stalled = verdict.is_stalled();
    let status = MembershipStatus {
        observed_generation: id.generation,
        conditions,
        invitation,
        effective_permissions: effective,
        tracking: Default::default(),
    };
    let guard = guard(frame.snapshot, GuardTable::Membership, &id.uid);
    let requeue_at = status
        .invitation
        .as_ref()
        .filter(|i| i.state == invitation_state::SENT)
        .and_then(|i| i.expires_at.as_deref())
        .and_then(|t| t.parse().ok());
    Plan { steps, guard: Some(guard), status, requeue_at, stalled }
}

/// The `Invited` condition of an invitation: whether it reached its recipient, and the message.
fn invited(i: &InvitationStatus, email: &str) -> (bool, String) {
    let at = |t: &Option<String>| t.clone().unwrap_or_default();
    match i.state.as_str() {
        invitation_state::SENT => {
            (true, format!("sent to {email} on {}; it can be accepted until {}", at(&i.sent_at), at(&i.expires_at)))
        }
        invitation_state::ACCEPTED => {
            (true, format!("accepted by {} on {}", i.accepted_by.as_deref().unwrap_or(email), at(&i.accepted_at)))
        }
        invitation_state::FAILED => (
            false,
            format!(
                "delivery to {email} failed after {} attempt(s): {}. Fix the delivery settings (the operator's \
                 --notify-* flags); to send it again, delete and re-create this Membership",
                i.attempts.unwrap_or_default(),
                i.last_error.as_deref().unwrap_or("unknown error")
            ),
        ),
        invitation_state::EXPIRED => (
            false,
            format!(
                "expired unaccepted on {} after {} issue(s); delete and re-create this Membership to invite {email} again",
                at(&i.expires_at),
                i.issue.unwrap_or(1)
            ),
        ),
        invitation_state::REVOKED => (false, format!("the invitation to {email} was revoked")),
        _ => match &i.last_error {
            Some(e) => (false, format!("delivery to {email} is being retried after: {e}")),
            None => (false, format!("the invitation to {email} is queued for delivery")),
        },
    }
}

/// Effective permissions with every source, from the desired grants.
fn effective_of(d: &DesiredMembership) -> Vec<crate::api::membership::EffectivePermission> {
    let microsoft = d.roles.iter().any(|r| r.is_microsoft());
    let mut out: Vec<crate::api::membership::EffectivePermission> = Vec::new();
    for g in &d.grants {
        match out.iter_mut().find(|e| e.permission == g.permission) {
            Some(e) => e.sources.push(g.source.label()),
            None => out.push(crate::api::membership::EffectivePermission {
                permission: g.permission,
                sources: vec![g.source.label()],
                export_allowed: !(microsoft && crate::domain::matrix::export_restricted(g.permission)),
            }),
        }
    }
    out
}
