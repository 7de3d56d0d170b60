//! The planner's rules, exercised without I/O: snapshots in memory, the clock injected.

use super::*;
use crate::api::{Customer, DeletionPolicy, LockboxPolicy, Membership, Permission, Role, Workspace};
use crate::domain::rules::Source;
use crate::store::{Change, GuardTable, Snapshot, invitation_state};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

fn at(s: &str) -> Context {
    Context { now: s.parse().expect("timestamp"), actor: crate::domain::actor::Actor::cli(None, "test", "host") }
}

fn now() -> Context {
    at("2026-06-01T12:00:00Z")
}

fn id(uid: &str, name: &str) -> Identity {
    Identity { uid: uid.into(), namespace: "contoso".into(), name: name.into(), generation: Some(1) }
}

fn customer(extra: &str) -> Customer {
    serde_yaml::from_str(&format!(
        "apiVersion: servicehub.io/v1alpha1
kind: Customer
metadata: {{name: contoso, namespace: contoso}}
spec:
  displayName: Contoso
  agreement: {{kind: Unified, id: U-1, startDate: '2026-01-01', endDate: '2027-01-01'}}
  serviceAdministrator: {{email: sa@contoso.com, displayName: Sam Admin}}
  supportContacts: [{{email: help@contoso.com}}]
  globalAdministrators: [{{email: ga@contoso.com}}]
{extra}"
    ))
    .expect("customer")
}

fn workspace(name: &str, extra: &str) -> Workspace {
    serde_yaml::from_str(&format!(
        "apiVersion: servicehub.io/v1alpha1
kind: Workspace
metadata: {{name: {name}, namespace: contoso}}
spec:
  customerRef: {{name: contoso}}
  displayName: {name}
  administrators: [{{email: admin-{name}@contoso.com}}]
{extra}"
    ))
    .expect("workspace")
}

fn membership(name: &str, spec: &str) -> Membership {
    serde_yaml::from_str(&format!(
        "apiVersion: servicehub.io/v1alpha1
kind: Membership
metadata: {{name: {name}, namespace: contoso}}
spec:
  customerRef: {{name: contoso}}
{spec}"
    ))
    .expect("membership")
}

/// Apply a plan to a snapshot, as the store would.
fn apply<S>(snap: &mut Snapshot, plan: &Plan<S>) {
    snap.apply(&plan.batch(&now()));
}

/// A snapshot with the customer active and provisioned (auto default workspace).
fn active() -> Snapshot {
    let mut snap = Snapshot::default();
    let p = plan_customer(&customer(""), &id("c1", "contoso"), None, &snap, None, &now());
    apply(&mut snap, &p);
    snap
}

fn with_workspace(mut snap: Snapshot, name: &str, extra: &str) -> Snapshot {
    let p = plan_workspace(&workspace(name, extra), &id(&format!("ws-{name}"), name), &snap, None, &now());
    assert!(!p.stalled, "{:?}", p.status.conditions);
    apply(&mut snap, &p);
    snap
}

fn ready(conds: &[Condition]) -> &Condition {
    conditions::get(conds, conditions::READY).expect("Ready condition")
}

fn grants_of(snap: &Snapshot, membership: &str) -> Vec<(Permission, String)> {
    snap.memberships[membership].record.grants.iter().map(|g| (g.permission, g.source.label())).collect()
}

#[test]
fn a_customer_before_its_start_date_provisions_nothing_and_says_when() {
    let snap = Snapshot::default();
    let p = plan_customer(&customer(""), &id("c1", "contoso"), None, &snap, None, &at("2025-12-31T23:59:59Z"));
    assert_eq!(p.status.phase, Some(crate::api::customer::CustomerPhase::Pending));
    assert_eq!(p.steps.len(), 1, "only the customer row: {:?}", p.steps);
    assert!(matches!(p.steps[0].change, Change::PutCustomer(_)));
    let r = ready(&p.status.conditions);
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("False", "AgreementNotStarted"));
    assert!(r.message.contains("2026-01-01"), "{}", r.message);
    assert!(conditions::is_true(&p.status.conditions, conditions::RECONCILING));
    assert_eq!(p.requeue_at, Some("2026-01-01T00:00:00Z".parse().expect("t")));
}

