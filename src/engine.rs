//! The engine's local driver: run the planner over a set of objects against the store,
//! applying each object's plan in its own transaction. `servicehub apply` and `plan` use
//! it; the controller plans one object at a time with the same functions.
//!
//! Objects are grouped by customer and planned in dependency order against one snapshot per
//! customer, which mirrors each applied batch. Passes repeat until one changes nothing (a
//! Customer waits for its declared default Workspace in the first pass and provisions in
//! the second), so a second run over the same files plans nothing and writes nothing.

use crate::api::{DeletionPolicy, ManagementPolicy, conditions};
use crate::plan::{self, Context, Identity};
use crate::store::{Focus, GuardTable, Snapshot, Store, StoreError};
use crate::validate::{Object, Sourced};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use std::collections::BTreeMap;

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Plan only: print what would change, write nothing.
    pub dry_run: bool,
    /// The planning context (time, actor).
    pub ctx: Context,
    /// Keep each change's summary in the report, for output that lists the changes; without
    /// it the report keeps each change's action and drift flag, all the counts need (`-q`
    /// with the table output: 80,426 summaries were about 7 MiB of a first apply's peak).
    pub summaries: bool,
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
    pub status: Status,
    /// Refused: the user must change something.
    pub stalled: bool,
    /// Carries `servicehub.io/paused: "true"`: not planned, nothing written for it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// A store error that stopped this object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a deletion with `Delete`: the rows beyond the object that go with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_removes: Vec<String>,
    /// For a deletion with `Orphan`: the rows that stay, no longer managed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keeps_unmanaged: Vec<String>,
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

/// The changes of an applied batch, as reported; the summaries are moved out (the batch is
/// dropped next), or left when `summaries` is off.
fn reported(batch: &mut crate::store::Batch, summaries: bool) -> impl Iterator<Item = Change> + '_ {
    batch.steps.iter_mut().map(move |s| Change {
        action: s.change.audit_action().1,
        summary: if summaries { std::mem::take(&mut s.summary) } else { String::new() },
        drift: s.drift,
    })
}

/// The status of any kind.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Status {
    /// Not planned yet.
    None,
    /// A Customer's.
    Customer(crate::api::CustomerStatus),
    /// A Workspace's.
    Workspace(crate::api::WorkspaceStatus),
    /// A Membership's.
    Membership(crate::api::MembershipStatus),
    /// A LockboxPolicy's.
    LockboxPolicy(crate::api::LockboxPolicyStatus),
}

impl Status {
    /// The conditions of the status, to adjust.
    pub fn conditions_mut(&mut self) -> Option<&mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>> {
        match self {
            Status::None => None,
            Status::Customer(s) => Some(&mut s.conditions),
            Status::Workspace(s) => Some(&mut s.conditions),
            Status::Membership(s) => Some(&mut s.conditions),
            Status::LockboxPolicy(s) => Some(&mut s.conditions),
        }
    }

    /// What the status reports on observing and adopting.
    fn tracking_mut(&mut self) -> Option<&mut crate::api::Tracking> {
        match self {
            Status::None => None,
            Status::Customer(s) => Some(&mut s.tracking),
            Status::Workspace(s) => Some(&mut s.tracking),
            Status::Membership(s) => Some(&mut s.tracking),
            Status::LockboxPolicy(s) => Some(&mut s.tracking),
        }
    }

    /// Say in status that the rows are kept under `id` (an adopted store id).
    pub fn set_store_id(&mut self, id: Option<String>) {
        if let Some(t) = self.tracking_mut() {
            t.store_id = id;
        }
    }

    /// With `managementPolicy: Observe`: the differences listed, and how many there are.
    pub fn differences(&self) -> (&[String], i64) {
        let t = match self {
            Status::None => return (&[], 0),
            Status::Customer(s) => &s.tracking,
            Status::Workspace(s) => &s.tracking,
            Status::Membership(s) => &s.tracking,
            Status::LockboxPolicy(s) => &s.tracking,
        };
        (&t.differences, t.difference_count.unwrap_or(0))
    }

    /// The conditions of the status.
    pub fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
        match self {
            Status::None => &[],
            Status::Customer(s) => &s.conditions,
            Status::Workspace(s) => &s.conditions,
            Status::Membership(s) => &s.conditions,
            Status::LockboxPolicy(s) => &s.conditions,
        }
    }
}

