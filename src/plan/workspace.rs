//! Workspace: created under an active customer; its administrators hold Workspace
//! Administrator and are invited; the personal-account rule follows `allowPersonalAccounts`
//! or the agreement. Turning personal accounts off never removes existing personal-account
//! members: they are reported in the `PersonalAccountsPresent` condition.

use super::customer::auto_default_id;
use super::members::{DesiredMembership, Owner, emit, remove, step};
use super::{Context, Frame, Identity, Plan, Verdict, applied, guard};
use crate::api::conditions;
use crate::api::customer::AgreementKind;
use crate::api::workspace::WorkspaceStatus;
use crate::api::{AccountType, Role, Workspace};
use crate::domain::rules;
use crate::store::{Change, GuardTable, Snapshot, WorkspaceRecord};
use std::collections::BTreeSet;

/// Condition type listing personal-account members of a workspace that no longer allows them.
pub const PERSONAL_ACCOUNTS_PRESENT: &str = "PersonalAccountsPresent";

/// Plan a Workspace against its customer's snapshot.
pub fn plan_workspace(
    ws: &Workspace,
    id: &Identity,
    snapshot: &Snapshot,
    previous: Option<&WorkspaceStatus>,
    ctx: &Context,
) -> Plan<WorkspaceStatus> {
    let spec = &ws.spec;
    let mut work = snapshot.clone();
    let mut steps = Vec::new();
    let customer_name = &spec.customer_ref.name;
    let frame = Frame { snapshot, id, previous, ctx };
    let refuse = |reason: &'static str, message: String| {
        finish(&frame, Vec::new(), snapshot.clone(), None, Verdict::Stalled { reason, message })
    };
    let c = match super::started_customer(snapshot, customer_name) {
        Ok(c) => c,
        Err(verdict) => return finish(&frame, Vec::new(), snapshot.clone(), None, verdict),
    };
    let stored = snapshot.workspaces.get(&id.uid).map(|w| w.record.clone());
    if c.phase == "Expired" && stored.is_none() {
        let msg = format!("Customer {customer_name}'s agreement has ended; no new workspaces can be created");
        return refuse("CustomerNotActive", msg);
    }
    let kind = AgreementKind::from_name(&c.agreement_kind);
    let personal_allowed = rules::personal_accounts_allowed(kind, spec.allow_personal_accounts);

    if spec.default
        && let Some(other) = snapshot.default_workspace()
        && other.record.id != id.uid
    {
        if other.record.id == auto_default_id(&c.uid) {
            // The operator's own default workspace gives way to the declared one.
            let summary = format!("remove default workspace {}, replaced by {}", other.record.name, id.name);
            emit(
                &mut work,
                &mut steps,
                step(Change::DeleteWorkspace { id: other.record.id.clone() }, summary, false, None),
            );
        } else {
            let msg = format!(
                "spec.default: customer {}/{customer_name} already has default workspace {}",
                id.namespace, other.record.name
            );
            return refuse("DefaultWorkspaceConflict", msg);
        }
    }
    for (i, admin) in spec.administrators.iter().enumerate() {
        let at = format!("{}/{}", id.namespace, id.name);
        if let Err(msg) =
            rules::check_account(admin.account_type, admin.email.as_str(), &at, kind, spec.allow_personal_accounts)
        {
            return refuse("PersonalAccountNotAllowed", format!("spec.administrators[{i}].accountType: {msg}"));
        }
    }

    let (applied_spec, spec_hash) =
        applied(&crate::api::WorkspaceSpec { management_policy: Default::default(), ..spec.clone() });
    let record = WorkspaceRecord {
        id: id.uid.clone(),
        customer_uid: c.uid.clone(),
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        origin: "Workspace".to_owned(),
        display_name: spec.display_name.clone(),
        description: spec.description.clone(),
        is_default: spec.default,
        allow_personal: spec.allow_personal_accounts,
        personal_allowed,
        support_benefits: serde_json::to_string(&spec.support_benefits).unwrap_or_default(),
        deletion_policy: format!("{:?}", spec.deletion_policy),
        spec_hash,
        applied_spec,
    };
    match &stored {
        None => emit(
            &mut work,
            &mut steps,
            step(Change::PutWorkspace(record.clone()), format!("create workspace {}", id.name), false, None),
        ),
        Some(old) if **old != record => {
            let before = serde_json::to_string(old).ok();
            emit(
                &mut work,
                &mut steps,
                step(Change::PutWorkspace(record.clone()), format!("update workspace {}", id.name), false, before),
            );
        }
        Some(_) => {}
    }

    let invite = c.phase == "Active";
    let roles = [Role::WorkspaceAdministrator];
    let prefix = format!("{}/administrator/", id.uid);
    let mut wanted = BTreeSet::new();
    let owner = Owner { origin: "Workspace", id, deletion_policy: spec.deletion_policy, invite };
    for admin in &spec.administrators {
        let mid = format!("{prefix}{}", admin.email.normalized());
        let here = Some((id.uid.as_str(), id.name.as_str()));
        let m = DesiredMembership::for_person(&owner, mid, admin, here, spec.default, &roles, &[]);
        wanted.insert(m.id.clone());
        m.plan(&mut work, &c.uid, &c.display_name, ctx, &mut steps);
    }
    let stale: Vec<String> =
        snapshot.memberships.keys().filter(|k| k.starts_with(&prefix) && !wanted.contains(*k)).cloned().collect();
    for mid in stale {
        remove(&mut work, &mid, &mut steps);
    }
    finish(&frame, steps, work, Some(personal_allowed), Verdict::Ready("the store matches the spec".into()))
}

fn finish(
    frame: &Frame<'_, WorkspaceStatus>,
    steps: Vec<crate::store::Step>,
    after: Snapshot,
    personal_allowed: Option<bool>,
    verdict: Verdict,
) -> Plan<WorkspaceStatus> {
    let (id, ctx) = (frame.id, frame.ctx);
    let mut conds = frame.conditions(&verdict, |p| &p.conditions);
    let members: BTreeSet<&str> = after
        .memberships
        .values()
        .filter(|m| m.record.workspace_id.as_deref() == Some(id.uid.as_str()))
        .map(|m| m.record.subject_key.as_str())
        .collect();
    if personal_allowed.is_some() {
        let personal: Vec<&str> = members
            .iter()
            .copied()
            .filter(|s| after.users.get(*s).is_some_and(|u| u.account_type == AccountType::Personal.as_str()))
            .collect();
        let present = personal_allowed == Some(false) && !personal.is_empty();
        let message = if present {
            format!(
                "personal accounts are not allowed here but these members use one: {}; they keep their access \
                 until removed, and new personal-account members are refused",
                personal.join(", ")
            )
        } else {
            String::new()
        };
        let reason = if present { "PersonalAccountsNotAllowed" } else { "None" };
        conditions::set(
            &mut conds,
            conditions::new(PERSONAL_ACCOUNTS_PRESENT, present, reason, message, id.generation, ctx.now),
        );
    }
    let stalled = verdict.is_stalled();
    let status = WorkspaceStatus {
        observed_generation: id.generation,
        conditions: conds,
        personal_accounts_allowed: personal_allowed,
        members: personal_allowed.map(|_| members.len() as i64),
        tracking: Default::default(),
    };
    let guard = guard(frame.snapshot, GuardTable::Workspace, &id.uid);
    Plan { steps, guard: Some(guard), status, requeue_at: None, stalled }
}
