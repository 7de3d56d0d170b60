//! The controller's focused loads: an object planned against `Store::load` with its focus gets
//! exactly the plan it gets against everything the store holds for its customer.

use crate::support::{repo, stores};
use servicehub_operator::engine::{self, Options, focus_of, plan_object};
use servicehub_operator::plan::{Context, Identity};
use servicehub_operator::store::Store;
use servicehub_operator::validate::{self, Object, References, Sourced};

fn ctx() -> Context {
    Context {
        now: "2026-11-22T12:00:00Z".parse().expect("time"),
        actor: servicehub_operator::domain::actor::Actor::cli(None, "test", "host"),
    }
}

/// Every object's plan against its focused load equals its plan against the full load; the
/// steps planned, and the reasons of the plans that refused.
async fn assert_same_plans(
    store: &dyn Store,
    objects: &[Sourced],
    uids: &[String],
    label: &str,
) -> (usize, Vec<String>) {
    let mut steps = 0;
    let mut refused = Vec::new();
    for (s, uid) in objects.iter().zip(uids) {
        let o = &s.object;
        let id = Identity {
            uid: uid.clone(),
            namespace: o.namespace().to_owned(),
            name: o.name().to_owned(),
            generation: Some(1),
        };
        let declared = objects.iter().find_map(|x| match &x.object {
            Object::Workspace(w) if w.spec.default && w.spec.customer_ref.name == o.customer() => {
                w.metadata.name.clone()
            }
            _ => None,
        });
        let full = store.load_customer(o.namespace(), o.customer()).await.expect("full load");
        let focused = store.load(o.namespace(), o.customer(), &focus_of(o, uid)).await.expect("focused load");
        let a = plan_object(o, &id, declared.as_deref(), &full, &ctx());
        let b = plan_object(o, &id, declared.as_deref(), &focused, &ctx());
        assert_eq!(a.batch, b.batch, "{label}: {} {}: focused plan differs", o.kind(), o.name());
        assert_eq!(
            serde_json::to_value(&a.status).expect("json"),
            serde_json::to_value(&b.status).expect("json"),
            "{label}: {} {}: focused status differs",
            o.kind(),
            o.name()
        );
        assert!(focused.memberships.len() <= full.memberships.len());
        steps += a.batch.steps.len();
        if a.stalled {
            let conditions = a.status.conditions();
            refused.extend(conditions.iter().filter(|c| c.type_ == "Ready").map(|c| c.reason.clone()));
        }
    }
    (steps, refused)
}

#[tokio::test]
async fn focused_loads_plan_exactly_like_full_loads() {
    let report = validate::validate_paths(&[repo("examples")], References::InSet);
    assert!(!report.has_errors(), "{:?}", report.problems);
    for s in stores().await {
        let store = s.store.as_ref();
        let opts = Options { dry_run: false, ctx: ctx() };
        // Stage 1: customer and workspaces provisioned, memberships and policy not yet.
        let parents: Vec<Sourced> = report
            .objects
            .iter()
            .filter(|o| matches!(o.object, Object::Customer(_) | Object::Workspace(_)))
            .cloned()
            .collect();
        engine::run(store, &parents, &opts).await.expect("apply parents");
        let dry = engine::run(store, &report.objects, &Options { dry_run: true, ctx: ctx() }).await.expect("plan");
        let uids: Vec<String> = dry.objects.iter().map(|o| o.uid.clone()).collect();
        let (pending, _) = assert_same_plans(store, &report.objects, &uids, "before memberships").await;
        assert!(pending > 20, "{}: the memberships still have work to plan ({pending} steps)", s.name);

        // Stage 2: everything applied; nothing left to plan either way.
        let applied = engine::run(store, &report.objects, &opts).await.expect("apply");
        assert!(!applied.has_failures(), "{}: {:?}", s.name, applied.objects);
        let uids: Vec<String> = applied.objects.iter().map(|o| o.uid.clone()).collect();
        assert_eq!(assert_same_plans(store, &report.objects, &uids, "applied").await.0, 0, "{}", s.name);

        // Stage 3: every spec changed: memberships lose their roles and workspaces lose
        // their administrators (the examples' workspaces keep one of their own, so the
        // last-administrator rule is reached in the test below).
        let changed: Vec<Sourced> = report
            .objects
            .iter()
            .map(|s| {
                let mut s = s.clone();
                match &mut s.object {
                    Object::Membership(m) => {
                        m.spec.roles = vec![servicehub_operator::api::Role::User];
                        m.spec.permissions.clear();
                    }
                    Object::Workspace(w) => w.spec.administrators.truncate(1),
                    Object::Customer(c) => c.spec.support_contacts.clear(),
                    Object::LockboxPolicy(_) => {}
                }
                s
            })
            .collect();
        let (planned, _) = assert_same_plans(store, &changed, &uids, "changed").await;
        assert!(planned > 0, "{}: the changes plan steps", s.name);
    }
}