/// One object's plan, in kind-independent form.
#[derive(Clone, Debug)]
pub struct Planned {
    /// The changes, as one guarded batch.
    pub batch: crate::store::Batch,
    /// The status once the batch is applied.
    pub status: Status,
    /// Refused: a user must change something.
    pub stalled: bool,
    /// When to plan again even if nothing changes.
    pub requeue_at: Option<jiff::Timestamp>,
}

/// Plan one object against a snapshot.
pub fn plan_object(
    o: &Object,
    id: &Identity,
    declared_default: Option<&str>,
    snapshot: &Snapshot,
    ctx: &Context,
) -> Planned {
    fn out<S>(p: plan::Plan<S>, ctx: &Context, wrap: fn(S) -> Status) -> Planned {
        let (stalled, requeue_at) = (p.stalled, p.requeue_at);
        let (batch, status) = p.into_batch(ctx);
        Planned { batch, status: wrap(status), stalled, requeue_at }
    }
    let mut planned = match o {
        Object::Customer(c) => {
            out(plan::plan_customer(c, id, declared_default, snapshot, c.status.as_ref(), ctx), ctx, Status::Customer)
        }
        Object::Workspace(w) => {
            out(plan::plan_workspace(w, id, snapshot, w.status.as_ref(), ctx), ctx, Status::Workspace)
        }
        Object::Membership(m) => {
            out(plan::plan_membership(m, id, snapshot, m.status.as_ref(), ctx), ctx, Status::Membership)
        }
        Object::LockboxPolicy(p) => {
            out(plan::plan_lockbox_policy(p, id, snapshot, p.status.as_ref(), ctx), ctx, Status::LockboxPolicy)
        }
    };
    if management_policy(o) == ManagementPolicy::Observe && !planned.stalled {
        return observe(o, planned, id, ctx);
    }
    // Managed (again): the observation is over.
    if let Some(conds) = planned.status.conditions_mut() {
        conds.retain(|c| c.type_ != conditions::SYNCED);
    }
    planned
}

/// The management policy an object declares.
pub fn management_policy(o: &Object) -> ManagementPolicy {
    match o {
        Object::Customer(x) => x.spec.management_policy,
        Object::Workspace(x) => x.spec.management_policy,
        Object::Membership(x) => x.spec.management_policy,
        Object::LockboxPolicy(x) => x.spec.management_policy,
    }
}

/// Differences listed in status; `differenceCount` has the number of all of them.
const DIFFERENCES_SHOWN: usize = 20;

/// `managementPolicy: Observe`: write nothing, and report what the plan would change as the
/// differences between the store and the object. The status is the previous one (what was
/// last observed or provisioned: nothing changed since) with the differences, `Synced` and
/// `Ready` set; a refused spec is reported as under `Manage`.
fn observe(o: &Object, planned: Planned, id: &Identity, ctx: &Context) -> Planned {
    let Planned { batch, status: as_planned, stalled, requeue_at } = planned;
    let differences: Vec<String> = batch.steps.iter().map(|s| s.summary.clone()).collect();
    let previous = match o {
        Object::Customer(x) => x.status.as_ref().and_then(|s| serde_json::to_value(s).ok()),
        Object::Workspace(x) => x.status.as_ref().and_then(|s| serde_json::to_value(s).ok()),
        Object::Membership(x) => x.status.as_ref().and_then(|s| serde_json::to_value(s).ok()),
        Object::LockboxPolicy(x) => x.status.as_ref().and_then(|s| serde_json::to_value(s).ok()),
    };
    let mut v = previous.unwrap_or_else(|| serde_json::json!({}));
    let mut conds: Vec<Condition> =
        v.get("conditions").cloned().and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    let n = differences.len();
    let (synced, reason, message) = if n == 0 {
        (true, "InSync", "the store matches this object (managementPolicy: Observe)".to_owned())
    } else {
        let message = format!(
            "{n} difference(s) between the store and this object, listed in status.differences; nothing is \
             corrected while managementPolicy is Observe"
        );
        (false, "DriftDetected", message)
    };
    for (type_, status) in [(conditions::SYNCED, synced), (conditions::READY, synced)] {
        conditions::set(&mut conds, conditions::new(type_, status, reason, message.clone(), id.generation, ctx.now));
    }
    for type_ in [conditions::RECONCILING, conditions::STALLED] {
        if conditions::get(&conds, type_).is_some() {
            conditions::set(&mut conds, conditions::new(type_, false, reason, message.clone(), id.generation, ctx.now));
        }
    }
    v["observedGeneration"] = serde_json::json!(id.generation);
    v["conditions"] = serde_json::to_value(&conds).unwrap_or_default();
    v["differences"] = serde_json::json!(differences.iter().take(DIFFERENCES_SHOWN).collect::<Vec<_>>());
    v["differenceCount"] = serde_json::json!(n);
    let typed = |v: serde_json::Value| -> Status {
        match o {
            Object::Customer(_) => serde_json::from_value(v).map(Status::Customer),
            Object::Workspace(_) => serde_json::from_value(v).map(Status::Workspace),
            Object::Membership(_) => serde_json::from_value(v).map(Status::Membership),
            Object::LockboxPolicy(_) => serde_json::from_value(v).map(Status::LockboxPolicy),
        }
        // Every status field has a default, so this holds; if not, report as planned rather
        // than write an empty status.
        .unwrap_or(as_planned)
    };
    let empty = crate::store::Batch { steps: Vec::new(), ..batch };
    Planned { batch: empty, status: typed(v), stalled, requeue_at }
}

