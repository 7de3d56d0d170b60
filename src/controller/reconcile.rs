//! One reconcile, the same for the four kinds, as a pipeline:
//! `finalizer -> load (focused snapshot) -> plan -> apply (one guarded transaction) ->
//! update_status (server-side apply, only when changed) -> events (transitions only) ->
//! requeue (next time boundary, or the resync period)`.
//!
//! Invariants:
//! - level-triggered: every pass recomputes from the spec and the store, never from what
//!   changed, so a dropped or repeated event is harmless;
//! - a lost store race (`Conflict`) is re-read and re-planned at once, a few times;
//! - an idle pass (store matches, status unchanged) writes nothing anywhere;
//! - cleanup reads nothing but the identity and `deletionPolicy`, so an invalid spec or a
//!   missing parent never blocks a deletion;
//! - a refused spec waits for the next change (`Stalled=True`, no requeue).

use super::{Context, Error, FIELD_MANAGER, FINALIZER};
use crate::api::{Customer, LockboxPolicy, Membership, Workspace, conditions};
use crate::engine::{self, Planned, Status};
use crate::plan::{self, Identity};
use crate::store::{Batch, Focus, GuardTable, Snapshot, StoreError};
use crate::validate::Object;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A kind the operator reconciles.
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The object as the engine sees it.
    fn object(&self) -> Object;
    /// The current status, serialized (to tell whether a new one differs).
    fn status_json(&self) -> Option<serde_json::Value>;
    /// The current conditions.
    fn conditions(&self) -> &[Condition];
    /// The controller's cache of this kind.
    fn cache(caches: &super::Caches) -> &kube::runtime::reflector::Store<Self>;
    /// The store id the status says this object adopted.
    fn store_id(&self) -> Option<&str>;
}

macro_rules! managed {
    ($t:ident, $cache:ident) => {
        impl Managed for $t {
            fn object(&self) -> Object {
                Object::$t(Box::new(self.clone()))
            }
            fn status_json(&self) -> Option<serde_json::Value> {
                self.status.as_ref().and_then(|s| serde_json::to_value(s).ok())
            }
            fn conditions(&self) -> &[Condition] {
                self.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default()
            }
            fn cache(caches: &super::Caches) -> &kube::runtime::reflector::Store<Self> {
                &caches.$cache
            }
            fn store_id(&self) -> Option<&str> {
                self.status.as_ref().and_then(|s| s.tracking.store_id.as_deref())
            }
        }
    };
}
managed!(Customer, customers);
managed!(Workspace, workspaces);
managed!(Membership, memberships);
managed!(LockboxPolicy, policies);

/// How many times a reconcile re-reads and re-plans after losing a store race before it
/// gives up and backs off.
const CONFLICT_RETRIES: usize = 3;

