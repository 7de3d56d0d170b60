//! Customer: phase from the agreement dates and the clock; once active, the default
//! workspace, the service administrator, support contacts, global administrators and the
//! delegated administrators' group, each invited (users only, never after the end date).

use super::members::{DesiredMembership, Owner, emit, grants_for, remove, step};
use super::{Context, Frame, Identity, Plan, Verdict, applied, guard, start_of};
use crate::api::customer::{AdministrationModel, CustomerPhase, CustomerSpec, CustomerStatus};
use crate::api::{Customer, Permission, Person, Role};
use crate::store::{Change, CustomerRecord, GuardTable, Snapshot, WorkspaceRecord};
use std::collections::BTreeSet;

/// The phase of an agreement at `now`.
pub fn phase(spec: &CustomerSpec, now: jiff::Timestamp) -> CustomerPhase {
    if now < start_of(spec.agreement.start_date) {
        CustomerPhase::Pending
    } else if spec.agreement.end_date.is_some_and(|end| now >= start_of(end)) {
        CustomerPhase::Expired
    } else {
        CustomerPhase::Active
    }
}

/// Id of the workspace the operator creates when no Workspace declares `default: true`.
pub fn auto_default_id(customer_uid: &str) -> String {
    format!("{customer_uid}/default")
}