#[test]
fn at_the_start_date_the_customer_becomes_active_and_is_provisioned() {
    let snap = Snapshot::default();
    let p = plan_customer(&customer(""), &id("c1", "contoso"), None, &snap, None, &at("2026-01-01T00:00:00Z"));
    assert_eq!(p.status.phase, Some(crate::api::customer::CustomerPhase::Active));
    assert_eq!(p.status.default_workspace.as_deref(), Some("contoso-default"));
    let mut after = snap.clone();
    apply(&mut after, &p);
    let default = after.default_workspace().expect("default workspace").record.clone();
    assert_eq!((default.id.as_str(), default.personal_allowed), ("c1/default", false));
    // The service administrator: the SA role at customer level, WA of the default workspace.
    let sa = &after.memberships["c1/serviceAdministrator"].record;
    assert!(sa.roles.contains(&Role::ServiceAdministrator) && sa.workspace_id.is_none());
    let sa_ws = &after.memberships["c1/serviceAdministrator/default"].record;
    assert_eq!(sa_ws.workspace_id.as_deref(), Some("c1/default"));
    assert!(sa_ws.roles.contains(&Role::WorkspaceAdministrator));
    assert!(
        grants_of(&after, "c1/serviceAdministrator/default")
            .contains(&(Permission::ManageUsers, "role:WorkspaceAdministrator".into()))
    );
    // Support contacts: members of the default workspace with Support Contact.
    assert_eq!(
        grants_of(&after, "c1/supportContact/help@contoso.com"),
        vec![(Permission::SupportContact, "individual".into())]
    );
    // Global administrators hold the role at customer level.
    assert!(
        after.memberships["c1/globalAdministrator/ga@contoso.com"].record.roles.contains(&Role::GlobalAdministrator)
    );
    // Each person is invited once: SA and the contact to the default workspace, the GA at customer level.
    let invited: Vec<(&str, &str)> = after.invitations.keys().map(|(s, u)| (s.as_str(), u.as_str())).collect();
    assert_eq!(
        invited,
        vec![("c1", "ga@contoso.com"), ("c1/default", "help@contoso.com"), ("c1/default", "sa@contoso.com")]
    );
    assert!(ready(&p.status.conditions).status == "True");
    assert_eq!(p.requeue_at, Some("2027-01-01T00:00:00Z".parse().expect("t")), "requeued at the end date");
}

#[test]
fn after_the_end_date_no_new_invitations_are_issued() {
    let snap = Snapshot::default();
    let p = plan_customer(&customer(""), &id("c1", "contoso"), None, &snap, None, &at("2027-01-01T00:00:00Z"));
    assert_eq!(p.status.phase, Some(crate::api::customer::CustomerPhase::Expired));
    assert!(p.steps.iter().all(|s| !matches!(s.change, Change::IssueInvitation { .. })));
    assert!(ready(&p.status.conditions).message.contains("no new invitations"));
    assert_eq!(p.requeue_at, None);
}

#[test]
fn replanning_after_apply_plans_nothing_for_every_kind() {
    let mut snap = with_workspace(active(), "emea", "");
    let c = plan_customer(&customer(""), &id("c1", "contoso"), None, &snap, None, &now());
    assert!(c.steps.is_empty(), "{:?}", c.steps);
    let w = plan_workspace(&workspace("emea", ""), &id("ws-emea", "emea"), &snap, None, &now());
    assert!(w.steps.is_empty(), "{:?}", w.steps);
    let m = membership(
        "lee",
        "  workspaceRef: {name: emea}\n  subject: {kind: User, email: lee@contoso.com}\n  permissions: [Learning]",
    );
    let p = plan_membership(&m, &id("m1", "lee"), &snap, None, &now());
    assert!(!p.steps.is_empty());
    apply(&mut snap, &p);
    assert!(plan_membership(&m, &id("m1", "lee"), &snap, None, &now()).steps.is_empty());
    let lb: LockboxPolicy = serde_yaml::from_str(
        "apiVersion: servicehub.io/v1alpha1\nkind: LockboxPolicy\nmetadata: {name: lb, namespace: contoso}\nspec:\n  customerRef: {name: contoso}\n  approvers: {emails: [sa@contoso.com]}",
    )
    .expect("policy");
    let p = plan_lockbox_policy(&lb, &id("lb1", "lb"), &snap, None, &now());
    apply(&mut snap, &p);
    assert!(plan_lockbox_policy(&lb, &id("lb1", "lb"), &snap, None, &now()).steps.is_empty());
}