/// What the planner of `o` (whose uid is `uid`) reads from the store: the controller loads
/// only that, so one reconcile costs the same whatever the size of the customer.
pub fn focus_of(o: &Object, uid: &str) -> Focus {
    match o {
        Object::Customer(_) => Focus::Customer,
        Object::Workspace(w) => Focus::Workspace {
            id: uid.to_owned(),
            subjects: w.spec.administrators.iter().map(|p| p.email.normalized()).collect(),
        },
        Object::Membership(m) => Focus::Membership {
            id: uid.to_owned(),
            workspace: m.spec.workspace_ref.as_ref().map(|r| r.name.clone()),
            subjects: vec![m.spec.subject.key()],
        },
        Object::LockboxPolicy(_) => Focus::NoMemberships,
    }
}

/// The deletion policy an object declares.
pub fn deletion_policy(o: &Object) -> DeletionPolicy {
    match o {
        Object::Customer(x) => x.spec.deletion_policy,
        Object::Workspace(x) => x.spec.deletion_policy,
        Object::Membership(x) => x.spec.deletion_policy,
        // A policy owns no one's access: removing it always removes its row.
        Object::LockboxPolicy(_) => DeletionPolicy::Delete,
    }
}

/// How many passes a run may take before it gives up converging.
const MAX_PASSES: usize = 4;
/// Objects applied per transaction: the commit, and the pages it writes, are paid once per
/// chunk instead of once per object (see `Store::apply_all`).
const BATCHES_PER_TRANSACTION: usize = 250;

/// How far a run is, for a progress line: objects planned (first pass) and objects with
/// changes written (in a dry run: found to have changes).
#[derive(Debug, Default)]
pub struct Progress {
    planned: std::sync::atomic::AtomicUsize,
    written: std::sync::atomic::AtomicUsize,
}