/// Plan a Customer. `declared_default` names the Workspace object that declares itself the
/// customer's default (from the objects being applied, or the cluster's cache), if any.
pub fn plan_customer(
    customer: &Customer,
    id: &Identity,
    declared_default: Option<&str>,
    snapshot: &Snapshot,
    previous: Option<&CustomerStatus>,
    ctx: &Context,
) -> Plan<CustomerStatus> {
    let spec = &customer.spec;
    let uid = id.uid.as_str();
    let phase = phase(spec, ctx.now);
    let mut steps = Vec::new();
    let mut work = snapshot.clone();
    let frame = Frame { snapshot, id, previous, ctx };

    // A different managed customer with this name (a re-created object): the old rows are
    // someone else's; refuse until it is gone rather than inherit its rights.
    if let Some(c) = &snapshot.customer
        && c.record.uid != uid
    {
        let msg = format!(
            "the store holds customer {}/{} under the id {} (another object's, or one whose cleanup has not \
             run); it must be removed before this one can take the name, or, to take over what it holds, \
             annotate this object with {}: \"{}\"",
            id.namespace,
            id.name,
            c.record.uid,
            crate::api::ADOPT_ANNOTATION,
            c.record.uid
        );
        let verdict = Verdict::Stalled { reason: "NameInUse", message: msg };
        return finish(&frame, Vec::new(), work, phase, None, verdict, None);
    }

    let (applied_spec, spec_hash) =
        applied(&crate::api::CustomerSpec { management_policy: Default::default(), ..spec.clone() });
    let record = CustomerRecord {
        uid: uid.to_owned(),
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        display_name: spec.display_name.clone(),
        agreement_kind: spec.agreement.kind.as_str().to_owned(),
        agreement_id: spec.agreement.id.clone(),
        start_date: spec.agreement.start_date.to_string(),
        end_date: spec.agreement.end_date.map(|d| d.to_string()),
        administration_model: format!("{:?}", spec.administration.model),
        admin_group_id: spec.administration.group_id.clone(),
        settings: serde_json::to_string(&spec.settings).unwrap_or_default(),
        newsletters: serde_json::to_string(&spec.newsletters).unwrap_or_default(),
        phase: phase.as_str().to_owned(),
        deletion_policy: format!("{:?}", spec.deletion_policy),
        spec_hash,
        applied_spec,
    };
    match &snapshot.customer {
        None => emit(
            &mut work,
            &mut steps,
            step(
                Change::PutCustomer(record.clone()),
                format!(
                    "create customer {} ({} {}, {})",
                    id.name,
                    record.agreement_kind,
                    record.agreement_id,
                    phase.as_str()
                ),
                false,
                None,
            ),
        ),
        Some(c) if *c.record != record => {
            let before = serde_json::to_string(&c.record).ok();
            emit(
                &mut work,
                &mut steps,
                step(Change::PutCustomer(record.clone()), format!("update customer {}", id.name), false, before),
            );
        }
        Some(_) => {}
    }

    let next = match phase {
        CustomerPhase::Pending => Some(start_of(spec.agreement.start_date)),
        _ => spec.agreement.end_date.map(start_of).filter(|t| *t > ctx.now),
    };
    if phase == CustomerPhase::Pending {
        let msg = format!("the agreement starts on {}; nothing is provisioned before then", spec.agreement.start_date);
        let verdict = Verdict::Waiting { reason: "AgreementNotStarted", message: msg };
        return finish(&frame, steps, work, phase, None, verdict, next);
    }

    // The default workspace: the declared one once it is stored, else one we create.
    let auto_id = auto_default_id(uid);
    let default_ws: Option<(String, String)> = match declared_default {
        Some(name) => match snapshot.workspace_named(name) {
            Some(w) if w.record.is_default => Some((w.record.id.clone(), name.to_owned())),
            _ => {
                let msg = format!("waiting for the default workspace {name} to be created");
                let verdict = Verdict::Waiting { reason: "WaitingForDefaultWorkspace", message: msg };
                return finish(&frame, steps, work, phase, None, verdict, next);
            }
        },
        None => {
            let name = format!("{}-default", id.name);
            let ws = WorkspaceRecord {
                id: auto_id.clone(),
                customer_uid: uid.to_owned(),
                namespace: id.namespace.clone(),
                name: name.clone(),
                origin: "Customer".to_owned(),
                display_name: format!("{} (default)", spec.display_name),
                description: Some("Default workspace, created when the agreement became active.".to_owned()),
                is_default: true,
                allow_personal: None,
                personal_allowed: spec.agreement.kind.allows_personal_accounts_by_default(),
                support_benefits: "[]".to_owned(),
                deletion_policy: format!("{:?}", spec.deletion_policy),
                spec_hash: String::new(),
                applied_spec: String::new(),
            };
            match snapshot.workspaces.get(&auto_id) {
                None => emit(
                    &mut work,
                    &mut steps,
                    step(Change::PutWorkspace(ws), format!("create default workspace {name}"), false, None),
                ),
                Some(w) if *w.record != ws => {
                    let before = serde_json::to_string(&w.record).ok();
                    emit(
                        &mut work,
                        &mut steps,
                        step(Change::PutWorkspace(ws), format!("update default workspace {name}"), false, before),
                    );
                }
                Some(_) => {}
            }
            Some((auto_id.clone(), name))
        }
    };
    // A declared default replaces the one we created: remove ours (its invitations are revoked).
    if declared_default.is_some() && snapshot.workspaces.contains_key(&auto_id) {
        emit(
            &mut work,
            &mut steps,
            step(
                Change::DeleteWorkspace { id: auto_id.clone() },
                format!("remove default workspace {}-default, replaced by the declared one", id.name),
                false,
                None,
            ),
        );
    }

    let invite = phase == CustomerPhase::Active;
    let desired = implied_memberships(customer, id, default_ws.as_ref(), invite);
    for m in &desired {
        m.plan(&mut work, uid, &spec.display_name, ctx, &mut steps);
    }
    let wanted: BTreeSet<&str> = desired.iter().map(|m| m.id.as_str()).collect();
    let stale: Vec<String> = snapshot
        .memberships
        .values()
        .filter(|m| m.record.origin == "Customer" && m.record.id.starts_with(&format!("{uid}/")))
        .filter(|m| !wanted.contains(m.record.id.as_str()))
        .map(|m| m.record.id.clone())
        .collect();
    for mid in stale {
        remove(&mut work, &mid, &mut steps);
    }

    let message = match phase {
        CustomerPhase::Expired => format!(
            "the agreement ended on {}; existing access is kept and no new invitations are issued",
            spec.agreement.end_date.map(|d| d.to_string()).unwrap_or_default()
        ),
        _ => "the store matches the spec".to_owned(),
    };
    let default_name = default_ws.map(|(_, n)| n);
    finish(&frame, steps, work, phase, default_name, Verdict::Ready(message), next)
}

