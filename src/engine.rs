//! The engine's local driver: run the planner over a set of objects against the store,
//! applying each object's plan in its own transaction. `servicehub apply` and `plan` use
//! it; the controller plans one object at a time with the same functions.
//!
//! Objects are grouped by customer and planned in dependency order against one snapshot per
//! customer, which mirrors each applied batch. Passes repeat until one changes nothing (a
//! Customer waits for its declared default Workspace in the first pass and provisions in
//! the second), so a second run over the same files plans nothing and writes nothing.

use crate::api::DeletionPolicy;
use crate::plan::{self, Context, Identity};
use crate::store::{GuardTable, Snapshot, Store, StoreError};
use crate::validate::{Object, Sourced};
use std::collections::BTreeMap;

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Plan only: print what would change, write nothing.
    pub dry_run: bool,
    /// The planning context (time, actor).
    pub ctx: Context,
}

/// What happened to one object.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReport {
    /// The file it came from.
    pub file: String,
    /// Kind.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The uid the store keys it by.
    pub uid: String,
    /// What was (or would be) done, in order.
    pub changes: Vec<Change>,
    /// The resulting status, as the controller would write it.
    pub status: serde_json::Value,
    /// Refused: the user must change something.
    pub stalled: bool,
    /// A store error that stopped this object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One change in a report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Change {
    /// The store action, e.g. `grant.add`.
    pub action: &'static str,
    /// What it does.
    pub summary: String,
    /// Whether it corrects drift.
    pub drift: bool,
}

/// The result of a run.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// One entry per object, in the order given (dependency order).
    pub objects: Vec<ObjectReport>,
    /// Rows written (0 for a dry run or a no-op).
    pub rows_written: u64,
}

impl Report {
    /// Whether any object was refused or failed.
    pub fn has_failures(&self) -> bool {
        self.objects.iter().any(|o| o.stalled || o.error.is_some())
    }
}

fn table_of(o: &Object) -> GuardTable {
    match o {
        Object::Customer(_) => GuardTable::Customer,
        Object::Workspace(_) => GuardTable::Workspace,
        Object::Membership(_) => GuardTable::Membership,
        Object::LockboxPolicy(_) => GuardTable::LockboxPolicy,
    }
}

fn customer_of(o: &Object) -> &str {
    match o {
        Object::Customer(c) => c.metadata.name.as_deref().unwrap_or_default(),
        Object::Workspace(w) => &w.spec.customer_ref.name,
        Object::Membership(m) => &m.spec.customer_ref.name,
        Object::LockboxPolicy(p) => &p.spec.customer_ref.name,
    }
}

fn meta(o: &Object) -> &kube::api::ObjectMeta {
    match o {
        Object::Customer(x) => &x.metadata,
        Object::Workspace(x) => &x.metadata,
        Object::Membership(x) => &x.metadata,
        Object::LockboxPolicy(x) => &x.metadata,
    }
}

/// Plan one object against a snapshot: steps, status as JSON, whether it is refused.
pub fn plan_object(
    o: &Object,
    id: &Identity,
    declared_default: Option<&str>,
    snapshot: &Snapshot,
    ctx: &Context,
) -> (crate::store::Batch, serde_json::Value, bool) {
    fn out<S: serde::Serialize>(p: plan::Plan<S>, ctx: &Context) -> (crate::store::Batch, serde_json::Value, bool) {
        (p.batch(ctx), serde_json::to_value(&p.status).unwrap_or_default(), p.stalled)
    }
    match o {
        Object::Customer(c) => out(plan::plan_customer(c, id, declared_default, snapshot, c.status.as_ref(), ctx), ctx),
        Object::Workspace(w) => out(plan::plan_workspace(w, id, snapshot, w.status.as_ref(), ctx), ctx),
        Object::Membership(m) => out(plan::plan_membership(m, id, snapshot, m.status.as_ref(), ctx), ctx),
        Object::LockboxPolicy(p) => out(plan::plan_lockbox_policy(p, id, snapshot, p.status.as_ref(), ctx), ctx),
    }
}

/// The deletion policy an object declares.
pub fn deletion_policy(o: &Object) -> DeletionPolicy {
    match o {
        Object::Customer(x) => x.spec.deletion_policy,
        Object::Workspace(x) => x.spec.deletion_policy,
        Object::Membership(x) => x.spec.deletion_policy,
        Object::LockboxPolicy(_) => DeletionPolicy::Delete,
    }
}

/// How many passes a run may take before it gives up converging.
const MAX_PASSES: usize = 4;
/// How often one object's batch is retried after a conflict with another writer.
const CONFLICT_RETRIES: usize = 3;

/// Apply (or, with `dry_run`, plan) `objects` against `store`.
pub async fn run(store: &dyn Store, objects: &[Sourced], opts: &Options) -> Result<Report, StoreError> {
    let written_before = store.rows_written();
    let mut report = Report::default();
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    let mut ids = Vec::with_capacity(objects.len());
    for (i, s) in objects.iter().enumerate() {
        let o = &s.object;
        let uid = match meta(o).uid.clone() {
            Some(uid) => uid,
            None => match store.resolve_uid(table_of(o), o.namespace(), o.name()).await? {
                Some(uid) => uid,
                None => uuid::Uuid::new_v4().to_string(),
            },
        };
        let id = Identity {
            uid: uid.clone(),
            namespace: o.namespace().to_owned(),
            name: o.name().to_owned(),
            generation: meta(o).generation,
        };
        ids.push(id);
        groups.entry((o.namespace().to_owned(), customer_of(o).to_owned())).or_default().push(i);
        report.objects.push(ObjectReport {
            file: s.file.clone(),
            kind: o.kind(),
            namespace: o.namespace().to_owned(),
            name: o.name().to_owned(),
            uid,
            changes: Vec::new(),
            status: serde_json::Value::Null,
            stalled: false,
            error: None,
        });
    }
    for ((ns, customer), members) in groups {
        let declared_default: Option<String> = members.iter().find_map(|i| match &objects[*i].object {
            Object::Workspace(w) if w.spec.default => w.metadata.name.clone(),
            _ => None,
        });
        let mut snap = store.load_customer(&ns, &customer).await?;
        for _pass in 0..MAX_PASSES {
            let mut changed = false;
            for i in &members {
                let o = &objects[*i].object;
                let mut attempt = 0;
                loop {
                    let (batch, status, stalled) =
                        plan_object(o, &ids[*i], declared_default.as_deref(), &snap, &opts.ctx);
                    let r = &mut report.objects[*i];
                    r.status = status;
                    r.stalled = stalled;
                    if batch.is_empty() {
                        break;
                    }
                    if !opts.dry_run
                        && let Err(e) = store.apply(&batch).await
                    {
                        if matches!(e, StoreError::Conflict(_)) && attempt < CONFLICT_RETRIES {
                            // Another writer got there first: re-read and re-plan.
                            attempt += 1;
                            snap = store.load_customer(&ns, &customer).await?;
                            continue;
                        }
                        r.error = Some(e.to_string());
                        break;
                    }
                    r.changes.extend(batch.steps.iter().map(|s| Change {
                        action: s.change.audit_action().1,
                        summary: s.summary.clone(),
                        drift: s.drift,
                    }));
                    snap.apply(&batch);
                    changed = true;
                    break;
                }
            }
            if !changed {
                break;
            }
        }
    }
    report.rows_written = store.rows_written() - written_before;
    Ok(report)
}