#[test]
fn a_declared_default_workspace_is_waited_for_then_used() {
    let mut snap = Snapshot::default();
    let c = customer("");
    let p = plan_customer(&c, &id("c1", "contoso"), Some("hq"), &snap, None, &now());
    assert_eq!(ready(&p.status.conditions).reason, "WaitingForDefaultWorkspace");
    assert!(p.steps.iter().all(|s| !matches!(s.change, Change::PutWorkspace(_))), "no default of our own");
    apply(&mut snap, &p);
    snap = with_workspace(snap, "hq", "  default: true");
    let p = plan_customer(&c, &id("c1", "contoso"), Some("hq"), &snap, None, &now());
    apply(&mut snap, &p);
    assert_eq!(snap.memberships["c1/serviceAdministrator/default"].record.workspace_id.as_deref(), Some("ws-hq"));
    assert_eq!(snap.workspaces.len(), 1, "no contoso-default");
}

#[test]
fn a_declared_default_replaces_the_operators_own() {
    let snap = active();
    let p = plan_workspace(&workspace("hq", "  default: true"), &id("ws-hq", "hq"), &snap, None, &now());
    assert!(matches!(&p.steps[0].change, Change::DeleteWorkspace { id } if id == "c1/default"), "{:?}", p.steps[0]);
    // A second declared default is a conflict the user must resolve.
    let mut snap = snap;
    apply(&mut snap, &p);
    let p = plan_workspace(&workspace("hq2", "  default: true"), &id("ws-hq2", "hq2"), &snap, None, &now());
    assert!(p.stalled && p.steps.is_empty());
    assert!(ready(&p.status.conditions).message.contains("already has default workspace hq"));
}

#[test]
fn delegated_administration_gives_the_group_the_administrator_role_without_an_invitation() {
    let c = customer("  administration: {model: Delegated, groupId: 6F1C2F4E-2B7A-4D0C-9A51-3E8F0C2D9B10}");
    let mut snap = Snapshot::default();
    let p = plan_customer(&c, &id("c1", "contoso"), None, &snap, None, &now());
    apply(&mut snap, &p);
    let g = &snap.memberships["c1/delegatedAdministrators"].record;
    assert_eq!(
        (g.subject_kind.as_str(), g.subject_key.as_str()),
        ("Group", "group:6f1c2f4e-2b7a-4d0c-9a51-3e8f0c2d9b10")
    );
    assert!(g.roles.contains(&Role::GlobalAdministrator));
    assert!(!snap.invitations.keys().any(|(_, s)| s.starts_with("group:")));
}

#[test]
fn drift_is_restored_and_marked() {
    let mut snap = active();
    let sa = "c1/serviceAdministrator/default";
    // Behind the operator's back: a grant deleted, a role added.
    let m = std::sync::Arc::make_mut(&mut snap.memberships.get_mut(sa).expect("sa").record);
    m.grants.retain(|g| g.permission != Permission::ManageUsers);
    m.roles.insert(Role::User);
    let p = plan_customer(&customer(""), &id("c1", "contoso"), None, &snap, None, &now());
    assert_eq!(p.steps.len(), 2, "{:?}", p.steps);
    assert!(p.steps.iter().all(|s| s.drift && s.summary.ends_with("(drift correction)")));
    assert!(
        p.steps.iter().any(
            |s| matches!(&s.change, Change::AddGrant { grant, .. } if grant.permission == Permission::ManageUsers)
        )
    );
    assert!(p.steps.iter().any(|s| matches!(&s.change, Change::RemoveRole { role: Role::User, .. })));
}