fn finish(
    frame: &Frame<'_, CustomerStatus>,
    steps: Vec<crate::store::Step>,
    after: Snapshot,
    phase: CustomerPhase,
    default_workspace: Option<String>,
    verdict: Verdict,
    next: Option<jiff::Timestamp>,
) -> Plan<CustomerStatus> {
    let id = frame.id;
    let guard = guard(frame.snapshot, GuardTable::Customer, &id.uid);
    let conditions = frame.conditions(&verdict, |p| &p.conditions);
    let stalled = verdict.is_stalled();
    let counts = crate::api::customer::CustomerCounts {
        workspaces: after.workspaces.len() as i64,
        users: after.users.len() as i64,
        pending_invitations: after
            .invitations
            .values()
            .filter(|i| {
                i.state == crate::store::invitation_state::PENDING || i.state == crate::store::invitation_state::SENT
            })
            .count() as i64,
    };
    let status = CustomerStatus {
        observed_generation: id.generation,
        conditions,
        phase: Some(phase),
        default_workspace,
        next_transition: next.map(|t| t.to_string()),
        counts: Some(counts),
        tracking: Default::default(),
    };
    Plan { steps: if stalled { Vec::new() } else { steps }, guard: Some(guard), status, requeue_at: next, stalled }
}

/// The memberships a Customer implies, given its default workspace `(id, name)`.
fn implied_memberships(
    customer: &Customer,
    id: &Identity,
    default_ws: Option<&(String, String)>,
    invite: bool,
) -> Vec<DesiredMembership> {
    let spec = &customer.spec;
    let uid = &id.uid;
    let mut out = Vec::new();
    let owner = Owner { origin: "Customer", id, deletion_policy: spec.deletion_policy, invite };
    let ws = default_ws.map(|(i, n)| (i.as_str(), n.as_str()));
    let user = |mid: String, person: &Person, ws: Option<(&str, &str)>, roles: &[Role], individual: &[Permission]| {
        DesiredMembership::for_person(&owner, mid, person, ws, ws.is_some(), roles, individual)
    };
    let sa = &spec.service_administrator;
    // Customer level: the role itself; the invitation goes with the default workspace one.
    let mut sa_customer = user(format!("{uid}/serviceAdministrator"), sa, None, &[Role::ServiceAdministrator], &[]);
    sa_customer.invite = false;
    out.push(sa_customer);
    if let Some(ws) = ws {
        out.push(user(
            format!("{uid}/serviceAdministrator/default"),
            sa,
            Some(ws),
            &[Role::WorkspaceAdministrator],
            &[],
        ));
        for p in &spec.support_contacts {
            let mid = format!("{uid}/supportContact/{}", p.email.normalized());
            out.push(user(mid, p, Some(ws), &[Role::User], &[Permission::SupportContact]));
        }
    }
    for p in &spec.global_administrators {
        let mid = format!("{uid}/globalAdministrator/{}", p.email.normalized());
        out.push(user(mid, p, None, &[Role::GlobalAdministrator], &[]));
    }
    if spec.administration.model == AdministrationModel::Delegated
        && let Some(group) = &spec.administration.group_id
    {
        let roles = [Role::GlobalAdministrator];
        out.push(DesiredMembership {
            id: format!("{uid}/delegatedAdministrators"),
            workspace_id: None,
            workspace_name: None,
            origin: "Customer".to_owned(),
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            subject_kind: "Group".to_owned(),
            subject_key: format!("group:{}", group.to_ascii_lowercase()),
            email: None,
            display_name: format!("Delegated administrators of {}", spec.display_name),
            account_type: None,
            roles: roles.into_iter().collect(),
            grants: grants_for(false, &roles, &[], false),
            deletion_policy: format!("{:?}", spec.deletion_policy),
            invite: false,
            applied_spec: String::new(),
        });
    }
    out
}
