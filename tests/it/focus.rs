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
        let opts = Options { dry_run: false, ctx: ctx(), summaries: true };
        // Stage 1: customer and workspaces provisioned, memberships and policy not yet.
        let parents: Vec<Sourced> = report
            .objects
            .iter()
            .filter(|o| matches!(o.object, Object::Customer(_) | Object::Workspace(_)))
            .cloned()
            .collect();
        engine::run(store, &parents, &opts).await.expect("apply parents");
        let dry = engine::run(store, &report.objects, &Options { dry_run: true, ctx: ctx(), summaries: true })
            .await
            .expect("plan");
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
/// administrators only for a membership that is one: a workspace whose administrators are
/// two Memberships (the other administrator rows removed behind the store's back, as the
/// planner's unit test does; a workspace's own administrators always hold the role).
/// Demoting one is allowed, which the focused load only knows by reading the other; then
/// demoting the other, the last, is refused. Each plan is the same on both loads.
#[tokio::test]
async fn the_last_administrator_rule_holds_on_a_focused_load() {
    use servicehub_operator::validate::Document;
    let doc = |value: serde_json::Value| Document { file: "test".into(), index: 1, value };
    let membership = |name: &str, role: &str| {
        doc(serde_json::json!({
            "apiVersion": "servicehub.io/v1alpha1", "kind": "Membership",
            "metadata": { "name": name, "namespace": "acme" },
            "spec": {
                "customerRef": { "name": "acme" }, "workspaceRef": { "name": "main" },
                "subject": { "kind": "User", "email": format!("{name}@acme.example") },
                "roles": [role],
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
    let admin = "WorkspaceAdministrator";
    let stages = [
        [membership("boss", admin), membership("ann", admin), membership("pat", "User")],
        [membership("boss", "User"), membership("ann", admin), membership("pat", "User")],
        [membership("boss", "User"), membership("ann", "User"), membership("pat", "User")],
    ];
    let opts = Options { dry_run: false, ctx: ctx(), summaries: true };
    for s in stores().await {
        let store = s.store.as_ref();
        let objects = |stage: &[Document]| {
            let report = validate::validate_documents([parents.clone(), stage.to_vec()].concat(), References::InSet);
            assert!(!report.has_errors(), "{:?}", report.problems);
            report.objects
        };
        let raw = servicehub_operator::store::sql::SqlStore::connect(s.url.parse().expect("url")).await.expect("store");
        // Only the Memberships named keep the role (the service administrator's row goes).
        let only_admins = async |uids: &[&str]| {
            let keep = uids.iter().map(|u| format!("'{u}'")).collect::<Vec<_>>().join(", ");
            let sql = format!("DELETE FROM role_assignments WHERE role = '{admin}' AND membership_id NOT IN ({keep})");
            raw.execute_raw(&sql).await.expect("delete");
        };
        let applied = engine::run(store, &objects(&stages[0]), &opts).await.expect("apply");
        assert!(!applied.has_failures(), "{}: {:?}", s.name, applied.objects);
        let uids: Vec<String> = applied.objects.iter().map(|o| o.uid.clone()).collect();
        let uid = |name: &str| applied.objects.iter().find(|o| o.name == name).expect("applied").uid.clone();
        only_admins(&[&uid("boss"), &uid("ann")]).await;

        let (planned, refused) = assert_same_plans(store, &objects(&stages[1]), &uids, "one of two demoted").await;
        assert!(refused.is_empty(), "{}: another administrator remains: {refused:?}", s.name);
        assert!(planned > 0, "{}: the demotion plans steps", s.name);
        let applied = engine::run(store, &objects(&stages[1]), &opts).await.expect("apply");
        assert!(!applied.has_failures(), "{}: {:?}", s.name, applied.objects);
        only_admins(&[&uid("ann")]).await;

        let (_, refused) = assert_same_plans(store, &objects(&stages[2]), &uids, "the last demoted").await;
        assert_eq!(refused, ["LastWorkspaceAdministrator"], "{}: the last administrator stays", s.name);
        raw.close().await;
    }
}
