//! The planner: pure functions from a desired object and a store [`Snapshot`] to the ordered
//! [`Step`]s that make the store match, plus the object's status after those steps. No I/O;
//! the time is a parameter. The same plans serve `servicehub apply` and the controller.
//!
//! Invariants:
//! - re-planning after applying a plan yields no steps (level-triggered, idempotent);
//! - a change made behind the operator's back (a grant deleted, a role added) is planned
//!   back and marked as drift, because the stored spec hash still matches the desired one;
//! - a refused object yields no steps and a `Stalled` condition naming the field and rule.

mod customer;
mod delete;
mod lockbox;
mod members;
mod membership;
mod workspace;

pub use customer::plan_customer;
pub use delete::{consequences, plan_delete};
pub use lockbox::plan_lockbox_policy;
pub use members::DesiredMembership;
pub use membership::plan_membership;
pub use workspace::plan_workspace;

use crate::api::conditions;
use crate::store::{Batch, Guard, GuardTable, Snapshot, Step};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use sha2::{Digest, Sha256};

/// What the planner needs besides the object and the snapshot.
#[derive(Clone, Debug)]
pub struct Context {
    /// The time the plan is made for.
    pub now: jiff::Timestamp,
    /// Who acts, for the audit log: the operator in the cluster, the CLI locally.
    pub actor: crate::domain::actor::Actor,
}

