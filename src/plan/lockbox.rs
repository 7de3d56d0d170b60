//! LockboxPolicy: stored and validated; at most one per customer (a second one is reported
//! as a conflict in its status and ignored).

use super::members::{emit, step};
use super::{Context, Identity, Plan, Verdict, applied, guard};
use crate::api::LockboxPolicy;
use crate::api::lockbox_policy::LockboxPolicyStatus;
use crate::store::{Change, GuardTable, PolicyRecord, Snapshot};

/// Plan a LockboxPolicy against its customer's snapshot.
pub fn plan_lockbox_policy(
    p: &LockboxPolicy,
    id: &Identity,
    snapshot: &Snapshot,
    previous: Option<&LockboxPolicyStatus>,
    ctx: &Context,
) -> Plan<LockboxPolicyStatus> {
    let spec = &p.spec;
    let mut work = snapshot.clone();
    let mut steps = Vec::new();
    let verdict = match &snapshot.customer {
        None => Verdict::Stalled {
            reason: "CustomerNotFound",
            message: format!("spec.customerRef: Customer {} is not in the store", spec.customer_ref.name),
        },
        Some(c) => match snapshot.policies.values().find(|o| o.record.uid != id.uid) {
            Some(other) => Verdict::Stalled {
                reason: "DuplicateLockboxPolicy",
                message: format!(
                    "spec.customerRef: customer {} already has LockboxPolicy {}; this one is ignored until that one is deleted",
                    spec.customer_ref.name, other.record.name
                ),
            },
            None => {
                let (applied_spec, spec_hash) =
                    applied(&crate::api::LockboxPolicySpec { management_policy: Default::default(), ..spec.clone() });
                let record = PolicyRecord {
                    uid: id.uid.clone(),
                    customer_uid: c.record.uid.clone(),
                    namespace: id.namespace.clone(),
                    name: id.name.clone(),
                    enabled: spec.enabled,
                    approvers: serde_json::to_string(&spec.approvers).unwrap_or_default(),
                    pending_ttl_seconds: spec.pending_ttl.seconds(),
                    max_access_seconds: spec.max_access_duration.seconds(),
                    workloads: serde_json::to_string(&spec.workloads).unwrap_or_default(),
                    recipients: serde_json::to_string(&spec.notification_recipients).unwrap_or_default(),
                    spec_hash,
                    applied_spec,
                };
                match snapshot.policies.get(&id.uid) {
                    None => emit(
                        &mut work,
                        &mut steps,
                        step(Change::PutPolicy(record), format!("store lockbox policy {}", id.name), false, None),
                    ),
                    Some(old) if *old.record != record => {
                        let before = serde_json::to_string(&old.record).ok();
                        emit(
                            &mut work,
                            &mut steps,
                            step(
                                Change::PutPolicy(record),
                                format!("update lockbox policy {}", id.name),
                                false,
                                before,
                            ),
                        );
                    }
                    Some(_) => {}
                }
                Verdict::Ready("the store matches the spec".into())
            }
        },
    };
    let mut conditions = previous.map(|p| p.conditions.clone()).unwrap_or_default();
    verdict.apply(&mut conditions, id.generation, ctx.now);
    let stalled = matches!(verdict, Verdict::Stalled { .. });
    let status = LockboxPolicyStatus {
        observed_generation: id.generation,
        conditions,
        enabled: (!stalled).then_some(spec.enabled),
        pending_requests: previous.and_then(|p| p.pending_requests),
        active_requests: previous.and_then(|p| p.active_requests),
        next_deadline: previous.and_then(|p| p.next_deadline.clone()),
        tracking: Default::default(),
    };
    let guard = guard(snapshot, GuardTable::LockboxPolicy, &id.uid);
    Plan { steps, guard: Some(guard), status, requeue_at: None, stalled }
}
