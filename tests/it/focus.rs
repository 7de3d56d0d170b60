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

/// Every object's plan against its focused load equals its plan against the full load.
async fn assert_same_plans(store: &dyn Store, objects: &[Sourced], uids: &[String], label: &str) -> usize {
    let mut steps = 0;
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
    }
    steps
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
        let pending = assert_same_plans(store, &report.objects, &uids, "before memberships").await;
        assert!(pending > 20, "{}: the memberships still have work to plan ({pending} steps)", s.name);

        // Stage 2: everything applied; nothing left to plan either way.
        let applied = engine::run(store, &report.objects, &opts).await.expect("apply");
        assert!(!applied.has_failures(), "{}: {:?}", s.name, applied.objects);
        let uids: Vec<String> = applied.objects.iter().map(|o| o.uid.clone()).collect();
        assert_eq!(assert_same_plans(store, &report.objects, &uids, "applied").await, 0, "{}", s.name);

        // Stage 3: every spec changed: memberships lose their roles (which reaches the
        // last-administrator rule) and workspaces lose their administrators.
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
        let planned = assert_same_plans(store, &changed, &uids, "changed").await;
        assert!(planned > 0, "{}: the changes plan steps", s.name);
    }
}