#[test]
fn a_spec_change_is_not_drift() {
    let mut snap = with_workspace(active(), "emea", "");
    let m1 = membership(
        "lee",
        "  workspaceRef: {name: emea}\n  subject: {kind: User, email: lee@contoso.com}\n  permissions: [Learning]",
    );
    let p = plan_membership(&m1, &id("m1", "lee"), &snap, None, &now());
    apply(&mut snap, &p);
    let m2 = membership(
        "lee",
        "  workspaceRef: {name: emea}\n  subject: {kind: User, email: lee@contoso.com}\n  roles: [WorkspaceAdministrator]",
    );
    let p = plan_membership(&m2, &id("m1", "lee"), &snap, None, &now());
    assert!(p.steps.iter().all(|s| !s.drift));
    assert!(p.steps.iter().any(|s| matches!(&s.change, Change::AddRole { role: Role::WorkspaceAdministrator, .. })));
    assert!(
        p.steps
            .iter()
            .any(|s| matches!(&s.change, Change::RemoveGrant { grant, .. } if grant.source == Source::Individual))
    );
    assert!(
        p.steps.iter().all(|s| !matches!(s.change, Change::IssueInvitation { .. })),
        "invited once, not on every change"
    );
    apply(&mut snap, &p);
    let e = &p.status.effective_permissions;
    let learning = e.iter().find(|e| e.permission == Permission::Learning).expect("learning");
    assert_eq!(learning.sources, vec!["role:WorkspaceAdministrator".to_owned()]);
}

#[test]
fn memberships_are_refused_with_reasons() {
    let snap = with_workspace(active(), "emea", "");
    let cases = [
        (
            "  workspaceRef: {name: apac}\n  subject: {kind: User, email: a@contoso.com}",
            "WorkspaceNotFound",
            "spec.workspaceRef",
        ),
        (
            "  workspaceRef: {name: emea}\n  subject: {kind: User, email: a@contoso.com}\n  permissions: [ManageUsers]",
            "PermissionNotGrantable",
            "spec.permissions[0]: permission ManageUsers",
        ),
        (
            "  workspaceRef: {name: emea}\n  subject: {kind: User, email: a@contoso.com}\n  roles: [GlobalAdministrator]",
            "RoleNotAllowed",
            "spec.roles[0]",
        ),
        (
            "  workspaceRef: {name: emea}\n  subject: {kind: User, email: a@outlook.com, accountType: Personal}",
            "PersonalAccountNotAllowed",
            "not allowed in workspace contoso/emea",
        ),
    ];
    for (spec, reason, text) in cases {
        let p = plan_membership(&membership("x", spec), &id("mx", "x"), &snap, None, &now());
        assert!(p.stalled && p.steps.is_empty(), "{reason}");
        let stalled = conditions::get(&p.status.conditions, conditions::STALLED).expect("Stalled");
        assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", reason));
        assert!(stalled.message.contains(text), "{reason}: {}", stalled.message);
        assert_eq!(stalled.observed_generation, Some(1));
    }
    let p = plan_membership(
        &membership("x", "  subject: {kind: User, email: a@contoso.com}"),
        &id("mx", "x"),
        &Snapshot::default(),
        None,
        &now(),
    );
    assert_eq!(ready(&p.status.conditions).reason, "CustomerNotFound");
}

#[test]
fn deprecated_permissions_warn_and_are_never_granted() {
    let mut snap = with_workspace(active(), "emea", "");
    let m = membership(
        "lee",
        "  workspaceRef: {name: emea}\n  subject: {kind: User, email: lee@contoso.com}\n  permissions: [Learning, ContractDetails]",
    );
    let p = plan_membership(&m, &id("m1", "lee"), &snap, None, &now());
    assert!(!p.stalled);
    assert!(ready(&p.status.conditions).message.contains("ContractDetails is deprecated"));
    apply(&mut snap, &p);
    assert_eq!(grants_of(&snap, "m1"), vec![(Permission::Learning, "individual".into())]);
}