/// The last-administrator rule on a focused load, which reads a workspace's other
/// administrators only for a membership that is one: a workspace whose only administrator
/// is a Membership (its other administrator rows removed behind the store's back, as the
/// planner's unit test does; a workspace's own administrators always hold the role).
/// Demoting it is refused, on the focused load as on the full one; the plain member's
/// change plans alike.
#[tokio::test]
async fn the_last_administrator_rule_holds_on_a_focused_load() {
    use servicehub_operator::validate::Document;
    let doc = |value: serde_json::Value| Document { file: "test".into(), index: 1, value };
    let membership = |name: &str, role: &str, permissions: &[&str]| {
        doc(serde_json::json!({
            "apiVersion": "servicehub.io/v1alpha1", "kind": "Membership",
            "metadata": { "name": name, "namespace": "acme" },
            "spec": {
                "customerRef": { "name": "acme" }, "workspaceRef": { "name": "main" },
                "subject": { "kind": "User", "email": format!("{name}@acme.example") },
                "roles": [role], "permissions": permissions,
            }
        }))
    };
    let parents = vec![
        doc(serde_json::json!({
            "apiVersion": "servicehub.io/v1alpha1", "kind": "Customer",
            "metadata": { "name": "acme", "namespace": "acme" },
            "spec": {
                "displayName": "Acme", "serviceAdministrator": { "email": "sa@acme.example" },
                "agreement": { "kind": "Unified", "id": "U-9", "startDate": "2025-01-01" },
            }
        })),
        doc(serde_json::json!({
            "apiVersion": "servicehub.io/v1alpha1", "kind": "Workspace",
            "metadata": { "name": "main", "namespace": "acme" },
            "spec": { "customerRef": { "name": "acme" }, "displayName": "Main", "default": true, "administrators": [] }
        })),
    ];
    let first = [membership("boss", "WorkspaceAdministrator", &[]), membership("pat", "User", &["Learning"])];
    let later = [membership("boss", "User", &[]), membership("pat", "User", &[])];
    for s in stores().await {
        let store = s.store.as_ref();
        let report = validate::validate_documents([parents.clone(), first.to_vec()].concat(), References::InSet);
        assert!(!report.has_errors(), "{:?}", report.problems);
        let applied =
            engine::run(store, &report.objects, &Options { dry_run: false, ctx: ctx() }).await.expect("apply");
        assert!(!applied.has_failures(), "{}: {:?}", s.name, applied.objects);
        let uids: Vec<String> = applied.objects.iter().map(|o| o.uid.clone()).collect();
        let boss = applied.objects.iter().find(|o| o.name == "boss").expect("boss").uid.clone();
        let raw = servicehub_operator::store::sql::SqlStore::connect(s.url.parse().expect("url")).await.expect("store");
        let others =
            format!("DELETE FROM role_assignments WHERE role = 'WorkspaceAdministrator' AND membership_id <> '{boss}'");
        assert!(raw.execute_raw(&others).await.expect("delete") > 0, "{}: the service administrator's row", s.name);
        raw.close().await;
        let report = validate::validate_documents([parents.clone(), later.to_vec()].concat(), References::InSet);
        assert!(!report.has_errors(), "{:?}", report.problems);
        let (planned, refused) = assert_same_plans(store, &report.objects, &uids, "demoted").await;
        assert_eq!(refused, ["LastWorkspaceAdministrator"], "{}: only the demotion is refused", s.name);
        assert!(planned > 0, "{}: the plain member's change plans steps", s.name);
    }
}