/// Identity of the object being planned: the store keys rows by uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `metadata.uid` (in local mode, the uid the store already knows or a new one).
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.generation`, reported back as `observedGeneration`.
    pub generation: Option<i64>,
}

/// A plan for one object: steps to apply in one guarded batch, and the status the object
/// has once they are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan<S> {
    /// Changes, in order. Empty when the store already matches.
    pub steps: Vec<Step>,
    /// Optimistic-concurrency guard for the batch.
    pub guard: Option<Guard>,
    /// Status after the steps.
    pub status: S,
    /// When the object must be planned again even if nothing changes (agreement start or
    /// end, deadlines).
    pub requeue_at: Option<jiff::Timestamp>,
    /// Whether the object was refused (a user must change something).
    pub stalled: bool,
}

impl<S> Plan<S> {
    /// The batch to hand to the store.
    pub fn batch(&self, ctx: &Context) -> Batch {
        Batch {
            actor: ctx.actor.clone(),
            at: ctx.now.as_second(),
            guard: self.guard.clone(),
            steps: self.steps.clone(),
        }
    }

    /// The batch, consuming the plan's steps (no copy), and the status.
    pub fn into_batch(self, ctx: &Context) -> (Batch, S) {
        let batch = Batch { actor: ctx.actor.clone(), at: ctx.now.as_second(), guard: self.guard, steps: self.steps };
        (batch, self.status)
    }
}

/// What every planner's last step needs: the snapshot the plan was made from, the object's
/// identity, its previous status (to keep condition transition times) and the context.
pub(crate) struct Frame<'a, S> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) id: &'a Identity,
    pub(crate) previous: Option<&'a S>,
    pub(crate) ctx: &'a Context,
}

impl<S> Frame<'_, S> {
    /// Conditions carried over from the previous status, updated with `verdict`.
    pub(crate) fn conditions(&self, verdict: &Verdict, prev: impl Fn(&S) -> &Vec<Condition>) -> Vec<Condition> {
        let mut conds = self.previous.map(|p| prev(p).clone()).unwrap_or_default();
        verdict.apply(&mut conds, self.id.generation, self.ctx.now);
        conds
    }
}

/// The guard for a row owned by the object: its version as the snapshot saw it.
fn guard(snapshot: &Snapshot, table: GuardTable, id: &str) -> Guard {
    Guard { table, id: id.to_owned(), expected: snapshot.version_of(table, id) }
}

/// A stable short hash of anything serializable: detects whether a stored row was written
/// from the same desired state (so a difference in its children is drift). Specs are
/// hashed with `managementPolicy` at its default: observing an object is not a difference.
pub fn spec_hash<T: serde::Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hash_of(&bytes)
}

/// A spec as a row keeps it: its JSON (what `servicehub import` writes back) and that JSON's
/// [`spec_hash`], from one serialization.
pub fn applied<T: serde::Serialize>(spec: &T) -> (String, String) {
    let json = serde_json::to_string(spec).unwrap_or_default();
    let hash = hash_of(json.as_bytes());
    (json, hash)
}

fn hash_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Outcome conditions for a status.
#[derive(Clone, Debug)]
pub(crate) enum Verdict {
    /// The store matches (or will, once the steps are applied).
    Ready(String),
    /// Waiting for time or for another object; not the user's fault.
    Waiting { reason: &'static str, message: String },
    /// Refused: the user must change something.
    Stalled { reason: &'static str, message: String },
}

impl Verdict {
    /// Set `Ready`, `Reconciling` and `Stalled` on `conds`, following kstatus.
    pub(crate) fn apply(&self, conds: &mut Vec<Condition>, generation: Option<i64>, now: jiff::Timestamp) {
        let (ready, reconciling, stalled, reason, message) = match self {
            Verdict::Ready(m) => (true, false, false, "Provisioned", m.clone()),
            Verdict::Waiting { reason, message } => (false, true, false, *reason, message.clone()),
            Verdict::Stalled { reason, message } => (false, false, true, *reason, message.clone()),
        };
        conditions::set(conds, conditions::new(conditions::READY, ready, reason, message.clone(), generation, now));
        let (r_reason, r_msg) = if reconciling { (reason, message.clone()) } else { ("Idle", String::new()) };
        conditions::set(conds, conditions::new(conditions::RECONCILING, reconciling, r_reason, r_msg, generation, now));
        let (s_reason, s_msg) = if stalled { (reason, message) } else { ("Valid", String::new()) };
        conditions::set(conds, conditions::new(conditions::STALLED, stalled, s_reason, s_msg, generation, now));
    }

    /// A refusal: `Waiting` when time or another object will resolve it, else `Stalled`.
    pub(crate) fn refusal(reason: &'static str, message: String, waiting: bool) -> Verdict {
        if waiting { Verdict::Waiting { reason, message } } else { Verdict::Stalled { reason, message } }
    }

    fn is_stalled(&self) -> bool {
        matches!(self, Verdict::Stalled { .. })
    }
}

/// Mark `conds` as waiting (`Ready=False`, `Reconciling=True`, `Stalled=False`): the
/// controller's verdict for an object whose parent exists in the cluster but is not yet in
/// the store, which the planner alone would call a missing reference.
pub fn set_waiting(
    conds: &mut Vec<Condition>,
    reason: &'static str,
    message: String,
    generation: Option<i64>,
    now: jiff::Timestamp,
) {
    Verdict::Waiting { reason, message }.apply(conds, generation, now);
}

/// The customer an object refers to, if it is in the store and its agreement has started;
/// else the verdict to report (missing: the user must fix the reference; not started yet:
/// wait for the start date).
pub(crate) fn started_customer<'a>(
    snapshot: &'a Snapshot,
    name: &str,
) -> Result<&'a crate::store::CustomerRecord, Verdict> {
    let Some(customer) = &snapshot.customer else {
        let msg = format!("spec.customerRef: Customer {name} is not in the store");
        return Err(Verdict::refusal("CustomerNotFound", msg, false));
    };
    let c = &customer.record;
    if c.phase == "Pending" {
        let msg = format!("Customer {name} is not active yet (its agreement starts on {})", c.start_date);
        return Err(Verdict::refusal("CustomerNotActive", msg, true));
    }
    Ok(c)
}

/// Midnight UTC at the start of a civil date.
pub(crate) fn start_of(date: jiff::civil::Date) -> jiff::Timestamp {
    date.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()).unwrap_or(jiff::Timestamp::MAX)
}

#[cfg(test)]
mod tests;