#[test]
fn personal_accounts_turned_off_are_reported_not_removed() {
    let mut snap = with_workspace(active(), "labs", "  allowPersonalAccounts: true");
    let m = membership(
        "r",
        "  workspaceRef: {name: labs}\n  subject: {kind: User, email: r@outlook.com, accountType: Personal}\n  permissions: [Learning]",
    );
    let p = plan_membership(&m, &id("m-r", "r"), &snap, None, &now());
    assert!(!p.stalled);
    apply(&mut snap, &p);
    // The administrator turns the MSA exception off.
    let off = plan_workspace(
        &workspace("labs", "  allowPersonalAccounts: false"),
        &id("ws-labs", "labs"),
        &snap,
        None,
        &now(),
    );
    assert!(off.steps.iter().all(|s| !matches!(s.change, Change::DeleteMembership { .. })));
    let present = conditions::get(&off.status.conditions, workspace::PERSONAL_ACCOUNTS_PRESENT).expect("condition");
    assert_eq!(present.status, "True");
    assert!(present.message.contains("r@outlook.com"), "{}", present.message);
    apply(&mut snap, &off);
    // The existing member keeps reconciling; a new personal-account member is refused.
    assert!(!plan_membership(&m, &id("m-r", "r"), &snap, None, &now()).stalled);
    let new = membership(
        "q",
        "  workspaceRef: {name: labs}\n  subject: {kind: User, email: q@outlook.com, accountType: Personal}",
    );
    let p = plan_membership(&new, &id("m-q", "q"), &snap, None, &now());
    assert!(p.stalled && ready(&p.status.conditions).message.contains("allowPersonalAccounts: false"));
}

#[test]
fn the_last_workspace_administrator_cannot_be_removed() {
    let mut snap = with_workspace(active(), "emea", "");
    // Make the Membership the only administrator: drop the workspace's own admin row.
    let admin_row = snap.memberships.keys().find(|k| k.starts_with("ws-emea/administrator/")).cloned().expect("admin");
    snap.memberships.remove(&admin_row);
    let admin = membership(
        "boss",
        "  workspaceRef: {name: emea}\n  subject: {kind: User, email: boss@contoso.com}\n  roles: [WorkspaceAdministrator]",
    );
    let p = plan_membership(&admin, &id("m-boss", "boss"), &snap, None, &now());
    apply(&mut snap, &p);
    let demoted = membership(
        "boss",
        "  workspaceRef: {name: emea}\n  subject: {kind: User, email: boss@contoso.com}\n  roles: [User]",
    );
    let p = plan_membership(&demoted, &id("m-boss", "boss"), &snap, None, &now());
    assert!(p.stalled && ready(&p.status.conditions).reason == "LastWorkspaceAdministrator");
    let refused = plan_delete(GuardTable::Membership, &id("m-boss", "boss"), DeletionPolicy::Delete, &snap, &now());
    assert!(refused.expect_err("refused").0.contains("last Workspace Administrator"));
    // Orphaning leaves the rows, so it is allowed.
    assert!(plan_delete(GuardTable::Membership, &id("m-boss", "boss"), DeletionPolicy::Orphan, &snap, &now()).is_ok());
}

#[test]
fn a_membership_cannot_take_away_the_service_administrators_rights() {
    let mut snap = active();
    let before = grants_of(&snap, "c1/serviceAdministrator/default");
    let m = membership(
        "sa-too",
        "  workspaceRef: {name: contoso-default}\n  subject: {kind: User, email: sa@contoso.com}\n  permissions: [Learning]",
    );
    let p = plan_membership(&m, &id("m-sa", "sa-too"), &snap, None, &now());
    apply(&mut snap, &p);
    let d = plan_delete(GuardTable::Membership, &id("m-sa", "sa-too"), DeletionPolicy::Delete, &snap, &now())
        .expect("delete");
    snap.apply(&d);
    assert_eq!(grants_of(&snap, "c1/serviceAdministrator/default"), before);
    assert!(plan_customer(&customer(""), &id("c1", "contoso"), None, &snap, None, &now()).steps.is_empty());
}