impl Progress {
    /// (planned, written) so far.
    pub fn get(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.planned.load(Relaxed), self.written.load(Relaxed))
    }

    fn add(counter: &std::sync::atomic::AtomicUsize, n: usize) {
        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Apply (or, with `dry_run`, plan) `objects` against `store`.
pub async fn run(store: &dyn Store, objects: &[Sourced], opts: &Options) -> Result<Report, StoreError> {
    run_with_progress(store, objects, opts, &Progress::default()).await
}

/// [`run`], counting what is done in `progress` as it goes.
pub async fn run_with_progress(
    store: &dyn Store,
    objects: &[Sourced],
    opts: &Options,
    progress: &Progress,
) -> Result<Report, StoreError> {
    let written_before = store.rows_written();
    // Sized up front: an object's report is some 500 bytes, and growing the vector by
    // doubling held the old and the new copy at once (issue 18: peak RSS of a bulk apply).
    let mut report = Report { objects: Vec::with_capacity(objects.len()), rows_written: 0 };
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    let mut ids = Vec::with_capacity(objects.len());
    // Whether the uid was made up here (the store knew none): another process applying the
    // same object at once may have stored it first under its own uid.
    let mut minted = Vec::with_capacity(objects.len());
    // Objects applied without a cluster have no uid: reuse the one the store knows.
    let mut known: std::collections::HashMap<(GuardTable, String), std::collections::HashMap<String, String>> =
        Default::default();
    for (i, s) in objects.iter().enumerate() {
        let o = &s.object;
        let key = (table_of(o), o.namespace().to_owned());
        if !known.contains_key(&key) {
            let uids = store.uids(key.0, &key.1).await?;
            known.insert(key.clone(), uids);
        }
        let found = crate::api::adopted_id(o.meta())
            .map(str::to_owned)
            .or_else(|| o.meta().uid.clone())
            .or_else(|| known.get(&key).and_then(|m| m.get(o.name()).cloned()));
        minted.push(found.is_none());
        let uid = found.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let id = Identity {
            uid: uid.clone(),
            namespace: o.namespace().to_owned(),
            name: o.name().to_owned(),
            generation: o.meta().generation,
        };
        ids.push(id);
        let paused = crate::api::is_paused(o.meta());
        if !paused {
            groups.entry((o.namespace().to_owned(), o.customer().to_owned())).or_default().push(i);
        }
        report.objects.push(ObjectReport {
            file: s.file.clone(),
            kind: o.kind(),
            namespace: o.namespace().to_owned(),
            name: o.name().to_owned(),
            uid,
            changes: Vec::new(),
            status: Status::None,
            stalled: false,
            paused,
            error: None,
            also_removes: Vec::new(),
            keeps_unmanaged: Vec::new(),
        });
    }
    for ((ns, customer), members) in groups {
        let declared_default: Option<String> = members.iter().find_map(|i| match &objects[*i].object {
            Object::Workspace(w) if w.spec.default => w.metadata.name.clone(),
            _ => None,
        });
        let mut snap = store.load_customer(&ns, &customer).await?;
        adopt_stored_uids(&snap, objects, &members, &mut minted, &mut ids, &mut report);
        for pass in 0..MAX_PASSES {
            // Plan every object against the snapshot, mirroring each plan as if applied so
            // later objects see it; the batches are applied in chunks, one transaction each,
            // as each chunk fills (so no more than a chunk of planned batches is held).
            let mut chunk = Chunk::default();
            let (mut changed, mut failed) = (false, false);
            for i in &members {
                let Planned { batch, status, stalled, .. } =
                    plan_object(&objects[*i].object, &ids[*i], declared_default.as_deref(), &snap, &opts.ctx);
                let r = &mut report.objects[*i];
                r.status = status;
                r.stalled = stalled;
                // A write that failed in an earlier pass is judged again by this one: an
                // empty plan now means another writer got the store there meanwhile.
                r.error = None;
                if pass == 0 {
                    Progress::add(&progress.planned, 1);
                }
                if !batch.is_empty() {
                    snap.apply(&batch);
                    chunk.owners.push(*i);
                    chunk.batches.push(batch);
                    changed = true;
                    if chunk.batches.len() == BATCHES_PER_TRANSACTION {
                        failed |= chunk.write(store, opts, &mut report, progress).await?;
                    }
                }
            }
            failed |= chunk.write(store, opts, &mut report, progress).await?;
            if !changed {
                break;
            }
            if failed {
                snap = store.load_customer(&ns, &customer).await?;
                adopt_stored_uids(&snap, objects, &members, &mut minted, &mut ids, &mut report);
            }
        }
    }
    report.rows_written = store.rows_written() - written_before;
    Ok(report)
}

/// Planned batches waiting to be applied together, and the objects they belong to.
#[derive(Default)]
struct Chunk {
    owners: Vec<usize>,
    batches: Vec<crate::store::Batch>,
}

impl Chunk {
    /// Apply the batches in one transaction (or none, in a dry run), record each object's
    /// changes or error in `report`, and empty the chunk. Whether any batch failed (a
    /// conflict, retried in the next pass against a fresh read).
    async fn write(
        &mut self,
        store: &dyn Store,
        opts: &Options,
        report: &mut Report,
        progress: &Progress,
    ) -> Result<bool, StoreError> {
        if self.batches.is_empty() {
            return Ok(false);
        }
        let results: Vec<Result<(), StoreError>> = if opts.dry_run {
            self.batches.iter().map(|_| Ok(())).collect()
        } else {
            store.apply_all(&self.batches).await?.into_iter().map(|r| r.map(|_| ())).collect()
        };
        let mut failed = false;
        for ((i, batch), result) in self.owners.iter().zip(self.batches.iter_mut()).zip(results) {
            let r = &mut report.objects[*i];
            match result {
                Ok(()) => {
                    if r.changes.is_empty() {
                        Progress::add(&progress.written, 1);
                    }
                    r.error = None;
                    r.changes.extend(reported(batch, opts.summaries));
                }
                Err(e) => {
                    failed = true;
                    r.error = Some(e.to_string());
                }
            }
        }
        self.owners.clear();
        self.batches.clear();
        Ok(failed)
    }
}

/// Objects whose uid was minted here take the uid the snapshot holds for their kind and name:
/// another process applying the same objects at once (a second `apply`, or on PostgreSQL an
/// operator) stored them after this run looked the uids up. The next plan then updates that
/// row instead of creating a second copy, which the store's unique name indexes would refuse.
fn adopt_stored_uids(
    snap: &Snapshot,
    objects: &[Sourced],
    members: &[usize],
    minted: &mut [bool],
    ids: &mut [Identity],
    report: &mut Report,
) {
    if !members.iter().any(|i| minted[*i]) {
        return;
    }
    let mut stored: std::collections::HashMap<(GuardTable, &str), &str> = Default::default();
    if let Some(c) = &snap.customer {
        stored.insert((GuardTable::Customer, &c.record.name), &c.record.uid);
    }
    for w in snap.workspaces.values().filter(|w| w.record.origin == "Workspace") {
        stored.insert((GuardTable::Workspace, &w.record.name), &w.record.id);
    }
    for m in snap.memberships.values().filter(|m| m.record.origin == "Membership") {
        stored.insert((GuardTable::Membership, &m.record.name), &m.record.id);
    }
    for p in snap.policies.values() {
        stored.insert((GuardTable::LockboxPolicy, &p.record.name), &p.record.uid);
    }
    for &i in members {
        let o = &objects[i].object;
        if !minted[i] {
            continue;
        }
        if let Some(uid) = stored.get(&(table_of(o), o.name())).filter(|u| **u != ids[i].uid) {
            tracing::debug!(kind = o.kind(), name = o.name(), %uid, "stored meanwhile by another process: adopting its uid");
            ids[i].uid = (*uid).to_owned();
            report.objects[i].uid = (*uid).to_owned();
            minted[i] = false;
        }
    }
}

/// Remove (or, with `deletionPolicy: Orphan`, release) what `objects` provisioned, in reverse
/// dependency order: the local counterpart of deleting the objects from a cluster. Objects
/// the store does not know are skipped; a held-back deletion (the last Workspace
/// Administrator) is reported as refused.
pub async fn delete(store: &dyn Store, objects: &[Sourced], opts: &Options) -> Result<Report, StoreError> {
    let written_before = store.rows_written();
    let mut report = Report::default();
    let mut order: Vec<&Sourced> = objects.iter().collect();
    order.sort_by_key(|s| std::cmp::Reverse(s.object.order()));
    for s in order {
        let o = &s.object;
        let table = table_of(o);
        let known = store.uids(table, o.namespace()).await?;
        let mut r = ObjectReport {
            file: s.file.clone(),
            kind: o.kind(),
            namespace: o.namespace().to_owned(),
            name: o.name().to_owned(),
            uid: String::new(),
            changes: Vec::new(),
            status: Status::None,
            stalled: false,
            paused: false,
            error: None,
            also_removes: Vec::new(),
            keeps_unmanaged: Vec::new(),
        };
        let Some(uid) = o.meta().uid.clone().or_else(|| known.get(o.name()).cloned()) else {
            report.objects.push(r);
            continue;
        };
        r.uid = uid.clone();
        let id = Identity { uid, namespace: o.namespace().to_owned(), name: o.name().to_owned(), generation: None };
        let snap = store.load_customer(o.namespace(), o.customer()).await?;
        let consequences = plan::consequences(table, &id, &snap);
        match deletion_policy(o) {
            DeletionPolicy::Orphan => r.keeps_unmanaged = consequences,
            DeletionPolicy::Delete => r.also_removes = consequences,
        }
        match plan::plan_delete(table, &id, deletion_policy(o), &snap, &opts.ctx) {
            Err(refused) => {
                r.stalled = true;
                r.error = Some(refused.0);
            }
            Ok(mut batch) => {
                let applied = if opts.dry_run { Ok(()) } else { store.apply(&batch).await.map(|_| ()) };
                match applied {
                    Ok(()) => r.changes.extend(reported(&mut batch, opts.summaries)),
                    Err(e) => r.error = Some(e.to_string()),
                }
            }
        }
        report.objects.push(r);
    }
    report.rows_written = store.rows_written() - written_before;
    Ok(report)
}