/// Decrements the in-flight gauge however the reconcile ends.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Reconcile one object of kind `K`.
#[tracing::instrument(skip_all, fields(kind = %K::kind(&()), namespace, name = %obj.name_any(), uid))]
pub async fn reconcile<K: Managed>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let kind = K::kind(&()).to_string();
    let labels = super::metrics::Metrics::kind(&kind);
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    let gauge = ctx.metrics.in_flight.get_or_create_owned(&labels);
    gauge.inc();
    let _in_flight = InFlight(&gauge);
    if let Some(waited) = ctx.queued.take(obj.meta().uid.as_deref().unwrap_or_default()) {
        ctx.metrics.queue_wait.get_or_create(&labels).observe(waited.as_secs_f64());
    }
    let started = Instant::now();
    let namespace = obj.namespace().ok_or(Error::Invalid("the object has no namespace".into()))?;
    tracing::Span::current().record("namespace", namespace.as_str());
    tracing::Span::current().record("uid", obj.uid().unwrap_or_default());
    let key = failure_key::<K>(&namespace, &obj.name_any());
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    // A deletion is an explicit instruction and goes through cleanup, paused or not: the
    // rows follow deletionPolicy (rows kept under a name nobody could reuse would block
    // creating the object again).
    let result = if crate::api::is_paused(obj.meta()) && obj.meta().deletion_timestamp.is_none() {
        paused(&api, obj, &ctx).await
    } else {
        finalizer(&api, FINALIZER, obj, |event| async {
            match event {
                Finalized::Apply(o) => apply(&api, o, &ctx).await,
                Finalized::Cleanup(o) => cleanup(o, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
    };
    ctx.metrics.duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.succeeded(&kind, &key);
    }
    result
}

/// A paused object: nothing is read or written for it, except a `Paused` condition set
/// once (a spec change while paused writes nothing).
async fn paused<K: Managed>(api: &Api<K>, obj: Arc<K>, ctx: &Context) -> Result<Action, Error> {
    if conditions::is_true(obj.conditions(), conditions::PAUSED) {
        return Ok(Action::await_change());
    }
    let message = format!(
        "{}: \"true\": the operator writes nothing for this object (store, status, invitations) until the \
         annotation is removed",
        crate::api::PAUSED_ANNOTATION
    );
    let (generation, now) = (obj.meta().generation, ctx.now());
    let status = with_conditions(obj.as_ref(), |conds| {
        conditions::set(conds, conditions::new(conditions::PAUSED, true, "Paused", message.clone(), generation, now));
    })?;
    write_status(api, obj.as_ref(), &status, ctx).await?;
    let event = Event {
        type_: EventType::Normal,
        reason: "Paused".into(),
        note: Some(message),
        action: "Pause".into(),
        secondary: None,
    };
    ctx.publish(obj.as_ref(), event).await;
    Ok(Action::await_change())
}

/// The object's current status as JSON with its conditions changed by `change`: for the
/// writes that report on an object without planning it (paused, adoption refused).
fn with_conditions<K: Managed>(obj: &K, change: impl FnOnce(&mut Vec<Condition>)) -> Result<serde_json::Value, Error> {
    let mut conds = obj.conditions().to_vec();
    change(&mut conds);
    let mut status = obj.status_json().unwrap_or_else(|| serde_json::json!({}));
    status["conditions"] = serde_json::to_value(&conds).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(status)
}

/// Write `status` by server-side apply with the operator's field manager (forced: it owns
/// status), and count it.
async fn write_status<K: Managed>(
    api: &Api<K>,
    obj: &K,
    status: &serde_json::Value,
    ctx: &Context,
) -> Result<(), Error> {
    let body = serde_json::json!({ "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status });
    api.patch_status(&obj.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    ctx.metrics.status_writes.get_or_create(&super::metrics::Metrics::kind(&K::kind(&()))).inc();
    tracing::debug!(kind = %K::kind(&()), name = %obj.name_any(), %status, "status written");
    Ok(())
}

/// The key of an object in the failure counts.
pub(super) fn failure_key<K: Managed>(namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", K::kind(&()))
}

/// The object's identity for the planner: keyed by the store id it adopts (the
/// `servicehub.io/adopt` annotation, or the id its status says it adopted, for a Workspace
/// taken over by name), else by its `metadata.uid`.
fn identity<K: Managed>(obj: &K) -> Result<Identity, Error> {
    let meta = obj.meta();
    let uid = meta.uid.clone().ok_or(Error::Invalid("the object has no metadata.uid".into()))?;
    Ok(Identity {
        uid: crate::api::adopted_id(meta).or(obj.store_id()).map_or(uid, str::to_owned),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        generation: meta.generation,
    })
}

/// Read the object's slice of the store, plan with `plan` and apply the batch, re-reading
/// and re-planning after a lost race (a few times, then the race is the caller's error).
/// Returns the plan and the uid of the customer the read found. Shared by apply and
/// cleanup, so both retry the same way.
async fn plan_and_apply<P, E>(
    ctx: &Context,
    namespace: &str,
    customer: &str,
    focus: &Focus,
    plan: impl Fn(&Snapshot) -> Result<P, E>,
    batch: impl Fn(&P) -> &Batch,
) -> Result<(P, Option<String>), Error>
where
    Error: From<E>,
{
    let mut attempt = 0;
    loop {
        let snapshot = ctx.timed("load", ctx.store.load(namespace, customer, focus)).await?;
        let customer_uid = snapshot.customer.as_ref().map(|c| c.record.uid.clone());
        let planned = plan(&snapshot)?;
        if batch(&planned).is_empty() {
            return Ok((planned, customer_uid));
        }
        match ctx.timed("apply", ctx.store.apply(batch(&planned))).await {
            Ok(outcome) => {
                if outcome.invitations > 0 {
                    // New invitations are in the outbox: deliver now, not at the next poll.
                    ctx.delivery.wake.notify_one();
                }
                return Ok((planned, customer_uid));
            }
            Err(StoreError::Conflict(msg)) if attempt < CONFLICT_RETRIES => {
                attempt += 1;
                ctx.metrics.store_conflicts.inc();
                tracing::debug!(%msg, attempt, "store conflict; re-reading");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How soon a child whose parent is still in flight looks again if nothing requeues it.
const PARENT_IN_FLIGHT_RECHECK: Duration = Duration::from_secs(10);

/// Another object of the same kind that holds `store_id`: keyed by it (its uid), or
/// adopting it too. An adoption never takes rows from a live object.
fn owner_of<K: Managed>(obj: &K, store_id: &str, ctx: &Context) -> Option<String> {
    let me = obj.meta().uid.as_deref();
    K::cache(&ctx.caches).state().iter().find_map(|other| {
        let m = other.meta();
        let holds = m.uid.as_deref() == Some(store_id) || crate::api::adopted_id(m) == Some(store_id);
        (holds && m.uid.as_deref() != me && m.deletion_timestamp.is_none())
            .then(|| format!("{} {}/{}", K::kind(&()), m.namespace.as_deref().unwrap_or_default(), other.name_any()))
    })
}

/// Refuse an adoption: `Stalled` with the owner named, the rest of the status as it was.
async fn refuse_adoption<K: Managed>(api: &Api<K>, obj: &K, message: String, ctx: &Context) -> Result<Action, Error> {
    let (generation, now) = (obj.meta().generation, ctx.now());
    let already = conditions::get(obj.conditions(), conditions::STALLED).is_some_and(|c| {
        c.status == "True"
            && c.reason == "AdoptionRefused"
            && c.message == message
            && c.observed_generation == generation
    });
    if already {
        return Ok(Action::await_change());
    }
    let mut status = with_conditions(obj, |conds| {
        let refused = |t: &str, on: bool| conditions::new(t, on, "AdoptionRefused", message.clone(), generation, now);
        conditions::set(conds, refused(conditions::STALLED, true));
        conditions::set(conds, refused(conditions::READY, false));
    })?;
    status["observedGeneration"] = serde_json::json!(generation);
    write_status(api, obj, &status, ctx).await?;
    let event = Event {
        type_: EventType::Warning,
        reason: "AdoptionRefused".into(),
        note: Some(message.chars().take(NOTE_LIMIT).collect()),
        action: "Adopt".into(),
        secondary: None,
    };
    ctx.publish(obj, event).await;
    Ok(Action::await_change())
}

async fn apply<K: Managed>(api: &Api<K>, obj: Arc<K>, ctx: &Context) -> Result<Action, Error> {
    let mut id = identity(obj.as_ref())?;
    let own = obj.meta().uid.clone().unwrap_or_default();
    let mut adopted = (id.uid != own).then(|| id.uid.clone());
    // A Workspace whose name the store holds under another id, owned by no live Workspace
    // (left by an earlier tool or a backup), is taken over by name. Looked up until the
    // Workspace is Ready: one provisioned under its own uid has nothing to take over.
    if adopted.is_none() && K::kind(&()) == "Workspace" && !conditions::is_true(obj.conditions(), conditions::READY) {
        let stored = ctx.timed("load", ctx.store.uids(GuardTable::Workspace, &id.namespace)).await?;
        // (Not the operator's own `<customer>-default`, which a declared default replaces.)
        if let Some(other) = stored.get(&id.name).filter(|o| **o != own && !o.starts_with("default:"))
            && owner_of(obj.as_ref(), other, ctx).is_none()
        {
            adopted = Some(other.clone());
            id.uid = other.clone();
        }
    }
    let adopted = adopted.as_deref();
    if let Some(store_id) = adopted
        && let Some(owner) = owner_of(obj.as_ref(), store_id, ctx)
    {
        let message = format!(
            "metadata.annotations[{}]: the rows kept under {store_id} belong to {owner}; an object never takes \
             them from another (delete or release that object first)",
            crate::api::ADOPT_ANNOTATION
        );
        return refuse_adoption(api, obj.as_ref(), message, ctx).await;
    }
    let o = obj.object();
    let declared = match &o {
        Object::Customer(_) => ctx.declared_default(&id.namespace, &id.name),
        _ => None,
    };
    let now = ctx.now();
    let pctx = plan::Context { now, actor: ctx.settings.actor.clone() };
    let focus = engine::focus_of(&o, &id.uid);
    let plan = |snapshot: &Snapshot| Ok::<_, Error>(engine::plan_object(&o, &id, declared.as_deref(), snapshot, &pctx));
    // A parent Ready at its generation in the cache is in the store: when the plan still
    // found it missing, the snapshot was read before the parent's pass provisioned it
    // (their passes overlap). Read once more rather than report a wait that the parent's
    // status write would replace a moment later (a second status write at a cold start).
    let mut reread = false;
    let (Planned { batch, mut status, mut stalled, mut requeue_at }, customer_uid) = loop {
        let out = plan_and_apply(ctx, &id.namespace, o.customer(), &focus, plan, |p: &Planned| &p.batch).await?;
        let stale = out.0.stalled && ctx.parent_pending(&o, out.0.status.conditions()).is_some_and(|p| !p.in_flight);
        if reread || !stale {
            break out;
        }
        reread = true;
    };

    // A LockboxPolicy reports its customer's requests, and is looked at again when the next
    // one falls due (the expiry worker closes it; this pass then refreshes the counts).
    if let Status::LockboxPolicy(st) = &mut status
        && !stalled
        && let Some(uid) = customer_uid
    {
        let summary = ctx.timed("load", ctx.store.lockbox_summary(&uid)).await?;
        st.pending_requests = Some(summary.pending);
        st.active_requests = Some(summary.active);
        st.next_deadline = summary.next_deadline.map(crate::domain::lockbox::rfc3339);
        let next = summary.next_deadline.and_then(|t| jiff::Timestamp::from_second(t + 1).ok());
        requeue_at = match (requeue_at, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    // The planner calls a parent missing from the store a broken reference. In a cluster
    // the parent may exist and simply not be provisioned yet: that is waiting, not an error
    // for the user, and the parent's own reconcile requeues this object.
    if stalled && let Some(parent) = ctx.parent_pending(&o, status.conditions()) {
        if parent.in_flight {
            // Not a status worth writing: the parent's pass is about to provision it and
            // requeue this object, which then writes its real status once (at a cold start
            // of 2,000 Memberships, 2.34 status writes each instead of 3.34). The requeue is
            // a fallback in case that trigger is missed.
            return Ok(Action::requeue(PARENT_IN_FLIGHT_RECHECK));
        }
        if let Some(conds) = status.conditions_mut() {
            plan::set_waiting(conds, parent.reason, parent.message, id.generation, now);
        }
        stalled = false;
    }

    // Resumed: the pause is over (the planner carries the previous conditions over).
    if let Some(conds) = status.conditions_mut() {
        conds.retain(|c| c.type_ != conditions::PAUSED);
    }
    // The first pass under an adopted id is the takeover: audited once, then said in status.
    if let Some(store_id) = adopted
        && !stalled
    {
        // The status may lag a pass behind (a cached copy): the audit log decides.
        let audited = obj.store_id() == Some(store_id) || {
            let filter = crate::store::AuditFilter {
                kind: Some(K::kind(&()).to_string()),
                object: Some(store_id.to_owned()),
                ..Default::default()
            };
            let uid = obj.meta().uid.clone().unwrap_or_default();
            let entries = ctx.timed("load", ctx.store.audit(&filter)).await?;
            entries.iter().any(|e| e.action == "adopt" && e.after.as_deref().is_some_and(|a| a.contains(&uid)))
        };
        if !audited {
            let after = serde_json::json!({
                "namespace": id.namespace, "name": id.name, "uid": obj.meta().uid, "storeId": store_id,
            });
            let kind = K::kind(&()).to_string();
            let entry = crate::store::AuditEntry::new(
                now.as_second(),
                &ctx.settings.actor,
                "adopt",
                &kind,
                store_id,
                None,
                Some(after.to_string()),
            );
            ctx.timed("apply", ctx.store.record_audit(&entry)).await?;
        }
        status.set_store_id(Some(store_id.to_owned()));
    }
    // A Membership whose invitation is queued and not yet tried would show it `Pending` only
    // until the delivery worker sends it, moments later, and refreshes the Membership
    // (`touched`): its status is written once, with the invitation sent, not twice. That
    // holds for the pass that queued it and for any pass before the first attempt (a
    // parent's status change triggers one), as long as no status with the invitation was
    // written yet. "Not yet tried" includes the first attempt while it runs (claimed,
    // `attempts` 1, neither sent nor failed yet). Bounded: once the first attempt has ended
    // (or was abandoned and claimed again, or when delivery is off), the status is written
    // as it is.
    let just_invited = batch.steps.iter().any(|s| s.change.audit_action().1 == "invitation.issue");
    let untried = matches!(&status, Status::Membership(st)
        if st.invitation.as_ref().is_some_and(|i| i.state == crate::store::invitation_state::PENDING
            && i.attempts.unwrap_or(0) <= 1 && i.last_error.is_none()));
    let unshown = obj.status_json().is_none_or(|s| s.get("invitation").is_none_or(serde_json::Value::is_null));
    let delivering = ctx.delivery.notifier.is_some();
    // Without a notifier nothing will try it: the status is written now (deferring cost every
    // Membership a second load 5 s later, and the time to Ready as much).
    let defer = untried && !stalled && delivering && (just_invited || unshown);
    let new = serde_json::to_value(&status).map_err(|e| Error::Invalid(e.to_string()))?;
    if !defer && obj.status_json().as_ref() != Some(&new) {
        write_status(api, obj.as_ref(), &new, ctx).await?;
    }
    for event in transitions(&batch, obj.conditions(), &status) {
        ctx.publish(obj.as_ref(), event).await;
    }
    Ok(if defer {
        Action::requeue(INVITATION_SETTLE)
    } else if stalled {
        Action::await_change()
    } else {
        ctx.requeue_after(now, requeue_at)
    })
}

/// How long a Membership whose invitation was just queued waits for its delivery before
/// writing its status anyway.
const INVITATION_SETTLE: Duration = Duration::from_secs(5);

async fn cleanup<K: Managed>(obj: Arc<K>, ctx: &Context) -> Result<Action, Error> {
    let id = identity(obj.as_ref())?;
    let o = obj.object();
    let table = match &o {
        Object::Customer(_) => GuardTable::Customer,
        Object::Workspace(_) => GuardTable::Workspace,
        Object::Membership(_) => GuardTable::Membership,
        Object::LockboxPolicy(_) => GuardTable::LockboxPolicy,
    };
    let policy = engine::deletion_policy(&o);
    let pctx = plan::Context { now: ctx.now(), actor: ctx.settings.actor.clone() };
    let focus = match &o {
        // Deleting a customer or workspace removes its rows by cascade; nothing to read.
        Object::Customer(_) | Object::Workspace(_) | Object::LockboxPolicy(_) => Focus::NoMemberships,
        Object::Membership(_) => engine::focus_of(&o, &id.uid),
    };
    let plan = |snapshot: &Snapshot| {
        plan::plan_delete(table, &id, policy, snapshot, &pctx).map_err(|r| Error::CleanupRefused(r.0))
    };
    let (batch, _) = plan_and_apply(ctx, &id.namespace, o.customer(), &focus, plan, |b: &Batch| b).await?;
    if !batch.is_empty() {
        let (reason, verb) = if batch.steps.iter().any(|s| s.change.audit_action().1 == "release") {
            ("Released", "released (deletionPolicy: Orphan)")
        } else {
            ("Deleted", "removed from the store")
        };
        let note = format!("{} {} {verb}", o.kind(), id.name);
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: "Cleanup".into(),
            secondary: None,
        };
        ctx.publish(obj.as_ref(), event).await;
    }
    Ok(Action::await_change())
}

/// At most this much of a note (the Events API allows 1 kB).
const NOTE_LIMIT: usize = 1000;

fn note_of(summaries: &[&str]) -> String {
    let mut note = String::new();
    for (i, s) in summaries.iter().enumerate() {
        let add = if i == 0 { s.to_string() } else { format!("; {s}") };
        if note.len() + add.len() > NOTE_LIMIT - 20 {
            note.push_str(&format!("; and {} more", summaries.len() - i));
            break;
        }
        note.push_str(&add);
    }
    note
}

/// The Events a pass warrants: one for what it changed, named after the most notable
/// change (`DriftCorrected` > `Revoked` > `Granted` > `Invited`) with every change in the
/// note, and one per status transition (stalled, ready again). A pass that changed nothing
/// and crossed no transition emits none. One Event per pass, not one per kind of change:
/// a rollout of N objects costs N Events, not 2N.
pub(crate) fn transitions(batch: &Batch, before: &[Condition], status: &Status) -> Vec<Event> {
    const REASONS: [&str; 4] = ["DriftCorrected", "Revoked", "Granted", "Invited"];
    let mut notable = REASONS.len();
    let mut summaries = Vec::new();
    for step in &batch.steps {
        let rank = match step.change.audit_action().1 {
            _ if step.drift => 0,
            "grant.remove" | "role.remove" | "membership.delete" | "invitation.revoke" => 1,
            "grant.add" | "role.add" => 2,
            "invitation.issue" => 3,
            _ => continue,
        };
        notable = notable.min(rank);
        summaries.push(step.summary.as_str());
    }
    let mut out = Vec::new();
    if let Some(reason) = REASONS.get(notable) {
        let type_ = if notable == 0 { EventType::Warning } else { EventType::Normal };
        let note = Some(note_of(&summaries));
        out.push(Event { type_, reason: (*reason).into(), note, action: "Reconcile".into(), secondary: None });
    }
    let after = status.conditions();
    let was_stalled = conditions::is_true(before, conditions::STALLED);
    if let Some(c) = conditions::get(after, conditions::STALLED).filter(|c| c.status == "True")
        && (!was_stalled || conditions::get(before, conditions::STALLED).map(|b| &b.message) != Some(&c.message))
    {
        out.push(Event {
            type_: EventType::Warning,
            reason: c.reason.clone(),
            note: Some(c.message.chars().take(NOTE_LIMIT).collect()),
            action: "Validate".into(),
            secondary: None,
        });
    }
    if !conditions::is_true(before, conditions::READY)
        && conditions::is_true(after, conditions::READY)
        && !before.is_empty()
    {
        let note = conditions::get(after, conditions::READY).map(|c| c.message.clone());
        out.push(Event {
            type_: EventType::Normal,
            reason: "Ready".into(),
            note,
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    // Observe only: drift found, or gone.
    let synced = |conds: &[Condition]| conditions::get(conds, conditions::SYNCED).map(|c| c.status == "True");
    match (synced(before), synced(after)) {
        (b, Some(false)) if b != Some(false) => out.push(Event {
            type_: EventType::Warning,
            reason: "DriftDetected".into(),
            note: conditions::get(after, conditions::SYNCED).map(|c| c.message.chars().take(NOTE_LIMIT).collect()),
            action: "Observe".into(),
            secondary: None,
        }),
        (Some(false), Some(true)) => out.push(Event {
            type_: EventType::Normal,
            reason: "InSync".into(),
            note: Some("the store matches this object again".into()),
            action: "Observe".into(),
            secondary: None,
        }),
        _ => {}
    }
    // The invitation's delivery outcome: failures and expiry warn, acceptance informs.
    let reason_of = |conds: &[Condition]| conditions::get(conds, conditions::INVITED).map(|c| c.reason.clone());
    if let Some(c) = conditions::get(after, conditions::INVITED)
        && reason_of(before).as_ref() != Some(&c.reason)
    {
        let (type_, reason) = match c.reason.as_str() {
            "Failed" => (EventType::Warning, "InvitationFailed"),
            "Expired" => (EventType::Warning, "InvitationExpired"),
            "Accepted" => (EventType::Normal, "InvitationAccepted"),
            _ => return out,
        };
        out.push(Event {
            type_,
            reason: reason.into(),
            note: Some(c.message.chars().take(NOTE_LIMIT).collect()),
            action: "Deliver".into(),
            secondary: None,
        });
    }
    out
}

/// Exponential backoff with jitter, capped: 1 s, 2 s, 4 s, ... up to 5 minutes, each
/// multiplied by a random factor in [0.8, 1.2) so that objects failing together do not
/// retry together.
pub(crate) fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << failures.saturating_sub(1).min(9));
    let capped = base.min(Duration::from_secs(300));
    capped.mul_f64(rand::random_range(0.8..1.2))
}