#[test]
fn removing_a_membership_revokes_its_grants_and_pending_invitation_and_keeps_the_user() {
    let mut snap = with_workspace(active(), "emea", "");
    let m = membership(
        "lee",
        "  workspaceRef: {name: emea}\n  subject: {kind: User, email: lee@contoso.com}\n  permissions: [Learning]",
    );
    let p = plan_membership(&m, &id("m1", "lee"), &snap, None, &now());
    apply(&mut snap, &p);
    assert_eq!(p.status.invitation.as_ref().map(|i| i.state.as_str()), Some(invitation_state::PENDING));
    let d =
        plan_delete(GuardTable::Membership, &id("m1", "lee"), DeletionPolicy::Delete, &snap, &now()).expect("delete");
    snap.apply(&d);
    assert!(!snap.memberships.contains_key("m1"));
    assert_eq!(
        snap.invitations[&("ws-emea".to_owned(), "lee@contoso.com".to_owned())].state,
        invitation_state::REVOKED
    );
    assert!(snap.users.contains_key("lee@contoso.com"));
    // Re-created (a new uid): a fresh invitation, issue 2.
    let p = plan_membership(&m, &id("m2", "lee"), &snap, None, &now());
    apply(&mut snap, &p);
    let inv = &snap.invitations[&("ws-emea".to_owned(), "lee@contoso.com".to_owned())];
    assert_eq!((inv.state.as_str(), inv.issue, inv.membership_id.as_str()), (invitation_state::PENDING, 2, "m2"));
}

#[test]
fn orphan_releases_and_delete_of_nothing_is_a_no_op() {
    let snap = with_workspace(active(), "emea", "");
    let b = plan_delete(GuardTable::Workspace, &id("ws-emea", "emea"), DeletionPolicy::Orphan, &snap, &now())
        .expect("orphan");
    assert!(matches!(&b.steps[0].change, Change::Release { table: GuardTable::Workspace, .. }));
    let b = plan_delete(GuardTable::Workspace, &id("ws-gone", "gone"), DeletionPolicy::Delete, &snap, &now())
        .expect("none");
    assert!(b.is_empty(), "idempotent cleanup");
}

#[test]
fn a_second_lockbox_policy_is_a_conflict_and_ignored() {
    let mut snap = active();
    let lb = |name: &str| -> LockboxPolicy {
        serde_yaml::from_str(&format!(
            "apiVersion: servicehub.io/v1alpha1\nkind: LockboxPolicy\nmetadata: {{name: {name}, namespace: contoso}}\nspec:\n  customerRef: {{name: contoso}}\n  approvers: {{emails: [sa@contoso.com]}}"
        ))
        .expect("policy")
    };
    let p = plan_lockbox_policy(&lb("first"), &id("lb1", "first"), &snap, None, &now());
    apply(&mut snap, &p);
    let p = plan_lockbox_policy(&lb("second"), &id("lb2", "second"), &snap, None, &now());
    assert!(p.stalled && p.steps.is_empty());
    assert!(ready(&p.status.conditions).message.contains("already has LockboxPolicy first"));
}

#[test]
fn workspaces_wait_for_an_active_customer() {
    let p = plan_workspace(&workspace("emea", ""), &id("ws", "emea"), &Snapshot::default(), None, &now());
    assert!(p.stalled && ready(&p.status.conditions).reason == "CustomerNotFound");
    let mut pending = Snapshot::default();
    let c = plan_customer(&customer(""), &id("c1", "contoso"), None, &pending, None, &at("2025-06-01T00:00:00Z"));
    apply(&mut pending, &c);
    let p = plan_workspace(&workspace("emea", ""), &id("ws", "emea"), &pending, None, &now());
    assert!(!p.stalled && p.steps.is_empty() && ready(&p.status.conditions).reason == "CustomerNotActive");
}

#[test]
fn condition_times_move_only_on_transitions() {
    let snap = active();
    let first = plan_customer(&customer(""), &id("c1", "contoso"), None, &snap, None, &now());
    let later = plan_customer(
        &customer(""),
        &id("c1", "contoso"),
        None,
        &snap,
        Some(&first.status),
        &at("2026-06-02T00:00:00Z"),
    );
    assert_eq!(first.status, later.status, "an unchanged status is byte-for-byte the same");
}
