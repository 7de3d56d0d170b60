//! Standard `metav1.Condition` handling, following the kstatus conventions:
//! `Ready` is the summary, `Reconciling` says work is in progress, `Stalled` says the user
//! must change something. `lastTransitionTime` moves only when a condition's status changes,
//! so writing an unchanged status is a no-op.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Summary condition: True when the store matches the spec.
pub const READY: &str = "Ready";
/// True while the operator is still converging.
pub const RECONCILING: &str = "Reconciling";
/// True when progress needs a change from the user (an invalid spec, a refused grant).
pub const STALLED: &str = "Stalled";
/// A Membership's invitation: True once delivered (`Sent`) or `Accepted`; False while
/// `Pending`, and when it `Failed`, `Expired` or was `Revoked`. The reason is the state.
pub const INVITED: &str = "Invited";

/// True while the object carries `servicehub.io/paused: "true"` and the operator leaves it
/// (and what it provisioned) alone.
pub const PAUSED: &str = "Paused";

/// With `managementPolicy: Observe`: True when the store matches the object, False (reason
/// `DriftDetected`) when it differs. Absent under `Manage`.
pub const SYNCED: &str = "Synced";

/// Set `cond` in `conditions`, keeping the old `lastTransitionTime` when the status did not change.
pub fn set(conditions: &mut Vec<Condition>, mut cond: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => {
            if existing.status == cond.status {
                cond.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = cond;
        }
        None => conditions.push(cond),
    }
}

/// Build a condition.
pub fn new(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: jiff::Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: Time(now),
    }
}

/// Find a condition by type.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of this type is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0 = jiff::Timestamp::from_second(1_000).expect("valid");
        let t1 = jiff::Timestamp::from_second(2_000).expect("valid");
        let mut conds = vec![];
        set(&mut conds, new(READY, false, "Pending", "a", Some(1), t0));
        set(&mut conds, new(READY, false, "Pending", "b", Some(2), t1));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time.0, t0);
        assert_eq!(conds[0].message, "b");
        set(&mut conds, new(READY, true, "Provisioned", "c", Some(2), t1));
        assert_eq!(conds[0].last_transition_time.0, t1);
        assert!(is_true(&conds, READY));
        assert!(!is_true(&conds, STALLED));
    }
}
